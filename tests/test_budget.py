"""Budgets in optimiser steps and in wall time (dashkit.budget), the plan a run records, tuning on a validation
split too small to decide, and predictions in the user's labels.

No test here times anything: the time planner is checked on made-up step costs (``measure_costs`` is replaced),
so its arithmetic is what is tested; how close a real run comes to its budget is measured in RESULTS.md.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import dashkit
from dashkit import budget as B
from dashkit import pipeline
from dashkit.__main__ import show
from dashkit.progress import PlainProgress, set_deadline
from dashkit.stages import costs
from dashkit.config import make_config
from dashkit.tasks.base import SmallSplitWarning, Task, TaskDefaults
from dashkit.tasks.byod import InputScaler

from test_pipeline import spikes, tiny_task

STEPS = dict(search_backend="fft", retrain_conv_backend="direct", search_steps=6, search_batch_size=32,
             tune_lrs=(0.1, 0.01), tune_dropouts=(0.0,), tune_weight_decays=(5e-4,), tune_momentums=(0.9,),
             tune_steps=4, tune_batch_size=32, tune_pruner="none", retrain_steps=8, retrain_batch_size=32)
FAKE_COSTS = {"search_step": 0.1, "dash_step": 0.05, "baseline_step": 0.05, "dash_eval": 0.01,
              "baseline_eval": 0.01, "checkpoint": 0.001, "after": 0.5}


def fake_costs(monkeypatch, measure, chosen=(1.0, 1.0)):
    """Stand in for the cost measurements: ``measure`` for `measure_costs`; after the search the searched network
    costs ``chosen`` (step, validation pass) times the typical one (`measure_chosen`; a callable: called instead)."""
    monkeypatch.setattr(costs, "measure_costs", measure)
    monkeypatch.setattr(costs, "measure_chosen", chosen if callable(chosen) else
                        (lambda *a, **k: {"step": chosen[0], "eval": chosen[1]}))


def sized_task(n: int) -> Task:
    """A task whose training split has ``n`` examples (x (n, 1, 16)); only sizes matter to a plan."""
    ds = TensorDataset(torch.zeros(n, 1, 16), torch.arange(n) % 2)
    small = TensorDataset(torch.zeros(40, 1, 16), torch.arange(40) % 2)
    return Task(name=f"sized{n}", kind="classification", train=ds, val=small, test=small, in_shape=(1, 16),
                num_outputs=2, metric_name="error_pct", defaults=TaskDefaults(backbone_kwargs={"width": 2}))


# ------------------------------------------------------------------------------------------------ steps
@pytest.mark.parametrize("preset", ["smoke", "standard"])
def test_a_preset_gives_small_and_large_data_the_same_steps_and_different_epochs(preset):
    small, large = sized_task(40), sized_task(4000)
    cfg = make_config(preset)
    for stage in ("search", "tune", "retrain"):
        a, b = B.stage_plan(small, cfg, stage), B.stage_plan(large, cfg, stage)
        assert a.steps == b.steps == getattr(cfg, stage).steps
        assert sum(a.steps_in_epoch(e) for e in range(a.epochs)) == a.steps  # the epochs add up to the steps
        assert sum(b.steps_in_epoch(e) for e in range(b.epochs)) == b.steps
        size = getattr(cfg, stage).batch_size
        assert a.batch_size == min(size, 40) and b.batch_size == size  # never more than the training split
        assert a.batches_per_pass == 40 // a.batch_size and b.batches_per_pass == 4000 // b.batch_size
        assert a.passes > b.passes
    standard = make_config("standard")
    a, b = B.stage_plan(small, standard, "search"), B.stage_plan(large, standard, "search")
    assert a.epochs != b.epochs and (a.epochs, b.epochs) == (B.EPOCHS_MAX, math.ceil(a.steps / (4000 // 64)))


def test_the_epoch_rule_and_the_batch_size_cap():
    assert B.epochs_for(1000, 62) == 17  # about one pass per epoch
    assert B.epochs_for(1000, 1) == B.EPOCHS_MAX  # a tiny split: many passes per epoch
    assert B.epochs_for(1000, 937) == B.EPOCHS_MIN  # a large split: a chunk of a pass per epoch
    assert B.epochs_for(8, 225) == 2 and B.epochs_for(3, 225) == 1  # not fewer than MIN_EPOCH_STEPS per epoch
    plan = B.StagePlan("search", steps=10, epochs=3, batch_size=8, batches_per_pass=4)
    assert [plan.steps_in_epoch(e) for e in range(3)] == [3, 3, 4] and plan.steps_before(2) == 6
    assert B.effective_batch(64, 40) == 40 and B.effective_batch(64, 41, world=2) == 40
    with pytest.raises(ValueError, match=r"the training split has 1 example\(s\); expected at least 2"):
        B.effective_batch(64, 1)


def test_an_epoch_override_counts_that_stage_in_epochs():
    cfg = make_config("standard", search_epochs=3)
    assert cfg.search.steps is None and cfg.search.epochs == 3
    assert cfg.retrain.steps == make_config("standard").retrain.steps  # the other stages keep counting steps
    plan = B.stage_plan(sized_task(4000), cfg, "search")
    assert plan.epochs == 3 and plan.steps_in_epoch(0) == min(round(0.5 * 62), 15)  # the preset's epoch fields
    assert make_config("paper").search.steps is None
    with pytest.raises(ValueError, match=r"search_steps = 0: expected None \(count in epochs\) or an int >= 1"):
        make_config("smoke", search_steps=0)


def test_a_run_in_steps_records_its_plan_and_reads_it_back(tmp_path):
    task = tiny_task()  # 96 training examples: 3 batches of 32 per pass
    res = pipeline.run(task, preset="smoke", out=tmp_path / "run", figures=False, verbose=False, **STEPS)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["plan"]["search"] == {"steps": 6, "epochs": 2, "steps_per_epoch": 3, "batch_size": 32,
                                      "batches_per_pass": 3, "passes": 2.0, "counted_in": "steps"}
    assert meta["plan"]["retrain"]["steps"] == 8 and meta["plan"]["tune"]["configs"] == 2
    assert meta["task_info"]["classes"] == [0, 1] and sum(meta["task_info"]["class_counts"]) == 96
    assert res.plan == meta["plan"] and pipeline.load_result(tmp_path / "run").plan == meta["plan"]
    assert "search        6 steps in 2 epochs of 3 (batch 32, 2 passes)" in res.summary()
    rd = dashkit.rundir.RunDir(tmp_path / "run")
    assert len(rd.read_history("search")) == 2 and len(rd.read_history("retrain")) == meta["plan"]["retrain"]["epochs"]


# ------------------------------------------------------------------------------------------------ time
@pytest.mark.parametrize("text, seconds", [("90s", 90), ("5m", 300), ("5min", 300), ("1h", 3600), ("1.5 hours", 5400),
                                           ("45", 45), (60, 60), (2.5, 2.5), (" 2 minutes ", 120)])
def test_a_budget_is_read_from_text_or_seconds(text, seconds):
    assert B.parse_budget(text) == seconds


@pytest.mark.parametrize("text, error, message", [
    ("5 parsecs", ValueError, r"budget = '5 parsecs': expected a number of seconds > 0 or text such as '90s', '5m', "
                              r"'5min', '1h' \(units: s, m, min, h\)"),
    ("fast", ValueError, r"budget = 'fast': expected a number of seconds > 0"),
    ("0s", ValueError, r"budget = '0s': expected a number of seconds > 0"),
    (-5, ValueError, r"budget = -5: expected a number of seconds > 0"),
    (True, TypeError, r"budget = True: expected a number of seconds > 0"),
    ([60], TypeError, r"budget = \[60\]: expected"),
])
def test_a_bad_budget_names_itself_and_what_is_accepted(text, error, message):
    with pytest.raises(error, match=message):
        B.parse_budget(text)


def test_the_planner_shares_the_time_by_its_rule():
    cfg = make_config("standard", random_draws=0)  # the random draws' part: tests/test_random_control.py
    per_pass = {"search": 56, "tune": 56, "retrain": 56}
    overrides, record = B.plan_budget(300.0, FAKE_COSTS, cfg, per_pass, spent=10.0, text="5m")
    left = 300.0 - 10.0 - FAKE_COSTS["after"]
    # search: 40% of the time left, less the files each epoch writes
    s, writes = overrides["search_steps"], B.SEARCH_EPOCH_WRITES * 0.001
    cost = lambda n: n * 0.1 + B.epochs_for(n, 56) * writes  # noqa: E731
    assert cost(s) <= B.SEARCH_SHARE * left < cost(s + 1)
    # tuning: 20% over the 4 configurations of DASH and the baseline, each a validation pass per epoch
    t = overrides["tune_steps"]
    assert overrides["tune_enabled"] and "tune_n_trials" not in overrides and t >= B.MIN_TUNE_STEPS
    assert 4 * (t * 0.1 + B.epochs_for(t, 56) * 0.02) <= B.TUNE_SHARE * left
    # retraining: the rest, the same steps for DASH and the baseline
    r = overrides["retrain_steps"]
    per_epoch = 0.02 + 2 * B.RETRAIN_EPOCH_WRITES * 0.001  # two validation passes, each network's files
    assert r * 0.1 + B.epochs_for(r, 56) * per_epoch <= 0.4 * left < (r + 1) * 0.1 + B.epochs_for(r, 56) * per_epoch
    assert record["shares"] == {"search": 0.4, "tune": 0.2, "retrain": 0.4} and record["text"] == "5m"
    assert record["planned_seconds"] == pytest.approx(300.0, rel=0.02)  # what is left over is under one step


def test_the_planner_holds_each_stage_at_its_ceiling_and_gives_its_time_to_the_others():
    """A preset run fit to its time (`run(time_cap=True)`) never takes more steps in a stage than the preset."""
    cfg = make_config("standard", random_draws=0)
    per_pass = {"search": 56, "tune": 56, "retrain": 56}
    free, _ = B.plan_budget(300.0, FAKE_COSTS, cfg, per_pass, spent=10.0)
    assert free["search_steps"] > 600 and free["tune_steps"] > 60 and free["retrain_steps"] > 600
    # the search and the tuning held: what they leave of their shares goes to the retraining
    held, record = B.plan_budget(300.0, FAKE_COSTS, cfg, per_pass, spent=10.0,
                                 ceilings={"search": 600, "tune": 60, "retrain": 100000})
    assert (held["search_steps"], held["tune_steps"]) == (600, 60)
    assert held["retrain_steps"] > free["retrain_steps"] + 400  # about 500 search steps' and 4 x 2 x 60 tuning time
    assert record["ceilings"] == {"search": 600, "tune": 60, "retrain": 100000}
    assert 0.98 * 300.0 <= record["planned_seconds"] <= 300.0  # the budget is still used, never exceeded
    # the retraining held: the time it leaves grows the search (up to its own ceiling)
    held, record = B.plan_budget(300.0, FAKE_COSTS, cfg, per_pass, spent=10.0,
                                 ceilings={"search": 100000, "tune": 100000, "retrain": 600})
    assert held["retrain_steps"] == 600 and held["search_steps"] > free["search_steps"] + 400
    assert 0.98 * 300.0 <= record["planned_seconds"] <= 300.0
    top = {"search": free["search_steps"] + 10, "tune": 100000, "retrain": 600}
    assert B.plan_budget(300.0, FAKE_COSTS, cfg, per_pass, spent=10.0, ceilings=top)[0]["search_steps"] == top["search"]
    # without ceilings the plan is the budget's as before, and has no record of them
    assert "ceilings" not in B.plan_budget(300.0, FAKE_COSTS, cfg, per_pass, spent=10.0)[1]
    for bad in ({"search": 600}, {"search": 0, "tune": 1, "retrain": 1}, {"search": 1.5, "tune": 1, "retrain": 1}):
        with pytest.raises(ValueError, match=r"ceilings = .*expected None or the most steps of each stage"):
            B.plan_budget(300.0, FAKE_COSTS, cfg, per_pass, ceilings=bad)


def test_a_run_ahead_of_its_plan_never_grows_its_retraining_above_its_ceiling():
    cfg = make_config("standard", random_draws=0)
    per_pass = {"search": 56, "tune": 56, "retrain": 56}
    _, record = B.plan_budget(300.0, FAKE_COSTS, cfg, per_pass, ceilings={"search": 2000, "tune": 300, "retrain": 900})
    steps = {"search_steps": 1150, "tune_steps": 100, "tune_configs": 4, "retrain_steps": 800}
    # the search ran at a third of its planned time: without the ceiling the retraining would grow well past 900
    grown = B.replan({k: v for k, v in record.items() if k != "ceilings"}, steps, "search", 40.0, 45.0, per_pass,
                     grow=True)
    assert grown["new"]["retrain_steps"] > 900
    held = B.replan(record, steps, "search", 40.0, 45.0, per_pass, grow=True)
    assert held["grew"] and held["new"]["retrain_steps"] == 900


def test_the_planner_tunes_fewer_configurations_or_none_when_its_share_is_small():
    cfg = make_config("standard", random_draws=0)  # a grid of 4; no random draws to drop
    per_pass = {"search": 56, "tune": 56, "retrain": 56}
    overrides, record = B.plan_budget(30.0, FAKE_COSTS, cfg, per_pass, text="30s")
    assert overrides["tune_n_trials"] == 2 and overrides["tune_steps"] >= B.MIN_TUNE_STEPS
    assert record["tune_configs"] == 2 and "reduced to 2 of 4" in record["note"]
    overrides, record = B.plan_budget(10.0, FAKE_COSTS, cfg, per_pass, text="10s")
    assert overrides["tune_enabled"] is False and record["shares"]["tune"] == 0.0 and "tuning off" in record["note"]
    no_base = make_config("standard", baseline=False, random_draws=0)
    more, _ = B.plan_budget(10.0, FAKE_COSTS, no_base, per_pass)
    assert more["retrain_steps"] > overrides["retrain_steps"]  # one network to retrain instead of two


def test_a_budget_too_small_for_one_step_of_each_stage_is_an_error_before_any_work(tmp_path, monkeypatch):
    with pytest.raises(B.BudgetTooSmallError, match=r"budget = '1s': 1.0 s is too small to take one step of each "
                                                    r"stage: .* give at least \d+ s"):
        B.plan_budget(1.0, FAKE_COSTS, make_config("smoke"), {"search": 1, "tune": 1, "retrain": 1}, spent=0.8,
                      text="1s")
    fake_costs(monkeypatch, lambda *a, **k: {**FAKE_COSTS, "after": 30.0})
    with pytest.raises(ValueError, match=r"budget = '20s': 20.0 s is too small"):
        pipeline.run(tiny_task(), preset="smoke", out=tmp_path / "run", budget="20s", verbose=False,
                     **{k: v for k, v in STEPS.items() if not k.endswith("_steps")})
    assert not (tmp_path / "run").exists()  # nothing was written
    with pytest.raises(ValueError, match=r"budget = 'soon': expected"):
        pipeline.run(tiny_task(), out=tmp_path / "run", budget="soon")
    with pytest.raises(ValueError, match=r"budget = '5m' decides the steps of every stage, so retrain_epochs, "
                                         r"search_steps cannot be set with it; drop them or the budget"):
        pipeline.run(tiny_task(), out=tmp_path / "run", budget="5m", search_steps=3, retrain_epochs=2)
    assert not (tmp_path / "run").exists()


def test_a_budgeted_run_records_its_plan_and_a_resumed_one_keeps_it(tmp_path, monkeypatch):
    calls = []

    def fake(task, cfg, device, figures=True):
        calls.append(task.name)
        return dict(FAKE_COSTS)

    fake_costs(monkeypatch, fake)
    task = tiny_task()
    settings = {k: v for k, v in STEPS.items() if not k.endswith("_steps")}
    res = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="8s", figures=False, verbose=False,
                       **settings)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    record = meta["budget"]
    assert calls == ["tiny"] and record["text"] == "8s" and record["seconds"] == 8.0
    assert {k: record["costs"][k] for k in FAKE_COSTS} == FAKE_COSTS  # the searched network costs the same here
    assert set(record["planned"]) == {"search", "tune", "retrain"}
    assert meta["config"]["search"]["steps"] == meta["plan"]["search"]["steps"] == res.plan["search"]["steps"] > 1
    assert meta["config"]["tune"]["enabled"] is False  # too little time for two configurations of 20 steps
    assert res.budget == record and "time budget 8s (8 s)" in res.summary()

    def no_measuring(*a, **k):
        raise AssertionError("a resumed run must keep its plan, not measure again")

    fake_costs(monkeypatch, no_measuring, no_measuring)
    again = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="8s", figures=False, verbose=False,
                         **settings)
    assert again.metrics == res.metrics and again.plan == res.plan
    with pytest.raises(ValueError, match=r"made with another config"):  # another budget is another plan
        monkeypatch.setattr(costs, "measure_costs", fake)
        pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="9s", figures=False, verbose=False,
                     **settings)


def test_progress_lines_show_the_time_left_while_a_deadline_is_set(capsys):
    set_deadline(time.monotonic() + 90)
    try:
        bar = PlainProgress(total=2, desc="search")
        bar.set_postfix(loss=0.5)
        bar.close()
    finally:
        set_deadline(None)
    assert re.search(r"^search: 0/2 \(0%\) \d+\.\ds loss=0\.5 left=(89|90)s$", capsys.readouterr().out.strip())
    PlainProgress(total=1, desc="after").close()
    assert "left=" not in capsys.readouterr().out


# ------------------------------------------------------------------------------------------- small data
def test_tuning_is_skipped_on_a_validation_split_too_small_to_decide(tmp_path):
    make = lambda n, seed: spikes(n, seed, 32, (6, 12), (4, 14))  # noqa: E731
    task = tiny_task(val=make(12, 1))
    assert task.too_small("val")
    with pytest.warns(pipeline.SmallValidationWarning, match=r"tune: skipped, the val split has 12 samples .* "
                                                             r"retraining with the retrain_\* hyper-parameters"):
        res = pipeline.run(task, preset="smoke", out=tmp_path / "run", figures=False, verbose=False,
                           tune_small_val="skip", **STEPS)  # the default; "cv": tests/test_small_data.py
    report = json.loads((tmp_path / "run" / "tune.json").read_text())
    assert report["skipped"].startswith("tune: skipped") and report["trials"] == [] and report["decided"] is False
    assert report["best"] == res.hparams["dash"] == {"lr": 0.1, "dropout": 0.0, "weight_decay": 5e-4,
                                                     "momentum": 0.9}
    assert json.loads((tmp_path / "run" / "baseline_tune.json").read_text())["skipped"].startswith("baseline_tune")
    assert "tune: skipped, the val split has 12 samples" in show(tmp_path / "run")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tuned = pipeline.run(task, preset="smoke", out=tmp_path / "tuned", figures=False, verbose=False,
                             tune_small_val="tune", **STEPS)
    assert len(json.loads((tmp_path / "tuned" / "tune.json").read_text())["trials"]) == 2 and tuned.metrics


def test_predictions_come_back_in_the_users_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    names = np.array(["calm", "spiky"])
    ds = spikes(200, 0, 32, (6, 12), (4, 14))
    x, y = ds.tensors[0].numpy(), names[ds.tensors[1].numpy()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSplitWarning)
        task = dashkit.tasks.from_arrays(x[:160], y[:160], x_test=x[160:], y_test=y[160:], name="strings", seed=0)
        res = pipeline.run(task, preset="smoke", out=tmp_path / "run", figures=False, verbose=False,
                           backbone_kwargs={"width": 2}, **STEPS)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["task_info"]["classes"] == ["calm", "spiky"] == res.classes
    assert sum(meta["task_info"]["class_counts"]) == len(task.train)
    new = x[rng.permutation(200)[:17]]
    labels = pipeline.predict(tmp_path / "run", new, task=task)
    model = pipeline.load_model(tmp_path / "run", task=task)
    scaled = InputScaler.from_info(task.info["input_scaling"]).encode(new)  # predict standardises as from_arrays did
    assert not np.allclose(scaled, new, atol=1e-2)
    with torch.no_grad():
        expected = task.to_labels(model(torch.from_numpy(scaled)))
    assert labels.shape == (17,) and set(labels) <= {"calm", "spiky"} and list(labels) == list(expected)
    assert list(res.predict(new, task=task, which="baseline")) == list(
        pipeline.predict(tmp_path / "run", new[:, 0, :], task=task, which="baseline"))  # (N, L): one channel
    frame = SimpleNamespace(to_numpy=lambda: new[:, 0, :])  # what predict reads of a pandas DataFrame (N, L)
    assert list(pipeline.predict(tmp_path / "run", frame, task=task, which="baseline")) == list(
        res.predict(new, task=task, which="baseline"))
    with pytest.raises(ValueError, match=r"x has shape \(17, 1, 30\); expected \(N, 1, 32\)"):
        pipeline.predict(tmp_path / "run", new[:, :, :30], task=task)

    # which="best": the network with the lower best validation metric (the run's own choice, then a forced one)
    chosen = pipeline.best_network(res.val_metrics)
    assert res.best == chosen and f"chosen on validation: {'DASH' if chosen == 'dash' else 'the baseline'}" in \
        res.summary()
    assert list(res.predict(new, task=task, which="best")) == list(res.predict(new, task=task, which=chosen))
    metrics_file = tmp_path / "run" / "metrics.json"
    stored = json.loads(metrics_file.read_text())
    for winner, loser in (("baseline", "dash"), ("dash", "baseline")):
        stored[winner]["val"], stored[loser]["val"] = 10.0, 20.0
        metrics_file.write_text(json.dumps(stored))
        assert pipeline.load_result(tmp_path / "run").best == winner
        best_net = pipeline.load_model(tmp_path / "run", "best", task=task)
        same = pipeline.load_model(tmp_path / "run", winner, task=task)
        assert [tuple(p.shape) for p in best_net.parameters()] == [tuple(p.shape) for p in same.parameters()]
        assert all(torch.equal(a, b) for a, b in zip(best_net.state_dict().values(), same.state_dict().values()))
    metrics_file.unlink()
    with pytest.raises(FileNotFoundError, match=r"which = 'best' chooses on the run's validation metrics"):
        pipeline.load_model(tmp_path / "run", "best", task=task)


@pytest.mark.filterwarnings("ignore::dashkit.pipeline.TuningUndecidedWarning")
@pytest.mark.filterwarnings("ignore::dashkit.supernet.SearchUndecidedWarning")
def test_regression_targets_in_large_units_train_standardised_and_predict_in_their_units(tmp_path):
    """y = 5e4 + 1e3 * (a weighted mean of x): in its own units no network of a short run gets near it (the head's
    bias would have to walk to 5e4); standardised on the training split, the same run explains most of the test
    variance, and `predict` answers in the targets' units."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 1, 16)).astype(np.float32)
    y = 5e4 + 1e3 * (x[:, 0, :8].mean(axis=1) - x[:, 0, 8:].mean(axis=1)) * 2
    settings = dict(STEPS, retrain_steps=150, tune_enabled=False, random_draws=0, backbone_kwargs={"width": 4})
    mse = {}
    for scaling in ("standardize", "none"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SmallSplitWarning)
            task = dashkit.tasks.from_arrays(x[:200], y[:200], x_test=x[200:], y_test=y[200:], kind="regression",
                                             target_scaling=scaling)
        res = pipeline.run(task, preset="smoke", out=tmp_path / scaling, figures=False, verbose=False, **settings)
        mse[scaling] = max(res.metrics["baseline"], res.metrics["dash"])
        predicted = pipeline.predict(tmp_path / scaling, x[200:], which="baseline", task=task)
        assert predicted.shape == (40, 1)
        assert float(np.mean((predicted[:, 0] - y[200:]) ** 2)) == pytest.approx(res.metrics["baseline"], rel=1e-3)
    variance = float(np.var(y[200:]))  # what predicting the test mean scores
    assert mse["standardize"] < 0.5 * variance < variance < mse["none"]  # DASH and the baseline alike


def test_best_network_prefers_the_lower_validation_metric_and_keeps_dash_on_a_tie():
    assert pipeline.best_network({"dash": 10.0, "baseline": 0.0}) == "baseline"
    assert pipeline.best_network({"dash": 0.2, "baseline": 0.3, "random": 0.0}) == "dash"  # draws are controls
    assert pipeline.best_network({"dash": 5.0, "baseline": 5.0}) == "dash"
    assert pipeline.best_network({"dash": 5.0}) == "dash"
    with pytest.raises(ValueError, match=r"expected a 'dash' entry"):
        pipeline.best_network({"baseline": 1.0})


# ------------------------------------------------------------------- a preset run's forecast and warning
def test_forecast_counts_every_stage_as_the_budget_planner_does():
    task = sized_task(400)
    cfg = make_config("standard", task.defaults)
    plan = B.run_plan(task, cfg)
    f = B.forecast_seconds(FAKE_COSTS, cfg, plan)
    per_pass = {s: plan[s]["batches_per_pass"] for s in ("search", "tune", "retrain")}
    assert f["search"] == pytest.approx(B.stage_seconds(FAKE_COSTS, "search", 2000, per_pass))
    # the whole grid of DASH's and the baseline's tuning, and DASH + the baseline + the random draws retrained
    assert f["tune"] == pytest.approx(B.stage_seconds(FAKE_COSTS, "tune", plan["tune"]["steps"], per_pass,
                                                      configs=cfg.tune.n_configs()))
    assert f["retrain"] == pytest.approx(B.stage_seconds(FAKE_COSTS, "retrain", plan["retrain"]["steps"], per_pass,
                                                         draws=cfg.random_draws))
    assert f["total"] == pytest.approx(f["search"] + f["tune"] + f["retrain"] + FAKE_COSTS["after"])
    assert B.forecast_seconds(FAKE_COSTS, cfg.override(tune_enabled=False), B.run_plan(
        task, cfg.override(tune_enabled=False)))["tune"] == 0.0
    # 2000 search steps at 0.1 s: 200 s of search alone
    assert f["search"] > 200


def test_a_preset_run_forecast_far_over_its_promise_warns_with_the_forecast_and_the_budget_to_use():
    forecast = {"search": 1500.0, "tune": 200.0, "retrain": 600.0, "after": 5.0, "total": 2305.0}
    with pytest.warns(B.LongRunWarning, match=r"acsf1: the standard preset's steps are forecast to take about "
                                              r"38 min on this machine \(search 25 min, tune 3 min, retrain 10 min; "
                                              r"one search step 0.85 s.*where the preset is meant to take about 5 "
                                              r"min on 2 CPU cores.*"
                                              r"budget='5m' \(--budget 5m\)"):
        assert B.warn_if_long("standard", forecast, {**FAKE_COSTS, "search_step": 0.85}, "acsf1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # within twice the promise, and presets that promise no time (paper) or seconds (smoke): no warning
        assert not B.warn_if_long("standard", {**forecast, "total": 590.0}, FAKE_COSTS, "t")
        assert not B.warn_if_long("paper", forecast, FAKE_COSTS, "t")
        assert not B.warn_if_long("smoke", forecast, FAKE_COSTS, "t")


def test_run_measures_and_warns_before_a_long_standard_run_only(tmp_path, monkeypatch):
    calls = []

    def slow(task, cfg, device, figures=True):  # a machine on which every step takes seconds
        calls.append(cfg.search.steps)
        return {**{k: 1e4 * v for k, v in FAKE_COSTS.items()}, "after": 0.5}

    fake_costs(monkeypatch, slow)
    task = tiny_task()
    with pytest.warns(B.LongRunWarning, match=r"tiny: the standard preset's steps are forecast") as got:
        pipeline.run(task, preset="standard", out=tmp_path / "run", figures=False, verbose=False, **STEPS)
    assert calls == [STEPS["search_steps"]]  # measured once, with the run's own config
    assert got[0].filename == __file__  # the warning names the caller's line
    pipeline.run(task, preset="standard", out=tmp_path / "run", figures=False, verbose=False, **STEPS)
    assert len(calls) == 1  # a resumed run is not forecast again
    pipeline.run(task, preset="smoke", out=tmp_path / "smoke", figures=False, verbose=False, **STEPS)
    assert len(calls) == 1  # smoke promises seconds, not minutes: nothing measured


def test_measured_epoch_writes_are_a_median_so_one_stalled_write_does_not_shrink_the_plan(monkeypatch):
    """One write that stalled (a disk flush) once made a 5-minute plan 30% shorter: every epoch's cost carries it."""
    from dashkit import rundir

    real, calls = rundir.save_tensors, []

    def stalling(path, state, *args, **kwargs):
        calls.append(path)
        real(path, state, *args, **kwargs)
        if len(calls) == 1:
            time.sleep(1.5)  # the first write (a search epoch's checkpoint) stalls, far longer than a write takes

    monkeypatch.setattr(rundir, "save_tensors", stalling)
    task = tiny_task()
    measured = costs.measure_costs(task, make_config("smoke", task.defaults, search_backend="fft"),
                                   torch.device("cpu"), figures=False)
    # the median of three leaves the stall out (a write on a busy 2-core CI machine once took 0.5 s, so the bound
    # is the stall's, not a speed)
    assert len(calls) >= 6 and measured["search_writes"] < 1.0 and measured["retrain_writes"] < 1.0
    assert "checkpoint" not in measured  # the epochs' files are measured as written, not as a probe
    with pytest.raises(ValueError, match=r"costs\['retrain_writes'\] = None: expected a measured number of "
                                         r"seconds >= 0 \(the files of an epoch: search_writes and retrain_writes, "
                                         r"or checkpoint\)"):
        B.plan_budget(60.0, {k: v for k, v in measured.items() if k != "retrain_writes"},
                      make_config("smoke", task.defaults), {"search": 1, "tune": 1, "retrain": 1})


def test_the_search_step_is_measured_as_the_configured_scheme_takes_it(monkeypatch):
    """A bilevel step is two passes (alpha's on its own batch): a time budget that costed it as single-level
    overran its search share by about 65% on OSULeaf (RESULTS.md)."""
    seen = []
    real = costs.search_step

    def recording(model, task, x, y, *args, val_batch=None, **kwargs):
        seen.append(None if val_batch is None else tuple(val_batch[0].shape))
        return real(model, task, x, y, *args, val_batch=val_batch, **kwargs)

    monkeypatch.setattr(costs, "search_step", recording)
    task = tiny_task()
    cpu = torch.device("cpu")
    costs.measure_costs(task, make_config("smoke", task.defaults, search_backend="fft"), cpu, figures=False)
    assert seen and set(seen) == {None}
    seen.clear()
    cfg = make_config("smoke", task.defaults, search_backend="fft", search_scheme="bilevel", search_arch_holdout=0.5,
                      search_batch_size=32)
    costs.measure_costs(task, cfg, cpu, figures=False)
    assert seen and set(seen) == {(32,) + tuple(task.in_shape)}  # a batch of the held-out half (48 examples)


def test_the_random_draws_are_costed_as_they_will_be_drawn_not_as_the_typical_architecture(monkeypatch):
    """With ``random_draws=2`` `measure_costs` steps the two architectures the control will retrain (the run's seed
    fixes them: `random_card` on the same layers) beside the other networks, and ``random_step`` /
    ``random_eval`` are the means of theirs; the timings are stood in for (nothing is timed here)."""
    from dashkit.stages.control import random_card

    def signature(model):
        return [(m.kernel_size[0], m.dilation[0]) for m in model.modules() if isinstance(m, torch.nn.Conv1d)
                and m.kernel_size[0] > 1]

    task = tiny_task()
    cfg = make_config("smoke", task.defaults, search_backend="fft", random_draws=2, seed=3)
    typical = costs.typical_card(costs.build_supernet(task, cfg))
    expected = [signature(costs.build_model(task, cfg, random_card(typical, 3, i))) for i in range(2)]
    assert expected[0] != expected[1] and signature(costs.build_model(task, cfg, typical)) not in expected
    stepped = {}
    real_rounds = costs.timed_rounds

    def rounds(steps, **k):
        assert set(steps) == {"search_step", "dash_step", "baseline_step", "random_0_step", "random_1_step"}
        real_rounds(steps, **{**k, "rounds": 1})  # every step runs once; the times below are made up
        return {"search_step": [1.0] * 3, "dash_step": [0.5] * 3, "baseline_step": [0.25] * 3,
                "random_0_step": [2.0, 0.7, 9.0], "random_1_step": [3.0, 1.3, 1.3]}

    real_step = costs.train_step

    def recording(model, *a, **k):
        stepped.setdefault(id(model), signature(model))
        return real_step(model, *a, **k)

    monkeypatch.setattr(costs, "timed_rounds", rounds)
    monkeypatch.setattr(costs, "train_step", recording)
    passes = iter([0.1, 0.2, 0.3, 0.5])  # dash, baseline, random_0, random_1
    monkeypatch.setattr(costs, "best_time", lambda fn, *a, **k: (fn(), next(passes))[1])
    measured = costs.measure_costs(task, cfg, torch.device("cpu"), figures=False)
    assert all(sig in stepped.values() for sig in expected)  # the draws the control retrains were stepped
    assert measured["random_step"] == pytest.approx((2.0 + 1.3) / 2)  # the mean of the draws' medians
    assert measured["random_eval"] == pytest.approx((0.3 + 0.5) / 2)
    assert measured["dash_step"] == 0.5 and measured["baseline_eval"] == 0.2
    assert not any(key.startswith("random_0") or key.startswith("random_1") for key in measured)
    monkeypatch.setattr(costs, "timed_rounds", real_rounds)
    monkeypatch.setattr(costs, "best_time", lambda fn, *a, **k: (fn(), 0.1)[1])
    alone = costs.measure_costs(task, cfg.override(random_draws=0), torch.device("cpu"), figures=False, rounds=1)
    assert "random_step" not in alone and "random_eval" not in alone  # no draws: the plan costs none


def test_an_epochs_files_are_costed_as_measured_or_else_as_checkpoint_writes():
    """`epoch_writes`: the measured files of one epoch when the costs have them; else (records made before)
    SEARCH_EPOCH_WRITES / RETRAIN_EPOCH_WRITES supernet-sized writes; the stages' seconds count them."""
    per_pass = {"search": 1, "tune": 1, "retrain": 1}
    old = dict(FAKE_COSTS)
    assert B.epoch_writes(old, "search") == pytest.approx(B.SEARCH_EPOCH_WRITES * old["checkpoint"])
    assert B.epoch_writes(old, "retrain") == pytest.approx(B.RETRAIN_EPOCH_WRITES * old["checkpoint"])
    new = {**old, "search_writes": 0.02, "retrain_writes": 0.003}
    assert B.epoch_writes(new, "search") == 0.02 and B.epoch_writes(new, "retrain") == 0.003
    epochs = B.epochs_for(30, 1)
    assert B.stage_seconds(new, "search", 30, per_pass) == pytest.approx(30 * 0.1 + epochs * 0.02)
    # DASH and the baseline: a step, a validation pass and the files of an epoch each
    assert B.stage_seconds(new, "retrain", 30, per_pass) == pytest.approx(
        30 * (0.05 + 0.05) + epochs * (0.01 + 0.01 + 2 * 0.003))
    assert B.stage_seconds(new, "retrain", 30, per_pass, draws=1) == pytest.approx(
        30 * (0.05 + 0.05 + 0.05) + epochs * (0.01 + 0.01 + 0.01 + 3 * 0.003))
    with pytest.raises(ValueError, match="stage = 'tune'"):
        B.epoch_writes(new, "tune")


def test_an_epochs_files_are_timed_as_the_search_and_the_retraining_write_them(monkeypatch):
    """`measure_costs` writes a search epoch's files (the supernet's checkpoint with both optimisers, its history)
    and a retraining epoch's (a discrete network's checkpoint with its SGD state, its history) as the stages do."""
    from dashkit.rundir import RunDir
    from dashkit.supernet import dash_layers

    saved, histories = [], []
    real_save, real_history = RunDir.save_checkpoint, RunDir.write_history

    def save(self, stage, epoch, model, optimizers, extra=None):
        saved.append((stage, bool(list(dash_layers(model))), tuple(sorted(optimizers)),
                      tuple(sorted(extra or {})), any(optimizers[k].state for k in optimizers)))
        return real_save(self, stage, epoch, model, optimizers, extra)

    def history(self, stage, rows):
        histories.append((stage, len(rows)))
        return real_history(self, stage, rows)

    monkeypatch.setattr(RunDir, "save_checkpoint", save)
    monkeypatch.setattr(RunDir, "write_history", history)
    task = tiny_task()
    measured = costs.measure_costs(task, make_config("smoke", task.defaults, search_backend="fft"),
                                   torch.device("cpu"), figures=False)
    assert measured["search_writes"] > 0 and measured["retrain_writes"] > 0
    assert set(saved) == {("search", True, ("arch", "weights"), ("alphas", "history", "seconds"), True),
                          ("retrain", False, ("sgd",), ("best_epoch", "best_val", "history", "seconds"), True)}
    assert len(saved) == 6 and set(histories) == {("search", B.EPOCHS_MAX // 2), ("retrain", B.EPOCHS_MAX // 2)}


def test_the_searched_network_is_timed_against_the_typical_one_the_plan_costed(monkeypatch):
    """`measure_chosen` steps DASH's searched network and the typical architecture (`typical_card`) side by side
    and returns the ratios of their medians; the timings are stood in for (nothing is timed here)."""
    task = tiny_task()
    cfg = make_config("smoke", task.defaults, search_backend="fft")
    typical = costs.typical_card(costs.build_supernet(task, cfg))
    space = typical.space
    widest = max(space.candidates, key=lambda kd: (kd[0] - 1) * kd[1])
    chosen = dataclasses.replace(typical, layers=[dataclasses.replace(layer, k=widest[0], d=widest[1])
                                                  for layer in typical.layers])
    assert widest != (typical.layers[0].k, typical.layers[0].d)
    stepped = []
    real_step = costs.train_step

    def recording(model, *a, **k):
        stepped.append(sorted({m.kernel_size[0] * 100 + m.dilation[0] for m in model.modules()
                               if isinstance(m, torch.nn.Conv1d)}))
        return real_step(model, *a, **k)

    monkeypatch.setattr(costs, "train_step", recording)
    real_rounds = costs.timed_rounds

    def rounds(steps, **k):
        real_rounds(steps, **{**k, "rounds": 1})  # the steps run (recorded above); their times are made up
        return {"chosen": [3.0, 2.0, 9.0], "typical": [1.0, 1.0, 1.0]}

    monkeypatch.setattr(costs, "timed_rounds", rounds)
    passes = iter([0.5, 0.25])  # chosen, then typical
    monkeypatch.setattr(costs, "best_time", lambda fn, *a, **k: (fn(), next(passes))[1])
    ratios = costs.measure_chosen(task, cfg, chosen, torch.device("cpu"))
    assert ratios == {"step": 3.0, "eval": 2.0}  # medians 3.0 / 1.0; 0.5 / 0.25
    k, d = widest
    assert any(k * 100 + d in s for s in stepped)  # the searched network was stepped
    tk, td = typical.layers[0].k, typical.layers[0].d
    assert any(tk * 100 + td in s and k * 100 + d not in s for s in stepped)  # and the typical one


# ------------------------------------------------------------------- the standard preset's time cap
SLOW = {**{k: 25 * v for k, v in FAKE_COSTS.items()}, "after": 0.5}  # 2000 search steps: 5000 s, far over 300
# the tiny task's settings that leave the steps to the preset (no steps, epochs or trials of any stage)
UNCOUNTED = {k: v for k, v in STEPS.items() if not k.endswith("_steps")}


def test_a_standard_run_forecast_over_its_five_minutes_is_fit_to_them_and_resumes_with_that_plan(tmp_path,
                                                                                                  monkeypatch):
    calls = []

    def slow(task, cfg, device, figures=True):
        calls.append(cfg.search.steps)
        return dict(SLOW)

    fake_costs(monkeypatch, slow)
    task = tiny_task()
    with pytest.warns(B.LongRunWarning, match=r"tiny: the standard preset's steps are forecast to take about \d+ min "
                                              r"on this machine .*: the run is fit to those 5 min instead, as "
                                              r"budget='5m' fits it: \d+ search steps of the preset's 2000 and \d+ "
                                              r"retraining steps of its 2000 .*can end far from what its steps reach: "
                                              r"time_cap=False \(--no-time-cap\) keeps") as got:
        first = pipeline.run(task, preset="standard", out=tmp_path / "run", figures=False, verbose=False,
                             random_draws=0, **UNCOUNTED)
    assert got[0].filename == __file__
    assert calls == [2000]  # measured once, with the preset's own steps, and reused by the plan
    said = re.search(r"(\d+) search steps of the preset's 2000", str(got[0].message))
    assert int(said.group(1)) == first.plan["search"]["steps"]  # the warning gives the plan the run ran
    cap = first.budget["time_cap"]
    assert cap["preset"] == "standard" and cap["promise_seconds"] == 300.0 and cap["forecast_seconds"] > 2000 * 2.5
    assert first.budget["seconds"] == 300.0 and first.budget["planned_seconds"] <= 300.0
    ceilings = first.budget["ceilings"]  # no stage above the preset's own steps
    assert ceilings == {"search": 2000, "tune": 300, "retrain": 2000}
    assert all(first.plan[s]["steps"] <= ceilings[s] for s in ("search", "retrain"))
    # the plan is the 5-minute budget's: far fewer steps than the preset's 2000, the same as budget="5m" plans them
    steps = {s: first.plan[s]["steps"] for s in ("search", "retrain")}
    assert 10 < steps["search"] < 200 and steps["retrain"] < 2000
    monkeypatch.setattr(pipeline, "_run", lambda task, cfg, *a, **k: cfg)
    as_budget = pipeline.run(task, preset="standard", out=tmp_path / "b", budget="5m", random_draws=0, **UNCOUNTED)
    assert as_budget.search.steps == pytest.approx(steps["search"], rel=0.05)
    assert "standard preset's steps were forecast at" in B.format_plan(first.plan, first.budget)
    assert "standard preset's steps were forecast at" in show(tmp_path / "run")
    # resumed: nothing is measured again, no warning, and the capped plan (re-plans included) is kept
    with warnings.catch_warnings():
        warnings.simplefilter("error", B.LongRunWarning)
        again = pipeline.run(task, preset="standard", out=tmp_path / "run", random_draws=0, **UNCOUNTED)
    assert len(calls) == 2  # the budget="5m" run above measured once; the resume did not
    assert again.search.steps == steps["search"] and again.retrain.steps == steps["retrain"]


def test_without_the_time_cap_or_with_steps_given_a_slow_standard_run_keeps_the_preset_steps(tmp_path,
                                                                                              monkeypatch):
    fake_costs(monkeypatch, lambda task, cfg, device, figures=True: dict(SLOW))
    monkeypatch.setattr(pipeline, "_run", lambda task, cfg, *a, **k: cfg)  # the plan only
    task = tiny_task()
    with pytest.warns(B.LongRunWarning, match=r"budget='5m' \(--budget 5m\) fits the steps to that time"):
        cfg = pipeline.run(task, preset="standard", out=tmp_path / "a", time_cap=False, **UNCOUNTED)
    assert (cfg.search.steps, cfg.retrain.steps) == (2000, 2000)
    fake_costs(monkeypatch, lambda task, cfg, device, figures=True: {k: 1e4 * v for k, v in SLOW.items()})
    with pytest.warns(B.LongRunWarning, match=r"budget='5m' \(--budget 5m\) fits the steps to that time"):
        cfg = pipeline.run(task, preset="standard", out=tmp_path / "b", **STEPS)  # steps given: kept as given
    assert (cfg.search.steps, cfg.retrain.steps) == (STEPS["search_steps"], STEPS["retrain_steps"])
    # a machine on which not one step of every stage fits the five minutes: the preset's steps, and the warning
    fake_costs(monkeypatch, lambda task, cfg, device, figures=True: {**SLOW, "search_step": 400.0})
    with pytest.warns(B.LongRunWarning, match=r"fits the steps to that time"):
        cfg = pipeline.run(task, preset="standard", out=tmp_path / "c", **UNCOUNTED)
    assert cfg.search.steps == 2000
    # a forecast within 15% of the promise runs the preset's steps, with no warning
    fake_costs(monkeypatch, lambda task, cfg, device, figures=True: {k: v / 100 for k, v in SLOW.items()})
    with warnings.catch_warnings():
        warnings.simplefilter("error", B.LongRunWarning)
        cfg = pipeline.run(task, preset="standard", out=tmp_path / "d", **UNCOUNTED)
    assert cfg.search.steps == 2000
    with pytest.raises(TypeError, match=r"time_cap = 'no': expected True .* or False"):
        pipeline.run(task, preset="standard", out=tmp_path / "e", time_cap="no", **UNCOUNTED)


def test_cli_no_time_cap_reaches_run(monkeypatch):
    from dashkit import __main__ as cli

    seen = {}
    monkeypatch.setattr(pipeline, "run", lambda *a, **k: seen.update(k) or (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        cli.main(["run", "mnist1d", "--no-time-cap"])
    assert seen["time_cap"] is False
    assert cli._parser().parse_args(["run", "mnist1d"]).time_cap is True


def test_a_long_run_warning_names_the_settings_that_make_the_steps_cheaper():
    """A many-class series task gets DASH's widest network (64 channels from 20 classes): the warning says so."""
    cfg = make_config("standard", backbone="resnet1d", backbone_kwargs={})
    said = B.cheaper_steps(cfg, 52)
    assert "DASH's width rule gives 52 classes 64 channels; backbone_kwargs={'width': 4}" in said
    assert "random_draws=2: each is retrained" in said and said.endswith("(kernel_sizes, dilations) or shorter inputs")
    assert "width rule gives 12 classes 16 channels" in B.cheaper_steps(cfg, 12)
    # below 10 classes the rule gives 4 already; a width set by hand, or another backbone, is not second-guessed
    for c, n in ((cfg, 9), (cfg.override(backbone_kwargs={"width": 8}), 52),
                 (cfg.override(retrain_backbone={"width": 8}), 52),
                 (make_config("standard", backbone="wrn", backbone_kwargs={}), 52)):
        assert "width" not in B.cheaper_steps(c, n)
    assert "random_draws" not in B.cheaper_steps(cfg.override(random_draws=0), 52)


def test_a_capped_many_class_series_run_warns_that_a_narrower_network_buys_more_steps(tmp_path, monkeypatch):
    fake_costs(monkeypatch, lambda task, cfg, device, figures=True: dict(SLOW))
    monkeypatch.setattr(pipeline, "_run", lambda *a, **k: (_ for _ in ()).throw(_Planned()))  # stop once planned
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((240, 1, 16)).astype(np.float32), np.arange(240) % 12
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSplitWarning)
        task = dashkit.tasks.from_arrays(x, y, name="twelve", seed=0)
    with pytest.warns(B.LongRunWarning, match=r"twelve: .*the run is fit to those 5 min instead.*the five minutes buy "
                                              r"more of them with a narrower network \(DASH's width rule gives 12 "
                                              r"classes 16 channels; backbone_kwargs=\{'width': 4\}"):
        with pytest.raises(_Planned):
            pipeline.run(task, preset="standard", out=tmp_path / "run", figures=False, verbose=False)


class _Planned(Exception):
    """Raised in place of the stages once a run is planned."""
