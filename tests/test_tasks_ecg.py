"""The synthetic ECG task: shapes, priors, cache, rhythm statistics and a difficulty that bites."""
import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import dashkit.tasks
from dashkit.tasks import offline_ecg as E

SMALL = dict(n_train=30, n_val=20, n_test=20, length=600)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHKIT_DATA", str(tmp_path / "data"))


def _rr_cv(beat_times):
    """Coefficient of variation of the RR intervals of each window."""
    return np.array([np.std(np.diff(b)) / np.mean(np.diff(b)) for b in beat_times])


def _features(x, fs=300):
    """Hand features of (N, L) windows: log power in 1-Hz bands, autocorrelation up to 2 s, a few statistics."""
    f = np.fft.rfftfreq(x.shape[1], 1 / fs)
    power = np.abs(np.fft.rfft(x, axis=1)) ** 2
    bands = [power[:, (f >= lo) & (f < lo + 1)].sum(1) for lo in range(40)] + [power[:, f >= 40].sum(1)]
    xc = x - x.mean(1, keepdims=True)
    ac = np.fft.irfft(np.abs(np.fft.rfft(xc, n=2 * x.shape[1], axis=1)) ** 2, axis=1)[:, : x.shape[1]]
    ac = (ac / ac[:, :1])[:, 6:600:6]
    stats = [np.abs(np.diff(x, axis=1)).mean(1), (x ** 4).mean(1), np.abs(x).max(1)]
    return np.concatenate([np.log(np.stack(bands, 1) + 1e-6), ac, np.stack(stats, 1)], 1)


def _feature_model_f1(difficulty):
    task = E.ecg_synth(n_train=1200, n_val=1, n_test=600, difficulty=difficulty, seed=5)
    (xtr, ytr), (xte, yte) = task.train.tensors, task.test.tensors
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    model.fit(_features(xtr[:, 0].numpy()), ytr.numpy())
    pred = model.predict(_features(xte[:, 0].numpy()))
    return f1_score(yte.numpy(), pred, average="macro"), yte.numpy()


def test_shapes_dtypes_and_z_scoring():
    task = dashkit.tasks.get("ecg_synth", **SMALL)
    assert task.kind == "classification" and task.metric_name == "1-macro_f1" and task.num_outputs == 4
    assert task.in_shape == (1, 600) and task.defaults.backbone == "resnet1d"
    assert task.info["classes"] == ["normal", "af", "other", "noisy"] and "CinC" in task.info["credit"]
    for split, n in (("train", 30), ("val", 20), ("test", 20)):
        x, y = getattr(task, split).tensors
        assert x.shape == (n, 1, 600) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64 and 0 <= y.min() and y.max() <= 3
        torch.testing.assert_close(x.mean(-1), torch.zeros(n, 1), atol=1e-4, rtol=0)
        torch.testing.assert_close(x.std(-1, unbiased=False), torch.ones(n, 1), atol=1e-3, rtol=0)


def test_class_priors():
    y = E.ecg_synth(n_train=2500, n_val=1, n_test=1, length=600, seed=1).train.tensors[1]
    share = torch.bincount(y, minlength=4).double() / len(y)
    np.testing.assert_allclose(share.numpy(), E.PRIORS, atol=0.025)


def test_seed_determinism_and_difference(tmp_path, monkeypatch):
    a = E.ecg_synth(seed=2, **SMALL)
    monkeypatch.setenv("DASHKIT_DATA", str(tmp_path / "other"))  # fresh cache: really regenerate
    b = E.ecg_synth(seed=2, **SMALL)
    c = E.ecg_synth(seed=3, **SMALL)
    for split in ("train", "val", "test"):
        assert torch.equal(getattr(a, split).tensors[0], getattr(b, split).tensors[0])
        assert torch.equal(getattr(a, split).tensors[1], getattr(b, split).tensors[1])
        assert not torch.equal(getattr(a, split).tensors[0], getattr(c, split).tensors[0])
    d = E.ecg_synth(seed=2, **dict(SMALL, n_train=50))
    assert torch.equal(a.test.tensors[0], d.test.tensors[0])  # each split has its own stream


def test_cache_is_reused_and_truncation_regenerates(tmp_path, monkeypatch):
    first = E.ecg_synth(**SMALL)
    files = sorted((tmp_path / "data" / "ecg_synth").glob("*.npz"))
    assert len(files) == 1
    real = E.synth_ecg

    def boom(*args, **kwargs):
        raise AssertionError("regenerated although the cache exists")

    monkeypatch.setattr(E, "synth_ecg", boom)
    again = E.ecg_synth(**SMALL)
    assert torch.equal(first.train.tensors[0], again.train.tensors[0])
    with pytest.raises(AssertionError, match="regenerated"):
        E.ecg_synth(**dict(SMALL, difficulty=0.3))

    size = files[0].stat().st_size
    files[0].write_bytes(files[0].read_bytes()[: size - 200])
    calls = []
    monkeypatch.setattr(E, "synth_ecg", lambda *a, **k: calls.append(1) or real(*a, **k))
    with pytest.warns(RuntimeWarning, match="unreadable"):
        repaired = E.ecg_synth(**SMALL)
    assert len(calls) == 3 and files[0].stat().st_size == size
    assert torch.equal(first.val.tensors[0], repaired.val.tensors[0])
    assert torch.equal(first.val.tensors[1], repaired.val.tensors[1])


@pytest.mark.parametrize("kwargs, error, pattern", [
    (dict(difficulty=1.5), ValueError, r"difficulty=1\.5 .*\[0\.0, 1\.0\]"),
    (dict(difficulty=float("nan")), ValueError, r"difficulty=nan"),
    (dict(difficulty=None), TypeError, r"difficulty=None .*number"),
    (dict(fs=50), ValueError, r"fs=50 .*\[100, 5000\]"),
    (dict(fs=300.0), TypeError, r"fs=300\.0 .*integer"),
    (dict(length=500), ValueError, r"length=500 .*\[600, 1000000\]"),
    (dict(n_train=0), ValueError, r"n_train=0 .*>= 1"),
    (dict(seed=True), TypeError, r"seed=True"),
])
def test_parameter_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        E.ecg_synth(**dict(SMALL, **kwargs))


def test_gaussian_sum_matches_the_dense_formula():
    t = np.arange(900) / 300.0
    waves = np.array([[1.0, 0.5, 0.01], [0.3, 1.2, 0.05], [-0.2, -0.1, 0.06], [0.5, 2.99, 0.04], [2.0, 9.0, 0.02]])
    dense = (waves[:, :1] * np.exp(-0.5 * ((t[None] - waves[:, 1:2]) / waves[:, 2:3]) ** 2)).sum(0)
    np.testing.assert_allclose(E._gaussians(900, 300.0, waves), dense, rtol=0, atol=1e-7)


def test_synth_ecg_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"labels=.*integers in 0\.\.3"):
        E.synth_ecg([0, 4])
    with pytest.raises(ValueError, match=r"labels=.*integers in 0\.\.3"):
        E.synth_ecg([0.5])


@pytest.mark.parametrize("difficulty, ratio", [(0.0, 6.0), (0.5, 2.0), (1.0, 1.15)])
def test_af_rr_intervals_are_more_irregular(difficulty, ratio):
    w = E.synth_ecg([0] * 80 + [1] * 80, difficulty=difficulty, seed=4)
    assert all(len(b) >= 2 for b in w.beat_times)
    assert all(((b >= 0) & (b < 1000 / 300)).all() for b in w.beat_times)
    cv = _rr_cv(w.beat_times)
    normal, af = cv[:80], cv[80:]
    # AF is irregular at every difficulty, but less and less so next to an ever more variable sinus rhythm
    assert np.median(af) > ratio * np.median(normal)
    if difficulty == 1.0:
        assert np.median(af) < 3 * np.median(normal)


def test_knobs_move_from_easy_to_hard():
    easy, mid, hard = E.knobs(0.0), E.knobs(0.5), E.knobs(1.0)
    assert easy.emg_max < mid.emg_max < hard.emg_max and easy.f_wave > mid.f_wave > hard.f_wave
    assert mid.subtle_other == pytest.approx((easy.subtle_other + hard.subtle_other) / 2)
    assert hard.normal_hr_lo < 58 and hard.normal_hr_hi > 100  # into the brady / tachy borders
    with pytest.raises(ValueError, match=r"difficulty=-0\.5 .*\[0\.0, 1\.0\]"):
        E.knobs(-0.5)


def test_rhythm_bookkeeping_and_rates():
    labels = [0] * 60 + [2] * 200 + [3] * 40
    w = E.synth_ecg(labels, difficulty=0.0, seed=6)
    assert (w.rhythm[:260] == np.asarray(labels[:260])).all() and set(w.rhythm[260:]) <= {0, 1, 2}
    assert all(k.startswith("noisy_") for k in w.kind[260:])
    kinds = {k.replace("subtle_", "") for k in w.kind[60:260]}
    assert kinds == set(E.OTHER_KINDS)
    mean_rr = np.array([np.mean(np.diff(b)) if len(b) > 1 else np.nan for b in w.beat_times])
    brady = [i for i, k in enumerate(w.kind) if k == "brady"]
    tachy = [i for i, k in enumerate(w.kind) if k == "tachy"]
    normal_rr = mean_rr[:60]
    assert np.nanmin(mean_rr[brady]) > np.max(normal_rr) and np.max(mean_rr[tachy]) < np.min(normal_rr)


def test_feature_model_beats_chance_and_difficulty_hurts():
    f1_easy, y = _feature_model_f1(0.0)
    f1_default, _ = _feature_model_f1(0.5)
    f1_hard, _ = _feature_model_f1(1.0)
    # chance: predicting by the class priors gives macro-F1 = mean prior = 0.25; the majority class ~0.19
    rng = np.random.default_rng(0)
    chance = f1_score(y, rng.choice(4, size=len(y), p=E.PRIORS), average="macro")
    assert chance < 0.35
    assert f1_easy > 0.75 and f1_default > 0.5 and f1_hard > chance + 0.12
    assert f1_easy > f1_default + 0.08 and f1_default > f1_hard + 0.05
