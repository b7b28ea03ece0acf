"""Tests of what a person types and reads: settings (dashkit.config), progress lines and ``python -m dashkit``."""
from __future__ import annotations

import io
import json
import subprocess
import sys
import types

import pytest
import torch

from tiny_task_module import write_task_module

from dashkit import __main__ as cli
from dashkit.config import (PRESETS, RetrainConfig, RunConfig, SearchConfig, TuneConfig, make_config, parse_setting,
                            resolve_device, setting_names)
from dashkit.progress import PlainProgress, progress, progress_mode
from dashkit.tasks.base import TaskDefaults


# ------------------------------------------------------------------------------------------------ settings
def test_paper_preset_holds_dash_published_budgets():
    cfg = make_config("paper")
    s, t, r = cfg.search, cfg.tune, cfg.retrain
    assert (s.epochs, s.batches_per_epoch, s.lr, s.arch_lr, s.momentum, s.nesterov) == (100, 0.2, 0.1, 0.05, 0.9, True)
    assert (s.weight_decay, s.grad_clip, s.gamma, s.grad_scale, s.rf_penalty) == (5e-4, 1.0, 0.2, 100.0, 1e-5)
    assert (s.relaxation, s.tau, s.scheme, s.depthwise) == ("gumbel", 1.0, "single_level", True)
    grid = t.grid()
    assert len(grid) == 24 and t.epochs == 80 and r.epochs == 200
    assert [g["lr"] for g in grid] == [0.1] * 8 + [0.01] * 8 + [0.001] * 8  # lr-major, DASH's block order
    assert {(g["dropout"], g["weight_decay"], g["momentum"]) for g in grid} == \
        {(d, w, m) for d in (0.0, 0.05) for w in (5e-4, 5e-6) for m in (0.9, 0.99)}


def test_presets_grow_from_smoke_to_paper():
    def steps(cfg, batches=100):  # optimiser steps of a task with 100 training batches
        cap = lambda c: min(round(c.batches_per_epoch * batches), c.max_batches or batches)  # noqa: E731
        return (cfg.search.epochs * cap(cfg.search), len(cfg.tune.grid()) * cfg.tune.epochs * cap(cfg.tune),
                cfg.retrain.epochs * cap(cfg.retrain))

    smoke, standard, paper = (steps(make_config(p)) for p in ("smoke", "standard", "paper"))
    assert all(a < b < c for a, b, c in zip(smoke, standard, paper))
    assert set(PRESETS) == {"smoke", "standard", "paper"}


def test_task_defaults_apply_on_top_of_the_preset_and_user_overrides_win():
    defaults = TaskDefaults(backbone="wrn", backbone_kwargs={"depth": 10}, kernel_sizes=(3, 5), dilations=(1, 2),
                            search={"grad_scale": 500.0}, retrain={"epochs": 7})
    cfg = make_config("smoke", defaults)
    assert cfg.search.grad_scale == 500.0 and cfg.retrain.epochs == 7 and cfg.search.epochs == 2
    assert (cfg.backbone, cfg.backbone_kwargs, cfg.kernel_sizes, cfg.dilations) == \
        ("wrn", {"depth": 10}, (3, 5), (1, 2))
    cfg = make_config("smoke", defaults, search_grad_scale=50, retrain_epochs=3, kernel_sizes=[3, 5, 7])
    assert cfg.search.grad_scale == 50.0 and isinstance(cfg.search.grad_scale, float)
    assert cfg.retrain.epochs == 3 and cfg.kernel_sizes == (3, 5, 7)
    with pytest.raises(ValueError, match=r"unknown setting 'search_grad_scael'"):
        make_config("smoke", TaskDefaults(search={"grad_scael": 5.0}))


def test_unknown_settings_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown setting 'search_epoch' \(did you mean 'search_epochs'\?\); "
                                         r"valid settings: seed, device, .*search_epochs.*retrain_backbone"):
        make_config("smoke", search_epoch=3)
    with pytest.raises(ValueError, match=r"unknown setting 'colour'; valid settings: "):
        make_config("smoke", colour="blue")
    with pytest.raises(ValueError, match=r"preset = 'fast': expected one of smoke, standard, paper"):
        make_config("fast")
    with pytest.raises(ValueError, match=r"unknown setting 'search_bogus'"):
        RunConfig.from_dict({"search": {"bogus": 1}})


@pytest.mark.parametrize("key, value, error, message", [
    ("search_epochs", 2.5, TypeError, r"search_epochs = 2.5: expected an int"),
    ("search_epochs", True, TypeError, r"search_epochs = True: expected an int"),
    ("search_nesterov", "yes", TypeError, r"search_nesterov = 'yes': expected True or False"),
    ("tune_lrs", 0.1, TypeError, r"tune_lrs = 0.1: expected a tuple \(or list\) of float"),
    ("retrain_backbone", [("width", 4)], TypeError, r"retrain_backbone = \[\('width', 4\)\]: expected a dict"),
    ("search_lr", "0.1", TypeError, r"search_lr = '0.1': expected a number"),
    ("search_epochs", 0, ValueError, r"search_epochs = 0: expected an int >= 1"),
    ("search_relaxation", "hard", ValueError, r"search_relaxation = 'hard': expected one of gumbel, softmax"),
    ("search_scheme", "darts", ValueError, r"search_scheme = 'darts': expected one of single_level, bilevel"),
    ("search_backend", "cuda", ValueError, r"search_backend = 'cuda': expected one of auto, fft, direct"),
    ("search_batches_per_epoch", 1.5, ValueError, r"search_batches_per_epoch = 1.5: expected a fraction in \(0, 1\]"),
    ("retrain_milestones", (0.8, 0.3), ValueError, r"retrain_milestones = \(0.8, 0.3\): expected increasing"),
    ("retrain_dropout", 1.0, ValueError, r"retrain_dropout = 1.0: expected a number in \[0, 1\)"),
    ("tune_lrs", (), ValueError, r"tune_lrs = \(\): expected a non-empty tuple"),
    ("tune_pruner", "hyperband", ValueError, r"tune_pruner = 'hyperband': expected one of median, none"),
    ("tune_max_batches", 0, ValueError, r"tune_max_batches = 0: expected None or an int >= 1"),
    ("device", "tpu", ValueError, r"device = 'tpu': expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
    ("num_workers", -1, ValueError, r"num_workers = -1: expected an int >= 0"),
    ("dilations", (0, 1), ValueError, r"dilations = \(0, 1\): expected None or a non-empty tuple of ints >= 1"),
])
def test_bad_setting_values_are_rejected(key, value, error, message):
    with pytest.raises(error, match=message):
        make_config("smoke", **{key: value})


def test_config_round_trips_through_json():
    cfg = make_config("standard", TaskDefaults(), seed=3, tune_storage="t.journal", retrain_backbone={"width": 4},
                      tune_lrs=[0.1, 0.01])
    text = cfg.to_json()
    assert json.loads(text)["tune"]["lrs"] == [0.1, 0.01]
    back = RunConfig.from_json(text)
    assert back == cfg and back.tune.lrs == (0.1, 0.01) and back.retrain.backbone == {"width": 4}
    assert isinstance(back.search, SearchConfig) and isinstance(back.tune, TuneConfig)
    assert isinstance(back.retrain, RetrainConfig)
    with pytest.raises(TypeError, match=r"data = \[1\]: expected a dict"):
        RunConfig.from_dict([1])


def test_parse_setting_reads_values_by_their_type():
    assert parse_setting("search_epochs=3") == ("search_epochs", 3)
    assert parse_setting("search_lr=1e-2") == ("search_lr", 0.01)
    assert parse_setting("search_depthwise=false") == ("search_depthwise", False)
    assert parse_setting("tune_lrs=0.1,0.01") == ("tune_lrs", (0.1, 0.01))
    assert parse_setting("tune_lrs=[0.1, 0.001]") == ("tune_lrs", (0.1, 0.001))
    assert parse_setting('retrain_backbone={"width": 4}') == ("retrain_backbone", {"width": 4})
    assert parse_setting("tune_storage=none") == ("tune_storage", None)
    assert parse_setting("tune_storage=runs/t.journal") == ("tune_storage", "runs/t.journal")
    assert parse_setting("tune_n_trials=5") == ("tune_n_trials", 5)
    with pytest.raises(ValueError, match=r"setting search_epochs='three': cannot read the value as int"):
        parse_setting("search_epochs=three")
    with pytest.raises(ValueError, match=r"setting 'search_epochs': expected KEY=VALUE"):
        parse_setting("search_epochs")
    with pytest.raises(ValueError, match=r"unknown setting 'epochs'"):
        parse_setting("epochs=3")
    # every name that parse_setting knows is a valid keyword of make_config, and the reverse
    assert len(setting_names()) == len(set(setting_names())) > 50


def test_device_resolution():
    want = "cuda" if torch.cuda.is_available() else None
    got = resolve_device("auto").type
    assert got == want or (want is None and got in ("cpu", "mps"))
    assert resolve_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device = 'cuda': CUDA is not available on this machine"):
            resolve_device("cuda")
    with pytest.raises(TypeError, match=r"device = 0: expected a str"):
        resolve_device(0)


# ------------------------------------------------------------------------------------------------ progress
class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_progress_env(monkeypatch):
    monkeypatch.delenv("DASHKIT_PROGRESS", raising=False)
    monkeypatch.delenv("CI", raising=False)


def test_progress_prints_plain_lines_when_not_a_tty(no_progress_env, capsys):
    assert progress_mode() == "plain"  # pytest's captured streams are not terminals
    seen = [i for i in progress(range(20), desc="epoch 1", every=0.25)]
    assert seen == list(range(20))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[:3] for line in lines] == [["epoch", "1:", "5/20"], ["epoch", "1:", "10/20"],
                                                       ["epoch", "1:", "15/20"], ["epoch", "1:", "20/20"]]
    assert lines[0].startswith("epoch 1: 5/20 (25%)") and "\r" not in "".join(lines)


def test_progress_by_hand_with_postfix_initial_and_unknown_total(no_progress_env, capsys):
    bar = progress(total=10, desc="retrain", initial=4)
    bar.update(1)
    bar.set_postfix(loss=0.123456, epoch=2)
    bar.update(1)
    bar.close()
    bar.close()  # closing twice prints once
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("retrain: 5/10 (50%)") and lines[-1].startswith("retrain: 6/10 (60%)")
    assert lines[-1].endswith("loss=0.1235 epoch=2") and len(lines) == 3
    out = io.StringIO()
    with PlainProgress(total=None, desc="x", file=out) as p:
        for _ in range(9):
            p.update(1)
    counts = [line.split()[1] for line in out.getvalue().splitlines()]
    assert counts == ["1", "2", "4", "8", "9"]  # doubling steps without a total, then the end


def test_progress_mode_follows_ci_tty_and_the_environment(no_progress_env, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stderr", _Tty())
    assert progress_mode() == "bar"
    bar = progress(range(3), desc="t")
    assert type(bar).__module__.startswith("tqdm") and list(bar) == [0, 1, 2]
    monkeypatch.setenv("CI", "true")
    assert progress_mode() == "plain"
    monkeypatch.setenv("DASHKIT_PROGRESS", "off")
    assert list(progress(range(3), desc="quiet")) == [0, 1, 2]
    assert capsys.readouterr().out == ""
    monkeypatch.setenv("DASHKIT_PROGRESS", "fancy")
    with pytest.raises(ValueError, match=r"DASHKIT_PROGRESS = 'fancy': expected 'bar', 'plain' or 'off'"):
        progress_mode()
    with pytest.raises(ValueError, match=r"every = 0: expected a fraction in \(0, 1\]"):
        PlainProgress(range(3), every=0)


# ---------------------------------------------------------------------------------------------- the command
SETTINGS = ["search_backend=fft", "search_epochs=1", "search_batch_size=32", "tune_epochs=1",
            "tune_batch_size=32", "retrain_epochs=2", "retrain_batch_size=32"]


@pytest.fixture
def task_module(tmp_path):
    """(name, path) of the tiny task module the other cross-process tests use; its name is longer than every
    built-in task's, so `dashkit tasks` sets it two spaces before its description."""
    name, path, _ = write_task_module(tmp_path, "cli_tiny")
    return name, path


def dashkit_cmd(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dashkit", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def test_cli_tasks_run_and_show(task_module, tmp_path):
    name, module = task_module
    listed = dashkit_cmd("tasks", "--import", module)
    assert listed.returncode == 0, listed.stderr
    assert f"{name}  A tiny two-class task for tests across processes." in listed.stdout
    assert "mnist1d" in listed.stdout

    out = tmp_path / "run"
    ran = dashkit_cmd("run", name, "--import", module, "--out", str(out), "--seed", "1", "--device", "cpu",
                      "--no-figures", "--set", *SETTINGS)
    assert ran.returncode == 0, ran.stderr
    assert f"outputs in {out}" in ran.stdout and "search: 1/" in ran.stdout  # plain progress lines
    metrics = json.loads((out / "metrics.json").read_text())
    # the standard preset trains the random-architecture control: two draws and their summary
    assert set(metrics) == {"metric", "dash", "baseline", "random_0", "random_1", "random"}
    assert json.loads((out / "config.json").read_text())["config"]["seed"] == 1

    shown = dashkit_cmd("show", str(out))
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "test error_pct (lower is better)" in text and "search            done in" in text
    assert f"  dash      {metrics['dash']['test']:10.4f}" in text
    assert f"  baseline  {metrics['baseline']['test']:10.4f}" in text
    assert f"  random    {metrics['random']['test']:10.4f}" in text and "random_1_retrain  done in" in text
    chosen = "the baseline" if metrics["baseline"]["val"] < metrics["dash"]["val"] else "DASH"
    assert f"  chosen on validation: {chosen} (the lower validation value" in text
    assert text.count("blocks.") == 9  # the ArchCard table: one row per searched layer
    assert "plan (optimiser steps per stage on this task's data):" in text and "  search  " in text
    env = json.loads((out / "environment.json").read_text())  # the thread count CPU timings depend on
    assert env["threads"] >= 1 and env["cpus"] >= 1
    assert f"  device  cpu, {env['threads']} torch threads of {env['cpus']} CPUs, torch " in text


def test_cli_run_defaults_to_the_standard_preset_and_reads_a_budget(capsys):
    parser = cli._parser()
    args = parser.parse_args(["run", "mnist1d"])
    assert (args.preset, args.budget) == ("standard", None)
    assert parser.parse_args(["run", "mnist1d", "--budget", "5m"]).budget == "5m"
    assert cli.main(["run", "mnist1d", "--budget", "5 parsecs"]) == 2
    assert "dashkit: error: budget = '5 parsecs': expected a number of seconds > 0 or text such as '90s', '5m'" \
        in capsys.readouterr().err


def test_cli_run_again_needs_resume_and_then_skips_finished_stages(task_module, tmp_path, capsys):
    name, module = task_module
    out = str(tmp_path / "run")
    args = ["run", name, "--import", module, "--out", out, "--device", "cpu", "--no-figures", "--set", *SETTINGS]
    assert cli.main(args) == 0
    first = capsys.readouterr()
    assert "search: 1/" in first.out and f"outputs in {out}" in first.out
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert cli.main(args) == 2
    assert "already holds a run; pass resume=True (--resume)" in capsys.readouterr().err
    assert cli.main(args + ["--seed", "2"]) == 2  # another seed is another config
    assert "another config (config.seed: 0 -> 2)" in capsys.readouterr().err
    assert cli.main(args + ["--resume"]) == 0
    assert "search: 1/" not in capsys.readouterr().out  # every stage was done: nothing ran again
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == metrics


def test_cli_bad_input_is_one_line_with_status_2(task_module, tmp_path):
    name, module = task_module
    bad = dashkit_cmd("run", name, "--import", module, "--out", str(tmp_path / "r"), "--set", "search_epoch=3")
    assert bad.returncode == 2
    assert bad.stderr.startswith("dashkit: error: unknown setting 'search_epoch' (did you mean 'search_epochs'?)")
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_cli_errors_in_process(capsys, tmp_path):
    assert cli.main(["show", str(tmp_path)]) == 2
    assert "is not a dashkit run directory (no config.json)" in capsys.readouterr().err
    assert cli.main(["run", "no_such_task"]) == 2
    assert "unknown task 'no_such_task'; known tasks:" in capsys.readouterr().err
    assert cli.main(["run", "mnist1d", "--set", "search_epochs=two"]) == 2
    assert "setting search_epochs='two': cannot read the value as int" in capsys.readouterr().err
    assert cli.main(["run", "mnist1d", "--set", "seed=3"]) == 2
    assert "use --seed instead" in capsys.readouterr().err
    assert cli.main(["tasks", "--import", str(tmp_path / "missing.py")]) == 2
    assert "--import" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:  # argparse's own errors also exit with status 2
        cli.main(["run"])
    assert exc.value.code == 2


def test_cli_failed_and_interrupted_runs(monkeypatch, capsys):
    from dashkit import pipeline

    def diverges(*args, **kwargs):
        raise pipeline.NonFiniteLossError("retrain: the training loss became nan at epoch 2, step 1")

    monkeypatch.setattr(pipeline, "run", diverges)
    assert cli.main(["run", "mnist1d"]) == 1
    assert capsys.readouterr().err == "dashkit: run stopped: retrain: the training loss became nan at epoch 2, step 1\n"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "run", interrupted)
    assert cli.main(["run", "mnist1d"]) == 130
    assert "interrupted; continue with the same command and --resume" in capsys.readouterr().err


def test_cli_settings_lists_every_setting(capsys):
    assert cli.main(["settings", "--preset", "paper"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "search_epochs = 100" in lines and "tune_lrs = [0.1, 0.01, 0.001]" in lines
    assert [line.split(" = ")[0] for line in lines] == setting_names()


def test_cli_bench_dispatches_to_dashkit_bench(monkeypatch, capsys):
    calls = []
    fake = types.ModuleType("dashkit.bench")
    fake.__spec__ = __import__("importlib.machinery").machinery.ModuleSpec("dashkit.bench", None)
    fake.main = lambda argv: calls.append(argv) or 0
    monkeypatch.setitem(sys.modules, "dashkit.bench", fake)
    assert cli.main(["bench", "--quick", "ops"]) == 0 and calls == [["--quick", "ops"]]
    monkeypatch.delitem(sys.modules, "dashkit.bench")
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    assert cli.main(["bench"]) == 2
    assert "the bench command needs dashkit.bench" in capsys.readouterr().err
