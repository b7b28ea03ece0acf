"""Re-planning a time budget when the machine slows down (dashkit.budget.replan, dashkit.pipeline.run).

The arithmetic is checked on made-up step costs; the runs here train for real but read the time from a fake
clock (``pipeline.time``), so a "slow" search is one that the clock says took 1.3 times its plan: nothing is timed
on the real clock, and what is asserted is the recorded plan's arithmetic.
"""
from __future__ import annotations

import json
import re
import types
import warnings

import pytest

from dashkit import budget as B
from dashkit import pipeline
from dashkit import progress as P
from dashkit.config import make_config
from dashkit.rundir import RunDir

from test_budget import FAKE_COSTS, STEPS, fake_costs
from test_pipeline import tiny_task

PER_PASS = {"search": 56, "tune": 56, "retrain": 56}


def start(seconds=300.0, draws=2, spent=10.0):
    cfg = make_config("standard", random_draws=draws)
    overrides, record = B.plan_budget(seconds, FAKE_COSTS, cfg, PER_PASS, spent=spent, text=f"{seconds:g}s")
    steps = {"search_steps": overrides["search_steps"], "tune_steps": overrides["tune_steps"],
             "tune_configs": record["tune_configs"], "retrain_steps": overrides["retrain_steps"]}
    return cfg, record, steps


def seconds_left(record, steps, left, draws):
    """Planned seconds of the stages in ``left`` at the record's costs."""
    folds = record["tune_folds"]
    return sum(B.stage_seconds(record["costs"], s, steps[f"{s}_steps"], PER_PASS, configs=steps["tune_configs"],
                               folds=folds, draws=draws) for s in left)


# ------------------------------------------------------------------------------------------ the arithmetic
def test_stage_seconds_is_the_planners_count():
    cfg, record, steps = start()
    for stage in ("search", "tune", "retrain"):
        got = B.stage_seconds(FAKE_COSTS, stage, steps[f"{stage}_steps"], PER_PASS, configs=steps["tune_configs"],
                              draws=record["random_draws"])
        assert got == pytest.approx(record["planned"][stage], abs=0.01)


def test_a_2x_slowdown_after_the_search_shrinks_tuning_and_retraining_to_fit_the_budget():
    cfg, record, steps = start()
    steps = {**steps, "search_steps": steps["search_steps"] // 10}  # a short search: 2x of it leaves room
    search_s = B.stage_seconds(FAKE_COSTS, "search", steps["search_steps"], PER_PASS)
    elapsed = 10.0 + 2 * search_s
    draws = record["random_draws"]
    before = elapsed + 2 * (seconds_left(record, steps, ("tune", "retrain"), draws) + FAKE_COSTS["after"])
    assert before > 300.0  # without a re-plan the run would end late
    entry = B.replan(record, steps, "search", 2 * search_s, elapsed, PER_PASS)
    assert entry["after"] == "search" and entry["factor"] == pytest.approx(2.0, rel=1e-3)
    assert entry["projected_before"] == pytest.approx(before, abs=0.05)  # where the old steps were heading
    new, old = entry["new"], entry["old"]
    assert old == {k: steps[k] for k in ("tune_steps", "tune_configs", "retrain_steps")}
    assert B.MIN_TUNE_STEPS <= new["tune_steps"] < old["tune_steps"] and new["tune_configs"] <= old["tune_configs"]
    assert B.KEEP_RETRAIN * old["retrain_steps"] <= new["retrain_steps"] < old["retrain_steps"]  # tuning kept
    # one number of retraining steps for DASH, the baseline and each random draw: the retraining's cost is theirs
    each = B.stage_seconds(FAKE_COSTS, "retrain", new["retrain_steps"], PER_PASS, draws=0) + draws * (
        B.stage_seconds(FAKE_COSTS, "retrain", new["retrain_steps"], PER_PASS, baseline=False, draws=1)
        - B.stage_seconds(FAKE_COSTS, "retrain", new["retrain_steps"], PER_PASS, baseline=False, draws=0))
    assert entry["planned"]["retrain"] == pytest.approx(each, abs=0.01)
    after = elapsed + 2 * (seconds_left(record, {**steps, **new}, ("tune", "retrain"), draws) + FAKE_COSTS["after"])
    assert after == pytest.approx(entry["projected_end"], abs=0.05) and after <= 300.0
    # the new steps are the most that fit: one more retraining step would not
    more = {**steps, **new, "retrain_steps": new["retrain_steps"] + 1}
    assert elapsed + 2 * (seconds_left(record, more, ("tune", "retrain"), draws) + FAKE_COSTS["after"]) > 300.0


@pytest.mark.parametrize("draws", [0, 2])
def test_the_tuning_is_dropped_before_the_retraining_falls_under_half_its_steps(draws):
    cfg, record, steps = start(draws=draws)
    steps = {**steps, "search_steps": steps["search_steps"] // 10}
    search_s = B.stage_seconds(FAKE_COSTS, "search", steps["search_steps"], PER_PASS)
    elapsed = 10.0 + 3 * search_s
    entry = B.replan(record, steps, "search", 3 * search_s, elapsed, PER_PASS)
    new, old = entry["new"], entry["old"]
    # keeping the tuning, its share and the retraining's would both shrink to about a third
    room = (300.0 - elapsed) / 3 - FAKE_COSTS["after"]
    kept = room * record["planned"]["retrain"] / (record["planned"]["tune"] + record["planned"]["retrain"])
    step, writes, evals = B._retrain_unit(FAKE_COSTS, True, draws)
    assert B._fit(kept, step, writes, 56, evals) < B.KEEP_RETRAIN * old["retrain_steps"]
    # dropped: the whole room retrains, the most steps that fit it
    assert new["tune_configs"] == new["tune_steps"] == 0 and entry["planned"]["tune"] == 0
    assert new["retrain_steps"] == B._fit(room, step, writes, 56, evals) < old["retrain_steps"]
    assert entry["projected_end"] <= 300.0 and entry["note"].startswith("the tuning is dropped")
    assert "tuning 4 x" in B.format_plan({}, {**record, "replans": [entry]}) and "-> dropped" in B.format_plan(
        {}, {**record, "replans": [entry]})


def test_the_tuning_shrinks_to_fewer_configurations_at_the_minimum_steps_never_below_two():
    cfg, record, steps = start(seconds=80.0, draws=0)  # 32 steps a configuration: little room above the minimum
    search_s = B.stage_seconds(FAKE_COSTS, "search", steps["search_steps"], PER_PASS)
    # slow enough that each of the 4 configurations would get fewer than MIN_TUNE_STEPS
    entry = B.replan(record, steps, "search", 1.3 * search_s, 10.0 + 1.3 * search_s, PER_PASS)
    new = entry["new"]
    assert new["tune_steps"] >= B.MIN_TUNE_STEPS and 2 <= new["tune_configs"] < steps["tune_configs"]
    assert new["retrain_steps"] >= B.KEEP_RETRAIN * steps["retrain_steps"]


def test_when_even_the_minimums_do_not_fit_they_are_kept_with_a_warning():
    cfg, record, steps = start()
    search_s = record["planned"]["search"]
    with pytest.warns(UserWarning, match=r"even the minimum steps .* do not fit"):
        entry = B.replan(record, steps, "search", 3 * search_s, 10.0 + 3 * search_s, PER_PASS)
    new = entry["new"]
    assert new == {"tune_steps": B.MIN_TUNE_STEPS, "tune_configs": 2, "retrain_steps": B.MIN_CONTROL_STEPS}
    assert entry["projected_end"] > 300.0 and "do not fit" in entry["note"]


def test_a_faster_or_on_time_machine_never_grows_the_plan():
    cfg, record, steps = start()
    search_s = record["planned"]["search"]
    for f in (0.3, 0.9, 1.0):
        assert B.replan(record, steps, "search", f * search_s, 10.0 + f * search_s, PER_PASS) is None
    # a slowdown after the tuning that still fits changes nothing either
    tune_s = record["planned"]["tune"]
    assert B.replan(record, steps, "tune", 0.5 * tune_s, 10.0 + search_s + 0.5 * tune_s, PER_PASS) is None
    # and a shrink never gives more steps to any stage, whatever the factor
    for f in (1.05, 1.3, 2.0):
        entry = B.replan(record, steps, "search", f * search_s, 10.0 + f * search_s, PER_PASS)
        assert all(entry["new"][k] <= entry["old"][k] for k in entry["new"])


def test_after_the_tuning_only_the_retraining_shrinks():
    cfg, record, steps = start()
    search_s, tune_s = record["planned"]["search"], record["planned"]["tune"]
    elapsed = 10.0 + search_s + 2.5 * tune_s
    entry = B.replan(record, steps, "tune", 2.5 * tune_s, elapsed, PER_PASS)
    assert entry["after"] == "tune" and entry["factor"] == pytest.approx(2.5, rel=1e-3)
    assert entry["new"]["tune_steps"] == steps["tune_steps"] and entry["new"]["tune_configs"] == steps["tune_configs"]
    assert entry["new"]["retrain_steps"] < steps["retrain_steps"] and set(entry["planned"]) == {"retrain"}
    assert entry["projected_end"] <= 300.0
    with pytest.raises(ValueError, match=r"stage_done = 'retrain': expected 'search' or 'tune'"):
        B.replan(record, steps, "retrain", 1.0, 1.0, PER_PASS)


# ------------------------------------------------------------------------------------------------ a run
COSTS = {k: 10 * v for k, v in FAKE_COSTS.items()}  # few steps of a 300 s budget: a run of seconds
SETTINGS = {k: v for k, v in STEPS.items() if not k.endswith("_steps")}


class Clock:
    """A fake ``time`` module for the pipeline: its clock moves only when a test says so."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now


def slowed(monkeypatch, factor):
    """The pipeline on a fake clock, whose search takes ``factor`` times its planned seconds."""
    clock = Clock()
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    real = pipeline.search

    def search(task, cfg, rd):
        card = real(task, cfg, rd)
        plan = rd.read_json("config.json")["budget"]["planned"]["search"]
        clock.now += factor * plan
        return card

    monkeypatch.setattr(pipeline, "search", search)
    deadlines = []
    real_deadline = P.set_deadline
    monkeypatch.setattr(P, "set_deadline", lambda d: (deadlines.append(d), real_deadline(d)))
    return clock, deadlines


def test_a_run_whose_search_runs_slow_replans_records_it_and_a_resumed_run_keeps_it(tmp_path, monkeypatch):
    fake_costs(monkeypatch, lambda *a, **k: dict(COSTS))
    clock, deadlines = slowed(monkeypatch, 1.3)
    task = tiny_task()
    res = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False, verbose=False,
                       **SETTINGS)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    record = meta["budget"]
    assert record["tune_configs"] >= 2  # the tuning runs, so it can shrink
    (entry,) = record["replans"]  # the tunings took no time on the clock: no second re-plan
    assert entry["after"] == "search" and entry["factor"] == pytest.approx(1.3, rel=1e-3)
    old, new = entry["old"], entry["new"]
    assert new["retrain_steps"] < old["retrain_steps"] and new["tune_steps"] <= old["tune_steps"]
    # config.json's config and plan hold the re-planned steps, which the run trained
    per_pass = {s: meta["plan"][s]["batches_per_pass"] for s in ("search", "tune", "retrain")}
    assert meta["config"]["retrain"]["steps"] == meta["plan"]["retrain"]["steps"] == new["retrain_steps"]
    assert meta["config"]["tune"]["steps"] == new["tune_steps"] == res.plan["tune"]["steps"]
    rows = (tmp_path / "run" / "history_retrain.csv").read_text().strip().splitlines()
    assert len(rows) - 1 == meta["plan"]["retrain"]["epochs"] == B.epochs_for(new["retrain_steps"],
                                                                                 per_pass["retrain"])
    # closer to the budget: the projection at 1.3x ends within it, the old plan's would not have
    cost = lambda steps: sum(B.stage_seconds(record["costs"], s, steps[f"{s}_steps"], per_pass,  # noqa: E731
                                             configs=steps["tune_configs"], folds=record["tune_folds"],
                                             draws=record["random_draws"]) for s in ("tune", "retrain"))
    end_old = entry["elapsed"] + 1.3 * (cost(old) + COSTS["after"])
    end_new = entry["elapsed"] + 1.3 * (cost(new) + COSTS["after"])
    assert end_new == pytest.approx(entry["projected_end"], abs=0.05)
    assert end_new <= record["seconds"] < end_old
    # the progress bars counted down to the re-planned end
    assert deadlines[0] == 1000.0 + 300.0 and deadlines[1] == pytest.approx(1000.0 + entry["projected_end"])
    assert "re-planned after the search (1.30x its planned time)" in res.summary()

    # a resumed run (another slowdown on its clock) keeps the re-planned steps and records nothing new
    def no_measuring(*a, **k):
        raise AssertionError("a resumed run must keep its plan, not measure again")

    fake_costs(monkeypatch, no_measuring, no_measuring)
    slowed(monkeypatch, 5.0)
    again = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False, verbose=False,
                         **SETTINGS)
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == meta
    assert again.metrics == res.metrics and again.plan == res.plan


def test_a_run_stopped_after_its_replan_resumes_with_the_replanned_steps(tmp_path, monkeypatch):
    fake_costs(monkeypatch, lambda *a, **k: dict(COSTS))
    slowed(monkeypatch, 1.3)
    real_tune = pipeline.tune

    def stopped(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "tune", stopped)
    task = tiny_task()
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False, verbose=False,
                     **SETTINGS)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    (entry,) = stored["budget"]["replans"]
    monkeypatch.setattr(pipeline, "tune", real_tune)
    fake_costs(monkeypatch, *[lambda *a, **k: pytest.fail("a resumed run keeps its plan")] * 2)
    slowed(monkeypatch, 1.0)  # the search is done: it is not timed again, nor re-planned after
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False, verbose=False,
                           **SETTINGS)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["budget"]["replans"] == [entry]
    assert res.plan["retrain"]["steps"] == entry["new"]["retrain_steps"]
    assert res.plan["tune"]["steps"] == entry["new"]["tune_steps"]
    assert set(res.metrics) == {"dash", "baseline"}


def test_a_run_whose_search_runs_far_slower_drops_the_tuning_and_a_resumed_run_keeps_that(tmp_path, monkeypatch):
    fake_costs(monkeypatch, lambda *a, **k: dict(COSTS))
    slowed(monkeypatch, 2.0)
    task = tiny_task()
    res = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False, verbose=False,
                       **SETTINGS)
    rd = RunDir(tmp_path / "run")
    meta = rd.read_json("config.json")
    (entry,) = meta["budget"]["replans"]
    assert meta["budget"]["tune_configs"] >= 2 and entry["new"]["tune_configs"] == 0  # planned, then dropped
    kept = re.search(r"it would leave the retraining (\d+) of its (\d+) steps, without it (\d+)", entry["note"])
    assert entry["note"].startswith("the tuning is dropped") and kept is not None
    assert int(kept.group(1)) < int(kept.group(3)) == entry["new"]["retrain_steps"]
    assert int(kept.group(2)) == entry["old"]["retrain_steps"]
    assert int(kept.group(1)) < B.KEEP_RETRAIN * int(kept.group(2))
    assert meta["config"]["tune"]["enabled"] is False
    assert meta["config"]["retrain"]["steps"] == entry["new"]["retrain_steps"] == res.plan["retrain"]["steps"]
    assert not rd.exists("tune.json") and not rd.exists("baseline_tune.json")  # no configuration was trained
    defaults = {"lr": 0.1, "dropout": 0.0, "weight_decay": 5e-4, "momentum": 0.9}
    metrics = rd.read_json("metrics.json")
    assert metrics["dash"]["hparams"] == metrics["baseline"]["hparams"] == defaults
    assert "-> dropped" in res.summary()

    fake_costs(monkeypatch, *[lambda *a, **k: pytest.fail("a resumed run keeps its plan")] * 2)
    slowed(monkeypatch, 1.0)
    again = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False, verbose=False,
                         **SETTINGS)
    assert rd.read_json("config.json") == meta and again.metrics == res.metrics


# ------------------------------------------------------------------------------------------------ torchrun
PATCH = '''
import json
import re
import time
import types

from dashkit import pipeline
from dashkit.stages import costs

costs.measure_costs = lambda *a, **k: {costs!r}  # made-up costs: the plan does not depend on the machine
costs.measure_chosen = lambda *a, **k: {{"step": 1.0, "eval": 1.0}}  # the searched network costs as planned
_offset = [0.0]
pipeline.time = types.SimpleNamespace(monotonic=lambda: time.monotonic() + _offset[0])
_search = pipeline.search


def search(task, cfg, rd):
    """The search, which the clock says took {factor} times its plan (on every rank; rank 0's clock decides)."""
    card = _search(task, cfg, rd)
    _offset[0] += {factor} * json.loads(rd.file("config.json").read_text())["budget"]["planned"]["search"]
    return card


pipeline.search = search
'''
DDP_COSTS = {"search_step": 4.0, "dash_step": 0.5, "baseline_step": 0.5, "dash_eval": 0.1, "baseline_eval": 0.1,
             "checkpoint": 0.01, "after": 5.0}


def budget_torchrun(tmp_path, tag, patch_text, *flags):
    """``dashkit run`` of a tiny task with ``--budget 300s`` under torchrun (2 processes), ``patch_text`` imported
    first (made-up costs, a fake clock) and ``flags`` added to ``--set``; every rank dumps its stages' results.
    Returns (the run directory, the dump folder)."""
    from test_distributed import SETTINGS as DDP_SETTINGS
    from test_distributed import child_env, torchrun
    from tiny_task_module import as_flags, write_task_module

    name, module, _ = write_task_module(tmp_path, tag)
    patch = tmp_path / f"{tag}_patch.py"
    patch.write_text(patch_text)
    out, dump = tmp_path / "run", tmp_path / "dump"
    settings = {k: v for k, v in DDP_SETTINGS.items() if not k.endswith(("_epochs", "_max_batches"))}
    done = torchrun(["-m", "dashkit", "run", name, "--import", module, "--import", str(patch), "--out", str(out),
                     "--device", "cpu", "--preset", "smoke", "--budget", "300s", "--no-figures", "--set",
                     *flags, *as_flags(settings)], child_env(DASHKIT_RANK_DUMP=str(dump)))
    assert done.returncode == 0, done.stderr[-3000:]
    return out, dump


def test_torchrun_replans_on_rank_0_and_every_rank_trains_the_new_steps(tmp_path):
    out, dump = budget_torchrun(tmp_path, "replan", PATCH.format(costs=DDP_COSTS, factor=1.2))
    meta = json.loads((out / "config.json").read_text())
    entry = meta["budget"]["replans"][0]
    assert entry["after"] == "search" and entry["factor"] >= 1.2 and entry["new"]["tune_configs"] >= 1  # kept
    assert entry["new"]["retrain_steps"] < entry["old"]["retrain_steps"]
    assert meta["config"]["retrain"]["steps"] == meta["plan"]["retrain"]["steps"] == \
        meta["budget"]["replans"][-1]["new"]["retrain_steps"]
    assert meta["config"]["tune"]["steps"] == meta["budget"]["replans"][-1]["new"]["tune_steps"]
    for stage in ("retrain", "baseline_retrain"):  # both ranks trained the re-planned steps together
        d0, d1 = (json.loads((dump / f"{stage}.rank{r}.json").read_text()) for r in (0, 1))
        assert d0 == d1
        rows = (out / f"history_{stage}.csv").read_text().strip().splitlines()
        assert len(rows) - 1 == meta["plan"]["retrain"]["epochs"]


def test_steps_fit_their_share_where_the_epochs_cost_most_of_it():
    # one batch per pass: up to 50 epochs, each with validation passes and files costing 15x a step
    for share in (2.0, 2.85, 4.0, 9.0):
        s = B._fit(share, 0.02, 0.3, 1)
        cost = lambda n: n * 0.02 + B.epochs_for(n, 1) * 0.3  # noqa: E731
        assert s > 1 and cost(s) <= share
        assert cost(s + 1) > share  # the most that fit


# ------------------------------------------------------------------------------------------ a run ahead of plan
def test_a_run_ahead_of_its_plan_grows_the_retraining_to_fill_the_budget():
    cfg, record, steps = start()
    search_s, tune_s = record["planned"]["search"], record["planned"]["tune"]
    draws = record["random_draws"]
    elapsed = 10.0 + 0.6 * (search_s + tune_s)  # the search and the tunings both ran at 0.6x their plan
    assert B.replan(record, steps, "tune", 0.6 * tune_s, elapsed, PER_PASS) is None  # without grow: ends early
    entry = B.replan(record, steps, "tune", 0.6 * tune_s, elapsed, PER_PASS, grow=True)
    assert entry["grew"] and entry["factor"] == pytest.approx(0.6, rel=1e-3) and "grows" in entry["note"]
    new, old = entry["new"], entry["old"]
    assert new["tune_steps"] == old["tune_steps"] and new["tune_configs"] == old["tune_configs"]
    assert old["retrain_steps"] < new["retrain_steps"] <= B.GROW_MAX * old["retrain_steps"]
    # projected at the speed the tunings ran at: they trained the networks the retraining trains
    end = lambda s: elapsed + 0.6 * (seconds_left(record, {**steps, **s}, ("retrain",), draws)  # noqa: E731
                                     + FAKE_COSTS["after"])
    assert end(new) == pytest.approx(entry["projected_end"], abs=0.05)
    assert end(old) < (1 - B.GROW_SLACK) * 300.0  # it was ahead: more than 10% of the budget left unused
    # the most steps that end by GROW_FILL of the budget, unless capped at GROW_MAX times the old ones
    assert end(new) <= B.GROW_FILL * 300.0 + 1e-6
    if new["retrain_steps"] < B.GROW_MAX * old["retrain_steps"]:
        assert end({**new, "retrain_steps": new["retrain_steps"] + 1}) > B.GROW_FILL * 300.0


def test_growth_is_capped_and_a_run_near_its_end_does_not_grow():
    cfg, record, steps = start()
    search_s, tune_s = record["planned"]["search"], record["planned"]["tune"]
    # a machine 20x faster than measured, and a retraining planned short: the cap holds
    short = {**steps, "retrain_steps": steps["retrain_steps"] // 5}
    entry = B.replan(record, short, "tune", 0.05 * tune_s, 10.0 + 0.05 * (search_s + tune_s), PER_PASS, grow=True)
    assert entry["new"]["retrain_steps"] == int(B.GROW_MAX * short["retrain_steps"])
    # a search that ran at 0.8x: at that speed the run would leave over GROW_SLACK unused, at the planned speed it
    # would not; after the search (a supernet) the retraining is not assumed to be faster than planned: no growth
    elapsed = 10.0 + 0.8 * search_s
    left = record["planned"]["tune"] + record["planned"]["retrain"] + FAKE_COSTS["after"]
    assert elapsed + 0.8 * left < (1 - B.GROW_SLACK) * 300.0 < elapsed + left
    assert B.replan(record, steps, "search", 0.8 * search_s, elapsed, PER_PASS, grow=True) is None
    # a run projected to end within GROW_SLACK of its budget keeps its plan
    f = 0.97
    elapsed = 10.0 + f * (search_s + tune_s)
    projected = elapsed + f * (record["planned"]["retrain"] + FAKE_COSTS["after"])
    assert (1 - B.GROW_SLACK) * 300.0 <= projected <= 300.0
    assert B.replan(record, steps, "tune", f * tune_s, elapsed, PER_PASS, grow=True) is None
    # after the search the tuning's planned time (at the search's speed) is kept free; only the retraining grows
    entry = B.replan(record, steps, "search", 0.5 * search_s, 10.0 + 0.5 * search_s, PER_PASS, grow=True)
    assert entry["grew"] and entry["new"]["tune_steps"] == steps["tune_steps"]
    assert entry["new"]["retrain_steps"] > steps["retrain_steps"]
    assert entry["projected_end"] <= B.GROW_FILL * 300.0 + 1e-6


def ahead(monkeypatch, search_factor, tune_factor):
    """The pipeline on a fake clock: the search and the tunings take these factors of their planned seconds."""
    clock = Clock()
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    real_search, real_tune = pipeline.search, pipeline.tune

    def search(task, cfg, rd):
        card = real_search(task, cfg, rd)
        clock.now += search_factor * rd.read_json("config.json")["budget"]["planned"]["search"]
        return card

    def tune(task, cfg, rd, card):
        out = real_tune(task, cfg, rd, card)
        # called twice, for DASH's tuning and the baseline's: half the planned tuning each
        clock.now += tune_factor * rd.read_json("config.json")["budget"]["planned"]["tune"] / 2
        return out

    monkeypatch.setattr(pipeline, "search", search)
    monkeypatch.setattr(pipeline, "tune", tune)
    seen = []

    def factor(record, trials, tune_steps, per_pass):  # the finished trials ran at the clock's speed too
        seen.append(trials)
        return tune_factor

    monkeypatch.setattr(pipeline, "tuning_factor", factor)
    clock.trials = seen
    return clock


def test_a_fresh_run_ahead_of_plan_trains_the_grown_steps_and_a_resumed_run_never_grows(tmp_path, monkeypatch):
    fake_costs(monkeypatch, lambda *a, **k: dict(COSTS))
    clock = ahead(monkeypatch, 1.0, 0.2)
    task = tiny_task()
    res = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False, verbose=False,
                       **SETTINGS)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    (entry,) = meta["budget"]["replans"]  # the search ran on plan: nothing after it; the tunings ran at 0.2x
    assert entry["after"] == "tune" and entry["grew"] and entry["factor"] == pytest.approx(0.2, rel=1e-3)
    assert entry["new"]["retrain_steps"] > entry["old"]["retrain_steps"]
    assert meta["config"]["retrain"]["steps"] == meta["plan"]["retrain"]["steps"] == entry["new"]["retrain_steps"]
    rows = (tmp_path / "run" / "history_retrain.csv").read_text().strip().splitlines()
    assert len(rows) - 1 == meta["plan"]["retrain"]["epochs"]
    assert "(ahead of plan: the retraining grows)" in res.summary()
    (trials,) = clock.trials  # the re-plan read both tunings' trials from tune.json and baseline_tune.json
    assert set(trials) == {"dash", "baseline"} and all(t and all("state" in r and "seconds" in r for r in t)
                                                       for t in trials.values())

    # the same run stopped in its tuning, then resumed: the resumed call did not make the plan, so it keeps it
    monkeypatch.setattr(pipeline, "tune", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        pipeline.run(task, preset="smoke", out=tmp_path / "stopped", budget="300s", figures=False, verbose=False,
                     **SETTINGS)
    monkeypatch.undo()
    fake_costs(monkeypatch, *[lambda *a, **k: pytest.fail("a resumed run keeps its plan")] * 2)
    ahead(monkeypatch, 1.0, 0.2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        again = pipeline.run(task, preset="smoke", out=tmp_path / "stopped", budget="300s", figures=False,
                             verbose=False, **SETTINGS)
    stored = json.loads((tmp_path / "stopped" / "config.json").read_text())
    assert not stored["budget"].get("replans")
    assert again.plan["retrain"]["steps"] == entry["old"]["retrain_steps"]


def test_after_the_search_the_searched_network_is_costed_and_the_plan_fits_what_it_costs(tmp_path, monkeypatch):
    """The plan costed DASH's network as a typical architecture; the search chose one twice as dear per step: the
    stages after it shrink to fit the budget, though the search itself ran on plan, and the random draws keep the
    typical costs."""
    fake_costs(monkeypatch, lambda *a, **k: dict(COSTS), chosen=(2.0, 1.5))
    slowed(monkeypatch, 1.0)
    task = tiny_task()
    res = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False, verbose=False,
                       random_draws=1, **SETTINGS)
    record = json.loads((tmp_path / "run" / "config.json").read_text())["budget"]
    assert record["chosen_costs"] == {"after": "search", "step_ratio": 2.0, "eval_ratio": 1.5, "typical": {
        "dash_step": COSTS["dash_step"], "dash_eval": COSTS["dash_eval"]}}
    c = record["costs"]
    assert c["dash_step"] == pytest.approx(2 * COSTS["dash_step"]) and c["dash_eval"] == pytest.approx(
        1.5 * COSTS["dash_eval"])
    assert c["random_step"] == COSTS["dash_step"] and c["random_eval"] == COSTS["dash_eval"]
    assert c["baseline_step"] == COSTS["baseline_step"] and c["search_step"] == COSTS["search_step"]
    assert B.typical_costs(record) == {**COSTS, "random_step": COSTS["dash_step"], "random_eval": COSTS["dash_eval"]}
    (entry,) = record["replans"]
    assert entry["after"] == "search" and entry["factor"] == pytest.approx(1.0, rel=1e-3)  # on plan
    assert entry["new"]["retrain_steps"] < entry["old"]["retrain_steps"]
    assert entry["projected_end"] <= 300.0  # at the searched network's costs
    per_pass = {s: res.plan[s]["batches_per_pass"] for s in ("search", "tune", "retrain")}
    at_old_costs = sum(B.stage_seconds(COSTS, s, entry["old"][f"{s}_steps"], per_pass,
                                       configs=entry["old"]["tune_configs"], folds=record["tune_folds"], draws=1)
                       for s in ("tune", "retrain"))
    at_new_costs = sum(B.stage_seconds(c, s, entry["old"][f"{s}_steps"], per_pass,
                                       configs=entry["old"]["tune_configs"], folds=record["tune_folds"], draws=1)
                       for s in ("tune", "retrain"))
    assert entry["elapsed"] + at_old_costs + COSTS["after"] <= 300.0 < entry["elapsed"] + at_new_costs + \
        COSTS["after"]  # the old plan fitted the typical costs, not the searched network's
    assert "costed as searched: one step 2.00x" in res.summary()


def test_stages_called_one_by_one_replan_after_the_search_with_replan_stages(tmp_path, monkeypatch):
    """`time_plan` + the stages called by hand (notebook 05): `replan_stages` after the search re-plans as `run`
    does (costing the searched network first), records it in config.json, and the retraining trains the new steps;
    a second call after the same stage changes nothing."""
    fake_costs(monkeypatch, lambda *a, **k: dict(COSTS), chosen=(1.2, 1.0))
    clock = Clock()
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    task = tiny_task()
    cfg = make_config("smoke", task.defaults, random_draws=0, **SETTINGS)
    cfg, record = pipeline.time_plan(task, cfg, "300s", out=tmp_path / "run")
    rd = pipeline.open_run_dir(tmp_path / "run", task, cfg, preset="smoke", budget=record)
    card = pipeline.search(task, cfg, rd)
    planned = record["planned"]["search"]
    clock.now += 1.3 * planned
    new = pipeline.replan_stages("search", task, cfg, rd, record, 1.3 * planned, card, verbose=False)
    (entry,) = record["replans"]
    assert entry["after"] == "search" and entry["factor"] == pytest.approx(1.3, rel=1e-3)
    assert record["chosen_costs"]["step_ratio"] == 1.2
    assert new.retrain.steps == entry["new"]["retrain_steps"] < cfg.retrain.steps
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["budget"]["replans"] == [entry] and meta["config"]["retrain"]["steps"] == new.retrain.steps
    assert meta["preset"] == "smoke"
    res = pipeline.retrain(task, new, rd, card)
    assert len(rd.read_history("retrain")) == meta["plan"]["retrain"]["epochs"] and res["test"] >= 0
    again = pipeline.replan_stages("search", task, new, rd, record, 10 * planned, card, verbose=False)
    assert again is new and len(record["replans"]) == 1  # one re-plan per stage
    with pytest.raises(ValueError, match=r"stage = 'retrain': expected 'search' or 'tune'"):
        pipeline.replan_stages("retrain", task, new, rd, record, 1.0)
    with pytest.raises(ValueError, match=r"record: not a record that time_plan returned in this process"):
        pipeline.replan_stages("search", task, new, rd, dict(record), 1.0)
    with pytest.raises(ValueError, match=r"seconds = -1: expected the stage's wall seconds"):
        pipeline.replan_stages("tune", task, new, rd, record, -1)


def test_the_tunings_speed_is_read_from_their_finished_trials_not_from_skipped_configurations():
    """The quickstart's tunings ran 0.61x their plan because the lr-block walk skipped a configuration and the
    pruner cut one short; their two whole trials each ran slower than planned. Growing the retraining at 0.61x
    overran the 3-minute budget by about a quarter; the finished trials' speed does not grow it."""
    cfg, record, steps = start()
    one = {net: B.tune_seconds(FAKE_COSTS, net, steps["tune_steps"], PER_PASS, folds=record["tune_folds"])
           for net in ("dash", "baseline")}
    # the two networks' tunings alone add up to the stage's count of both
    assert sum(one.values()) == pytest.approx(B.stage_seconds(FAKE_COSTS, "tune", steps["tune_steps"], PER_PASS,
                                                              configs=1, folds=record["tune_folds"]))
    trials = {net: [{"state": "complete", "seconds": 1.2 * one[net]}, {"state": "complete", "seconds": 1.2 * one[net]},
                    {"state": "pruned", "seconds": 0.3 * one[net]}, {"state": "skipped", "seconds": 0.0}]
              for net in ("dash", "baseline")}
    assert B.tuning_factor(record, trials, steps["tune_steps"], PER_PASS) == pytest.approx(1.2)
    assert B.tuning_factor(record, {"dash": [{"state": "pruned", "seconds": 3.0}]}, steps["tune_steps"],
                           PER_PASS) is None
    tune_s = seconds_left(record, steps, ("tune",), 2)
    spent = sum(t["seconds"] for rows in trials.values() for t in rows)  # about 0.65x the planned tunings
    assert spent < 0.7 * tune_s
    elapsed = 10.0 + record["planned"]["search"] + spent
    grown = B.replan(record, steps, "tune", spent, elapsed, PER_PASS, grow=True)
    assert grown is not None and grown["grew"]  # the whole stage's ratio alone would grow the retraining
    kept = B.replan(record, steps, "tune", spent, elapsed, PER_PASS, grow=True,
                    factor=B.tuning_factor(record, trials, steps["tune_steps"], PER_PASS))
    assert kept is None or (not kept["grew"] and kept["factor"] == pytest.approx(1.2))


# ------------------------------------------------- a standard run forecast within its five minutes, watched
def watched_run(tmp_path, monkeypatch, chosen, factor=1.0, out="run"):
    """A standard-preset run of the tiny task with the preset's steps made small (30 / 4 / 40), on a fake clock,
    whose costs forecast those steps at 280 s (within 1.15 x 300) and whose search takes ``factor`` times its
    forecast seconds; the searched network costs ``chosen`` (step, validation pass) times the typical one.
    Returns (the RunResult, the costs the forecast used, the measuring calls, the clock)."""
    from dashkit.config import PRESETS

    for stage, steps in (("search", 30), ("tune", 4), ("retrain", 40)):
        monkeypatch.setitem(PRESETS["standard"][stage], "steps", steps)
    task = tiny_task()
    settings = {k: v for k, v in STEPS.items() if not k.endswith("_steps")}
    cfg = make_config("standard", task.defaults, random_draws=1, **settings)
    plan = B.run_plan(task, cfg)
    scale = (280.0 - 0.5) / (B.forecast_seconds({**FAKE_COSTS, "after": 0.0}, cfg, plan)["total"])
    costs_ = {**{k: v * scale for k, v in FAKE_COSTS.items()}, "after": 0.5}
    assert B.forecast_seconds(costs_, cfg, plan)["total"] == pytest.approx(280.0)
    calls = []
    fake_costs(monkeypatch, lambda *a, **k: calls.append(1) or dict(costs_), chosen=chosen)
    clock = Clock()
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(monotonic=clock.monotonic))
    real = pipeline.search
    search_seconds = B.stage_seconds(costs_, "search", 30, {s: plan[s]["batches_per_pass"] for s in plan})

    def search(task, cfg, rd):
        card = real(task, cfg, rd)
        clock.now += factor * search_seconds
        return card

    monkeypatch.setattr(pipeline, "search", search)
    with warnings.catch_warnings():
        warnings.simplefilter("error", B.LongRunWarning)  # within the slack: no warning at the start
        res = pipeline.run(task, preset="standard", out=tmp_path / out, figures=False, verbose=False,
                           random_draws=1, **settings)
    return res, costs_, calls, clock


def test_a_standard_run_within_its_promise_whose_searched_network_is_dear_is_fit_to_the_promise(tmp_path,
                                                                                              monkeypatch):
    """The forecast costs DASH's network as a typical architecture (280 s here, within the slack); the search
    chose one three times as dear per step, so the run heads far past 345 s: after the search it is fit to the
    300 s as a capped run is, config.json keeps the record, and a resumed run keeps the fitted steps."""
    res, costs_, calls, _ = watched_run(tmp_path, monkeypatch, chosen=(3.0, 1.0))
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    record = meta["budget"]
    cap = record["time_cap"]
    assert cap["forecast_seconds"] == pytest.approx(280.0, abs=0.1) and cap["fit_after"] == "search"
    assert cap["projected_seconds"] > B.CAP_SLACK * 300.0 and record["seconds"] == 300.0
    assert record["chosen_costs"]["step_ratio"] == 3.0
    (entry,) = record["replans"]
    assert cap["projected_seconds"] == pytest.approx(entry["projected_before"], abs=0.06)
    assert entry["old"]["retrain_steps"] == 40 and entry["new"]["retrain_steps"] < 40
    assert entry["projected_end"] <= 300.0
    assert meta["config"]["retrain"]["steps"] == res.plan["retrain"]["steps"] == entry["new"]["retrain_steps"]
    assert res.plan["search"]["steps"] == 30  # the search ran the preset's steps
    rows = (tmp_path / "run" / "history_retrain.csv").read_text().strip().splitlines()
    assert len(rows) - 1 == res.plan["retrain"]["epochs"]
    text = B.format_plan(res.plan, res.budget)
    assert re.search(r"forecast at 280 s here, within 1.15x its 300 s; after the search they were projected to "
                     r"end at \d+ s: fit to the 300 s", text)
    assert "re-planned after the search" in text
    # resumed: nothing measured, no re-plan again, the fitted steps kept
    again = pipeline.run(tiny_task(), preset="standard", out=tmp_path / "run", figures=False, verbose=False,
                         random_draws=1, **{k: v for k, v in STEPS.items() if not k.endswith("_steps")})
    assert len(calls) == 1
    assert again.plan == res.plan and again.metrics == res.metrics
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == meta


def test_a_standard_run_within_its_promise_that_keeps_to_it_runs_the_preset_steps_and_records_no_budget(
        tmp_path, monkeypatch):
    """On plan (or slower, within the slack) the watch changes nothing: the preset's steps, no budget in
    config.json; only a search that puts the run past 1.15 x 300 s fits it, and then the tuning shrinks too."""
    res, _, _, _ = watched_run(tmp_path, monkeypatch, chosen=(1.0, 1.0), factor=1.1)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert "budget" not in meta and res.budget is None
    assert (res.plan["search"]["steps"], res.plan["tune"]["steps"], res.plan["retrain"]["steps"]) == (30, 4, 40)
    slow, _, _, _ = watched_run(tmp_path, monkeypatch, chosen=(1.0, 1.0), factor=3.0, out="slow")
    record = json.loads((tmp_path / "slow" / "config.json").read_text())["budget"]
    (entry,) = record["replans"]
    assert record["time_cap"]["fit_after"] == "search" and entry["factor"] == pytest.approx(3.0, rel=1e-3)
    assert entry["new"]["retrain_steps"] < 40 and slow.plan["retrain"]["steps"] == entry["new"]["retrain_steps"]


def test_without_the_time_cap_a_dear_searched_network_keeps_the_preset_steps(tmp_path, monkeypatch):
    from dashkit.config import PRESETS

    for stage, steps in (("search", 30), ("tune", 4), ("retrain", 40)):
        monkeypatch.setitem(PRESETS["standard"][stage], "steps", steps)
    fake_costs(monkeypatch, lambda *a, **k: dict(FAKE_COSTS), chosen=(50.0, 1.0))
    res = pipeline.run(tiny_task(), preset="standard", out=tmp_path / "run", figures=False, verbose=False,
                       random_draws=0, time_cap=False, **{k: v for k, v in STEPS.items() if not k.endswith("_steps")})
    assert res.budget is None and res.plan["retrain"]["steps"] == 40
