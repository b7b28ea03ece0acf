"""The random-architecture control (dashkit.stages.control): architectures drawn uniformly from DASH's space,
retrained with DASH's hyper-parameters on DASH's retraining steps, beside DASH and the baseline.

The sampler is checked on many draws of the card (no training): uniform over the candidates per layer and over
pairs of layers (chi-square), reproducible per seed, different across draws and independent of torch's random
state. One smoke-size run with ``random_draws=2`` checks the files, metrics.json's summary, the result, ``dashkit
show``, predictions of a draw, and that a resumed run retrains no finished draw. The time planner's share of the
draws is checked on made-up step costs.
"""
from __future__ import annotations

import json
import math
import statistics
import warnings

import numpy as np
import pytest
import torch
from scipy import stats

from dashkit import budget as B
from dashkit import pipeline
from dashkit.__main__ import show
from dashkit.config import make_config
from dashkit.rundir import RunDir
from dashkit.space import SearchSpace
from dashkit.stages import control, retrain as retrain_stage
from dashkit.supernet import ArchCard, LayerChoice

from test_budget import FAKE_COSTS, fake_costs
from test_pipeline import tiny_task

SMOKE = dict(preset="smoke", search_backend="fft", retrain_conv_backend="direct", figures=False, verbose=False)


def template(layers: int = 3, space: SearchSpace = SearchSpace((3, 5, 7, 9), (1, 3, 7, 15), dims=1)) -> ArchCard:
    """A card shaped like DASH's: ``layers`` searched layers of a 16-candidate space, every layer at (3, 1)."""
    return ArchCard(space=space, backbone="resnet1d", meta={"task": "x"},
                    layers=[LayerChoice(name=f"blocks.{i}.conv", k=3, d=1, alpha=[1.0] + [0.0] * (len(space) - 1),
                                        in_channels=4, out_channels=4 + i, stride=1 + i % 2, groups=1,
                                        causal=bool(i % 2), z=5.0, decided=True, runner_up=[5, 1], steps=10)
                            for i in range(layers)])


# ------------------------------------------------------------------------------------------------ the sampler
def test_draws_are_uniform_over_the_space_per_layer_and_over_pairs_of_layers():
    card, n = template(), 4000
    space = card.space
    index = {pair: i for i, pair in enumerate(space.candidates)}
    picks = np.array([[index[(layer.k, layer.d)] for layer in control.random_card(card, seed=0, draw=i).layers]
                      for i in range(n)])  # (draws, layers)
    m = len(space)
    for j in range(picks.shape[1]):
        counts = np.bincount(picks[:, j], minlength=m)
        assert counts.min() > 0  # every candidate is drawn
        _, p = stats.chisquare(counts)  # H0: uniform over the 16 candidates
        assert p > 1e-3, (j, counts)
    pairs = np.bincount(picks[:, 0] * m + picks[:, 1], minlength=m * m)  # H0: uniform over the 256 pairs
    _, p = stats.chisquare(pairs)
    assert p > 1e-3
    # the test itself sees a sampler that is not uniform: half the draws pinned to the first candidate
    biased = np.where(np.arange(n) % 2 == 0, 0, picks[:, 0])
    assert stats.chisquare(np.bincount(biased, minlength=m))[1] < 1e-12


def test_a_draw_is_reproducible_differs_across_draws_and_seeds_and_ignores_torchs_random_state():
    card = template(layers=6)
    torch.manual_seed(1)
    a = control.random_card(card, seed=0, draw=0)
    torch.manual_seed(2)
    np.random.seed(3)
    again = control.random_card(card, seed=0, draw=0)
    assert a == again and a.to_dict() == again.to_dict()
    pairs = lambda c: [(layer.k, layer.d) for layer in c.layers]  # noqa: E731
    draws = [pairs(control.random_card(card, seed=0, draw=i)) for i in range(5)]
    assert len({tuple(d) for d in draws}) == 5  # 16**6 architectures: five draws do not repeat
    assert pairs(control.random_card(card, seed=1, draw=0)) != draws[0]
    # no global random state was used or moved
    state = torch.get_rng_state()
    control.random_card(card, seed=0, draw=7)
    assert torch.equal(state, torch.get_rng_state())
    # the layers keep the template's shape; the card says what it is and has no decision record
    for mine, theirs in zip(a.layers, card.layers):
        assert (mine.name, mine.in_channels, mine.out_channels, mine.stride, mine.groups, mine.causal) == \
            (theirs.name, theirs.in_channels, theirs.out_channels, theirs.stride, theirs.groups, theirs.causal)
        assert mine.alpha == [0.0] * len(card.space) and mine.z is None and mine.decided is None
    assert a.meta["control"] == "random" and a.meta["draw"] == 0 and a.meta["rng_seed"] == control.random_seed(0, 0)
    assert ArchCard.from_dict(json.loads(json.dumps(a.to_dict()))) == a  # a valid card (choices in the space)
    with pytest.raises(ValueError, match=r"draw = -1: expected an int >= 0"):
        control.random_card(card, seed=0, draw=-1)
    with pytest.raises(TypeError, match=r"template = 3: expected a dashkit.ArchCard"):
        control.random_card(3, seed=0, draw=0)


def test_the_summary_is_the_mean_and_sample_sd_of_the_draws():
    results = [{"test": 10.0, "val": 4.0}, {"test": 20.0, "val": 6.0}, {"test": 33.0, "val": 8.0}]
    s = control.summarise(results, {"lr": 0.1})
    assert s["test"] == pytest.approx(21.0, abs=1e-12) and s["val"] == pytest.approx(6.0, abs=1e-12)
    assert s["test_sd"] == pytest.approx(math.sqrt(((11.0 ** 2) + 1.0 + 12.0 ** 2) / 2), abs=1e-12)
    assert s["draws"] == 3 and s["per_draw"] == [10.0, 20.0, 33.0] and s["hparams"] == {"lr": 0.1}
    assert control.summarise(results[:1], {})["test_sd"] is None
    with pytest.raises(ValueError, match=r"at least one draw"):
        control.summarise([], {})


# ------------------------------------------------------------------------------------------------ settings
@pytest.mark.parametrize("value, error, message", [
    (-1, ValueError, r"random_draws = -1: expected an int >= 0 \(how many random architectures"),
    (1.5, TypeError, r"random_draws = 1.5: expected an int"),
    ("2", TypeError, r"random_draws = '2': expected an int"),
    (True, TypeError, r"random_draws = True: expected an int"),
])
def test_a_bad_random_draws_names_the_setting_and_what_is_accepted(value, error, message):
    with pytest.raises(error, match=message):
        make_config("smoke", random_draws=value)


def test_the_presets_draw_two_random_architectures_except_smoke():
    assert make_config("smoke").random_draws == 0
    assert make_config("standard").random_draws == make_config("paper").random_draws == 2
    assert make_config("smoke", random_draws=3).random_draws == 3
    from dashkit.config import parse_setting

    assert parse_setting("random_draws=0") == ("random_draws", 0)


# ------------------------------------------------------------------------------------------------ time budget
def test_the_time_plan_gives_the_retraining_share_to_dash_the_baseline_and_the_draws_alike():
    per_pass = {"search": 56, "tune": 56, "retrain": 56}
    costs = {**FAKE_COSTS, "random_step": 0.07, "random_eval": 0.02}
    none, rec0 = B.plan_budget(300.0, costs, make_config("standard", random_draws=0), per_pass, spent=10.0)
    two, rec2 = B.plan_budget(300.0, costs, make_config("standard", random_draws=2), per_pass, spent=10.0)
    assert none["random_draws"] == 0 and two["random_draws"] == 2 and rec2["random_draws"] == 2
    assert two["search_steps"] == none["search_steps"] and two["tune_steps"] == none["tune_steps"]
    left = 300.0 - 10.0 - costs["after"]
    share = left - B.SEARCH_SHARE * left - B.TUNE_SHARE * left
    writes = B.RETRAIN_EPOCH_WRITES * costs["checkpoint"]
    step = 0.05 + 0.05 + 2 * 0.07  # DASH, the baseline and two draws: one step each
    per_epoch = (0.01 + writes) + (0.01 + writes) + 2 * (0.02 + writes)
    r = two["retrain_steps"]
    cost = lambda n: n * step + B.epochs_for(n, 56) * per_epoch  # noqa: E731
    assert cost(r) <= share < cost(r + 1)
    assert r < none["retrain_steps"] and rec2["planned"]["retrain"] == pytest.approx(cost(r), abs=0.01)
    # without random_step / random_eval a draw is costed as DASH's network
    plain, _ = B.plan_budget(300.0, FAKE_COSTS, make_config("standard", random_draws=2), per_pass, spent=10.0)
    cost4 = lambda n: n * 0.2 + B.epochs_for(n, 56) * (4 * (0.01 + writes))  # noqa: E731
    assert cost4(plain["retrain_steps"]) <= share < cost4(plain["retrain_steps"] + 1)


def test_draws_the_budget_cannot_pay_for_are_dropped_with_a_warning_and_a_note():
    per_pass = {"search": 56, "tune": 56, "retrain": 56}
    cfg = make_config("standard", random_draws=3)
    with pytest.warns(UserWarning, match=r"random_draws reduced from 3 to \d"):
        over, record = B.plan_budget(8.0, FAKE_COSTS, cfg, per_pass, text="8s")
    assert over["random_draws"] < 3 and record["random_draws"] == over["random_draws"]
    assert f"random_draws reduced from 3 to {over['random_draws']}" in record["note"]
    assert over["retrain_steps"] >= B.MIN_CONTROL_STEPS or over["random_draws"] == 0
    if over["random_draws"] < 3:  # one more draw would have left too few steps
        more = B.plan_budget(8.0, FAKE_COSTS, make_config("standard", random_draws=over["random_draws"]), per_pass)
        assert more[0]["retrain_steps"] == over["retrain_steps"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a budget that pays for the draws says nothing
        B.plan_budget(300.0, FAKE_COSTS, cfg, per_pass)


# ------------------------------------------------------------------------------------------------ a run
@pytest.fixture(scope="module")
def control_run(tmp_path_factory):
    """A smoke run of the tiny task with two random draws (and a count of the retrainings it did)."""
    out = tmp_path_factory.mktemp("control") / "run"
    calls = []
    real = retrain_stage.train_and_test

    def counting(*args, **kwargs):
        calls.append(args[6])  # the stage
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(control, "train_and_test", counting)
        mp.setattr(retrain_stage, "train_and_test", counting)
        res = pipeline.run(tiny_task(), out=out, random_draws=2, **SMOKE)
    return out, res, calls


def test_a_run_with_two_draws_records_each_draw_and_their_mean(control_run):
    out, res, calls = control_run
    assert calls == ["retrain", "baseline_retrain", "random_0_retrain", "random_1_retrain"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"metric", "dash", "baseline", "random_0", "random_1", "random"} == set(metrics)
    per = [metrics["random_0"]["test"], metrics["random_1"]["test"]]
    summary = metrics["random"]
    assert summary["per_draw"] == per and summary["draws"] == 2
    assert summary["test"] == pytest.approx(math.fsum(per) / 2, abs=1e-12)
    assert summary["test_sd"] == pytest.approx(statistics.stdev(per), abs=1e-12)
    assert summary["val"] == pytest.approx((metrics["random_0"]["val"] + metrics["random_1"]["val"]) / 2, abs=1e-12)
    # trained with DASH's tuned hyper-parameters, on DASH's retraining plan, not tuned themselves
    tuned = json.loads((out / "tune.json").read_text())["best"]
    assert metrics["random_0"]["hparams"] == metrics["random_1"]["hparams"] == metrics["dash"]["hparams"] == tuned
    rd = RunDir(out)
    assert not rd.exists("random_0_tune.json") and "random_0_tune" not in rd.done_stages()
    assert len(rd.read_history("random_0_retrain")) == len(rd.read_history("retrain")) == res.plan["retrain"]["epochs"]
    assert res.plan["retrain"]["random_draws"] == 2
    for i in range(2):
        for name in (f"random_{i}_archcard.json", f"init_random_{i}.safetensors", f"random_{i}.safetensors",
                     f"history_random_{i}_retrain.csv", f"done/random_{i}_retrain.json"):
            assert (out / name).is_file(), name
        card = ArchCard.load(out / f"random_{i}_archcard.json")
        assert card == control.random_card(res.card, 0, i)  # the seeded draw, on DASH's searched layers
        assert [layer.name for layer in card.layers] == [layer.name for layer in res.card.layers]
    # the result and what prints it
    assert res.metrics["random"] == summary["test"] and res.val_metrics["random"] == summary["val"]
    assert res.random == summary and res.hparams["random"] == tuned
    assert {"random_0_retrain", "random_1_retrain"} <= set(res.times)
    assert "  random    " in res.summary() and "mean of 2 architectures drawn uniformly" in res.summary()
    again = pipeline.load_result(out)
    assert again.metrics == res.metrics and again.random == res.random
    text = show(out)
    assert f"  random    {summary['test']:10.4f}" in text and "random_1_retrain  done in" in text
    assert "2 random architectures too" in text
    # a draw's network predicts as DASH's does, with its own card
    x = tiny_task().test.tensors[0][:5]
    model = pipeline.load_model(out, which="random_1", task=tiny_task())
    convs = dict(model.named_modules())
    assert [(convs[layer.name].kernel_size, convs[layer.name].dilation) for layer in card.layers] == \
        [((layer.k,), (layer.d,)) for layer in card.layers]
    assert pipeline.predict(out, x, which="random_1", task=tiny_task()).shape == (5,)
    with pytest.raises(ValueError, match=r"which = 'random': expected 'dash', 'baseline' or 'best', or 'random_<i>'"):
        pipeline.load_model(out, which="random", task=tiny_task())


def test_a_resumed_run_retrains_no_finished_draw(control_run, monkeypatch):
    out, res, _ = control_run
    before = {i: (out / f"random_{i}.safetensors").stat().st_mtime_ns for i in range(2)}

    def no_training(*args, **kwargs):
        raise AssertionError(f"{args[6]} was trained again")

    monkeypatch.setattr(control, "train_and_test", no_training)
    monkeypatch.setattr(retrain_stage, "train_and_test", no_training)
    again = pipeline.run(tiny_task(), out=out, random_draws=2, **SMOKE)
    assert again.metrics == res.metrics and again.random == res.random
    assert before == {i: (out / f"random_{i}.safetensors").stat().st_mtime_ns for i in range(2)}


def test_a_draw_stopped_in_its_retraining_resumes_from_its_checkpoint(tmp_path, monkeypatch, kill_after_checkpoint):
    task = tiny_task()
    ref = pipeline.run(task, out=tmp_path / "ref", random_draws=1, **SMOKE)
    kill_after_checkpoint("random_0_retrain", 0)
    with pytest.raises(KeyboardInterrupt, match="random_0_retrain"):
        pipeline.run(task, out=tmp_path / "b", random_draws=1, **SMOKE)
    monkeypatch.undo()
    assert "retrain" in RunDir(tmp_path / "b").done_stages() and (tmp_path / "b" / "checkpoints" /
                                                                  "random_0_retrain.json").is_file()
    res = pipeline.run(task, out=tmp_path / "b", random_draws=1, **SMOKE)
    assert res.metrics == ref.metrics and res.random == ref.random
    strip = lambda run: [{k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
                         for r in RunDir(tmp_path / run).read_history("random_0_retrain")]
    assert strip("b") == strip("ref") and len(strip("ref")) == ref.plan["retrain"]["epochs"]


def test_no_draws_leave_the_run_as_it_was(tmp_path):
    res = pipeline.run(tiny_task(), out=tmp_path / "run", **SMOKE)  # smoke: random_draws = 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics) == {"metric", "dash", "baseline"} and set(res.metrics) == {"dash", "baseline"}
    assert res.random is None and not list((tmp_path / "run").glob("*random*"))
    assert "random" not in "\n".join(show(tmp_path / "run").splitlines()[1:])  # the first line is the folder


def test_a_budgeted_run_pays_for_its_draws_and_a_resumed_one_keeps_their_plan(tmp_path, monkeypatch):
    fake_costs(monkeypatch, lambda *a, **k: dict(FAKE_COSTS))
    task = tiny_task()
    settings = {k: v for k, v in SMOKE.items() if k != "preset"}
    res = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="15s", random_draws=1, **settings)
    meta = json.loads((tmp_path / "run" / "config.json").read_text())
    assert meta["config"]["random_draws"] == meta["budget"]["random_draws"] == 1
    assert meta["plan"]["retrain"]["random_draws"] == 1
    r = meta["plan"]["retrain"]["steps"]
    assert r == meta["config"]["retrain"]["steps"] >= B.MIN_CONTROL_STEPS
    step = FAKE_COSTS["dash_step"] * 2 + FAKE_COSTS["baseline_step"]  # DASH, the draw (costed as DASH) and the baseline
    # the plan paid for the draw (the clock here runs faster than the made-up costs, so a re-plan may have grown
    # the retraining since: its first entry holds the planned steps)
    planned = (meta["budget"].get("replans") or [{"old": {"retrain_steps": r}}])[0]["old"]["retrain_steps"]
    assert meta["budget"]["planned"]["retrain"] >= planned * step
    assert res.random["draws"] == 1 and len(RunDir(tmp_path / "run").read_history("random_0_retrain")) == \
        meta["plan"]["retrain"]["epochs"]

    def no_measuring(*a, **k):
        raise AssertionError("a resumed run must keep its plan, not measure again")

    fake_costs(monkeypatch, no_measuring, no_measuring)
    monkeypatch.setattr(control, "train_and_test", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    again = pipeline.run(task, preset="smoke", out=tmp_path / "run", budget="15s", random_draws=1, **settings)
    assert again.metrics == res.metrics and again.random == res.random
