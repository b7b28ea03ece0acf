"""Validation passes spaced where they cost far more than a step (``tune_val_interval``, ``retrain_val_interval``).

A time budget gives a stage's validation passes about ``VAL_SHARE`` of its steps' time (at least
``VAL_MIN_PASSES`` passes, the last epoch always) and the time saved to steps. The arithmetic is checked on
made-up costs (no test times anything); the runs check that the stages validate exactly the epochs the plan says,
keep the best of those, and that a resumed run keeps the plan.
"""
from __future__ import annotations

import math

import pytest

from dashkit import budget as B
from dashkit import pipeline, viz
from dashkit.config import make_config
from dashkit.rundir import RunDir
from dashkit.stages import trials

from test_budget import FAKE_COSTS, STEPS, fake_costs
from test_pipeline import tiny_task

# a validation pass of each network costs 20 of its steps (a large validation split)
COSTLY = {**FAKE_COSTS, "dash_eval": 1.0, "baseline_eval": 1.0}
PER_PASS = {"search": 56, "tune": 56, "retrain": 56}


@pytest.mark.parametrize("epochs", [1, 2, 4, 5, 9, 10, 17, 50])
@pytest.mark.parametrize("interval", [None, 1, 3, 50, 10**6])
def test_a_stage_validates_the_passes_the_rule_gives_spread_evenly_and_always_its_last_epoch(epochs, interval):
    steps = 40 * epochs
    plan = B.StagePlan("retrain", steps, epochs, 32, 56, val_interval=interval)
    want = epochs if interval is None else min(epochs, max(B.VAL_MIN_PASSES, steps // interval))
    assert plan.val_passes == B.val_passes(steps, epochs, interval) == want
    done = [e for e in range(epochs) if plan.validates(e)]
    assert len(done) == want and done[-1] == epochs - 1
    gaps = [b - a for a, b in zip([-1] + done, done)]
    assert max(gaps) - min(gaps) <= 1  # evenly spread: no two gaps differ by more than an epoch
    assert ("val_passes" in plan.to_dict()) == (interval is not None)


def test_the_interval_is_the_steps_whose_time_pays_for_a_pass_at_the_share():
    assert B.val_interval_for(0.05, 1.0) == math.ceil(1.0 / (B.VAL_SHARE * 0.05)) == 200
    assert B.val_interval_for(0.1, 0.011) == 2
    assert B.val_interval_for(0.1, 0.01) is None  # a pass costs a tenth of a step: every epoch, as always
    assert B.val_interval_for(0.1, 0.0) is None
    with pytest.raises(ValueError, match=r"step = 0, per_val = 1.0: expected measured seconds"):
        B.val_interval_for(0, 1.0)


def test_costly_validation_is_spaced_and_its_time_goes_to_steps():
    cfg = make_config("standard", random_draws=1)
    overrides, record = B.plan_budget(300.0, COSTLY, cfg, PER_PASS, spent=10.0, text="5m")
    intervals = record["val_interval"]
    # the retraining's networks (DASH, the baseline, one draw) together: steps 0.15 s, passes 3 s
    assert intervals["retrain"] == overrides["retrain_val_interval"] == B.val_interval_for(0.15, 3.0) == 200
    assert intervals["tune"] == overrides["tune_val_interval"] == B.val_interval_for(0.1, 2.0) == 200
    r = overrides["retrain_steps"]
    epochs = B.epochs_for(r, 56)
    assert B.val_passes(r, epochs, 200) == B.VAL_MIN_PASSES < epochs
    planned = B.stage_seconds(COSTLY, "retrain", r, PER_PASS, draws=1, intervals=intervals)
    assert record["planned"]["retrain"] == pytest.approx(planned, abs=0.01)
    # the same share with a pass after every epoch buys fewer steps
    step, writes, evals = 0.15, 3 * B.RETRAIN_EPOCH_WRITES * 0.001, 3.0
    every = B._fit(planned + 1e-9, step, writes, 56, evals, None)
    assert every < r and B._fit(planned + 1e-9, step, writes, 56, evals, 200) == r
    assert record["planned_seconds"] <= 300.0
    # cheap passes: nothing spaced, the plan as it always was
    overrides, record = B.plan_budget(300.0, FAKE_COSTS, cfg, PER_PASS, spent=10.0, text="5m")
    assert record["val_interval"] == {"tune": None, "retrain": None}
    assert overrides["tune_val_interval"] is None and overrides["retrain_val_interval"] is None


def test_a_re_plan_counts_the_spaced_passes():
    cfg = make_config("standard", random_draws=0)
    overrides, record = B.plan_budget(300.0, COSTLY, cfg, PER_PASS, spent=10.0, text="5m")
    steps = {"search_steps": overrides["search_steps"], "tune_steps": overrides["tune_steps"],
             "tune_configs": overrides.get("tune_n_trials", 4), "retrain_steps": overrides["retrain_steps"]}
    search_s = B.stage_seconds(COSTLY, "search", steps["search_steps"], PER_PASS)
    entry = B.replan(record, steps, "search", 1.5 * search_s, 10.0 + 1.5 * search_s, PER_PASS)
    assert entry is not None and entry["new"]["retrain_steps"] < steps["retrain_steps"]
    assert entry["planned"]["retrain"] == pytest.approx(B.stage_seconds(
        COSTLY, "retrain", entry["new"]["retrain_steps"], PER_PASS, intervals=record["val_interval"]), abs=0.01)
    assert entry["projected_end"] <= 300.0 + 1e-6


def test_bad_intervals_are_refused_naming_the_setting():
    for name in ("tune_val_interval", "retrain_val_interval"):
        for bad in (0, -3):
            with pytest.raises(ValueError, match=rf"{name} = {bad!r}: expected None \(a validation pass after every "
                                                 r"epoch\) or an int >= 1"):
                make_config("smoke", **{name: bad})
        for bad in (True, 2.5):
            with pytest.raises(TypeError, match=rf"{name} = {bad!r}: expected an int"):
                make_config("smoke", **{name: bad})
        assert getattr(make_config("smoke", **{name: 7}), name.split("_")[0]).val_interval == 7


def test_a_budgeted_run_with_costly_passes_validates_the_planned_epochs_and_resumes_with_its_plan(tmp_path,
                                                                                                   monkeypatch):
    # a pass of each network costs 6 of its steps: spaced to one every 60 steps, the budget's retraining 60 or so
    fake_costs(monkeypatch, lambda *a, **k: {**FAKE_COSTS, "dash_eval": 0.3, "baseline_eval": 0.3})
    task = tiny_task()
    settings = {k: v for k, v in STEPS.items() if not k.endswith("_steps")}
    res = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="15s", figures=False, verbose=False,
                       **settings)
    rd = RunDir(tmp_path / "run")
    meta = rd.read_json("config.json")
    interval = meta["config"]["retrain"]["val_interval"]
    assert interval is not None and interval == meta["budget"]["val_interval"]["retrain"]
    plan = res.plan["retrain"]
    assert plan["val_interval"] == interval and plan["val_passes"] < plan["epochs"]
    for stage, name in (("retrain", "dash"), ("baseline_retrain", "baseline")):
        rows = rd.read_history(stage)
        checked = [r for r in rows if isinstance(r["val_metric"], float)]
        assert len(rows) == plan["epochs"] and len(checked) == plan["val_passes"]
        assert rows[-1] in checked and all(r["val_loss"] == "" for r in rows if r not in checked)
        best = rd.read_json("metrics.json")[name]
        kept = rows[best["best_epoch"] - 1]
        assert kept in checked and best["val"] == pytest.approx(min(r["val_metric"] for r in checked))
    fig = viz.learning_curves({"dash": rd.read_history("retrain")}, "error_pct")
    val_line = fig.axes[1].lines[0]
    assert len(val_line.get_xdata()) == plan["val_passes"]  # the validation panel: the epochs validated

    def no_measuring(*a, **k):
        raise AssertionError("a resumed run must keep its plan, not measure again")

    fake_costs(monkeypatch, no_measuring, no_measuring)
    again = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="15s", figures=False, verbose=False,
                         **settings)
    assert again.plan == res.plan and again.metrics == res.metrics


def test_a_tuning_with_spaced_passes_validates_each_configuration_at_the_planned_epochs(tmp_path, monkeypatch):
    seen = []
    real = trials.evaluate

    def counting(model, dataset, *a, **k):
        seen.append(len(dataset))
        return real(model, dataset, *a, **k)

    monkeypatch.setattr(trials, "evaluate", counting)
    task = tiny_task()
    settings = {**STEPS, "tune_steps": 24, "tune_small_val": "tune", "tune_lr_block_patience": 0, "random_draws": 0}
    for interval in (None, 1000):
        seen.clear()
        res = pipeline.run(task, preset="smoke", out=tmp_path / f"run{interval}", figures=False, verbose=False,
                           tune_val_interval=interval, **settings)
        plan = res.plan["tune"]
        assert plan["epochs"] == 8  # 24 steps of 3 batches a pass
        passes = 8 if interval is None else B.VAL_MIN_PASSES
        assert plan.get("val_passes", 8) == passes
        rd = RunDir(tmp_path / f"run{interval}")
        configs = sum(len(rd.read_json(f)["trials"]) for f in ("tune.json", "baseline_tune.json"))
        assert configs == 4 and seen == [len(task.val)] * (configs * passes)
