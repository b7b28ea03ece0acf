"""Tests of dashkit.pipeline (search -> tune -> retrain -> test, the baseline, run) and dashkit.viz.

Every test uses tiny synthetic tasks built here, so that none depends on the speed of a data generator. The
search backend is fixed to "fft" and the retrain conv backend to "direct": "auto" measures timings and could
choose differently between two runs.
"""
from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch.utils.data import Dataset, TensorDataset

from dashkit import pipeline, viz
from dashkit.config import make_config
from dashkit.pipeline import NonFiniteLossError, RunResult
from dashkit.rundir import RunDir
from dashkit.stages import retrain as retrain_stage
from dashkit.stages import trials
from dashkit.stages.common import run_config_dict
from dashkit.supernet import ArchCard
from dashkit.tasks.base import Task, TaskDefaults


# ------------------------------------------------------------------------------------------------ tiny tasks
def spikes(n: int, seed: int, length: int, gaps: tuple, start: tuple) -> TensorDataset:
    """Two spikes in noise; the class is which of two gaps separates them (a long-range pattern).

    Shapes: x (n, 1, length), y (n,).
    """
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 1, length, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    pos = torch.randint(start[0], start[1], (n,), generator=g)
    rows = torch.arange(n)
    x[rows, 0, pos] += 3.0
    x[rows, 0, pos + torch.tensor(gaps)[y]] += 3.0
    return TensorDataset(x, y)


def tiny_task(name: str = "tiny", loss_fn=None, train=None, val=None, test=None) -> Task:
    make = lambda n, seed: spikes(n, seed, 32, (6, 12), (4, 14))  # noqa: E731
    return Task(name=name, kind="classification", train=train or make(96, 0), val=val or make(48, 1),
                test=test or make(48, 2), in_shape=(1, 32), num_outputs=2, metric_name="error_pct",
                defaults=TaskDefaults(backbone="resnet1d", backbone_kwargs={"width": 2}, kernel_sizes=(3, 5),
                                      dilations=(1, 2), search={"grad_scale": 10.0}),
                loss_fn=loss_fn)


TINY = dict(search_backend="fft", retrain_conv_backend="direct", search_epochs=2, search_batch_size=32,
            search_batches_per_epoch=1.0, tune_lrs=(0.1, 0.01), tune_dropouts=(0.0,), tune_weight_decays=(5e-4,),
            tune_momentums=(0.9,), tune_epochs=2, tune_batch_size=32, tune_batches_per_epoch=0.5, tune_pruner="none",
            retrain_epochs=3, retrain_batch_size=32, search_max_batches=None, tune_max_batches=None,
            retrain_max_batches=None, random_draws=0)  # the random-architecture control: test_random_control.py


def tiny_cfg(task, **kw):
    return make_config("smoke", task.defaults, **{**TINY, **kw})


class Guarded(Dataset):
    """A dataset that counts reads and raises while it is locked; with ``labels=True`` its targets may be counted
    (``targets()``, as a run's plan counts the validation split's classes) without reading an example."""

    def __init__(self, ds: Dataset, labels: bool = False):
        self.ds, self.locked, self.reads = ds, True, 0
        if labels:
            self.targets = lambda: ds.tensors[1]

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i):
        if self.locked:
            raise AssertionError("the test split was read before the final test")
        self.reads += 1
        return self.ds[i]


# ---------------------------------------------------------------------------------------------------- search
def test_search_writes_card_alphas_history_and_is_skipped_when_done(tmp_path, monkeypatch):
    task = tiny_task()
    cfg = tiny_cfg(task)
    card = pipeline.search(task, cfg, tmp_path / "run")
    assert isinstance(card, ArchCard) and card.backbone == "resnet1d"
    assert len(card.layers) == 9  # ResNet1D: 3 blocks x 3 convs
    assert all(layer.k in (3, 5) and layer.d in (1, 2) for layer in card.layers)
    rd = RunDir(tmp_path / "run")
    alphas = rd.read_json("alphas.json")
    probs = torch.tensor(alphas["epochs"])
    assert probs.shape == (2, 9, 4)  # (epochs, layers, candidates)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 9), atol=1e-5)
    assert alphas["candidates"] == [[3, 1], [3, 2], [5, 1], [5, 2]]
    # the recorded alphas are those the card was discretised from
    last = torch.tensor([torch.softmax(torch.tensor(layer.alpha), 0).tolist() for layer in card.layers])
    assert torch.allclose(probs[-1], last, atol=1e-6)
    rows = rd.read_history("search")
    assert [r["epoch"] for r in rows] == [1, 2] and all(math.isfinite(r["train_loss"]) for r in rows)
    assert rd.is_done("search")

    def no_training(*a, **k):
        raise AssertionError("a finished search must not train again")

    monkeypatch.setattr("dashkit.supernet.to_supernet", no_training)
    assert pipeline.search(task, cfg, tmp_path / "run") == card


def test_single_level_search_never_reads_validation_and_bilevel_does(tmp_path, monkeypatch, kill_after_checkpoint):
    val = Guarded(spikes(48, 1, 32, (6, 12), (4, 14)), labels=True)  # the plan counts its classes (too_small)
    task = tiny_task(val=val)
    pipeline.search(task, tiny_cfg(task), tmp_path / "single")  # would raise on a validation read
    val.locked = False
    cfg = tiny_cfg(task, search_scheme="bilevel")
    card = pipeline.search(task, cfg, tmp_path / "bilevel")
    assert val.reads >= 2 * 3 * 32  # one validation batch per alpha step
    # a bilevel search stopped after its first epoch resumes to the same alphas
    kill_after_checkpoint()
    with pytest.raises(KeyboardInterrupt):
        pipeline.search(task, cfg, tmp_path / "resumed")
    monkeypatch.undo()
    resumed = pipeline.search(task, cfg, tmp_path / "resumed")
    assert [layer.alpha for layer in resumed.layers] == [layer.alpha for layer in card.layers]


# ------------------------------------------------------------------------------ validation-only model selection
def test_tune_and_retrain_select_on_validation_and_test_once(tmp_path):
    test = Guarded(spikes(48, 2, 32, (6, 12), (4, 14)))
    task = tiny_task(test=test)
    cfg = tiny_cfg(task)
    rd = RunDir.create(tmp_path / "run", {"task": "tiny"})
    card = pipeline.search(task, cfg, rd)
    best = pipeline.tune(task, cfg, rd, card)
    pipeline.tune(task, cfg, rd, None)  # baseline tuning reads no test data either
    report = rd.read_json("tune.json")
    values = [t["value"] for t in report["trials"]]
    assert [(t["lr"], t["state"]) for t in report["trials"]] == [(0.1, "complete"), (0.01, "complete")]
    assert best == report["best"] and report["best_val"] == min(values)
    assert best["lr"] == report["trials"][values.index(min(values))]["lr"]

    test.locked = False
    result = pipeline.retrain(task, cfg, rd, card)
    assert test.reads == len(test)  # the test split is read exactly once, at the end
    hist = rd.read_history("retrain")
    vals = [r["val_metric"] for r in hist]
    assert result["best_epoch"] == vals.index(min(vals)) + 1 and result["val"] == min(vals)
    assert result["hparams"] == best
    # the reported test metric is that of the saved weights, over the whole split at once
    model = pipeline.build_model(task, cfg, card)
    model.load_state_dict(rd.load_weights("dash.safetensors"))
    model.eval()
    x, y = task.test.ds.tensors
    with torch.no_grad():
        assert result["test"] == pytest.approx(task.metric(model(x), y), abs=1e-9)
    assert rd.read_json("metrics.json")["dash"]["test"] == result["test"]


def fake_trials(monkeypatch, table):
    """Replace tuning trials by a table {(lr, momentum): validation metric}; returns the list of calls made."""
    from optuna.trial import TrialState

    calls = []

    def fake_trial(study, params, space, *args):
        calls.append((params["lr"], params["momentum"]))
        study.enqueue_trial(params)
        trial = study.ask()
        value = table[calls[-1]]
        study.tell(trial, value)
        return TrialState.COMPLETE, value

    monkeypatch.setattr(trials, "run_trial", fake_trial)
    return calls


def test_lr_blocks_stop_early_when_they_bring_no_improvement(tmp_path, monkeypatch):
    task = tiny_task()
    cfg = tiny_cfg(task, tune_lrs=(0.1, 0.01, 0.001), tune_momentums=(0.9, 0.99))
    # validation metric of each (lr, momentum): the 0.01 block starts worse than the best of the 0.1 block
    table = {(0.1, 0.9): 5.0, (0.1, 0.99): 4.0, (0.01, 0.9): 6.0, (0.01, 0.99): 1.0,
             (0.001, 0.9): 3.0, (0.001, 0.99): 7.0}
    calls = fake_trials(monkeypatch, table)
    best = pipeline.tune(task, cfg, tmp_path / "run", None)
    # (0.01, 0.99) is skipped: its block's first config did not beat 4.0; (0.001, 0.9) improves, so its block runs on
    assert calls == [(0.1, 0.9), (0.1, 0.99), (0.01, 0.9), (0.001, 0.9), (0.001, 0.99)]
    assert best["lr"] == 0.001 and best["momentum"] == 0.9
    states = [t["state"] for t in RunDir(tmp_path / "run").read_json("baseline_tune.json")["trials"]]
    assert states == ["complete", "complete", "complete", "skipped", "complete", "complete"]


@pytest.mark.parametrize("below_chance", [0.0, 0.01, 0.05, 0.5])
@pytest.mark.parametrize("mode", ["retrain_defaults", "best"])
def test_a_tuning_that_never_beats_the_input_ignoring_guess_is_reported_undecided(tmp_path, monkeypatch,
                                                                                   below_chance, mode):
    from dashkit.__main__ import show

    task = tiny_task()
    chance = task.chance_metric("val")
    ys = task.val.tensors[1]
    assert chance == pytest.approx(100.0 * (1 - max(float((ys == 0).float().mean()), float((ys == 1).float().mean()))))
    # both configurations end within 2% of the majority-class error (undecided), or clearly below it (decided)
    value = chance * (1 - below_chance)
    fake_trials(monkeypatch, {(0.1, 0.9): value + 0.001, (0.01, 0.9): value})
    decided = below_chance > pipeline.UNDECIDED_MARGIN
    cfg = tiny_cfg(task, tune_undecided=mode, retrain_lr=0.05, retrain_dropout=0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        chosen = pipeline.tune(task, cfg, tmp_path / "run", None)
    undecided = [w for w in caught if issubclass(w.category, pipeline.TuningUndecidedWarning)]
    assert len(undecided) == (0 if decided else 1)
    assert all(w.filename == __file__ for w in undecided)  # the warning names the caller's line, not dashkit's
    report = RunDir(tmp_path / "run").read_json("baseline_tune.json")
    assert report["best_trial"]["lr"] == 0.01 and report["best_val"] == pytest.approx(value)
    assert report["chance_val"] == pytest.approx(chance) and report["decided"] is decided
    if decided or mode == "best":
        assert chosen == report["best_trial"]
    else:  # the retrain_* hyper-parameters instead of the noisy best
        assert chosen == {"lr": 0.05, "dropout": 0.1, "weight_decay": 5e-4, "momentum": 0.9}
    assert report["best"] == chosen
    if undecided:
        message = str(undecided[0].message)
        assert "no configuration beat the input-ignoring guess" in message and f"chance level {chance:.4g}" in message
        assert ("kept anyway" if mode == "best" else f"retraining with the retrain_* hyper-parameters {chosen}") \
            in message
    text = show(tmp_path / "run")
    assert f"baseline_tune: chose {chosen}" in text
    assert ("undecided: no configuration beat it" in text) is not decided
    # a resumed tuning returns the same choice without trying anything
    fake_trials(monkeypatch, {})
    assert pipeline.tune(task, cfg, tmp_path / "run", None) == chosen


def test_tuning_decided_needs_a_margin_below_the_chance_level():
    assert pipeline.tuning_decided(0.4985, 0.5) is False  # genomics-like: 1-AUROC at chance
    assert pipeline.tuning_decided(0.44, 0.5) is True
    assert pipeline.tuning_decided(89.75, 90.0) is False
    assert pipeline.tuning_decided(57.75, 90.0) is True
    assert pipeline.tuning_decided(0.5, None) is True  # regression and dense tasks have no chance level
    assert pipeline.tuning_decided(0.3, 0.5, margin=0.5) is False


def test_tune_with_a_journal_resumes_without_repeating_trials(tmp_path, monkeypatch, kill_tuning_at):
    task = tiny_task()
    cfg = tiny_cfg(task, tune_storage="tune.journal")
    rd = RunDir.create(tmp_path / "run", {"task": "tiny"})
    real = trials.run_trial
    calls = kill_tuning_at(2)
    with pytest.raises(KeyboardInterrupt):
        pipeline.tune(task, cfg, rd, None)
    assert (rd.path / "tune.journal").is_file() and not rd.is_done("baseline_tune")
    calls.clear()
    monkeypatch.setattr(trials, "run_trial", lambda *a: (calls.append(a[1]["lr"]), real(*a))[1])
    best = pipeline.tune(task, cfg, rd, None)
    assert calls == [0.01]  # the finished lr=0.1 trial came from the journal
    # the same choice and values as a tuning that was never interrupted
    fresh = RunDir.create(tmp_path / "fresh", {"task": "tiny"})
    assert pipeline.tune(task, tiny_cfg(task), fresh, None) == best
    values = lambda r: [t["value"] for t in r.read_json("baseline_tune.json")["trials"]]  # noqa: E731
    assert values(rd) == values(fresh)


# ----------------------------------------------------------------------------------------- run, resume, errors
def test_interrupted_runs_resume_to_the_same_result(tmp_path, monkeypatch, kill_after_checkpoint):
    task = tiny_task()
    ref = pipeline.run(task, out=tmp_path / "ref", figures=False, verbose=False, **TINY)

    # 1) killed mid-search, after the first epoch's checkpoint
    kill_after_checkpoint("search", 0)
    with pytest.raises(KeyboardInterrupt, match="search"):
        pipeline.run(task, out=tmp_path / "b", figures=False, verbose=False, **TINY)
    # 2) resumed, then killed after the search, before tuning
    monkeypatch.undo()
    # the retraining tunes first: its `tune` is the one to kill
    monkeypatch.setattr(retrain_stage, "tune", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("killed tune")))
    with pytest.raises(KeyboardInterrupt, match="tune"):
        pipeline.run(task, out=tmp_path / "b", figures=False, verbose=False, **TINY)
    monkeypatch.undo()
    assert RunDir(tmp_path / "b").done_stages() == ["search"]
    # 3) resumed, then killed in the middle of the retraining
    kill_after_checkpoint("retrain", 1)
    with pytest.raises(KeyboardInterrupt, match="retrain"):
        pipeline.run(task, out=tmp_path / "b", figures=False, verbose=False, **TINY)
    monkeypatch.undo()
    assert json.loads((tmp_path / "b" / "checkpoints" / "retrain.json").read_text())["epoch"] == 1
    # 4) resumed to the end
    res = pipeline.run(task, out=tmp_path / "b", figures=False, verbose=False, **TINY)
    assert res.card == ref.card
    assert [layer.alpha for layer in res.card.layers] == [layer.alpha for layer in ref.card.layers]
    assert res.metrics == ref.metrics and res.val_metrics == ref.val_metrics and res.hparams == ref.hparams
    without_time = lambda run: [{k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
                                for r in RunDir(tmp_path / run).read_history("retrain")]
    assert without_time("b") == without_time("ref")


def test_run_returns_the_result_and_its_files(tmp_path, capsys):
    task = tiny_task()
    res = pipeline.run(task, out=tmp_path / "run", figures=False, **TINY)
    assert isinstance(res, RunResult) and res.task == "tiny" and res.metric == "error_pct"
    assert set(res.metrics) == {"dash", "baseline"} and all(0 <= v <= 100 for v in res.metrics.values())
    assert set(res.times) == {"search", "tune", "retrain", "baseline_tune", "baseline_retrain"}
    for key in ("config", "archcard", "metrics", "weights_dash", "weights_baseline"):
        assert res.paths[key].is_file(), key
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["device"] == "cpu" and env["torch"] == torch.__version__
    out = capsys.readouterr().out
    assert f"outputs in {tmp_path / 'run'}" in out and "baseline: test error_pct" in out
    assert "dash " in res.summary() and "seconds per stage" in res.summary()
    again = pipeline.load_result(tmp_path / "run")
    assert again.metrics == res.metrics and again.card == res.card


def test_run_with_another_config_in_the_folder_is_refused(tmp_path):
    task = tiny_task()
    RunDir.create(tmp_path / "run", run_config_dict(task, tiny_cfg(task), "smoke"))
    with pytest.raises(ValueError, match=r"another config \(config\.search\.epochs: 2 -> 3\)"):
        pipeline.run(task, preset="smoke", out=tmp_path / "run", verbose=False, **{**TINY, "search_epochs": 3})
    with pytest.raises(ValueError, match=r"already holds a run; pass resume=True"):
        pipeline.run(task, preset="smoke", out=tmp_path / "run", resume=False, verbose=False, **TINY)


def test_non_finite_loss_stops_with_the_checkpoint_kept(tmp_path, monkeypatch):
    poison = {"on": False}

    def loss_fn(y_hat, y):
        return F.cross_entropy(y_hat, y) * (float("nan") if poison["on"] else 1.0)

    task = tiny_task(loss_fn=loss_fn)
    cfg = tiny_cfg(task, tune_enabled=False)
    rd = RunDir.create(tmp_path / "run", {"task": "tiny"})
    card = pipeline.search(task, cfg, rd)
    original_save = RunDir.save_checkpoint

    def poison_after_first_epoch(self, stage, epoch, *args, **kwargs):
        path = original_save(self, stage, epoch, *args, **kwargs)
        poison["on"] = stage == "retrain"
        return path

    monkeypatch.setattr(RunDir, "save_checkpoint", poison_after_first_epoch)
    with pytest.raises(NonFiniteLossError, match=r"retrain: the training loss became nan at epoch 2, step 1; "
                                                 r"the stage stopped and its last good checkpoint .*retrain\.json"):
        pipeline.retrain(task, cfg, rd, card)
    monkeypatch.undo()
    assert json.loads((rd.path / "checkpoints" / "retrain.json").read_text())["epoch"] == 0
    assert not rd.is_done("retrain")
    poison["on"] = False
    result = pipeline.retrain(task, cfg, rd, card)  # resumes from the kept checkpoint
    assert [r["epoch"] for r in rd.read_history("retrain")] == [1, 2, 3] and math.isfinite(result["test"])


def test_bad_task_arguments_are_rejected(tmp_path):
    with pytest.raises(TypeError, match=r"task = 3: expected a registered task name"):
        pipeline.run(3, out=tmp_path / "x")
    with pytest.raises(ValueError, match=r"unknown task 'no_such_task'; known tasks: "):
        pipeline.run("no_such_task", out=tmp_path / "x")
    task = tiny_task()
    with pytest.raises(TypeError, match=r"cfg = \{\}: expected a dashkit.config.RunConfig"):
        pipeline.search(task, {}, tmp_path / "x")
    with pytest.raises(ValueError, match=r"unknown setting 'search_epoch' \(did you mean 'search_epochs'\?\)"):
        pipeline.run(task, out=tmp_path / "x", search_epoch=3)
    assert not (tmp_path / "x").exists()  # nothing is created before the input is checked
    images = TensorDataset(torch.randn(4, 1, 8, 8), torch.zeros(4).long())
    flat2d = Task(name="img", kind="classification", train=images, val=images, test=images, in_shape=(1, 8, 8),
                  num_outputs=2, metric_name="error_pct")  # the default TaskDefaults name a 1D backbone
    with pytest.raises(ValueError, match=r"backbone 'resnet1d' is 1D but task 'img' is 2D"):
        pipeline.build_backbone(flat2d, make_config("smoke", flat2d.defaults))


def test_evaluate_computes_the_metric_once_over_the_whole_split():
    # macro F1 averaged per batch differs from macro F1 over the split; evaluate must give the latter
    x = torch.eye(3).repeat(4, 1)[:, :, None]  # (12, 3, 1)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 0, 0, 1, 1, 1])
    task = Task(name="f1", kind="classification", train=TensorDataset(x, y), val=TensorDataset(x, y),
                test=TensorDataset(x, y), in_shape=(3, 1), num_outputs=3, metric_name="1-macro_f1")
    model = torch.nn.Flatten()  # logits = the one-hot input: predicts 0, 1, 2, 0, 1, 2, ...
    metric, loss = pipeline.evaluate(model, task.test, task, batch_size=3)
    assert metric == pytest.approx(task.metric(x[:, :, 0], y))
    per_batch = sum(task.metric(x[i:i + 3, :, 0], y[i:i + 3]) for i in range(0, 12, 3)) / 4
    assert abs(metric - per_batch) > 0.05
    assert loss == pytest.approx(F.cross_entropy(x[:, :, 0], y).item())


# ---------------------------------------------------------------------------------------------- the learning test
@pytest.mark.slow
def test_search_finds_the_long_receptive_field_a_task_needs(tmp_path):
    """Two spikes 44 or 56 steps apart: the default ResNet1D (receptive field 40) cannot tell the gaps apart."""
    make = lambda n, seed: spikes(n, seed, 96, (44, 56), (16, 24))  # noqa: E731
    task = Task(name="longrange", kind="classification", train=make(384, 0), val=make(256, 1), test=make(256, 2),
                in_shape=(1, 96), num_outputs=2, metric_name="error_pct",
                defaults=TaskDefaults(backbone="resnet1d", backbone_kwargs={"width": 4}, kernel_sizes=(3, 5, 7),
                                      dilations=(1, 4, 8)))
    res = pipeline.run(task, out=tmp_path / "run", seed=3, figures=False, verbose=False, search_backend="fft",
                       search_epochs=6, search_batches_per_epoch=1.0, search_batch_size=32, search_grad_scale=10.0,
                       search_max_batches=None, tune_enabled=False, retrain_epochs=8, retrain_batch_size=32,
                       retrain_max_batches=None, retrain_lr=0.05, search_milestones=(0.7,), retrain_milestones=(0.75,),
                       search_rf_penalty=1e-5, search_arch_lr_steps=None,  # DASH's push against wide fields, DASH's lr
                       search_warmup=0.0)  # and alpha from the first step, as DASH: the regime the count was calibrated on
    default = pipeline.build_backbone(task, res.config)
    default_field = 1 + sum(m.kernel_size[0] - 1 for n, m in default.named_modules()
                            if isinstance(m, torch.nn.Conv1d) and m.kernel_size[0] > 1)
    searched_field = 1 + sum(layer.d * (layer.k - 1) for layer in res.card.layers)
    assert default_field == 40 and searched_field > 2 * default_field
    # the search moved alpha's mass toward larger fields in most layers, against DASH's push towards small ones
    # (measured: 8 of 9 layers; without the push, the presets' default, 6 of 9, which chance gives 25% of the time)
    alphas = torch.tensor(RunDir(tmp_path / "run").read_json("alphas.json")["epochs"][-1])  # (layers, M)
    fields = torch.tensor(res.card.space.receptive_fields, dtype=torch.float)
    assert int(((alphas @ fields) > fields.mean()).sum()) >= 7
    # chance is 50% error; 256 test examples put chance-level results beyond 40% with near certainty
    assert res.metrics["dash"] < 10.0
    assert res.metrics["baseline"] > 35.0  # the default kernels cannot see both spikes


def test_build_model_convolves_as_retrain_conv_backend_says():
    """DASH's network and the baseline alike: AutoConv layers (same weights and state-dict keys) unless "plain"."""
    from dashkit.layers import AutoConv1d

    from dashkit.space import SearchSpace
    from dashkit.supernet import discretize, to_supernet

    task = tiny_task()
    _, card = discretize(to_supernet(pipeline.build_backbone(task, tiny_cfg(task), "search"),
                                     SearchSpace((3, 5), (1, 2), dims=1)))
    dash = pipeline.build_model(task, tiny_cfg(task), card)
    assert all(type(m) is AutoConv1d and m.backend == "direct" for name, m in dash.named_modules()
               if name in {layer.name for layer in card.layers})  # TINY sets "direct"
    torch.manual_seed(0)
    plain = pipeline.build_model(task, tiny_cfg(task, retrain_conv_backend="plain"))
    torch.manual_seed(0)
    auto = pipeline.build_model(task, tiny_cfg(task, retrain_conv_backend="auto"))
    kinds = lambda m: [type(c).__name__ for c in m.modules() if isinstance(c, torch.nn.Conv1d)]  # noqa: E731
    assert "AutoConv1d" not in kinds(plain)
    # ResNet1D's odd kernels 5 and 3 become AutoConv1d; the even 8 ("same" needs asymmetric padding) and 1x1 do not
    assert kinds(auto).count("AutoConv1d") == 6 and all(m.backend == "auto" for m in auto.modules()
                                                         if isinstance(m, AutoConv1d))
    assert list(plain.state_dict()) == list(auto.state_dict())
    x = task.train[:8][0]
    torch.testing.assert_close(auto.eval()(x), plain.eval()(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"retrain_conv_backend = 'gpu': expected one of auto, fft, direct, plain"):
        tiny_cfg(task, retrain_conv_backend="gpu")


# ----------------------------------------------------------------------------------------------------- figures
def test_viz_figures_of_a_run_and_their_input_checks(tmp_path):
    task = tiny_task()
    res = pipeline.run(task, out=tmp_path / "run", verbose=False, **TINY)
    pngs = sorted(p.name for p in res.paths["figures"].glob("*.png"))
    assert pngs == ["alpha_evolution.png", "alpha_final.png", "choices.png", "comparison.png",
                    "learning_curves.png"]
    assert all(p.stat().st_size > 1000 for p in res.paths["figures"].glob("*.png"))
    rd = RunDir(tmp_path / "run")
    fig = viz.alpha_evolution(rd.read_json("alphas.json"))
    assert isinstance(fig, Figure) and sum(ax.get_visible() for ax in fig.axes if ax.get_title()) == 9
    fig = viz.alpha_evolution(rd.read_json("alphas.json"), layers=["blocks.0.conv1", "blocks.2.conv3"], cols=2)
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["blocks.0.conv1", "blocks.2.conv3"]
    assert len(viz.alpha_heatmap(res.card).axes[0].patches) == 9  # one frame per chosen candidate
    bars = viz.choices(res.card, default_kernels={"blocks.0.conv1": 8}).axes
    assert [b.get_height() for b in bars[0].patches] == [layer.k for layer in res.card.layers]
    curves = viz.learning_curves({"dash": rd.read_history("retrain")}, "error_pct")
    assert len(curves.axes[1].lines) == 1 and len(curves.axes[1].lines[0].get_xdata()) == 3
    comp = viz.comparison(rd.read_json("metrics.json"))
    assert [b.get_height() for b in comp.axes[0].containers[0]] == [res.metrics["dash"], res.metrics["baseline"]]
    with pytest.raises(ValueError, match=r"layers = \['nope'\] are not searched layers"):
        viz.alpha_evolution(rd.read_json("alphas.json"), layers=["nope"])
    with pytest.raises(ValueError, match=r"alphas must be a dict with keys \['layers', 'candidates', 'epochs'\]"):
        viz.alpha_evolution({"layers": []})
    with pytest.raises(ValueError, match=r"histories = \{\}"):
        viz.learning_curves({})


def test_a_one_point_tuning_grid_runs(tmp_path):
    # Optuna's GridSampler looked up a grid id that enqueued trials lack when one grid point was left (KeyError)
    import json as _json

    import dashkit

    res = dashkit.run("digits", preset="smoke", out=tmp_path / "one", verbose=False, figures=False,
                      tune_lrs=(0.05,), tune_undecided="best", search_epochs=1, retrain_epochs=1,
                      search_backend="fft")  # smoke's tuning never decides: keep its one configuration
    tuned = _json.loads((tmp_path / "one" / "tune.json").read_text())
    assert tuned["best"]["lr"] == 0.05 and len(tuned["trials"]) == 1
    assert res.hparams["dash"]["lr"] == 0.05
