"""Tests of scaling out: torchrun data parallelism (dashkit.distributed) and parallel tuning workers.

The torchrun test starts 2 CPU processes (gloo) with one thread each; the collectives test forks 2 ranks of this
process. The tasks are tiny and built from a module written here, which the command line imports with
``--import``.
"""
from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tiny_task_module import as_flags, write_task_module
import torch
from torch.utils.data import TensorDataset

from dashkit import distributed, pipeline
from dashkit.config import make_config
from dashkit.rundir import RunDir
from dashkit.supernet import ArchCard
from dashkit.tasks.base import Task

SETTINGS = {"search_backend": "fft", "retrain_conv_backend": "direct", "search_epochs": 2, "search_batch_size": 16,
            "search_max_batches": 2, "tune_lrs": (0.1, 0.01), "tune_epochs": 1, "tune_batch_size": 16,
            "tune_max_batches": 2, "retrain_epochs": 2, "retrain_batch_size": 16, "retrain_max_batches": 2}


@pytest.fixture
def task_module(tmp_path):
    """(name, path of the module, the Task built in this process)."""
    return write_task_module(tmp_path, "scale")


def child_env(**extra: str) -> dict:
    """The environment of a child process: one thread, plain progress lines, and `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("DK_SLOW", "DASHKIT_RANK_DUMP", "DASHKIT_CHECK_SYNC")}
    return {**env, "OMP_NUM_THREADS": "1", "DASHKIT_PROGRESS": "plain", **extra}


def torchrun(args: list, env: dict, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


# ------------------------------------------------------------------------------------------ no process group
def test_launch_env_and_single_process_fallbacks():
    assert distributed.launch_env({}) is None
    assert distributed.launch_env({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"}) == \
        distributed.Launch(rank=3, world_size=4, local_rank=1)
    with pytest.raises(ValueError, match=r"environment variable WORLD_SIZE = 'two': expected an int >= 1"):
        distributed.launch_env({"WORLD_SIZE": "two"})
    with pytest.raises(ValueError, match=r"RANK = 2: expected 0 <= RANK < WORLD_SIZE = 2"):
        distributed.launch_env({"WORLD_SIZE": "2", "RANK": "2"})
    # one process: nothing to split, gather or check, and rank 0 decides alone
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.is_main()
    assert distributed.shard_range(35) == (0, 35) and distributed.per_rank_batch(15) == 15
    t = torch.arange(5)
    assert distributed.all_gather_cat(t, 5) is t
    assert distributed.on_main(lambda a, b: a + b, 2, 3) == 5
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, torch.device("cpu")) is model


def _primitives(r: int, folder: str) -> None:
    """One rank of a 2-process gloo group (a forked copy of this process): every collective the pipeline uses."""
    import traceback

    import torch.distributed as dist

    from dashkit.dashconv import DashConv
    from dashkit.space import SearchSpace
    from dashkit.supernet import postprocess_arch_grads

    try:
        dist.init_process_group("gloo", init_method=f"file://{folder}/store", rank=r, world_size=2)
        out = {"world": distributed.world_size(), "shard": list(distributed.shard_range(35))}
        lo, hi = distributed.shard_range(35)
        whole = torch.arange(35.0)[:, None] * torch.tensor([1.0, -1.0])  # (35, 2)
        out["gather_float"] = torch.equal(distributed.all_gather_cat(whole[lo:hi], 35), whole)
        out["gather_int"] = distributed.all_gather_cat(torch.arange(lo, hi), 35).tolist()
        out["gather_bool"] = distributed.all_gather_cat(torch.arange(lo, hi) % 3 == 0, 35).tolist()
        out["sum"] = distributed.all_reduce_sum([r + 1.0, 10.0])
        out["decides"] = [distributed.main_decides(r == 0), distributed.main_decides(r == 1)]
        out["per_rank_batch"] = distributed.per_rank_batch(16)
        try:
            distributed.per_rank_batch(15, "search_batch_size")
        except ValueError as e:
            out["batch_error"] = str(e)

        def fails():
            raise ValueError("run directory 'x' was made with another config")

        try:
            distributed.on_main(fails)
        except ValueError as e:
            out["on_main_error"] = str(e)
        distributed.check_same([torch.ones(3)], "equal tensors")
        try:
            distributed.check_same([torch.full((3,), float(r))], "alpha")
        except RuntimeError as e:
            out["check_error"] = str(e)

        # DDP averages alpha's gradient: each rank backpropagates half of a batch; the averaged gradient,
        # post-processed, equals the post-processed full-batch gradient of an undistributed copy
        torch.manual_seed(0)
        space = SearchSpace((3, 5), (1, 2), dims=1)
        conv = DashConv(2, 2, space, backend="fft", relaxation="softmax", grad_scale=10.0)
        copy = DashConv(2, 2, space, backend="fft", relaxation="softmax", grad_scale=10.0)
        copy.load_state_dict(conv.state_dict())
        x = torch.randn(8, 2, 16, generator=torch.Generator().manual_seed(1))
        net = distributed.wrap(conv, torch.device("cpu"))
        net(x[4 * r: 4 * r + 4]).pow(2).mean().backward()
        postprocess_arch_grads(conv)
        copy(x).pow(2).mean().backward()
        copy.postprocess_alpha_grad()
        out["alpha_grad_max_diff"] = (conv.alpha.grad - copy.alpha.grad).abs().max().item()
        out["alpha_grad_norm"] = conv.alpha.grad.norm().item()
        distributed.check_same([conv.alpha.grad], "alpha's gradient")

        # evaluate: rank 0's BatchNorm statistics everywhere, the metric over the whole split
        model = torch.nn.Sequential(torch.nn.Conv1d(1, 3, 3, padding=1), torch.nn.BatchNorm1d(3),
                                    torch.nn.Flatten(), torch.nn.Linear(3 * 8, 3))
        torch.manual_seed(5)
        for p in model.parameters():
            torch.nn.init.normal_(p)
        model[1].running_mean.fill_(float(r))  # the ranks disagree until evaluate broadcasts rank 0's buffers
        g = torch.Generator().manual_seed(2)
        ds = TensorDataset(torch.randn(35, 1, 8, generator=g), torch.randint(0, 3, (35,), generator=g))
        task = Task(name="f1", kind="classification", train=ds, val=ds, test=ds, in_shape=(1, 8), num_outputs=3,
                    metric_name="1-macro_f1")
        out["eval"] = list(pipeline.evaluate(model, ds, task, batch_size=4))
        out["running_mean"] = model[1].running_mean.tolist()
        with torch.no_grad():
            y_hat = model(ds.tensors[0])
        out["eval_local"] = [task.metric(y_hat, ds.tensors[1]), float(task.loss(y_hat, ds.tensors[1]))]
        out["shard_metric"] = task.metric(y_hat[lo:hi], ds.tensors[1][lo:hi])
        dist.destroy_process_group()
    except BaseException:
        out = {"error": traceback.format_exc()}
    Path(folder, f"rank{r}.json").write_text(json.dumps(out))


def test_collectives_ddp_gradients_and_whole_split_evaluation(tmp_path):
    # forked ranks: no interpreter to start. DDP imports torch._dynamo on first use: import it once, here,
    # instead of in each rank
    import torch._dynamo  # noqa: F401
    import torch.distributed  # noqa: F401

    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_primitives, args=(r, str(tmp_path))) for r in (0, 1)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert "error" not in r0 and "error" not in r1, r0.get("error", "") + r1.get("error", "")
    assert r0["world"] == r1["world"] == 2
    assert r0["shard"] == [0, 18] and r1["shard"] == [18, 35]  # contiguous, sizes differ by at most one
    for r in (r0, r1):
        assert r["gather_float"] and r["gather_int"] == list(range(35))
        assert r["gather_bool"] == [i % 3 == 0 for i in range(35)]
        assert r["sum"] == [3.0, 20.0] and r["decides"] == [True, False] and r["per_rank_batch"] == 8
        assert r["batch_error"].startswith("search_batch_size = 15 cannot be split over WORLD_SIZE = 2 processes; "
                                           "choose a multiple of 2 (e.g. 14 or 16)")
        assert r["on_main_error"] == "run directory 'x' was made with another config"  # rank 1 raises it too
        assert r["check_error"].startswith("alpha differs between rank 0 and rank 1 (largest difference 1)")
        # the averaged, post-processed gradient is the full batch's (its norm is 1 / grad_scale: not trivially 0)
        assert r["alpha_grad_max_diff"] < 1e-6 and r["alpha_grad_norm"] == pytest.approx(0.1, rel=1e-3)
        assert r["running_mean"] == [0.0, 0.0, 0.0]  # rank 0's statistics
        assert r["eval"] == pytest.approx(r0["eval_local"], abs=1e-6)
    # the metric is over the whole split, which no shard alone gives
    assert r0["eval_local"][0] not in (r0["shard_metric"], r1["shard_metric"])


# ------------------------------------------------------------------------------------------ torchrun run
def test_torchrun_run_agrees_on_every_rank_and_measures_whole_splits(task_module, tmp_path):
    name, module, task = task_module
    out, dump = tmp_path / "run", tmp_path / "dump"
    env = child_env(DASHKIT_RANK_DUMP=str(dump), DASHKIT_CHECK_SYNC="1")
    done = torchrun(["-m", "dashkit", "run", name, "--import", module, "--out", str(out), "--device", "cpu",
                     "--no-figures", "--set", *as_flags(SETTINGS)], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "device cpu x 2 processes" in done.stdout
    assert done.stdout.count("outputs in") == 2  # rank 0 alone prints (its last line and the summary's)
    assert json.loads((out / "environment.json").read_text())["world_size"] == 2
    card = ArchCard.load(out / "archcard.json")
    assert len(card.layers) == 9

    # alpha: the same bits on both ranks after every epoch (and, with DASHKIT_CHECK_SYNC, after every step, or the
    # run would have failed), and the card's alpha are those bits
    a0, a1 = (json.loads((dump / f"search_alpha.rank{r}.json").read_text()) for r in (0, 1))
    assert len(a0["epochs"]) == 2 and a0 == a1
    assert a0["epochs"][-1] == {layer.name: distributed.float_bits(layer.alpha) for layer in card.layers}
    assert a0["epochs"][0] != a0["epochs"][1]  # alpha moved: the comparison is not between two initial values

    metrics = json.loads((out / "metrics.json").read_text())
    # the standard preset's random-architecture control trains (and tests) its draws on every rank too
    for model, stage in (("dash", "retrain"), ("baseline", "baseline_retrain"), ("random_0", "random_0_retrain"),
                         ("random_1", "random_1_retrain")):
        d0, d1 = (json.loads((dump / f"{stage}.rank{r}.json").read_text()) for r in (0, 1))
        assert d0 == d1 and d0["test"] == metrics[model]["test"]
        # the metric is that of the saved weights over the whole test split, recomputed here in one process
        net = pipeline.load_model(out, model, task=task)
        test_metric, test_loss = pipeline.evaluate(net, task.test, task)
        assert metrics[model]["test"] == pytest.approx(test_metric, abs=1e-9)
        assert d0["test_loss"] == pytest.approx(test_loss, rel=1e-5)
    assert 0 < metrics["baseline"]["test"] < 100
    # a step still sees search_batch_size examples: the epoch has as many steps as with one process
    assert [r["epoch"] for r in RunDir(out).read_history("search")] == [1, 2]


def test_torchrun_with_the_default_measured_backends_keeps_the_ranks_in_step(task_module, tmp_path):
    """backend "auto" (the default) times FFT against direct inside a forward, on each rank for itself: the ranks
    may choose differently, yet DDP must see the same parameters, and alpha must stay the same bits everywhere. The
    batches are window-sliced (augment="slice"), each rank drawing the windows of its own shard."""
    name, module, _ = task_module
    out, dump = tmp_path / "run", tmp_path / "dump"
    env = child_env(DASHKIT_RANK_DUMP=str(dump), DASHKIT_CHECK_SYNC="1")
    settings = {**SETTINGS, "search_backend": "auto", "retrain_conv_backend": "auto", "tune_lrs": (0.1,),
                "augment": "slice"}
    done = torchrun(["-m", "dashkit", "run", name, "--import", module, "--out", str(out), "--device", "cpu",
                     "--no-figures", "--set", *as_flags(settings)], env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "config.json").read_text())["config"]["augment"] == "slice"
    a0, a1 = (json.loads((dump / f"search_alpha.rank{r}.json").read_text()) for r in (0, 1))
    assert len(a0["epochs"]) == 2 and a0 == a1 and a0["epochs"][0] != a0["epochs"][1]
    metrics = json.loads((out / "metrics.json").read_text())
    for model, stage in (("dash", "retrain"), ("baseline", "baseline_retrain")):
        d0, d1 = (json.loads((dump / f"{stage}.rank{r}.json").read_text()) for r in (0, 1))
        assert d0 == d1 and d0["test"] == metrics[model]["test"]


def test_torchrun_with_a_time_budget_plans_on_rank_0_and_every_rank_follows(task_module, tmp_path):
    """rank 0 measures and decides the steps; the others receive them, so every rank trains the same plan."""
    name, module, _ = task_module
    out, dump = tmp_path / "run", tmp_path / "dump"
    env = child_env(DASHKIT_RANK_DUMP=str(dump))
    settings = {k: v for k, v in SETTINGS.items() if not k.endswith(("_epochs", "_max_batches"))}
    done = torchrun(["-m", "dashkit", "run", name, "--import", module, "--out", str(out), "--device", "cpu",
                     "--preset", "smoke", "--budget", "20s", "--no-figures", "--set", *as_flags(settings)], env)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((out / "config.json").read_text())
    assert meta["budget"]["text"] == "20s" and meta["budget"]["costs"]["search_step"] > 0
    assert meta["config"]["search"]["steps"] == meta["plan"]["search"]["steps"] >= 1
    chosen = meta["budget"]["chosen_costs"]  # rank 0 timed the searched network after the search, the others waited
    assert chosen["after"] == "search" and chosen["step_ratio"] > 0 and chosen["eval_ratio"] > 0
    a0, a1 = (json.loads((dump / f"search_alpha.rank{r}.json").read_text()) for r in (0, 1))
    assert a0 == a1 and len(a0["epochs"]) == meta["plan"]["search"]["epochs"]  # both ranks ran rank 0's plan
    for stage in ("retrain", "baseline_retrain"):
        d0, d1 = (json.loads((dump / f"{stage}.rank{r}.json").read_text()) for r in (0, 1))
        assert d0 == d1


SLOW_COSTS = """
from dashkit.stages import costs

SLOW = {"search_step": 2.5, "dash_step": 1.25, "baseline_step": 1.25, "dash_eval": 0.25, "baseline_eval": 0.25,
        "checkpoint": 0.025, "after": 0.5}
costs.measure_costs = lambda task, cfg, device, figures=True: dict(SLOW)  # a machine far too slow for 2000 steps
costs.measure_chosen = lambda *args, **kwargs: {"step": 1.0, "eval": 1.0}
"""


def test_torchrun_standard_run_over_its_time_is_capped_on_rank_0_and_every_rank_follows(task_module, tmp_path):
    """The standard preset's time cap: rank 0 forecasts and decides, every rank runs the capped plan, and a resumed
    run takes the same branch on every rank (each branch has its own collectives)."""
    name, module, _ = task_module
    slow = tmp_path / "slow_costs.py"
    slow.write_text(SLOW_COSTS)
    out, dump = tmp_path / "run", tmp_path / "dump"
    env = child_env(DASHKIT_RANK_DUMP=str(dump))
    settings = {k: v for k, v in SETTINGS.items() if not k.endswith(("_epochs", "_max_batches"))}
    args = ["-m", "dashkit", "run", name, "--import", module, "--import", str(slow), "--out", str(out), "--device",
            "cpu", "--no-figures", "--set", *as_flags(settings), "random_draws=0"]
    done = torchrun(args, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count("the run is fit to those 5 min instead") == 1  # rank 0 alone forecasts and warns
    meta = json.loads((out / "config.json").read_text())
    assert meta["preset"] == "standard" and meta["budget"]["seconds"] == 300.0
    assert meta["budget"]["time_cap"]["forecast_seconds"] > 5000
    assert 1 <= meta["config"]["search"]["steps"] == meta["plan"]["search"]["steps"] < 2000
    a0, a1 = (json.loads((dump / f"search_alpha.rank{r}.json").read_text()) for r in (0, 1))
    assert a0 == a1 and len(a0["epochs"]) == meta["plan"]["search"]["epochs"]  # both ranks ran rank 0's plan
    for stage in ("retrain", "baseline_retrain"):
        d0, d1 = (json.loads((dump / f"{stage}.rank{r}.json").read_text()) for r in (0, 1))
        assert d0 == d1
    again = torchrun([*args, "--resume"], env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "forecast" not in again.stderr  # a resumed capped run keeps its plan: nothing forecast again
    assert json.loads((out / "config.json").read_text())["config"] == meta["config"]


WATCHED_COSTS = """
from dashkit.config import PRESETS
from dashkit.stages import costs

for stage, steps in (("search", 30), ("tune", 4), ("retrain", 40)):  # the preset's steps, made small
    PRESETS["standard"][stage]["steps"] = steps
QUICK = {"search_step": 0.5, "dash_step": 0.5, "baseline_step": 0.5, "dash_eval": 0.05, "baseline_eval": 0.05,
         "checkpoint": 0.005, "after": 0.5}
costs.measure_costs = lambda task, cfg, device, figures=True: dict(QUICK)  # forecast well within 300 s
costs.measure_chosen = lambda *args, **kwargs: {"step": 400.0, "eval": 1.0}  # a searched network far dearer
"""


def test_torchrun_standard_run_within_its_time_is_watched_on_rank_0_and_every_rank_follows_its_fit(task_module,
                                                                                                   tmp_path):
    """A standard run forecast within its five minutes (the preset's steps kept) whose searched network turns out
    far dearer: rank 0 fits the stages left to the promise after the search, and every rank trains that fit."""
    name, module, _ = task_module
    watched = tmp_path / "watched_costs.py"
    watched.write_text(WATCHED_COSTS)
    out, dump = tmp_path / "run", tmp_path / "dump"
    env = child_env(DASHKIT_RANK_DUMP=str(dump))
    settings = {k: v for k, v in SETTINGS.items() if not k.endswith(("_epochs", "_max_batches"))}
    args = ["-m", "dashkit", "run", name, "--import", module, "--import", str(watched), "--out", str(out),
            "--device", "cpu", "--no-figures", "--set", *as_flags(settings), "random_draws=0"]
    done = torchrun(args, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fit to those 5 min instead" not in done.stderr  # not capped at the start
    meta = json.loads((out / "config.json").read_text())
    cap = meta["budget"]["time_cap"]
    assert cap["fit_after"] == "search" and cap["forecast_seconds"] < 300 < cap["projected_seconds"]
    assert meta["config"]["search"]["steps"] == 30  # the search ran the preset's steps
    assert 1 <= meta["config"]["retrain"]["steps"] == meta["plan"]["retrain"]["steps"] < 40
    for stage in ("retrain", "baseline_retrain"):
        d0, d1 = (json.loads((dump / f"{stage}.rank{r}.json").read_text()) for r in (0, 1))
        assert d0 == d1


# ------------------------------------------------------------------------------------------ tuning workers
def study_trials(journal: Path, stage: str) -> list:
    import optuna
    from optuna.storages.journal import JournalFileBackend

    storage = optuna.storages.JournalStorage(JournalFileBackend(str(journal)))
    (summary,) = [s for s in optuna.get_all_study_summaries(storage) if f"-{stage}-" in s.study_name]
    return optuna.load_study(study_name=summary.study_name, storage=storage).trials


def test_tune_workers_share_one_queue_and_choose_as_one_process_would(task_module, tmp_path):
    name, module, task = task_module
    settings = {**SETTINGS, "tune_lrs": (0.1, 0.03, 0.01), "tune_momentums": (0.9, 0.5), "tune_pruner": "none"}
    out = tmp_path / "run"
    env = child_env(DK_SLOW="0.004")  # about 0.3 s a configuration: time for both processes to take some
    worker = subprocess.Popen([sys.executable, "-m", "dashkit", "tune-worker", str(out), "--import", module,
                               "--wait", "120"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.5)  # the worker waits for the run's folder and queue
    runner = subprocess.Popen([sys.executable, "-m", "dashkit", "run", name, "--import", module, "--out", str(out),
                               "--device", "cpu", "--preset", "smoke", "--no-figures", "--set", *as_flags(settings), "tune_parallel=true",
                               "tune_storage=tune.journal"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
    r_out, r_err = runner.communicate(timeout=240)
    w_out, w_err = worker.communicate(timeout=120)
    assert runner.returncode == 0, r_err[-3000:]
    assert worker.returncode == 0, w_err[-3000:]

    grid = make_config("smoke", task.defaults, **settings).tune.grid()
    assert len(grid) == 6
    workers = set()
    for stage in ("tune", "baseline_tune"):
        trials = study_trials(out / "tune.journal", stage)
        results = [t for t in trials if "dashkit_result" in t.user_attrs]
        # every grid point evaluated exactly once, with its own parameters
        assert sorted(t.user_attrs["dashkit_grid"] for t in results) == list(range(6))
        assert all(t.params == grid[t.user_attrs["dashkit_grid"]] for t in results)
        workers |= {t.user_attrs["dashkit_worker"].split(":")[1] for t in results}
    assert workers == {str(worker.pid), str(runner.pid)}  # both processes evaluated configurations
    n_worker = int(w_out.strip().split("evaluated ")[1].split()[0])
    assert 1 <= n_worker <= 11

    # the same choice, values and final result as a sequential tuning in one process
    ref = pipeline.run(task, preset="smoke", out=tmp_path / "ref", figures=False, verbose=False, **settings)
    for stage in ("tune", "baseline_tune"):
        par, seq = (json.loads((d / f"{stage}.json").read_text()) for d in (out, tmp_path / "ref"))
        assert par["best"] == seq["best"] and par["best_val"] == seq["best_val"]
        assert [(t["state"], t["value"]) for t in par["trials"]] == [(t["state"], t["value"]) for t in seq["trials"]]
    assert pipeline.load_result(out).metrics == ref.metrics


def test_torchrun_command_is_the_documented_cli():
    from dashkit.launch import torchrun_command

    cmd = torchrun_command("mnist1d", "runs/x", nproc=3, preset="standard", seed=2, device="cpu",
                           settings={"search_epochs": 2, "tune_lrs": [0.1, 0.01], "search_backend": "fft"},
                           imports=["my_tasks.py"], resume=True)
    assert cmd[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "3"]
    assert cmd[6:9] == ["-m", "dashkit", "run"] and cmd[9] == "mnist1d"
    assert cmd[cmd.index("--out") + 1] == "runs/x" and cmd[cmd.index("--seed") + 1] == "2"
    assert "--resume" in cmd and cmd[cmd.index("--import") + 1] == "my_tasks.py"
    sets = cmd[cmd.index("--set") + 1:]
    assert sets == ["search_epochs=2", "tune_lrs=[0.1, 0.01]", "search_backend=fft"]
    from dashkit.config import parse_setting

    assert [parse_setting(s) for s in sets] == [("search_epochs", 2), ("tune_lrs", (0.1, 0.01)),
                                                 ("search_backend", "fft")]
    with pytest.raises(ValueError, match=r"nproc must be a positive int, got 0"):
        torchrun_command("mnist1d", "runs/x", nproc=0)
