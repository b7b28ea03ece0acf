"""Surviving faults: SIGKILL in every stage and --resume, writes killed half way, a killed tuning worker, and
determinism (the same seed gives the same run).

The killed processes read their data slowly (DK_SLOW seconds per example, a setting of the task module written
here) so that a kill lands inside the stage it aims at; the reference runs read at full speed in this process.
The search backend is fixed to "fft" and the retrain conv backend to "direct": "auto" measures timings and may
choose differently between two runs.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_task_module import as_flags, write_task_module
import torch
from torch.utils.data import TensorDataset

from dashkit import __main__ as cli
from dashkit import pipeline
from dashkit.config import make_config
from dashkit.rundir import RunDir, save_tensors
from dashkit.stages.models import initial_state
from dashkit.stages.queue import open_queue
from dashkit.tasks.base import Task, TaskDefaults

SETTINGS = {"search_backend": "fft", "retrain_conv_backend": "direct", "search_epochs": 4, "search_batch_size": 16,
            "search_max_batches": 2, "tune_lrs": (0.1, 0.01), "tune_dropouts": (0.0,), "tune_momentums": (0.9, 0.5),
            "tune_lr_block_patience": 0,
            "tune_epochs": 1, "tune_batch_size": 16, "tune_max_batches": 2, "tune_pruner": "none",
            "tune_storage": "tune.journal", "retrain_epochs": 3, "retrain_batch_size": 16, "retrain_max_batches": 2}


@pytest.fixture
def task_module(tmp_path):
    """(name, path of the module, the Task built in this process)."""
    return write_task_module(tmp_path, "faults")


def slow_env(delay: str = "0.005") -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DASHKIT_PROGRESS": "plain", "DK_SLOW": delay}


def wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120.0) -> None:
    """Poll `condition` until it holds; fail if the process ends first."""
    end = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended (status {proc.returncode}) before {what}: "
                                 f"{proc.stderr.read()[-2000:] if proc.stderr else ''}")
        if time.monotonic() > end:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def journal_lines(path: Path) -> list:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def completed_trials(path: Path) -> int:
    """Trials told COMPLETE in an Optuna journal (state 1 with values)."""
    return sum(1 for d in journal_lines(path) if d.get("state") == 1 and d.get("values"))


# --------------------------------------------------------------------------------------------- SIGKILL, resume
def test_sigkill_in_each_stage_then_resume_gives_the_uninterrupted_result(task_module, tmp_path):
    name, module, task = task_module
    ref = pipeline.run(task, out=tmp_path / "ref", figures=False, verbose=False, **SETTINGS)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "dashkit", "run", name, "--import", module, "--out", str(out), "--device", "cpu",
           "--no-figures", "--set", *as_flags(SETTINGS)]
    start = lambda *extra: subprocess.Popen(cmd + list(extra), stdout=subprocess.PIPE,  # noqa: E731
                                            stderr=subprocess.PIPE, text=True, env=slow_env())
    done = lambda stage: (out / "done" / f"{stage}.json").is_file()  # noqa: E731

    # 1) during the search, once its first epoch's checkpoint is written
    proc = start()
    wait_for(lambda: (out / "checkpoints" / "search.json").is_file(), proc, "the first search checkpoint")
    kill(proc)
    assert not done("search")
    # 2) during the tuning, once a configuration is finished (the journal keeps it)
    proc = start("--resume")
    wait_for(lambda: done("search") and completed_trials(out / "tune.journal") >= 1, proc, "a finished trial")
    kill(proc)
    assert not done("tune")
    # 3) during the retraining, once an epoch's checkpoint is written
    proc = start("--resume")
    wait_for(lambda: (out / "checkpoints" / "retrain.json").is_file(), proc, "a retraining checkpoint")
    kill(proc)
    assert not done("retrain")
    # 4) to the end (in this process: the same task, config and command line code, without a new interpreter)
    assert cli.main(cmd[3:] + ["--resume"]) == 0

    res = pipeline.load_result(out)
    assert res.card == ref.card
    assert [layer.alpha for layer in res.card.layers] == [layer.alpha for layer in ref.card.layers]
    assert res.metrics == ref.metrics and res.val_metrics == ref.val_metrics and res.hparams == ref.hparams
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    for stage in ("search", "tune", "retrain", "baseline_tune", "baseline_retrain"):
        assert strip(RunDir(out).read_history(stage)) == strip(RunDir(tmp_path / "ref").read_history(stage)), stage
    # the configurations finished before the kill were not trained again: one COMPLETE per configuration
    assert completed_trials(out / "tune.journal") == completed_trials(tmp_path / "ref" / "tune.journal") == 8


# --------------------------------------------------------------------------------------- writes killed midway
def _write_checkpoints_forever(folder: str, first: int) -> None:
    """A forked process that saves checkpoint after checkpoint until it is killed; epoch e's weights are all e."""
    rd = RunDir(folder)
    model = torch.nn.Linear(512, 512)  # 1 MB of weights: each write takes a while
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    epoch = first
    while True:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(epoch))
        rd.save_checkpoint("search", epoch, model, {"weights": opt}, extra={"filled_with": epoch})
        epoch += 1


def test_a_checkpoint_write_killed_at_any_moment_leaves_a_valid_previous_one(tmp_path):
    rd = RunDir.create(tmp_path / "run", {"task": "t"})
    rng = random.Random(0)
    ctx = multiprocessing.get_context("fork")  # a copy of this process: nothing to import, so kills come fast
    first = 0
    for _ in range(4):
        proc = ctx.Process(target=_write_checkpoints_forever, args=(str(rd.path), first))
        proc.start()
        end = time.monotonic() + 60
        while not (rd.has_checkpoint("search")
                   and json.loads(rd.checkpoint_path("search").read_text())["epoch"] >= first + 1):
            assert proc.is_alive() and time.monotonic() < end, "the writer stopped before two checkpoints"
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.05))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
        assert proc.exitcode == -signal.SIGKILL
        model = torch.nn.Linear(512, 512)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        epoch, extra = rd.load_checkpoint("search", model, {"weights": opt}, restore_rng=False)
        # the JSON and the tensors it names belong to the same complete write
        assert extra["filled_with"] == epoch >= first + 1
        assert all(bool((p == float(epoch)).all()) for p in model.parameters())
        first = epoch + 1
    # resuming tidies away whatever temporary files the kills left
    RunDir.create(rd.path, {"task": "t"})
    assert not [p for p in (rd.path / "checkpoints").iterdir() if p.name.endswith(".tmp")]


def small_checkpoint(rd: RunDir, epoch: int) -> torch.nn.Module:
    model = torch.nn.Linear(4, 3)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float(epoch))
    rd.save_checkpoint("search", epoch, model, {}, extra={"filled_with": epoch})
    return model


def test_partial_writes_are_ignored_and_damaged_files_refused(tmp_path):
    rd = RunDir.create(tmp_path / "run", {"task": "t"})
    small_checkpoint(rd, 1)
    folder = rd.path / "checkpoints"
    # killed while writing the next tensors: a half temporary file, and the JSON still names epoch 1
    (folder / ".search-e00002.safetensors.k3j2.tmp").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    # killed after the next tensors were complete but before the JSON (the commit point) was replaced
    save_tensors(folder / "search-e00002.safetensors", {"model/weight": torch.full((3, 4), 2.0),
                                                        "model/bias": torch.full((3,), 2.0)})
    model = torch.nn.Linear(4, 3)
    assert rd.load_checkpoint("search", model, {}, restore_rng=False) == (1, {"filled_with": 1})
    assert bool((model.weight == 1.0).all())
    assert RunDir.create(rd.path, {"task": "t"}).remove_partial_writes() == []  # create already removed it
    assert not (folder / ".search-e00002.safetensors.k3j2.tmp").exists()
    small_checkpoint(rd, 3)  # the next save removes the orphan tensors
    assert sorted(p.name for p in folder.iterdir()) == ["search-e00003.safetensors", "search.json"]

    # damage that no kill can cause (the disk, a copy): refused with the file named, never loaded
    tensors = folder / "search-e00003.safetensors"
    good = tensors.read_bytes()
    tensors.write_bytes(good[: len(good) // 2])
    with pytest.raises(ValueError, match=r"search-e00003\.safetensors' is corrupt \(size \d+ bytes, expected \d+\)"):
        rd.load_checkpoint("search", torch.nn.Linear(4, 3), {})
    tensors.write_bytes(good[:20] + b"\x00" * (len(good) - 20))  # same size, garbage inside
    with pytest.raises(ValueError, match=r"checkpoint of stage 'search' cannot be read: weights file .* is corrupt"):
        rd.load_checkpoint("search", torch.nn.Linear(4, 3), {})
    tensors.write_bytes(good)
    meta = rd.checkpoint_path("search").read_text()
    rd.checkpoint_path("search").write_text(meta[: len(meta) // 2])
    with pytest.raises(ValueError, match=r"search\.json' is corrupt \(not valid JSON"):
        rd.load_checkpoint("search", torch.nn.Linear(4, 3), {})
    rd.checkpoint_path("search").write_text(meta.replace("search-e00003.safetensors", "../../../etc/passwd"))
    with pytest.raises(ValueError, match=r"is not a file name in the checkpoints folder"):
        rd.load_checkpoint("search", torch.nn.Linear(4, 3), {})
    rd.checkpoint_path("search").write_text(meta)
    with pytest.raises(ValueError, match=r"does not fit this model"):
        rd.load_checkpoint("search", torch.nn.Linear(5, 3), {})
    assert rd.load_checkpoint("search", torch.nn.Linear(4, 3), {}, restore_rng=False)[0] == 3


# ------------------------------------------------------------------------------------------------ the journal
def tiny_task(name: str = "tiny") -> Task:
    def make(n, seed):
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, 2, (n,), generator=g)
        x = torch.randn(n, 1, 24, generator=g)
        x[torch.arange(n), 0, 12] += 1.5 * (2 * y - 1)
        return TensorDataset(x, y)

    return Task(name=name, kind="classification", train=make(64, 0), val=make(33, 1), test=make(35, 2),
                in_shape=(1, 24), num_outputs=2, metric_name="error_pct",
                defaults=TaskDefaults(backbone="resnet1d", backbone_kwargs={"width": 2}, kernel_sizes=(3, 5),
                                      dilations=(1, 2)))


def test_a_journal_line_torn_by_a_kill_is_cut_before_the_tuning_resumes(tmp_path, monkeypatch, kill_tuning_at):
    task = tiny_task()
    cfg = make_config("smoke", task.defaults, **{**SETTINGS, "tune_momentums": (0.9,)})
    rd = RunDir.create(tmp_path / "run", {"task": "tiny"})
    kill_tuning_at(2)
    with pytest.raises(KeyboardInterrupt):
        pipeline.tune(task, cfg, rd, None)
    monkeypatch.undo()
    journal = rd.path / "tune.journal"
    whole = journal.read_bytes()
    with open(journal, "ab") as f:  # the kill cut Optuna's next line short
        f.write(b'{"op_code":5,"worker_id":"torn-by-a-kill","trial_id":1,"para')
    best = pipeline.tune(task, cfg, rd, None)  # resumes: the finished trial comes from the journal
    text = journal.read_bytes()
    assert text.startswith(whole) and text.endswith(b"\n") and b"torn-by-a-kill" not in text
    assert all(json.loads(line) for line in text.decode().splitlines())  # every line whole again
    fresh = RunDir.create(tmp_path / "fresh", {"task": "tiny"})
    assert pipeline.tune(task, cfg, fresh, None) == best
    values = lambda d: [t["value"] for t in d.read_json("baseline_tune.json")["trials"]]  # noqa: E731
    assert values(rd) == values(fresh)


# ------------------------------------------------------------------------------------------ a killed worker
def test_a_killed_tune_workers_configuration_is_queued_again(task_module, tmp_path):
    name, module, task = task_module
    settings = {**SETTINGS, "tune_parallel": True, "tune_momentums": (0.9, 0.5, 0.2)}
    cfg = make_config("smoke", task.defaults, **settings)
    rd = pipeline.open_run_dir(tmp_path / "run", task, cfg, preset="smoke")
    card = pipeline.search(task, cfg, rd)
    initial_state(task, cfg, rd, card, "dash")
    open_queue(task, cfg, rd, "tune")  # what the run does before it starts on the queue
    worker = subprocess.Popen([sys.executable, "-m", "dashkit", "tune-worker", str(rd.path), "--import", module,
                               "--wait", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=slow_env("0.02"))
    mine = f":{worker.pid}:"
    wait_for(lambda: any(mine in str(d.get("user_attr", {}).get("dashkit_worker", ""))
                         for d in journal_lines(rd.path / "tune.journal")), worker, "the worker's first trial")
    kill(worker)
    best = pipeline.tune(task, cfg, rd, card)  # takes the rest of the queue, then the dead worker's trial

    trials = _trials(rd.path / "tune.journal", "-tune-")
    results = sorted(t.user_attrs["dashkit_grid"] for t in trials if "dashkit_result" in t.user_attrs)
    assert results == list(range(6))  # every configuration once, the killed one included
    (dead,) = [t for t in trials if mine in t.user_attrs.get("dashkit_worker", "")]
    assert dead.state.name == "FAIL" and "dashkit_result" not in dead.user_attrs
    sequential = make_config("smoke", task.defaults, **{**settings, "tune_parallel": False})
    ref = pipeline.open_run_dir(tmp_path / "ref", task, sequential)
    assert pipeline.tune(task, sequential, ref, pipeline.search(task, sequential, ref)) == best


def _trials(journal: Path, marker: str) -> list:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    (summary,) = [s for s in optuna.get_all_study_summaries(storage) if marker in s.study_name]
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


# ------------------------------------------------------------------------------------------------ determinism
def test_the_same_seed_gives_the_same_run_twice(tmp_path):
    task = tiny_task()
    settings = {k: v for k, v in SETTINGS.items() if k != "tune_storage"}
    runs = [pipeline.run(task, out=tmp_path / f"r{i}", seed=seed, figures=False, verbose=False, **settings)
            for i, seed in enumerate((7, 7, 8))]
    a, b, other = runs
    assert a.card == b.card and [layer.alpha for layer in a.card.layers] == [layer.alpha for layer in b.card.layers]
    assert a.metrics == b.metrics and a.val_metrics == b.val_metrics and a.hparams == b.hparams
    weights = [RunDir(r.paths["run_dir"]).load_weights("dash.safetensors") for r in runs]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    # another seed is another run: the comparison above could fail
    assert [layer.alpha for layer in other.card.layers] != [layer.alpha for layer in a.card.layers]
    assert any(not torch.equal(weights[0][k], weights[2][k]) for k in weights[0])
