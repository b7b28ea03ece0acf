"""Small data handled as a statistician would: on a validation split too small to rank configurations, no tuning
(``tune_small_val="skip"``, the default) or a tuning that cross-validates over train + val (``"cv"``) and keeps
the defaults unless beaten beyond the folds' noise, the fall-back to no tuning, the retraining that keeps its last
epoch on such a split, and the time budget that counts the folds. The tests here ask for "cv" unless they say
otherwise (this module's `make_config`).
"""
from __future__ import annotations

import math
import statistics
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

import dashkit
import dashkit.__main__
from dashkit import budget as B
from dashkit import pipeline
from dashkit.config import RunConfig
from dashkit.config import make_config as preset_config
from dashkit.rundir import RunDir
from dashkit.stages import trials
from dashkit.stages.common import StageContext, as_run_dir, stage_seed
from dashkit.stages.models import initial_state
from dashkit.stages.tune import DEFAULTS_MARGIN_SE, SmallValidationWarning, TuningUndecidedWarning, against_defaults, \
    tune, walk_lr_blocks
from dashkit.tasks.base import SmallSplitWarning, Task, TaskDefaults, kfold_indices, split_targets

from test_budget import FAKE_COSTS, STEPS, fake_costs
from test_pipeline import tiny_task


def make_config(preset, *args, **settings):
    """`dashkit.config.make_config` with the cross-validated tuning (``tune_small_val="cv"``) unless asked otherwise."""
    return preset_config(preset, *args, **{"tune_small_val": "cv", **settings})


def three_bumps(n: int, seed: int) -> tuple:
    """x (n, 1, 32): noise and a bump whose place says the class (3 classes, n / 3 each); y (n,) in 0..2."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = 0.3 * torch.randn(n, 1, 32, generator=g)
    for c in range(3):
        x[y == c, 0, 8 * c + 4: 8 * c + 8] += 2.0
    return x.numpy(), y.numpy()


def arrowhead_like() -> Task:
    """36 training examples and 3 classes like ArrowHead; the validation split carved from them is tiny."""
    x, y = three_bumps(36, 0)
    x_test, y_test = three_bumps(60, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSplitWarning)
        task = dashkit.tasks.from_arrays(x, y, x_test=x_test, y_test=y_test, name="arrowhead_like", seed=0,
                                         backbone="resnet1d")
    task.defaults.backbone_kwargs = {"width": 2}
    return task


def pooled_labels(task: Task) -> torch.Tensor:
    return split_targets(trials.cv_pool(task)).long()


# ------------------------------------------------------------------------------------------------------ folds
def test_folds_are_stratified_disjoint_cover_train_and_val_and_do_not_depend_on_the_configuration():
    task = arrowhead_like()
    assert task.too_small("val") and len(task.train) + len(task.val) == 36
    cfg = make_config("smoke", task.defaults)
    folds, why = trials.cv_folds(task, cfg)
    assert why is None and len(folds) == cfg.tune.cv_folds == 5
    flat = [i for f in folds for i in f]
    assert sorted(flat) == list(range(36)) and len(set(flat)) == 36  # disjoint, and cover train + val
    labels = pooled_labels(task)
    for c in range(3):
        counts = [int((labels[f] == c).sum()) for f in folds]
        assert sum(counts) == int((labels == c).sum()) and max(counts) - min(counts) <= 1 and min(counts) >= 1
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    # every configuration (and the baseline's tuning) gets the same folds: they depend on the seed and k alone
    other = make_config("smoke", task.defaults, tune_lrs=(0.5,), tune_dropouts=(0.3,), tune_steps=7)
    assert trials.cv_folds(task, other)[0] == folds == trials.cv_folds(task, cfg)[0]
    assert trials.cv_folds(task, make_config("smoke", task.defaults, seed=1))[0] != folds
    assert folds == kfold_indices(36, 5, stage_seed(0, "tune_cv"), pooled_labels(task))
    assert trials.tuning_scoring(task, cfg)[:2] == ("cv", folds)
    assert trials.tuning_scoring(task, cfg.override(tune_small_val="skip"))[0] == "skip"
    assert trials.tuning_scoring(task, cfg.override(tune_small_val="tune"))[0] == "val"
    assert trials.tuning_scoring(tiny_task(), cfg)[0] == "val"  # a validation split of 48: no folds


def test_plain_kfold_without_labels_and_bad_fold_counts():
    folds = kfold_indices(11, 3, seed=4)
    assert sorted(i for f in folds for i in f) == list(range(11)) and sorted(map(len, folds)) == [3, 4, 4]
    assert kfold_indices(11, 3, seed=4) == folds != kfold_indices(11, 3, seed=5)
    for k, n in ((1, 10), (0, 10), (5, 4)):
        with pytest.raises(ValueError, match=r"folds of n"):
            kfold_indices(n, k, seed=0)


@pytest.mark.parametrize("value", [1, 0, "x"])
def test_bad_cv_fold_counts_are_refused_naming_the_setting(value):
    with pytest.raises((ValueError, TypeError), match=r"tune_cv_folds = .*expected"):
        make_config("smoke", tune_cv_folds=value)
    with pytest.raises(ValueError, match=r"tune_small_val = 'kfold': expected one of cv, skip, tune"):
        make_config("smoke", tune_small_val="kfold")


# ---------------------------------------------------------------------------------------- tuning by folds
def test_a_tiny_task_is_tuned_by_cross_validation_and_retrained_to_its_last_epoch(tmp_path):
    task = arrowhead_like()
    with pytest.warns(SmallValidationWarning) as caught:
        res = pipeline.run(task, preset="smoke", out=tmp_path / "run", figures=False, verbose=False,
                           **{**STEPS, "tune_steps": 30, "tune_small_val": "cv"})
    texts = [str(w.message) for w in caught if issubclass(w.category, SmallValidationWarning)]
    assert any(t.startswith("tune: the val split has") and "5-fold cross-validation over train + val (36 examples)"
               in t for t in texts)
    assert any("the last epoch is kept" in t for t in texts)
    rd = RunDir(tmp_path / "run")
    cfg = RunConfig.from_dict(rd.read_json("config.json")["config"])
    folds = trials.cv_folds(task, cfg)[0]
    for stage in ("tune", "baseline_tune"):
        report = rd.read_json(f"{stage}.json")
        assert report["scored_by"] == "cv" and report["folds"] == 5 and report["skipped"] is None
        assert report["fold_sizes"] == [len(f) for f in folds]
        done = [t for t in report["trials"] if t["state"] == "complete"]
        assert len(done) == 2
        for t in report["trials"]:
            assert t["scored_by"] == "cv" and t["folds"] == 5
        for t in done:
            assert len(t["fold_values"]) == 5
            assert t["value"] == pytest.approx(math.fsum(t["fold_values"]) / 5, rel=1e-12, abs=1e-12)
            assert t["sd"] == pytest.approx(statistics.stdev(t["fold_values"]), rel=1e-12)
        assert report["best_val"] == min(t["value"] for t in done)
        # the chance level is that of train + val pooled: the majority class's share of 36 examples, 12 each
        assert report["chance_val"] == pytest.approx(100 * (1 - 12 / 36), rel=1e-6)  # a float32 metric
    assert rd.read_json("tune.json")["folds_digest"] == rd.read_json("baseline_tune.json")["folds_digest"]
    # the stored fold values are what training each fold gives: one trial of the baseline, recomputed
    report = rd.read_json("baseline_tune.json")
    first = next(t for t in report["trials"] if t["state"] == "complete")
    hp = {k: first[k] for k in trials.HP_NAMES}
    ctx = StageContext(task, cfg, rd, torch.device("cpu"), "baseline_tune", None,
                       initial_state(task, cfg, rd, None, "baseline"))
    assert trials.cross_validate(hp, ctx, folds) == first["fold_values"]
    # the retraining keeps the last epoch: the split cannot pick one
    metrics = rd.read_json("metrics.json")
    epochs = B.stage_plan(task, cfg, "retrain").epochs
    for name in ("dash", "baseline"):
        assert metrics[name]["selected_by"] == "last" and metrics[name]["best_epoch"] == epochs
        rows = rd.read_history(f"{'retrain' if name == 'dash' else 'baseline_retrain'}")
        assert metrics[name]["val"] == pytest.approx(float(rows[-1]["val_metric"]))
    assert res.metrics["dash"] == metrics["dash"]["test"]


def test_the_folds_and_their_values_survive_a_resumed_tuning(tmp_path, monkeypatch):
    task = arrowhead_like()
    cfg = make_config("smoke", task.defaults, tune_storage="tune.journal", **STEPS)
    rd = as_run_dir(tmp_path / "run", task, cfg)
    with pytest.warns(SmallValidationWarning):
        first = tune(task, cfg, rd, None)
    before = rd.read_json("baseline_tune.json")
    (rd.path / "baseline_tune.json").unlink()  # as if the run had stopped after its last trial
    for marker in rd.path.glob("done/baseline_tune*"):
        marker.unlink()

    def no_training(*a, **k):
        raise AssertionError("a resumed tuning reads its finished trials from the journal")

    monkeypatch.setattr(trials, "run_trial", no_training)
    with pytest.warns(SmallValidationWarning):
        again = tune(task, cfg, RunDir(tmp_path / "run"), None)
    after = RunDir(tmp_path / "run").read_json("baseline_tune.json")
    assert again == first and after["folds_digest"] == before["folds_digest"]
    strip = lambda ts: [{k: v for k, v in t.items() if k != "seconds"} for t in ts]  # noqa: E731
    assert strip(after["trials"]) == strip(before["trials"])
    assert all(len(t["fold_values"]) == 5 for t in after["trials"] if t["state"] == "complete")


def test_tuning_falls_back_to_skip_when_train_and_val_cannot_fill_the_folds(tmp_path):
    g = torch.Generator().manual_seed(0)
    y_train = torch.tensor([0] * 10 + [1] * 8 + [2] * 2)
    y_val = torch.tensor([0, 0, 1, 2])
    make = lambda y: TensorDataset(torch.randn(len(y), 1, 16, generator=g), y)  # noqa: E731
    task = Task(name="few", kind="classification", train=make(y_train), val=make(y_val), test=make(y_val),
                in_shape=(1, 16), num_outputs=3, metric_name="error_pct",
                defaults=TaskDefaults(backbone="resnet1d", backbone_kwargs={"width": 2}, kernel_sizes=(3,),
                                      dilations=(1,)))
    cfg = make_config("smoke", task.defaults, **STEPS)
    assert trials.cv_folds(task, cfg) == (None, "train + val (24 examples) cannot fill tune_cv_folds = 5 folds "
                                                "with every class in each: class 2 has 3")
    assert B.run_plan(task, cfg)["tune"]["folds"] == 1
    with pytest.warns(SmallValidationWarning, match=r"baseline_tune: skipped, the val split has 4 samples .*"
                                                    r"\(tune_small_val='cv' could not cross-validate instead: .*"
                                                    r"class 2 has 3"):
        hp = tune(task, cfg, tmp_path / "run", None)
    report = RunDir(tmp_path / "run").read_json("baseline_tune.json")
    assert hp == report["best"] == {"lr": 0.1, "dropout": 0.0, "weight_decay": 5e-4, "momentum": 0.9}
    assert report["trials"] == [] and report["scored_by"] is None
    # 3 folds fit (class 2 has 3 examples)
    assert trials.cv_folds(task, cfg.override(tune_cv_folds=3))[1] is None


def test_a_normal_validation_split_keeps_the_best_epoch(tmp_path):
    task = tiny_task()
    assert not task.too_small("val")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallValidationWarning)
        res = pipeline.run(task, preset="smoke", out=tmp_path / "run", figures=False, verbose=False,
                           tune_enabled=False, **STEPS)
    rd = RunDir(tmp_path / "run")
    rows = rd.read_history("retrain")
    vals = [float(r["val_metric"]) for r in rows]
    entry = rd.read_json("metrics.json")["dash"]
    assert entry["selected_by"] == "best_val" == rd.read_json("metrics.json")["baseline"]["selected_by"]
    assert res.metrics["dash"] == entry["test"]
    assert entry["best_epoch"] == vals.index(min(vals)) + 1
    assert B.run_plan(task, make_config("smoke", task.defaults))["tune"]["folds"] == 1


# ------------------------------------------------------------------------------- the defaults, beaten or not
@pytest.mark.parametrize("defaults, best", [
    ([30.0, 27.5, 40.0, 25.0, 22.5], [30.0, 32.5, 30.0, 40.0, 15.0]),  # OSULeaf's first tuning: a tie with noise
    ([20.0, 25.0, 30.0, 20.0, 25.0], [15.0, 19.0, 26.0, 14.0, 20.0]),  # better on every fold, by 4 to 6
    ([10.0, 10.0, 10.0], [12.0, 11.0, 10.5]),  # worse
])
def test_against_defaults_is_a_paired_test_over_the_folds(defaults, best):
    d = np.asarray(defaults, dtype=np.float64) - np.asarray(best, dtype=np.float64)
    gain, se = d.mean(), d.std(ddof=1) / np.sqrt(len(d))
    out = against_defaults(defaults, best)
    assert out["gain"] == pytest.approx(gain, rel=1e-12) and out["se"] == pytest.approx(se, rel=1e-12)
    assert out["folds"] == len(d) and out["margin_se"] == DEFAULTS_MARGIN_SE
    assert out["beats_defaults"] is bool(gain > DEFAULTS_MARGIN_SE * se and gain > 0)
    assert [against_defaults(defaults, best)["beats_defaults"] for _ in range(2)] == [out["beats_defaults"]] * 2


def test_against_defaults_edge_cases():
    assert against_defaults([5.0, 5.0], [4.0, 4.0]) == {"gain": 1.0, "se": 0.0, "folds": 2, "margin_se": 2.0,
                                                        "beats_defaults": True}  # the same gain on every fold
    assert against_defaults([5.0, 5.0], [5.0, 5.0])["beats_defaults"] is False  # a tie is not a gain
    assert against_defaults([5.0], [1.0])["beats_defaults"] is False  # one fold has no error bar
    with pytest.raises(ValueError, match=r"default_folds \(2 values\) and best_folds \(3\)"):
        against_defaults([1.0, 2.0], [1.0, 2.0, 3.0])


def fold_values_by_lr(monkeypatch, by_lr):
    """Stand in for the folds' training: configuration lr -> its five held-out errors."""
    def fake(hp, ctx, folds):
        assert len(folds) == 5
        return list(by_lr[hp["lr"]])
    monkeypatch.setattr(trials, "cross_validate", fake)


@pytest.mark.parametrize("undecided", ["retrain_defaults", "best"])
def test_a_cross_validated_winner_within_the_noise_leaves_the_defaults(tmp_path, monkeypatch, undecided):
    task = arrowhead_like()
    cfg = make_config("smoke", task.defaults, tune_undecided=undecided, **STEPS)
    # lr 0.01 ranks first on the mean (27.0 against 29.0) but loses two folds of five: noise
    fold_values_by_lr(monkeypatch, {0.1: [30.0, 27.5, 40.0, 25.0, 22.5], 0.01: [25.0, 32.5, 30.0, 22.5, 25.0]})
    with pytest.warns(TuningUndecidedWarning) as caught:
        hp = tune(task, cfg, tmp_path / "run", None)
    text = next(str(w.message) for w in caught if issubclass(w.category, TuningUndecidedWarning))
    defaults = {"lr": 0.1, "dropout": 0.0, "weight_decay": 5e-4, "momentum": 0.9}
    report = RunDir(tmp_path / "run").read_json("baseline_tune.json")
    best = {**defaults, "lr": 0.01}
    assert report["best_trial"] == best and report["best_val"] == pytest.approx(27.0)
    assert report["decided"] is True  # far below the input-ignoring guess (66.7% error): it is the defaults' test
    vs = report["vs_defaults"]
    assert vs["defaults"] == defaults and vs["beats_defaults"] is False and vs["folds"] == 5
    assert vs["gain"] == pytest.approx(2.0) and vs["se"] == pytest.approx(np.std([5, -5, 10, 2.5, -2.5], ddof=1)
                                                                           / np.sqrt(5))
    assert "baseline_tune: the best configuration" in text and "by 2 error_pct on average over 5 folds" in text
    if undecided == "retrain_defaults":
        assert hp == report["best"] == defaults and "not used: retraining with the retrain_*" in text
    else:
        assert hp == report["best"] == best and "kept anyway (tune_undecided='best')" in text
    shown = dashkit.__main__.show(tmp_path / "run")
    assert "within the noise of the retrain defaults: 2 +- 2.67 over 5 folds" in shown


def test_a_cross_validated_winner_beyond_the_noise_is_kept(tmp_path, monkeypatch):
    task = arrowhead_like()
    cfg = make_config("smoke", task.defaults, **STEPS)
    fold_values_by_lr(monkeypatch, {0.1: [20.0, 25.0, 30.0, 20.0, 25.0], 0.01: [15.0, 19.0, 26.0, 14.0, 20.0]})
    with warnings.catch_warnings():
        warnings.simplefilter("error", TuningUndecidedWarning)
        warnings.simplefilter("ignore", SmallValidationWarning)
        hp = tune(task, cfg, tmp_path / "run", None)
    report = RunDir(tmp_path / "run").read_json("baseline_tune.json")
    assert hp == report["best"] == report["best_trial"] and hp["lr"] == 0.01
    assert report["vs_defaults"]["beats_defaults"] is True and report["vs_defaults"]["gain"] == pytest.approx(5.2)
    assert "beat the retrain defaults: 5.2 +- " in dashkit.__main__.show(tmp_path / "run")


def test_no_comparison_when_the_defaults_win_or_are_not_in_the_grid(tmp_path, monkeypatch):
    task = arrowhead_like()
    fold_values_by_lr(monkeypatch, {0.1: [10.0] * 5, 0.01: [20.0] * 5, 0.05: [15.0] * 5})
    with warnings.catch_warnings():
        warnings.simplefilter("error", TuningUndecidedWarning)
        warnings.simplefilter("ignore", SmallValidationWarning)
        hp = tune(task, make_config("smoke", task.defaults, **STEPS), tmp_path / "a", None)
        report = RunDir(tmp_path / "a").read_json("baseline_tune.json")
        assert hp["lr"] == 0.1 and report["vs_defaults"] is None
        # a grid without the retrain defaults (lr 0.1) has nothing to compare with: its best is used
        hp = tune(task, make_config("smoke", task.defaults, **{**STEPS, "tune_lrs": (0.05, 0.01)}), tmp_path / "b",
                  None)
    assert hp["lr"] == 0.05 and RunDir(tmp_path / "b").read_json("baseline_tune.json")["vs_defaults"] is None


# ------------------------------------------------------------------------------------------------- budget
def test_the_time_budget_counts_the_folds():
    cfg = make_config("paper")  # 24 configurations
    per_pass = {"search": 1, "tune": 1, "retrain": 1}
    plain, plain_rec = B.plan_budget(600.0, FAKE_COSTS, cfg, per_pass)
    cv, cv_rec = B.plan_budget(600.0, FAKE_COSTS, cfg, per_pass, folds=5)
    grid = cfg.tune.n_configs()
    configs = lambda o: o.get("tune_n_trials", grid)  # noqa: E731
    assert plain["tune_enabled"] and cv["tune_enabled"]
    # k times the training per configuration: fewer configurations, each with no fewer steps
    assert configs(cv) < configs(plain) and cv["tune_steps"] > plain["tune_steps"]
    # a plan that ignored the folds would spend 5 times its tuning share; this one fits it
    assert 5 * plain_rec["planned"]["tune"] > 4 * B.TUNE_SHARE * (600.0 - FAKE_COSTS["after"])
    step_rt = FAKE_COSTS["dash_step"] + FAKE_COSTS["baseline_step"]
    tune_eval = FAKE_COSTS["dash_eval"] + FAKE_COSTS["baseline_eval"]
    seconds = configs(cv) * 5 * (cv["tune_steps"] * step_rt + tune_eval)
    left = 600.0 - FAKE_COSTS["after"]
    assert cv_rec["planned"]["tune"] == pytest.approx(seconds, abs=0.01) and seconds <= B.TUNE_SHARE * left
    assert cv_rec["planned_seconds"] <= 600.0 and cv_rec["tune_folds"] == 5
    assert "in each of 5 folds" in cv_rec["note"]
    # a small budget: two configurations of MIN_TUNE_STEPS in each fold, or no tuning at all
    small, _ = B.plan_budget(40.0, FAKE_COSTS, cfg, per_pass, folds=5)
    assert not small["tune_enabled"] or (configs(small) >= 2 and small["tune_steps"] >= B.MIN_TUNE_STEPS)
    with pytest.raises(ValueError, match=r"folds = 0"):
        B.plan_budget(600.0, FAKE_COSTS, cfg, per_pass, folds=0)


def test_the_plan_shows_the_folds():
    task = arrowhead_like()
    plan = B.run_plan(task, make_config("smoke", task.defaults))
    assert plan["tune"]["folds"] == 5
    assert "each 5-fold cross-validated" in B.format_plan(plan)
    assert B.run_plan(task, make_config("smoke", task.defaults, tune_small_val="skip"))["tune"]["folds"] == 1
    assert "fold" not in B.format_plan(B.run_plan(tiny_task(), make_config("smoke", tiny_task().defaults)))


def test_a_capped_walk_still_tries_every_learning_rate():
    tc = make_config("standard", tune_n_trials=2).tune  # lrs (0.1, 0.01), two dropouts each
    seen = []

    def try_config(params):
        seen.append((params["lr"], params["dropout"]))
        return "complete", 10.0 - len(seen)

    tried, best, value = walk_lr_blocks(tc, try_config)
    assert seen == [(0.1, 0.0), (0.01, 0.0)] and best["lr"] == 0.01 and value == 8.0 and len(tried) == 2
    seen.clear()
    walk_lr_blocks(make_config("standard").tune, try_config)  # uncapped: the whole grid, as before
    assert seen == [(0.1, 0.0), (0.1, 0.05), (0.01, 0.0), (0.01, 0.05)]


def test_by_default_a_too_small_validation_split_skips_the_tuning_and_says_so(tmp_path):
    task = arrowhead_like()
    cfg = preset_config("smoke", task.defaults)  # the package's default, not this module's
    assert cfg.tune.small_val == "skip" and trials.tuning_scoring(task, cfg) == ("skip", None, None)
    assert B.run_plan(task, cfg)["tune"]["skipped"] is True and not B.tuning_runs(task, cfg)
    with pytest.warns(SmallValidationWarning, match=r"tune: skipped, the val split has 6 samples .*"
                                                    r"\(tune_small_val='skip'; 'cv' cross-validates over train \+ val"):
        res = pipeline.run(task, preset="smoke", out=tmp_path / "run", figures=False, verbose=False, **STEPS)
    rd = RunDir(tmp_path / "run")
    for stage in ("tune", "baseline_tune"):
        assert rd.read_json(f"{stage}.json")["skipped"] and rd.read_json(f"{stage}.json")["trials"] == []
    assert res.hparams["dash"] == res.hparams["baseline"] == {"lr": 0.1, "dropout": 0.0, "weight_decay": 5e-4,
                                                             "momentum": 0.9}
    # a validation split large enough to rank configurations is tuned on, as before
    assert B.tuning_runs(tiny_task(), preset_config("smoke", tiny_task().defaults))


def test_a_timed_run_whose_tuning_is_skipped_plans_no_tuning(monkeypatch):
    """A tuning that will be skipped (``tune_small_val="skip"``, or folds that cannot be made) gets no share of a
    time budget: the retraining has it. The stage stays enabled, to record why it used the retrain defaults."""
    fake_costs(monkeypatch, lambda *a, **k: dict(FAKE_COSTS))
    task = arrowhead_like()
    cfg = make_config("standard", random_draws=0, tune_small_val="skip")
    assert not B.tuning_runs(task, cfg) and B.tuning_runs(tiny_task(), cfg)
    planned, record = pipeline.time_plan(task, cfg, "600s")
    assert planned.tune.enabled and record["shares"] == {"search": 0.4, "tune": 0.0, "retrain": 0.6}
    assert record["planned"]["tune"] == 0 and record["tune_configs"] == 0
    assert "tuning skipped (the validation split is too small to rank configurations)" in record["note"]
    cv_planned, cv_record = pipeline.time_plan(task, cfg.override(tune_small_val="cv"), "600s")
    assert planned.retrain.steps > 1.4 * cv_planned.retrain.steps  # 60% of the time left against 40%
    assert planned.search.steps == cv_planned.search.steps
    plan = B.run_plan(task, planned)
    assert plan["tune"]["skipped"] is True and "skipped" not in B.run_plan(task, cfg.override(tune_small_val="cv"))[
        "tune"]
    assert "(skipped: the validation split is too small to rank configurations)" in B.format_plan(plan)
    assert B.forecast_seconds(dict(FAKE_COSTS), planned, plan)["tune"] == 0.0


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_skipped_tuning_does_not_make_a_timed_run_look_ahead_of_its_plan(tmp_path, monkeypatch):
    """After a skipped tuning there is no speed to re-plan with: the retraining keeps what the plan (and the
    re-plan after the search) gave it. (A skipped tuning timed as a stage of its planned length once read as
    0.0001x its plan, and the retraining grew threefold: 50% over the budget.)"""
    fake_costs(monkeypatch, lambda *a, **k: dict(FAKE_COSTS))
    settings = {k: v for k, v in STEPS.items() if not k.endswith("_steps")}
    res = pipeline.run(arrowhead_like(), preset="smoke", budget="40s", out=tmp_path / "run", figures=False,
                       verbose=False, **{**settings, "tune_small_val": "skip", "random_draws": 0})
    record = RunDir(tmp_path / "run").read_json("config.json")["budget"]
    assert record["shares"]["tune"] == 0.0 and RunDir(tmp_path / "run").read_json("tune.json")["skipped"]
    replans = record.get("replans", [])
    assert [r["after"] for r in replans] in ([], ["search"])  # none after the tuning
    if replans:  # the retraining ran the steps the re-plan after the search gave it
        assert res.plan["retrain"]["steps"] == replans[0]["new"]["retrain_steps"]


def test_a_timed_run_on_a_tiny_validation_split_plans_the_folds(monkeypatch):
    """``run(budget=...)``/``time_plan`` give the planner the fold count: the record says 5 folds on a tiny task, 1 on
    a task whose validation split is large enough (the costs are stood in for, so nothing is timed)."""
    fake_costs(monkeypatch, lambda *a, **k: dict(FAKE_COSTS))
    cfg = make_config("standard", random_draws=0)
    _, tiny = pipeline.time_plan(arrowhead_like(), cfg, "600s")
    assert tiny["tune_folds"] == 5 and "in each of 5 folds" in tiny["note"]
    _, normal = pipeline.time_plan(tiny_task(), cfg, "600s")
    assert normal["tune_folds"] == 1
