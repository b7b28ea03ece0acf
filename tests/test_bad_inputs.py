"""Bad input, everywhere a person can give it: the Python API, the command line, notebook parameters, data files
and run directories. Each case must raise a clear error (its message is matched) AND leave the files of an
existing run exactly as they were (the run directory is hashed before and after).

Also here: the safety scan (nothing a run directory or a user file provides is unpickled).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import dashkit
from dashkit import __main__ as cli
from dashkit import backbones, pipeline
from dashkit.dashconv import DashConv
from dashkit.space import SearchSpace
from dashkit.supernet import ArchCard
from dashkit.tasks import from_arrays, register
from dashkit.tasks.base import Task, TaskDefaults
from dashkit.tasks.nb360 import ninapro

NAME = f"bad_inputs_tiny_{uuid.uuid4().hex[:6]}"


def _data(n: int, seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 24, generator=g)
    x[torch.arange(n), 0, 12] += 1.5 * (2 * y - 1)
    return TensorDataset(x, y)


@register(NAME)
def tiny() -> Task:
    """A tiny two-class task for the bad-input tests."""
    return Task(name=NAME, kind="classification", train=_data(64, 0), val=_data(32, 1), test=_data(32, 2),
                in_shape=(1, 24), num_outputs=2, metric_name="error_pct",
                defaults=TaskDefaults(backbone="resnet1d", backbone_kwargs={"width": 2}, kernel_sizes=(3, 5),
                                      dilations=(1, 2)))


SETTINGS = {"search_backend": "fft", "retrain_conv_backend": "direct", "search_epochs": 1, "search_batch_size": 16,
            "tune_epochs": 1, "tune_batch_size": 16, "retrain_epochs": 1, "retrain_batch_size": 16}
FLAGS = [f"{k}={v}" for k, v in SETTINGS.items()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("master") / "run"
    pipeline.run(NAME, out=out, device="cpu", figures=False, verbose=False, **SETTINGS)
    return out


def digest(folder: Path) -> str:
    """One hash over every file's relative path and bytes."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


class CommandFailed(Exception):
    """The command line's exit status and its stderr, as an exception the cases can match."""


def command(*argv: str) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli.main(list(argv))
        except SystemExit as e:  # argparse's own errors
            status = e.code
    raise CommandFailed(f"status {status}: {err.getvalue().strip()}")


def run_again(run: Path, **kw) -> None:
    pipeline.run(NAME, out=run, device="cpu", figures=False, verbose=False, **{**SETTINGS, **kw})


def forget(run: Path, *stages: str) -> None:
    """Make a finished run look stopped before these stages (as if it had been killed there)."""
    for stage in stages:
        (run / "done" / f"{stage}.json").unlink()


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def other_backbone_card(run: Path) -> None:
    card = ArchCard.load(run / "archcard.json")
    card.backbone = "tcn"
    card.layers[0].name = "tcn.levels.0.conv1"  # a card searched on another network names other layers
    card.save(run / "archcard.json")


def parallel_config(run: Path) -> None:
    """The run's config as if it had been started with tune_parallel=true and a journal."""
    meta = json.loads((run / "config.json").read_text())
    meta["config"]["tune"].update(parallel=True, storage="tune.journal")
    (run / "config.json").write_text(json.dumps(meta))


def nb360_files(tmp: Path, damage: Callable[[Path], None]) -> Path:
    if str(Path(__file__).parent) not in sys.path:
        sys.path.insert(0, str(Path(__file__).parent))
    from nb360_fixtures import write_ninapro

    root = tmp / "ninapro"
    root.mkdir()
    write_ninapro(root)
    damage(root)
    return root


@dataclass
class Case:
    kind: str  # what is wrong
    surface: str  # python | cli | notebook | files | launch
    act: Callable[[Path, Path], None]  # (copy of a finished run, a scratch folder) -> raises
    error: type
    match: str
    prepare: Callable[[Path], None] = lambda run: None  # damage done to the run before it is hashed


x_ok = np.random.default_rng(0).normal(size=(10, 1, 16)).astype(np.float32)
y_ok = np.arange(10) % 2
nan_x = x_ok.copy()
nan_x[3, 0, 5] = np.nan

CASES = [
    # ---- the Python API
    Case("task of the wrong type", "python", lambda r, t: pipeline.run(3, out=r), TypeError,
         r"task = 3: expected a registered task name"),
    Case("unknown task name", "python", lambda r, t: pipeline.run("no_such_task", out=r), ValueError,
         r"unknown task 'no_such_task'; known tasks: "),
    Case("config of the wrong type", "python", lambda r, t: pipeline.search(tiny(), {}, r), TypeError,
         r"cfg = \{\}: expected a dashkit.config.RunConfig"),
    Case("output folder of the wrong type", "python", lambda r, t: pipeline.run(NAME, out=123), TypeError,
         r"out = 123: expected None or a folder path"),
    Case("bad search space: even kernel sizes", "python", lambda r, t: run_again(r, kernel_sizes=(4, 6)), ValueError,
         r"kernel_sizes = \(4, 6\): expected odd sizes"),
    Case("bad search space: dilation 0", "python", lambda r, t: run_again(r, dilations=(0, 1)), ValueError,
         r"dilations = \(0, 1\): expected None or a non-empty tuple of ints >= 1"),
    Case("bad search space: repeated kernel size", "python", lambda r, t: run_again(r, kernel_sizes=(3, 3)),
         ValueError, r"kernel_sizes = \(3, 3\): expected None or a non-empty tuple of ints >= 1, without repeats"),
    Case("run directory made with another config", "python", lambda r, t: run_again(r, search_epochs=3), ValueError,
         r"was made with another config \(config\.search\.epochs: 1 -> 3\); pass overwrite=True"),
    Case("existing run without resume", "python", lambda r, t: run_again(r, resume=False), ValueError,
         r"already holds a run; pass resume=True \(--resume\)"),
    Case("output path is a file", "python", lambda r, t: run_again(r / "metrics.json"), ValueError,
         r"metrics\.json' exists and is not a folder"),
    Case("output folder holds something else", "python", lambda r, t: run_again(r / "done"), ValueError,
         r"is not empty and holds no config\.json: it is not a dashkit run"),
    Case("wrong input shape for a layer", "python",
         lambda r, t: DashConv(2, 2, SearchSpace((3,), (1,), dims=1))(torch.randn(4, 3, 16)), ValueError,
         r"DashConv expects input \(B, C, L\) with C = 2, got shape \(4, 3, 16\)"),
    Case("ArchCard applied to another backbone", "python",
         lambda r, t: ArchCard.load(r / "archcard.json").apply(backbones.BACKBONES.get("tcn", in_channels=1,
                                                                                        num_classes=2)),
         ValueError, r"this ArchCard \(backbone 'resnet1d'\) does not fit TCN: no conv named"),
    Case("parallel tuning on SQLite", "python",
         lambda r, t: run_again(r, tune_parallel=True, tune_storage="sqlite:///tune.db"), ValueError,
         r"tune_storage = 'sqlite:///tune\.db': SQLite cannot be shared by several tuning workers"),
    Case("parallel tuning without shared storage", "python", lambda r, t: run_again(r, tune_parallel=True),
         ValueError, r"tune_parallel = True needs tune_storage"),
    Case("model of an unknown kind", "python", lambda r, t: pipeline.load_model(r, "biggest"), ValueError,
         r"which = 'biggest': expected 'dash', 'baseline' or 'best'"),
    # ---- data given as arrays
    Case("NaN in the data", "python", lambda r, t: pipeline.run(from_arrays(nan_x, y_ok), out=r), ValueError,
         r"x_train holds 1 NaN or infinite value\(s\); expected finite numbers only"),
    Case("inputs of a wrong shape", "python", lambda r, t: from_arrays(x_ok[:, :, :, None, None], y_ok), ValueError,
         r"x_train has shape \(10, 1, 16, 1, 1\); expected \(N, L\), \(N, C, L\) or \(N, C, H, W\)"),
    Case("labels of mixed types", "python", lambda r, t: from_arrays(x_ok, np.array(["a", 1] * 5, dtype=object)),
         TypeError, r"y_train mixes label types: str \(e\.g\. 'a' at sample 0\) and number"),
    Case("empty data", "python", lambda r, t: from_arrays(x_ok[:0], y_ok[:0]), ValueError,
         r"x_train is empty \(shape \(0, 1, 16\)\)"),
    Case("inputs and labels of different lengths", "python", lambda r, t: from_arrays(x_ok, y_ok[:9]), ValueError,
         r"y_train has 9 samples but its inputs have 10"),
    # ---- data files named by the user
    Case("truncated data file", "files",
         lambda r, t: ninapro(nb360_files(t, lambda root: truncate(root / "ninapro_train.npy"))), ValueError,
         r"nb360_ninapro: could not read .*ninapro_train\.npy': the file is truncated or not in the NAS-Bench-360"),
    Case("missing data file", "files",
         lambda r, t: ninapro(nb360_files(t, lambda root: (root / "label_val.npy").unlink())), FileNotFoundError,
         r"nb360_ninapro: label_val\.npy not found in"),
    # ---- damaged or foreign files in a run directory
    Case("corrupted weights file", "files", lambda r, t: pipeline.load_model(r, "dash"), ValueError,
         r"dash\.safetensors' is corrupt or not a safetensors file",
         prepare=lambda r: truncate(r / "dash.safetensors")),
    Case("weights from another model", "files", lambda r, t: pipeline.load_model(r, "dash"), ValueError,
         r"dash\.safetensors' does not fit the dash model of this run's config",
         prepare=lambda r: shutil.copy(r / "baseline.safetensors", r / "dash.safetensors")),
    Case("ArchCard of another backbone in the run", "files", lambda r, t: run_again(r), ValueError,
         r"this ArchCard \(backbone 'tcn'\) does not fit ResNet1D: no conv named \['tcn\.levels\.0\.conv1'\]",
         prepare=lambda r: (other_backbone_card(r), forget(r, "tune", "retrain", "baseline_tune",
                                                           "baseline_retrain"))),
    Case("truncated checkpoint", "files", lambda r, t: run_again(r), ValueError,
         r"retrain-e00000\.safetensors' is corrupt \(size \d+ bytes, expected \d+\)",
         prepare=lambda r: (forget(r, "retrain", "baseline_retrain"),
                            truncate(r / "checkpoints" / "retrain-e00000.safetensors"))),
    Case("truncated checkpoint record", "files", lambda r, t: run_again(r), ValueError,
         r"checkpoints/retrain\.json' is corrupt \(not valid JSON",
         prepare=lambda r: (forget(r, "retrain", "baseline_retrain"), truncate(r / "checkpoints" / "retrain.json"))),
    Case("corrupt run config", "files", lambda r, t: run_again(r), ValueError,
         r"has a corrupt config\.json \(.*\), so its run cannot be resumed; pass overwrite=True",
         prepare=lambda r: truncate(r / "config.json")),
    Case("truncated ArchCard", "files", lambda r, t: pipeline.load_result(r), ValueError,
         r"ArchCard file .*archcard\.json' is not valid JSON", prepare=lambda r: truncate(r / "archcard.json")),
    Case("metrics file of another shape", "files", lambda r, t: pipeline.load_result(r), ValueError,
         r"metrics\.json' is not a dashkit metrics file \(KeyError: 'test'\)",
         prepare=lambda r: (r / "metrics.json").write_text('{"metric": "error_pct", "dash": {"val": 1}}')),
    # ---- the command line
    Case("misspelled setting", "cli", lambda r, t: command("run", NAME, "--out", str(r), "--set", "search_epoch=3"),
         CommandFailed, r"status 2: dashkit: error: unknown setting 'search_epoch' \(did you mean 'search_epochs'\?\)"),
    Case("unreadable setting value", "cli",
         lambda r, t: command("run", NAME, "--out", str(r), "--set", "search_epochs=two"), CommandFailed,
         r"status 2: dashkit: error: setting search_epochs='two': cannot read the value as int"),
    Case("unknown preset", "cli", lambda r, t: command("run", NAME, "--out", str(r), "--preset", "fast"),
         CommandFailed, r"(?s)status 2: usage: dashkit run .*\ndashkit run: error: argument --preset: invalid choice: "
                        r"'fast'"),
    Case("unknown device", "cli", lambda r, t: command("run", NAME, "--out", str(r), "--device", "gpu"),
         CommandFailed, r"status 2: dashkit: error: device = 'gpu': expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    Case("command resumes with another config", "cli",
         lambda r, t: command("run", NAME, "--out", str(r), "--device", "cpu", "--resume", "--set",
                              *FLAGS, "retrain_epochs=5"), CommandFailed,
         r"status 2: dashkit: error: run directory .* was made with another config \(config\.retrain\.epochs: "
         r"1 -> 5\)"),
    Case("tuning worker for a run without a queue", "cli", lambda r, t: command("tune-worker", str(r)),
         CommandFailed, r"status 2: dashkit: error: the run in .* has tune_enabled = True and tune_parallel = False: "
                        r"it has no tuning queue"),
    Case("tuning worker for a folder that is not a run", "cli", lambda r, t: command("tune-worker", str(r / "done")),
         CommandFailed, r"status 2: dashkit: error: run_dir = .*done' is not a dashkit run directory"),
    Case("tuning worker with a negative wait", "cli", lambda r, t: command("tune-worker", str(r), "--wait", "-1"),
         CommandFailed, r"status 2: dashkit: error: --wait -1\.0: expected a number of seconds >= 0"),
    Case("tuning worker whose run never queues", "cli", lambda r, t: command("tune-worker", str(r), "--wait", "0"),
         CommandFailed, r"status 1: dashkit: tune-worker: no tuning queue '.*-tune-seed0-.*' appeared in .* in time",
         prepare=lambda r: (parallel_config(r), forget(r, "tune", "retrain", "baseline_tune", "baseline_retrain"))),
    Case("module to import does not exist", "cli", lambda r, t: command("tasks", "--import", str(t / "nope.py")),
         CommandFailed, r"status 2: dashkit: error: --import '.*nope\.py': no such file"),
    # ---- notebook parameters (what papermill injects into the parameters cell, passed on to dashkit.run)
    Case("unknown preset parameter", "notebook", lambda r, t: dashkit.run(NAME, preset="quick", out=r), ValueError,
         r"preset = 'quick': expected one of smoke, standard, paper"),
    Case("parameter given as text", "notebook", lambda r, t: dashkit.run(NAME, out=r, search_epochs="3"), TypeError,
         r"search_epochs = '3': expected an int"),
    Case("unknown parameter", "notebook", lambda r, t: dashkit.run(NAME, out=r, epochs=3), ValueError,
         r"unknown setting 'epochs' \(did you mean 'tune_epochs'\?\); valid settings: seed, device, "),
    Case("seed of the wrong type", "notebook", lambda r, t: dashkit.run(NAME, out=r, seed=1.5), TypeError,
         r"seed = 1\.5: expected an int"),
    Case("device that this machine lacks", "notebook", lambda r, t: dashkit.run(NAME, out=r, device="mps"),
         ValueError, r"device = 'mps': MPS is not available on this machine"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
def test_bad_input_gives_a_clear_error_and_leaves_the_run_intact(case, finished_run, tmp_path, monkeypatch):
    if case.kind == "device that this machine lacks" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    case.prepare(run)
    before = digest(run)
    monkeypatch.chdir(tmp_path)  # a default output folder (runs/...) would land here, never in the repository
    with pytest.raises(case.error, match=case.match):
        case.act(run, tmp_path)
    assert digest(run) == before


def test_torchrun_variables_that_make_no_sense_are_refused_before_any_file_is_touched(finished_run, tmp_path,
                                                                                      monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = digest(run)
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(ValueError, match=r"environment variable WORLD_SIZE = 'two': expected an int >= 1"):
        run_again(run)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match=r"environment variable RANK = 5: expected 0 <= RANK < WORLD_SIZE = 2"):
        run_again(run)
    assert digest(run) == before


def test_the_suite_covers_enough_kinds_on_every_surface():
    kinds = [c.kind for c in CASES] + ["torchrun variables that make no sense"]
    assert len(set(kinds)) == len(kinds) >= 25
    assert {c.surface for c in CASES} == {"python", "files", "cli", "notebook"}


def test_a_good_resume_changes_nothing_either(finished_run, tmp_path):
    # the control of the cases above: the hash is sensitive, and a finished run resumed does no work
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = digest(run)
    (run / "metrics.json").write_text((run / "metrics.json").read_text() + " ")
    assert digest(run) != before
    (run / "metrics.json").write_text((run / "metrics.json").read_text()[:-1])
    pipeline.run(NAME, out=run, device="cpu", figures=False, verbose=False, **SETTINGS)
    changed = digest(run) != before  # only environment.json: the session that finished the run is recorded
    (run / "environment.json").write_bytes((finished_run / "environment.json").read_bytes())
    assert changed and digest(run) == before


# ------------------------------------------------------------------------------------------------------ safety
PACKAGE = Path(dashkit.__file__).parent


def test_nothing_in_the_package_unpickles_what_a_run_or_a_user_file_provides():
    """pickle.load, torch.load without weights_only=True and allow_pickle=True appear only where NAS-Bench-360's
    own files are pickles by format (dashkit/tasks/nb360.py, reading a folder the user names)."""
    findings = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).as_posix()
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"pickle\.loads?\(|torch\.load\(|allow_pickle\s*=\s*True|dill\.|cloudpickle|"
                             r"marshal\.loads?\(|shelve\.open\(", text):
            line = text[text.rfind("\n", 0, m.start()) + 1: text.find("\n", m.end())]
            call_end = _call_end(text, m.end()) if m.group().startswith("torch.load(") else m.end()
            call = text[m.start():call_end]
            if m.group().startswith("torch.load(") and re.search(r"weights_only\s*=\s*True", call):
                continue
            if rel == "dashkit/tasks/nb360.py" and not m.group().startswith("torch.load("):
                continue
            findings.append(f"{rel}: {line.strip()}")
    assert findings == []
    # the scan finds what it looks for: nb360's pickles are there, and a planted call would be reported
    assert re.search(r"pickle\.load\(", (PACKAGE / "tasks" / "nb360.py").read_text())
    planted = "state = torch.load(path)\nother = torch.load(p, weights_only=True)\n"
    assert [m.start() for m in re.finditer(r"torch\.load\(", planted)
            if not re.search(r"weights_only\s*=\s*True", planted[m.start():_call_end(planted, m.end())])] == [8]


def _call_end(text: str, start: int) -> int:
    """The index after the parenthesis that closes the call opened just before `start`."""
    depth = 1
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return i + 1
    return len(text)


def test_run_directories_hold_no_pickles(finished_run):
    # a pickle starts with the PROTO opcode 0x80; torch.save files are zip archives that hold one
    for p in finished_run.rglob("*"):
        if p.is_file():
            head = p.read_bytes()[:4]
            assert head[:1] != b"\x80" and head != b"PK\x03\x04", p
