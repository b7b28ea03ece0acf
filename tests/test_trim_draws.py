"""Random draws dropped when the retraining runs slow (dashkit.budget.trim_draws, dashkit.pipeline.run).

The retraining's steps are fixed once DASH's network starts them, so a slowdown that starts during the retraining
is met by training fewer random draws. The arithmetic is checked on made-up step costs against the planner's own
count; the runs train for real on a fake clock (``pipeline.time``) that the patched stages move by chosen
multiples of their planned seconds, so what is asserted is the recorded decision, never a timing.
"""
from __future__ import annotations

import functools
import json
import types
import warnings

import pytest

from dashkit import budget as B
from dashkit import pipeline
from dashkit.config import PRESETS
from dashkit.stages import control

from test_budget import FAKE_COSTS, STEPS, fake_costs
from test_pipeline import tiny_task
from test_replan import PER_PASS, Clock

COSTS = {k: 10 * v for k, v in FAKE_COSTS.items()}  # a 300 s budget buys tens of steps: a run of seconds
SETTINGS = {k: v for k, v in STEPS.items() if not k.endswith("_steps")}
# the stages the helpers wrap, as imported (so that a second wrapping in one test wraps these, not the first's)
REAL = {"retrain": pipeline.retrain, "baseline": pipeline.baseline, "draw": control.random_draw,
        "replan": pipeline._replan}


def record_of(draws=3, seconds=300.0):
    cfg = pipeline.make_config("standard", random_draws=draws)
    overrides, record = B.plan_budget(seconds, FAKE_COSTS, cfg, PER_PASS, spent=5.0, text=f"{seconds:g}s")
    return record, overrides["retrain_steps"]


# ------------------------------------------------------------------------------------------ the arithmetic
def test_one_networks_retraining_seconds_add_up_to_the_planners_retraining():
    record, steps = record_of(draws=2)
    c = record["costs"]
    epochs = B.epochs_for(steps, PER_PASS["retrain"])
    writes = B.RETRAIN_EPOCH_WRITES * c["checkpoint"]  # costs without retrain_writes
    assert B.retrain_seconds(c, "dash", steps, PER_PASS["retrain"]) == pytest.approx(
        steps * c["dash_step"] + epochs * (c["dash_eval"] + writes), rel=1e-12)
    together = sum(B.retrain_seconds(c, n, steps, PER_PASS["retrain"]) for n in ("dash", "baseline", "random",
                                                                                 "random"))
    assert together == pytest.approx(B.stage_seconds(c, "retrain", steps, PER_PASS, draws=2), rel=1e-12)
    assert together == pytest.approx(record["planned"]["retrain"], abs=0.01)
    assert B.retrain_seconds(c, "dash", 0, PER_PASS["retrain"]) == 0.0
    with pytest.raises(ValueError, match=r"net = 'random_0': expected 'dash', 'baseline' or 'random'"):
        B.retrain_seconds(c, "random_0", steps, PER_PASS["retrain"])


def test_a_retraining_on_plan_keeps_every_draw_and_a_slow_one_keeps_the_most_that_fit():
    record, steps = record_of(draws=3)
    c, r = record["costs"], PER_PASS["retrain"]
    one = {n: B.retrain_seconds(c, n, steps, r) for n in ("dash", "baseline", "random")}
    start = record["seconds"] - c["after"] - one["dash"] - one["baseline"] - 3 * one["random"]  # on plan so far
    on_plan = {"dash": one["dash"], "baseline": one["baseline"]}
    now = start + one["dash"] + one["baseline"]
    assert B.trim_draws(record, steps, r, on_plan, now, 0, 3) is None
    assert B.trim_draws(record, steps, r, {}, now, 0, 3) is None  # nothing ran in this call: no speed seen

    def end(k, f):  # where the run ends with k draws in all, its retrainings f times slow
        return start + f * (one["dash"] + one["baseline"] + k * one["random"] + c["after"])

    # 1.25x slow ends the run past its budget but within the slack: every draw is kept
    assert record["seconds"] < end(3, 1.25) <= B.CAP_SLACK * record["seconds"]
    late_within = ({k: 1.25 * v for k, v in on_plan.items()}, start + 1.25 * (one["dash"] + one["baseline"]))
    assert B.trim_draws(record, steps, r, *late_within, 0, 3) is None
    f = 1.5
    slow = {k: f * v for k, v in on_plan.items()}
    now = start + f * (one["dash"] + one["baseline"])
    entry = B.trim_draws(record, steps, r, slow, now, 0, 3)
    assert entry["factor"] == pytest.approx(f) and entry["old"] == 3 and entry["before"] == 0
    end = functools.partial(end, f=f)
    assert end(3) > B.CAP_SLACK * record["seconds"]
    assert end(entry["new"]) <= record["seconds"] < end(entry["new"] + 1)  # the most that fit
    assert 0 < entry["new"] < 3
    assert entry["projected_end"] == pytest.approx(end(entry["new"]), abs=0.01)
    assert entry["projected_before"] == pytest.approx(end(3), abs=0.01)
    assert f"3 random draws would end the run at {end(3):.0f} s of 300 s: {entry['new']} kept" in entry["note"]
    # no slack: dropped at any overrun; a wider slack or a later budget keeps more
    assert B.trim_draws(record, steps, r, *late_within, 0, 3, slack=1.0)["new"] == 1
    assert B.trim_draws(record, steps, r, slow, now, 0, 3, slack=end(3) / record["seconds"]) is None
    assert B.trim_draws({**record, "seconds": end(3)}, steps, r, slow, now, 0, 3) is None
    # draws already done are kept whatever the projection says
    late = B.trim_draws(record, steps, r, {**slow, "random_0": 9 * one["random"]}, record["seconds"], 1, 3)
    assert late["new"] == 1 and late["before"] == 1 and late["projected_end"] > record["seconds"]
    assert B.trim_draws(record, steps, r, slow, now, 3, 3) is None
    with pytest.raises(ValueError, match=r"draws_done = 4: expected an int from 0 to draws \(3\)"):
        B.trim_draws(record, steps, r, slow, now, 4, 3)
    with pytest.raises(ValueError, match=r"slack = 0.9: expected a number >= 1"):
        B.trim_draws(record, steps, r, slow, now, 0, 3, slack=0.9)


# ------------------------------------------------------------------------------------------------- the runs
def on_plan_from(monkeypatch, clock, start):
    """After the re-plan that follows the tunings, the clock stands at ``start(run dir)`` seconds of the run: where
    a run on plan would begin its retraining."""
    real = REAL["replan"]

    def replan(task, cfg, rd, preset, record, stage, *a, **k):
        new = real(task, cfg, rd, preset, record, stage, *a, **k)
        if stage == "tune":
            clock.now = 1000.0 + start(rd)
        return new

    monkeypatch.setattr(pipeline, "_replan", replan)


def slow_retraining(monkeypatch, factor, kill_draw=None):
    """The pipeline on a fake clock: the search and the tunings take no time, DASH's retraining starts where a
    run on plan would start it, and it, the baseline and every draw take ``factor`` times their planned seconds.
    ``kill_draw``: that draw is stopped (KeyboardInterrupt) after it trained. Returns the clock."""
    clock = Clock()
    monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(monotonic=clock.monotonic))

    def planned(rd, net):
        meta = rd.read_json("config.json")
        record = meta["budget"]
        steps = meta["config"]["retrain"]["steps"]
        return record, B.retrain_seconds(record["costs"], net, steps, meta["plan"]["retrain"]["batches_per_pass"])

    real_retrain, real_baseline, real_draw = REAL["retrain"], REAL["baseline"], REAL["draw"]
    on_plan_from(monkeypatch, clock, lambda rd: planned(rd, "dash")[0]["seconds"] - planned(rd, "dash")[0][
        "costs"]["after"] - sum(planned(rd, n)[1] for n in ("dash", "baseline"))
        - planned(rd, "dash")[0]["random_draws"] * planned(rd, "random")[1])

    def retrain(task, cfg, rd, card=None):
        res = real_retrain(task, cfg, rd, card)
        clock.now += factor * planned(rd, "dash")[1]
        return res

    def baseline(task, cfg, rd):
        res = real_baseline(task, cfg, rd)
        clock.now += factor * planned(rd, "baseline")[1]
        return res

    def draw(task, cfg, rd, template, i, hp):
        res = real_draw(task, cfg, rd, template, i, hp)
        clock.now += factor * planned(rd, "random")[1]
        if i == kill_draw:
            raise KeyboardInterrupt(f"killed after draw {i}")
        return res

    monkeypatch.setattr(pipeline, "retrain", retrain)
    monkeypatch.setattr(pipeline, "baseline", baseline)
    monkeypatch.setattr(control, "random_draw", draw)
    return clock


def test_a_retraining_that_runs_slow_drops_the_draws_that_would_overrun_and_a_resumed_run_keeps_the_count(
        tmp_path, monkeypatch):
    fake_costs(monkeypatch, lambda *a, **k: dict(COSTS))
    slow_retraining(monkeypatch, 1.5)
    task = tiny_task()
    with pytest.warns(UserWarning, match=r"budget = '300s': the retrainings ran 1.50x their planned time; 3 random "
                                         r"draws would end the run at \d+ s of 300 s: 1 kept"):
        res = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False, verbose=False,
                           random_draws=3, **SETTINGS)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    record = meta["budget"]
    (entry,) = record["draws_dropped"]
    assert entry["before"] == 0 and entry["old"] == 3 and entry["new"] == 1
    assert entry["factor"] == pytest.approx(1.5, rel=1e-6)
    assert entry["projected_end"] <= 300.0 and entry["projected_before"] > B.CAP_SLACK * 300.0
    assert "replans" not in record  # the search and the tunings took no time on the clock
    # config.json's config and plan hold the count kept; the run trained that many and no more
    assert meta["config"]["random_draws"] == meta["plan"]["retrain"]["random_draws"] == record["random_draws"] == 1
    assert res.random["draws"] == 1 and len(res.random["per_draw"]) == 1
    assert (tmp_path / "run" / "random_0.safetensors").exists()
    assert not (tmp_path / "run" / "random_1_archcard.json").exists()
    assert "before random draw 0 the retrainings ran 1.50x their planned time: 1 of 3 random draws kept" \
        in res.summary()

    # resumed: nothing measured, nothing dropped again, the same result and files
    fake_costs(monkeypatch, *[lambda *a, **k: pytest.fail("a resumed run keeps its plan")] * 2)
    slow_retraining(monkeypatch, 5.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"budget = .*random draws? would end the run")  # no second drop
        again = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False,
                             verbose=False, random_draws=3, **SETTINGS)
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == meta
    assert again.metrics == res.metrics and again.random == res.random


@pytest.mark.parametrize("factor", [1.0, 1.25])
def test_a_retraining_on_plan_or_late_within_the_slack_trains_every_draw(tmp_path, monkeypatch, factor):
    """1.25x slow from a start on plan ends the run past its 300 s, within 1.15 x 300 s: no control is dropped."""
    fake_costs(monkeypatch, lambda *a, **k: dict(COSTS))
    clock = slow_retraining(monkeypatch, factor)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"budget = .*random draws? would end the run")
        res = pipeline.run(tiny_task(), preset="smoke", out=tmp_path / "run", budget="300s", figures=False,
                           verbose=False, random_draws=3, **SETTINGS)
    record = json.loads((tmp_path / "run" / "config.json").read_text())["budget"]
    assert "draws_dropped" not in record and res.random["draws"] == 3
    assert (300.0 < clock.now - 1000.0 <= B.CAP_SLACK * 300.0) if factor > 1 else clock.now - 1000.0 <= 300.0


def test_a_run_killed_in_a_kept_draw_resumes_it_and_trains_no_dropped_one(tmp_path, monkeypatch):
    fake_costs(monkeypatch, lambda *a, **k: dict(COSTS))
    slow_retraining(monkeypatch, 1.5, kill_draw=0)
    task = tiny_task()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(KeyboardInterrupt, match="killed after draw 0"):
            pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False, verbose=False,
                         random_draws=3, **SETTINGS)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["config"]["random_draws"] == 1
    fake_costs(monkeypatch, *[lambda *a, **k: pytest.fail("a resumed run keeps its plan")] * 2)
    slow_retraining(monkeypatch, 5.0)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=r"budget = .*random draws? would end the run")
        res = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="300s", figures=False,
                           verbose=False, random_draws=3, **SETTINGS)
    assert res.random["draws"] == 1 and set(res.metrics) == {"dash", "baseline", "random"}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["budget"] == stored["budget"]


def test_a_standard_run_within_its_promise_drops_draws_only_past_the_slack_and_then_to_the_promise(
        tmp_path, monkeypatch):
    """A standard-preset run forecast within its five minutes is watched, not budgeted: a retraining slow enough
    to end the run at about 322 s (past 300, within 1.15 x 300) keeps every draw; one heading for 400 s drops the
    draws that would end it after 300 s, and config.json then keeps the record as a capped run's, so that a
    resumed run keeps the count."""
    for stage, steps in (("search", 30), ("tune", 4), ("retrain", 40)):
        monkeypatch.setitem(PRESETS["standard"][stage], "steps", steps)
    task = tiny_task()
    cfg = pipeline.make_config("standard", task.defaults, random_draws=3, **SETTINGS)
    plan = B.run_plan(task, cfg)
    scale = (280.0 - 0.5) / B.forecast_seconds({**FAKE_COSTS, "after": 0.0}, cfg, plan)["total"]
    costs_ = {**{k: v * scale for k, v in FAKE_COSTS.items()}, "after": 0.5}
    one = {n: B.retrain_seconds(costs_, n, 40, plan["retrain"]["batches_per_pass"]) for n in ("dash", "baseline",
                                                                                            "random")}
    whole = one["dash"] + one["baseline"] + 3 * one["random"]
    start = 280.0 - 0.5 - whole  # the forecast: where a run on plan begins its retraining

    def end(factor):  # where a retraining ``factor`` times slow ends the run with every draw
        return start + factor * (whole + 0.5)

    def run(factor, out):
        fake_costs(monkeypatch, lambda *a, **k: dict(costs_))
        clock = Clock()
        monkeypatch.setattr(pipeline, "time", types.SimpleNamespace(monotonic=clock.monotonic))
        on_plan_from(monkeypatch, clock, lambda rd: start)

        def retrain(task, cfg, rd, card=None):
            res = REAL["retrain"](task, cfg, rd, card)
            clock.now += factor * one["dash"]
            return res

        def baseline(task, cfg, rd):
            res = REAL["baseline"](task, cfg, rd)
            clock.now += factor * one["baseline"]
            return res

        def draw(task, cfg, rd, template, i, hp):
            res = REAL["draw"](task, cfg, rd, template, i, hp)
            clock.now += factor * one["random"]
            return res

        monkeypatch.setattr(pipeline, "retrain", retrain)
        monkeypatch.setattr(pipeline, "baseline", baseline)
        monkeypatch.setattr(control, "random_draw", draw)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pipeline.run(task, preset="standard", out=tmp_path / out, figures=False, verbose=False,
                                    random_draws=3, **SETTINGS)
        finally:
            for name, module in (("_replan", pipeline), ("retrain", pipeline), ("baseline", pipeline)):
                monkeypatch.setattr(module, name, REAL[name.strip("_")])
            monkeypatch.setattr(control, "random_draw", REAL["draw"])

    near = 1 + (322.0 - end(1.0)) / (whole + 0.5)
    assert 300.0 < end(near) < B.CAP_SLACK * 300.0
    res = run(near, "near")
    assert res.budget is None and res.random["draws"] == 3  # within the slack: the watch wrote nothing
    far = 1 + (400.0 - end(1.0)) / (whole + 0.5)
    slow = run(far, "slow")
    meta = json.loads((tmp_path / "slow" / "config.json").read_text())
    record = meta["budget"]
    (entry,) = record["draws_dropped"]
    now = start + far * (one["dash"] + one["baseline"])
    assert entry["projected_before"] == pytest.approx(end(far), abs=0.01) and entry["before"] == 0
    assert entry["factor"] == pytest.approx(far, abs=1e-4)  # recorded to 4 decimals
    assert entry["limit"] == 300.0 and entry["projected_end"] <= 300.0 < now + far * (
        (entry["new"] + 1) * one["random"] + 0.5)  # down to the promise, the most draws that fit it
    assert record["time_cap"]["fit_after"] == "retraining" and entry["new"] < 3
    assert record["time_cap"]["projected_seconds"] == pytest.approx(end(far), abs=0.1)
    assert meta["config"]["random_draws"] == entry["new"] == slow.random["draws"]
    assert slow.plan["retrain"]["steps"] == 40  # the preset's steps were trained
    assert "after the retraining they were projected to end at 400 s: fit to the 300 s" in slow.summary()
    # resumed: the stored record is a capped run's; nothing measured, the count kept
    fake_costs(monkeypatch, *[lambda *a, **k: pytest.fail("a resumed run keeps its plan")] * 2)
    again = pipeline.run(task, preset="standard", out=tmp_path / "slow", figures=False, verbose=False,
                         random_draws=3, **SETTINGS)
    assert again.metrics == slow.metrics and again.random["draws"] == entry["new"]
    assert json.loads((tmp_path / "slow" / "config.json").read_text()) == meta


# ------------------------------------------------------------------------------------------------ torchrun
DDP_PATCH = '''
import time
import types

from dashkit import budget as B
from dashkit import distributed, pipeline
from dashkit.stages import costs

costs.measure_costs = lambda *a, **k: {costs!r}  # made-up costs: the plan does not depend on the machine
costs.measure_chosen = lambda *a, **k: {{"step": 1.0, "eval": 1.0}}
_offset = [0.0]
pipeline.time = types.SimpleNamespace(monotonic=lambda: time.monotonic() + _offset[0])
_replan, _retrain, _baseline = pipeline._replan, pipeline.retrain, pipeline.baseline


def planned(rd):
    meta = rd.read_json("config.json")
    record, steps = meta["budget"], meta["config"]["retrain"]["steps"]
    per_pass = meta["plan"]["retrain"]["batches_per_pass"]
    return record, {{n: B.retrain_seconds(record["costs"], n, steps, per_pass) for n in ("dash", "baseline", "random")}}


def replan(task, cfg, rd, preset, record, stage, *a, **k):
    """After the tunings, rank 0's clock stands where a run on plan begins its retraining."""
    new = _replan(task, cfg, rd, preset, record, stage, *a, **k)
    if stage == "tune" and distributed.is_main():
        rec, one = planned(rd)
        start = rec["seconds"] - rec["costs"]["after"] - one["dash"] - one["baseline"] - 2 * one["random"]
        _offset[0] = start - (time.monotonic() - _T_CALL[0])
    return new


def slow(real, net):
    def wrapped(*a, **k):
        t = time.monotonic()
        res = real(*a, **k)
        if distributed.is_main():  # rank 0's clock says the network took {factor} times its plan
            _offset[0] += {factor} * planned(a[2])[1][net] - (time.monotonic() - t)
        return res
    return wrapped


_T_CALL = [0.0]
_run = pipeline.run


def run(*a, **k):
    _T_CALL[0] = time.monotonic()
    return _run(*a, **k)


pipeline.run = run
pipeline._replan = replan
pipeline.retrain = slow(_retrain, "dash")
pipeline.baseline = slow(_baseline, "baseline")
'''


def test_torchrun_drops_draws_on_rank_0_and_every_rank_trains_the_draws_kept(tmp_path):
    from test_replan import DDP_COSTS, budget_torchrun

    out, dump = budget_torchrun(tmp_path, "draws", DDP_PATCH.format(costs=DDP_COSTS, factor=1.2), "random_draws=2")
    meta = json.loads((out / "config.json").read_text())
    (entry,) = meta["budget"]["draws_dropped"]
    # 1.2x slow, from a start on plan: the planned retrainings are long against the 5 s after them, so both draws
    # would end the run past 1.15 x 300 s and one of them fits the 300 s
    # (`test_a_retraining_on_plan_keeps_every_draw_and_a_slow_one_keeps_the_most_that_fit`)
    assert entry["old"] == 2 and entry["new"] == 1 and entry["factor"] == pytest.approx(1.2, abs=0.01)
    assert entry["projected_before"] > B.CAP_SLACK * 300.0 and entry["projected_end"] <= 300.0
    assert meta["config"]["random_draws"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["random"]["draws"] == 1 and "random_1" not in metrics
    d0, d1 = (json.loads((dump / f"random_0_retrain.rank{r}.json").read_text()) for r in (0, 1))
    assert d0 == d1  # both ranks trained the draw kept, together
    assert not list(dump.glob("random_1_retrain.*"))
