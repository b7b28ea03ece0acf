"""NAS-Bench-360 loaders on tiny files written in each task's exact original format (tests/nb360_fixtures.py)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dashkit.tasks as tasks
from dashkit.metrics import METRICS, one_minus_auroc_masked
from dashkit.tasks import nb360
from dashkit.tasks._common import PointwiseGaussian
from dashkit.tasks.base import split_targets

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nb360_fixtures as fx  # noqa: E402

NB360 = ["nb360_cifar100", "nb360_spherical", "nb360_ninapro", "nb360_fsd50k", "nb360_darcy", "nb360_psicov",
         "nb360_cosmic", "nb360_ecg", "nb360_satellite", "nb360_deepsea"]


def stack(ds, key=0):
    return torch.stack([ds[i][key] for i in range(len(ds))])


# -------------------------------------------------------------------------------------------- common
def test_every_task_is_registered():
    assert tasks.names("nb360_*") == sorted(NB360)


@pytest.mark.parametrize("name", NB360)
def test_root_is_required_and_must_exist(name, tmp_path):
    with pytest.raises(TypeError, match="root is required"):
        tasks.get(name)
    with pytest.raises(TypeError, match=r"root=3 is not a folder path"):
        tasks.get(name, root=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tasks.get(name, root=tmp_path / "nowhere")


@pytest.mark.parametrize("limit, error", [(0, ValueError), (-1, ValueError), (2.5, TypeError), (True, TypeError)])
def test_bad_limit(limit, error, tmp_path):
    fx.write_ninapro(tmp_path)
    with pytest.raises(error, match=r"limit=.*accepted: None \(every sample\) or an integer >= 1"):
        nb360.ninapro(root=tmp_path, limit=limit)


@pytest.mark.parametrize("name, kwargs, error, match", [
    ("nb360_psicov", dict(clip=0), ValueError, r"clip=0 is out of range; accepted: a finite number in \(0\.0, inf\)"),
    ("nb360_psicov", dict(eval_size=0), ValueError,
     r"eval_size=0 is out of range; accepted: None \(the split's longest protein\) or an integer >= 1"),
    ("nb360_cosmic", dict(crop=2.5), TypeError,
     r"crop=2\.5 has type float; accepted: None \(the whole image\) or an integer >= 1"),
    ("nb360_cosmic", dict(val_fraction=1.0), ValueError,
     r"val_fraction=1\.0 is out of range; accepted: a finite number in \(0\.0, 1\.0\)"),
    ("nb360_cosmic", dict(seed=-1), ValueError, r"seed=-1 is out of range; accepted: an integer >= 0"),
    ("nb360_ecg", dict(seed="0"), TypeError, r"seed='0' has type str; accepted: an integer >= 0"),
    ("nb360_ecg", dict(stride=0), ValueError, r"stride=0 is out of range; accepted: an integer >= 1"),
    ("nb360_spherical", dict(seed=1.0), TypeError, r"seed=1\.0 has type float"),
    ("nb360_cifar100", dict(val_size=True), TypeError, r"val_size=True has type bool"),
    ("nb360_darcy", dict(step=0), ValueError, r"step=0 is out of range"),
])
def test_bad_options_fail_before_any_file_is_read(name, kwargs, error, match, tmp_path):
    with pytest.raises(error, match=match):
        tasks.get(name, root=tmp_path, **kwargs)  # an empty folder: a file error would mean the check came late


def test_limit_keeps_the_first_samples_of_each_split(tmp_path):
    written = fx.write_ninapro(tmp_path)
    task = nb360.ninapro(root=tmp_path, limit=3)
    assert [len(task.train), len(task.val), len(task.test)] == [3, 3, 3]
    assert torch.equal(task.test[2][0][0], torch.from_numpy(written["test"][0][2].T))


# ------------------------------------------------------------------------------------------ CIFAR-100
@pytest.mark.parametrize("extracted", [False, True])
def test_cifar100_splits_shapes_and_values(tmp_path, extracted):
    written = fx.write_cifar100(tmp_path, extracted=extracted)
    task = tasks.get("nb360_cifar100", root=tmp_path, val_size=4, augment=False)
    assert (len(task.train), len(task.val), len(task.test)) == (8, 4, 6)
    assert task.in_shape == (3, 32, 32) and task.num_outputs == 100 and task.kind == "classification"
    data, labels = written["train"]
    x, y = task.val[1]  # the last 4 training images are the validation split: this is image 9
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and int(y) == labels[9]
    mean, std = np.array(nb360._CIFAR_MEAN), np.array(nb360._CIFAR_STD)
    expected = (data[9].reshape(3, 32, 32) / 255.0 - mean[:, None, None]) / std[:, None, None]
    torch.testing.assert_close(x, torch.tensor(expected, dtype=torch.float32))
    assert float(x[2, 31, 0]) == pytest.approx((data[9][2 * 1024 + 31 * 32] / 255 - mean[2]) / std[2], abs=1e-5)
    assert [int(task.test[i][1]) for i in range(6)] == list(written["test"][1])
    assert task.defaults.search == {"grad_scale": 5000}
    assert task.defaults.kernel_sizes == (3, 5, 7, 9) and task.defaults.dilations == (1, 3, 7, 15)
    assert task.defaults.backbone == "wrn" and task.defaults.backbone_kwargs == {"dims": 2}


def test_cifar100_augmentation_is_a_crop_and_flip_of_the_normalised_image(tmp_path):
    fx.write_cifar100(tmp_path)
    plain = nb360.cifar100(root=tmp_path, val_size=4, augment=False)
    aug = nb360.cifar100(root=tmp_path, val_size=4, augment=True)
    base = F.pad(plain.train[3][0], (4, 4, 4, 4))
    candidates = [c for i in range(9) for j in range(9) for c in
                  (base[:, i:i + 32, j:j + 32], base[:, i:i + 32, j:j + 32].flip(-1))]
    draws = [aug.train[3][0] for _ in range(12)]
    for x in draws:
        assert any(torch.equal(x, c) for c in candidates)
    assert not all(torch.equal(x, plain.train[3][0]) for x in draws)  # 12 identity draws: chance 1/162**12


def test_cifar100_metric_is_zero_on_perfect_predictions(tmp_path):
    fx.write_cifar100(tmp_path)
    task = nb360.cifar100(root=tmp_path, val_size=4)
    y = stack(task.test, 1)
    assert task.metric(F.one_hot(y, 100).float(), y) == 0.0
    assert task.metric(F.one_hot((y + 1) % 100, 100).float(), y) == 100.0


def test_cifar100_missing_and_truncated(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar-100-python\.tar\.gz.*cifar-100-python/train"):
        nb360.cifar100(root=tmp_path)
    fx.write_cifar100(tmp_path)
    fx.truncate(tmp_path / "cifar-100-python.tar.gz")
    with pytest.raises(ValueError, match=r"could not read .*cifar-100-python\.tar\.gz.*truncated"):
        nb360.cifar100(root=tmp_path, val_size=4)


def test_cifar100_bad_val_size(tmp_path):
    fx.write_cifar100(tmp_path)
    with pytest.raises(ValueError, match=r"val_size=12: the training file has only 12 images"):
        nb360.cifar100(root=tmp_path, val_size=12)


# ------------------------------------------------------------------------------------------ Spherical
def test_spherical_reads_gzip_pickle(tmp_path):
    written = fx.write_spherical(tmp_path)
    task = nb360.spherical(root=tmp_path, val_size=3, seed=0)
    assert (len(task.train), len(task.val), len(task.test)) == (7, 3, 4)
    assert task.in_shape == (3, 6, 6) and task.defaults.search == {"grad_scale": 500}
    order = np.random.default_rng(0).permutation(10)
    x, y = task.val[0]
    torch.testing.assert_close(x, torch.tensor(written["train"]["images"][order[-3]] / 255.0, dtype=torch.float32))
    assert int(y) == written["train"]["labels"][order[-3]]
    assert float(task.test[1][0][1, 4, 5]) == pytest.approx(written["test"]["images"][1, 1, 4, 5] / 255.0)
    y_test = stack(task.test, 1)
    assert task.metric(F.one_hot(y_test, 100).float(), y_test) == 0.0


def test_spherical_missing_and_truncated(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"s2_cifar100\.gz not found in .*expected there: s2_cifar100\.gz"):
        nb360.spherical(root=tmp_path)
    fx.write_spherical(tmp_path)
    fx.truncate(tmp_path / "s2_cifar100.gz")
    with pytest.raises(ValueError, match=r"s2_cifar100\.gz.*truncated"):
        nb360.spherical(root=tmp_path, val_size=3)


# -------------------------------------------------------------------------------------------- NinaPro
def test_ninapro_shapes_values_and_space(tmp_path):
    written = fx.write_ninapro(tmp_path)
    task = nb360.ninapro(root=tmp_path)
    assert (len(task.train), len(task.val), len(task.test)) == (8, 4, 5)
    assert task.in_shape == (1, 16, 52)
    x, y = task.val[2]
    raw, labels = written["val"]
    assert x.shape == (1, 16, 52) and float(x[0, 11, 40]) == pytest.approx(float(raw[2, 40, 11]))
    assert int(y) == labels[2]
    assert task.defaults.kernel_sizes == (3, 5, 7) and task.defaults.dilations == (1, 3, 7)
    y_test = stack(task.test, 1)
    assert task.metric(F.one_hot(y_test, 18).float(), y_test) == 0.0
    for split in (task.train, task.val, task.test):  # ArrayDataset: the targets without converting any input
        assert torch.equal(split_targets(split), stack(split, 1))


def test_ninapro_missing_lists_every_expected_file(tmp_path):
    fx.write_ninapro(tmp_path)
    (tmp_path / "label_val.npy").unlink()
    (tmp_path / "ninapro_test.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"label_val\.npy, ninapro_test\.npy not found.*expected there: "
                                                r"ninapro_train\.npy, label_train\.npy, ninapro_val\.npy"):
        nb360.ninapro(root=tmp_path)


def test_ninapro_truncated(tmp_path):
    fx.write_ninapro(tmp_path)
    fx.truncate(tmp_path / "ninapro_train.npy")
    with pytest.raises(ValueError, match=r"ninapro_train\.npy.*truncated"):
        nb360.ninapro(root=tmp_path)


def test_pickled_npy_is_refused_where_the_format_has_no_pickle(tmp_path):
    fx.write_ninapro(tmp_path)
    np.save(tmp_path / "label_test.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match=r"label_test\.npy.*allow_pickle"):
        nb360.ninapro(root=tmp_path)


# --------------------------------------------------------------------------------------------- FSD50K
def test_mel_filterbank_triangles():
    fb = nb360.mel_filterbank(961, 96, 22050)
    assert fb.shape == (961, 96)
    assert float(fb.min()) == 0.0 and float(fb.max()) <= 1.0
    freqs = np.linspace(0, 11025, 961)
    mel = 2595 * np.log10(1 + freqs / 700)
    centres = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 11025 / 700), 98) / 2595) - 1)[1:-1]
    peaks = freqs[fb.argmax(0).numpy()]  # each filter peaks at one of the two STFT bins around its mel centre
    assert np.all(np.abs(peaks - centres) < 11025 / 960)
    edges = np.concatenate([[0.0], centres, [11025.0]])
    outside = (freqs[:, None] <= edges[None, :-2]) | (freqs[:, None] >= edges[None, 2:])
    assert float(fb[torch.from_numpy(outside)].abs().max()) == 0.0  # zero beyond the neighbours' centres
    inside = fb.numpy()[~outside]
    assert inside.size > 0 and np.all(inside > 0)
    assert np.all(np.diff(mel) > 0)


def test_log_mel_matches_a_direct_dft_of_one_frame():
    torch.manual_seed(0)
    wave = torch.randn(22050)
    out = nb360.log_mel_spectrogram(wave)
    assert out.shape == (96, 101)
    n_fft, win, hop, t = 1920, 661, 220, 50
    window = np.zeros(n_fft)
    window[(n_fft - win) // 2:(n_fft - win) // 2 + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)
    frame = wave.double().numpy()[t * hop - n_fft // 2:t * hop + n_fft // 2] * window
    power = np.abs(np.fft.rfft(frame)) ** 2
    db = 10 * np.log10(np.maximum(nb360.mel_filterbank(961, 96, 22050).double().numpy().T @ power, 1e-10))
    np.testing.assert_allclose(out[:, t].double().numpy(), db, atol=1e-3)


def test_log_mel_puts_a_tone_in_its_mel_band():
    centres = 700 * (10 ** (np.linspace(0, 2595 * np.log10(1 + 11025 / 700), 98) / 2595) - 1)[1:-1]
    t = torch.arange(22050, dtype=torch.float64) / 22050
    out = nb360.log_mel_spectrogram(torch.sin(2 * np.pi * centres[40] * t).float())
    assert int(out[:, 20:80].mean(1).argmax()) == 40


def test_fsd50k_reads_manifests_wavs_and_labels(tmp_path):
    rows = fx.write_fsd50k(tmp_path)
    task = nb360.fsd50k(root=tmp_path)
    assert (len(task.train), len(task.val), len(task.test)) == (3, 2, 2)
    assert task.kind == "multilabel" and task.num_outputs == 3 and task.in_shape == (1, 96, 101)
    x, y = task.val[0]  # val chunk 0 is the 4th chunk written: labels Bark, Meow
    assert x.shape == (1, 96, 101) and x.dtype == torch.float32
    assert y.tolist() == [1.0, 1.0, 0.0]
    assert abs(float(x.mean())) < 1e-4  # centred on the chunk's mean
    from scipy.io import wavfile

    _, wave = wavfile.read(tmp_path / "clips" / Path(rows["val"][0]["files"]).name)  # found under root/clips
    feats = nb360.log_mel_spectrogram(torch.from_numpy(wave.astype(np.float32) / 32768.0))
    torch.testing.assert_close(x[0], feats - feats.mean())
    assert stack(task.test, 1).tolist() == [[0.0, 1.0, 1.0], [0.0, 0.0, 1.0]]  # absolute paths in eval.csv
    y_all = stack(task.train, 1)
    assert task.metric(y_all, y_all) == pytest.approx(0.0, abs=1e-12)
    assert task.defaults.tune == {"lrs": (1e-2, 1e-3, 1e-4)}
    for split in (task.train, task.val, task.test):  # the labels without decoding any audio
        assert torch.equal(split_targets(split), stack(split, 1))


def test_fsd50k_short_chunk_is_tiled_to_one_second(tmp_path):
    from scipy.io import wavfile

    rows = fx.write_fsd50k(tmp_path)
    wave = (np.sin(np.linspace(0, 200, 5000)) * 9000).astype(np.int16)
    wavfile.write(tmp_path / rows["train"][0]["files"], 22050, wave)
    x, _ = nb360.fsd50k(root=tmp_path).train[0]
    tiled = np.tile(wave, 5)[:22050].astype(np.float32) / 32768.0
    feats = nb360.log_mel_spectrogram(torch.from_numpy(tiled))
    torch.testing.assert_close(x[0], feats - feats.mean())


def test_fsd50k_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"tr\.csv, val\.csv, eval\.csv, lbl_map\.json not found"):
        nb360.fsd50k(root=tmp_path)
    fx.write_fsd50k(tmp_path)
    (tmp_path / "clips" / "val_1.wav").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 audio chunk\(s\) listed in val\.csv not found.*"
                                                r"/machine/that/cut/the/chunks/clips/val_1\.wav"):
        nb360.fsd50k(root=tmp_path)


def test_fsd50k_wrong_rate_and_truncated_label_map(tmp_path):
    from scipy.io import wavfile

    rows = fx.write_fsd50k(tmp_path)
    wavfile.write(tmp_path / rows["train"][1]["files"], 16000, np.zeros(16000, dtype=np.int16))
    task = nb360.fsd50k(root=tmp_path)
    with pytest.raises(ValueError, match=r"train_1\.wav' is sampled at 16000 Hz; expected 22050 Hz"):
        task.train[1]
    fx.truncate(tmp_path / "lbl_map.json")
    with pytest.raises(ValueError, match=r"lbl_map\.json.*truncated"):
        nb360.fsd50k(root=tmp_path)


# ---------------------------------------------------------------------------------------------- Darcy
def _darcy_versions():
    versions = ["v5"]
    try:
        import h5py  # noqa: F401

        versions.append("v73")
    except ImportError:
        pass
    return versions


@pytest.mark.parametrize("version", _darcy_versions())
def test_read_mat_fields_puts_axes_in_matlab_order(tmp_path, version):
    written = fx.write_darcy(tmp_path, version=version)
    name = "piececonst_r421_N1024_smooth1.mat"
    got = nb360.read_mat_fields(tmp_path / name, ("coeff", "sol"), n=5, step=5)
    for field in ("coeff", "sol"):
        assert got[field].shape == (5, 5, 5) and got[field].dtype == np.float32
        np.testing.assert_allclose(got[field], written[name][field][:5, ::5, ::5], rtol=1e-6)
    assert got["sol"][3, 1, 4] == pytest.approx(written[name]["sol"][3, 5, 20], rel=1e-6)  # not transposed


@pytest.mark.parametrize("version", _darcy_versions())
def test_darcy_splits_normalisation_and_decoded_metric(tmp_path, version):
    written = fx.write_darcy(tmp_path, version=version)
    task = nb360.darcy(root=tmp_path, n_train=8, n_val=2, n_test=3, step=5)
    assert (len(task.train), len(task.val), len(task.test)) == (8, 2, 3)
    assert task.kind == "dense" and task.in_shape == (3, 5, 5) and task.num_outputs == 1
    dev = written["piececonst_r421_N1024_smooth1.mat"]
    x_val, y_val = task.val[1]  # sample 9 of smooth1
    torch.testing.assert_close(task.decode(y_val)[0], torch.tensor(dev["sol"][9, ::5, ::5], dtype=torch.float32),
                               rtol=1e-4, atol=1e-7)
    axis = torch.linspace(0, 1, 5)
    assert torch.equal(x_val[1], axis.expand(5, 5)) and torch.equal(x_val[2], axis[:, None].expand(5, 5))
    y_train = stack(task.train, 1)
    assert y_train.mean(0).abs().max() < 1e-5  # normalised per grid point on the training split
    coeff = stack(task.train, 0)[:, 0]
    assert coeff.mean(0).abs().max() < 1e-5
    y_test = stack(task.test, 1)
    assert task.metric(y_test, y_test) == pytest.approx(0.0, abs=1e-7)
    noisy = y_test + 0.1
    sol = torch.tensor(written["piececonst_r421_N1024_smooth2.mat"]["sol"][:3, ::5, ::5], dtype=torch.float64)
    expected = ((task.decode(noisy)[:, 0].double() - sol).flatten(1).norm(dim=1) / sol.flatten(1).norm(dim=1)).mean()
    assert task.metric(noisy, y_test) == pytest.approx(float(expected), rel=1e-4)
    assert float(task.loss(y_test, y_test)) == pytest.approx(0.0, abs=1e-6)
    assert float(task.loss(noisy, y_test)) == pytest.approx(float(expected), rel=1e-4)
    assert task.defaults.backbone_kwargs == {"dims": 2, "dense": True}
    assert task.defaults.search == {"lr": 0.01, "arch_lr": 0.005}


@pytest.mark.skipif("v73" not in _darcy_versions(), reason="h5py is not installed")
def test_darcy_v73_and_v5_give_the_same_task(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fx.write_darcy(tmp_path / "a", version="v5")
    fx.write_darcy(tmp_path / "b", version="v73")
    a = nb360.darcy(root=tmp_path / "a", n_train=8, n_val=2, n_test=3)
    b = nb360.darcy(root=tmp_path / "b", n_train=8, n_val=2, n_test=3)
    for split in ("train", "val", "test"):
        for key in (0, 1):
            torch.testing.assert_close(stack(getattr(a, split), key), stack(getattr(b, split), key))


@pytest.mark.skipif("v73" not in _darcy_versions(), reason="h5py is not installed")
def test_darcy_truncated_v73(tmp_path):
    fx.write_darcy(tmp_path, version="v73")
    fx.truncate(tmp_path / "piececonst_r421_N1024_smooth1.mat", keep=0.7)
    with pytest.raises(ValueError, match=r"piececonst_r421_N1024_smooth1\.mat.*truncated"):
        nb360.darcy(root=tmp_path, n_train=8, n_val=2, n_test=3)


def test_v73_without_h5py_says_how_to_install_it(tmp_path, monkeypatch):
    pytest.importorskip("h5py")
    fx.write_darcy(tmp_path, version="v73")
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(ImportError, match=r"MATLAB v7\.3.*pip install h5py"):
        nb360.darcy(root=tmp_path, n_train=8, n_val=2, n_test=3)


def test_darcy_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"piececonst_r421_N1024_smooth1\.mat, "
                                                r"piececonst_r421_N1024_smooth2\.mat not found"):
        nb360.darcy(root=tmp_path)
    fx.write_darcy(tmp_path)
    with pytest.raises(ValueError, match=r"smooth1\.mat holds 12 samples; 20 needed"):
        nb360.darcy(root=tmp_path, n_train=18, n_val=2, n_test=3)
    fx.truncate(tmp_path / "piececonst_r421_N1024_smooth2.mat", keep=0.6)
    with pytest.raises(ValueError, match=r"piececonst_r421_N1024_smooth2\.mat.*truncated"):
        nb360.darcy(root=tmp_path, n_train=8, n_val=2, n_test=3)


# --------------------------------------------------------------------------------------------- PSICOV
def test_psicov_features_layout():
    rng = np.random.default_rng(0)
    feats = fx._protein(7, rng)
    x = nb360.psicov_features(feats)
    assert x.shape == (57, 7, 7) and x.dtype == np.float32
    assert x[0, 2, 5] == np.float32(feats["ss"][0, 5]) and x[1, 2, 5] == np.float32(feats["ss"][0, 2])
    assert x[6 + 2 * 3, 1, 4] == np.float32(feats["pssm"][4, 3])  # pssm column 3, along rows
    assert x[50, 0, 6] == np.float32(feats["sa"][6]) and x[53, 0, 6] == np.float32(feats["entropy"][0])
    for plane, key in ((54, "ccmpred"), (55, "freecon"), (56, "potential")):
        np.testing.assert_array_equal(x[plane], feats[key].astype(np.float32))
    feats["pssm"] = feats["pssm"][:, :21]
    with pytest.raises(ValueError, match=r"feature 'pssm' has shape \(7, 21\); expected \(7, 22\)"):
        nb360.psicov_features(feats)


@pytest.mark.parametrize("pickled_maps", [True, False])
def test_psicov_splits_crops_and_full_maps(tmp_path, pickled_maps):
    written = fx.write_psicov(tmp_path, pickled_maps=pickled_maps)
    task = nb360.psicov(root=tmp_path, n_val=1, crop=8)
    assert (len(task.train), len(task.val), len(task.test)) == (3, 1, 2)
    assert task.in_shape == (57, 8, 8) and task.metric_name == "mae8"
    # training: a random 8x8 window of protein de001 (length 6 < 8: padded) and de002 (length 12: cropped)
    x, y = task.train[0]
    feats, dist = written["de001"]
    assert x.shape == (57, 8, 8) and y.shape == (1, 8, 8)
    assert torch.isnan(y[0, 6:]).all() and torch.isnan(y[0, :, 6:]).all() and (x[:, 6:] == 0).all()
    np.testing.assert_allclose(y[0, :6, :6].numpy(), np.clip(np.maximum(dist, 1.0), None, 16.0), rtol=1e-6)
    x, y = task.train[1]
    full = np.clip(np.maximum(written["de002"][1], 1.0), None, 16.0)
    windows = [(r, c) for r in range(5) for c in range(5)
               if np.allclose(full[r:r + 8, c:c + 8], y[0].numpy(), rtol=1e-6)]
    assert windows
    r, c = windows[0]
    assert float(x[54, 0, 0]) == pytest.approx(float(written["de002"][0]["ccmpred"][r, c]))
    # validation: the first deepcov protein, full map; test: full maps on a canvas of the longest (30)
    assert task.val[0][0].shape == (57, 10, 10)
    x, y = task.test[1]
    dist = written["ps001"][1]  # length 26, padded to 30
    assert x.shape == (57, 30, 30) and torch.isnan(y[0, 26:]).all()
    i, j = np.nonzero(np.abs(np.arange(26)[:, None] - np.arange(26)[None, :]) >= 24)
    np.testing.assert_allclose(y[0].numpy()[i, j], np.maximum(dist[i, j], 1.0), rtol=1e-6)
    near = np.abs(np.arange(30)[:, None] - np.arange(30)[None, :]) < 24
    assert torch.isnan(y[0][torch.from_numpy(near)]).all()
    y_test = stack(task.test, 1)
    assert int((y_test < 8).sum()) > 0
    assert task.metric(torch.nan_to_num(y_test), y_test) == 0.0
    assert task.metric(torch.nan_to_num(y_test) + 1.5, y_test) == pytest.approx(1.5)
    loss = task.loss(torch.nan_to_num(y_test) + 2.0, y_test)
    assert float(loss) == pytest.approx(4.0) and torch.isfinite(loss)


def test_psicov_missing_and_truncated(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"deepcov\.lst, psicov\.lst not found"):
        nb360.psicov(root=tmp_path)
    fx.write_psicov(tmp_path)
    (tmp_path / "psicov" / "features" / "ps000.pkl").unlink()
    with pytest.raises(FileNotFoundError, match=r"psicov\.lst not found.*ps000\.pkl"):
        nb360.psicov(root=tmp_path, n_val=1)


def test_psicov_truncated_files(tmp_path):
    fx.write_psicov(tmp_path)
    fx.truncate(tmp_path / "deepcov" / "features" / "de002.pkl")
    task = nb360.psicov(root=tmp_path, n_val=1, crop=8)
    with pytest.raises(ValueError, match=r"de002\.pkl.*truncated"):
        task.train[1]
    fx.truncate(tmp_path / "psicov" / "distance" / "ps001-cb.npy")
    with pytest.raises(ValueError, match=r"ps001-cb\.npy.*truncated"):
        nb360.psicov(root=tmp_path, n_val=1, crop=8)


def test_psicov_accepts_the_protein_subfolder(tmp_path):
    (tmp_path / "protein").mkdir()
    fx.write_psicov(tmp_path / "protein")
    task = nb360.psicov(root=tmp_path, n_val=2, crop=8, eval_size=32)
    assert (len(task.train), len(task.val)) == (2, 2) and task.test[0][0].shape == (57, 32, 32)


# --------------------------------------------------------------------------------------------- Cosmic
def test_cosmic_splits_crop_ignore_and_metric(tmp_path):
    written = fx.write_cosmic(tmp_path)
    task = nb360.cosmic(root=tmp_path, crop=8, seed=0)
    assert (len(task.train), len(task.val), len(task.test)) == (9, 1, 3)
    assert task.in_shape == (1, 8, 8) and task.metric_name == "1-auroc_masked"
    image, mask, ignore = written["./test/f435w/visit01/2_exp.npy"]
    x, y = task.test[1]
    np.testing.assert_allclose(x[0].numpy(), image[2:10, 2:10], rtol=1e-6)
    keep = ignore[2:10, 2:10] == 0
    assert torch.isnan(y[0][torch.from_numpy(~keep)]).all() and int((~keep).sum()) == 3
    np.testing.assert_array_equal(y[0].numpy()[keep], mask[2:10, 2:10][keep])
    y_test = stack(task.test, 1)
    perfect = torch.where(torch.isnan(y_test), torch.full_like(y_test, 9.0), y_test)  # garbage where ignored
    assert task.metric(perfect, y_test) == pytest.approx(0.0, abs=1e-12)
    assert task.metric(-perfect, y_test) == pytest.approx(1.0, abs=1e-12)
    assert task.defaults.search == {"lr": 0.01, "arch_lr": 0.005, "grad_scale": 1000}


def test_cosmic_training_images_get_a_sky_level(tmp_path):
    written = fx.write_cosmic(tmp_path)
    task = nb360.cosmic(root=tmp_path, crop=8, seed=0)
    order = np.random.default_rng(0).permutation(10)
    name = f"./train/f435w/visit01/{order[0] + 1}_exp.npy"
    sky = np.linspace(10.0, 20.0, 10)[order[0]]
    shifts = []
    for _ in range(5):
        x, _ = task.train[0]
        diff = x[0].double().numpy() - written[name][0][2:10, 2:10]
        assert np.ptp(diff) < 1e-3  # one constant added to every pixel
        shifts.append(diff.mean())
    assert all(-0.9 * sky - 1e-3 <= s <= 3.0 * sky + 1e-3 for s in shifts) and np.ptp(shifts) > 0


def test_cosmic_missing_and_truncated(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train_dirs\.npy, test_dirs\.npy not found"):
        nb360.cosmic(root=tmp_path)
    fx.write_cosmic(tmp_path)
    (tmp_path / "test" / "f435w" / "visit01" / "3_exp.npy").unlink()
    with pytest.raises(FileNotFoundError, match=r"1 image file\(s\) listed in test_dirs\.npy not found.*3_exp\.npy"):
        nb360.cosmic(root=tmp_path, crop=8)


def test_cosmic_truncated_image(tmp_path):
    fx.write_cosmic(tmp_path)
    fx.truncate(tmp_path / "test" / "f435w" / "visit01" / "1_exp.npy")
    task = nb360.cosmic(root=tmp_path, crop=8)
    with pytest.raises(ValueError, match=r"1_exp\.npy.*truncated"):
        task.test[0]


# ------------------------------------------------------------------------------------------------ ECG
def test_ecg_windows_use_class_dependent_strides():
    index = nb360.ecg_windows([3000, 3000, 3000, 3000, 900], [0, 1, 2, 3, 0], window=1000, stride=500)
    counts = np.bincount(index[:, 0], minlength=5)
    assert counts.tolist() == [len(range(0, 2000, s)) for s in (500, 83, 250, 25)] + [0]
    assert index[index[:, 0] == 1, 1][:3].tolist() == [0, 83, 166]


def test_ecg_zscore_split_and_windows(tmp_path):
    from sklearn.model_selection import train_test_split

    written = fx.write_ecg(tmp_path)
    task = nb360.ecg(root=tmp_path)
    train_idx, rest = train_test_split(np.arange(20), test_size=0.2, random_state=0)
    val_idx, test_idx = train_test_split(rest, test_size=0.5, random_state=0)
    stride = {"N": 500, "A": 83, "O": 250, "~": 25}

    def n_windows(idx):
        return sum(len(range(0, len(written["data"][i]) - 1000, stride[written["label"][i]])) for i in idx)

    assert (len(task.train), len(task.val), len(task.test)) == (n_windows(train_idx), n_windows(val_idx),
                                                                 n_windows(test_idx))
    rec = written["data"][train_idx[0]]
    z = (rec - rec.mean()) / rec.std()
    x, y = task.train[1]
    s = stride[written["label"][train_idx[0]]]
    np.testing.assert_allclose(x[0].numpy(), z[s:s + 1000], rtol=1e-5, atol=1e-6)
    assert int(y) == "NAO~".index(written["label"][train_idx[0]])
    assert task.in_shape == (1, 1000) and task.defaults.backbone == "resnet1d"
    assert task.defaults.kernel_sizes == (3, 7, 11, 15, 19) and task.defaults.dilations == (1, 3, 7, 15)
    y_test = stack(task.test, 1)
    assert task.metric(F.one_hot(y_test, 4).float(), y_test) == 0.0
    for split in (task.train, task.val, task.test):  # the classes without cutting any window
        assert torch.equal(split_targets(split), stack(split, 1))


def test_ecg_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"challenge2017\.pkl not found"):
        nb360.ecg(root=tmp_path)
    fx.write_ecg(tmp_path)
    fx.truncate(tmp_path / "challenge2017.pkl")
    with pytest.raises(ValueError, match=r"challenge2017\.pkl.*truncated"):
        nb360.ecg(root=tmp_path)


def test_ecg_unknown_label(tmp_path):
    import pickle

    with open(tmp_path / "challenge2017.pkl", "wb") as f:
        pickle.dump({"data": [np.zeros(2000)] * 10, "label": ["N"] * 9 + ["X"]}, f)
    with pytest.raises(ValueError, match=r"has labels \['X'\]; expected \('N', 'A', 'O', '~'\)"):
        nb360.ecg(root=tmp_path)


# ------------------------------------------------------------------------------------------ Satellite
def test_satellite_labels_zscore_and_split(tmp_path):
    written = fx.write_satellite(tmp_path)
    task = nb360.satellite(root=tmp_path, val_size=5)
    assert (len(task.train), len(task.val), len(task.test)) == (25, 5, 8)
    assert task.in_shape == (1, 46) and task.num_outputs == 24
    labels = [int(task.train[i][1]) for i in range(25)] + [int(task.val[i][1]) for i in range(5)]
    assert labels == list(written["train"]["label"] - 1) and min(labels) == 0 and max(labels) == 23
    row = written["train"]["data"][27]  # validation sample 2
    np.testing.assert_allclose(task.val[2][0][0].numpy(), (row - row.mean()) / row.std(), rtol=1e-5)
    y_test = stack(task.test, 1)
    assert task.metric(F.one_hot(y_test, 24).float(), y_test) == 0.0


def test_satellite_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"satellite_train\.npy, satellite_test\.npy not found"):
        nb360.satellite(root=tmp_path)
    written = fx.write_satellite(tmp_path)
    bad = dict(written["test"], label=written["test"]["label"] - 1)
    np.save(tmp_path / "satellite_test.npy", bad, allow_pickle=True)
    with pytest.raises(ValueError, match=r"satellite_test\.npy' has labels in 0\.\.20; expected 1\.\.24"):
        nb360.satellite(root=tmp_path, val_size=5)
    fx.truncate(tmp_path / "satellite_train.npy")
    with pytest.raises(ValueError, match=r"satellite_train\.npy.*truncated"):
        nb360.satellite(root=tmp_path, val_size=5)


# -------------------------------------------------------------------------------------------- DeepSEA
def test_deepsea_channels_first_and_metric(tmp_path):
    written = fx.write_deepsea(tmp_path)
    task = nb360.deepsea(root=tmp_path)
    assert (len(task.train), len(task.val), len(task.test)) == (6, 4, 4)
    assert task.in_shape == (4, 20) and task.num_outputs == 5 and task.kind == "multilabel"
    x, y = task.val[3]
    assert torch.equal(x, torch.from_numpy(written["x_val"][3].T.astype(np.float32)))
    assert torch.equal(y, torch.from_numpy(written["y_val"][3].astype(np.float32)))
    y_test = stack(task.test, 1)
    assert task.metric(y_test, y_test) == 0.0 and task.metric(-y_test, y_test) == 1.0
    assert task.defaults.search == {"grad_scale": 10}


def test_deepsea_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"deepsea_filtered\.npz not found"):
        nb360.deepsea(root=tmp_path)
    written = fx.write_deepsea(tmp_path)
    np.savez(tmp_path / "deepsea_filtered.npz", **{k: v for k, v in written.items() if k != "y_val"})
    with pytest.raises(ValueError, match=r"deepsea_filtered\.npz' lacks \['y_val'\]"):
        nb360.deepsea(root=tmp_path)
    fx.write_deepsea(tmp_path)
    fx.truncate(tmp_path / "deepsea_filtered.npz")
    with pytest.raises(ValueError, match=r"deepsea_filtered\.npz.*truncated"):
        nb360.deepsea(root=tmp_path)


# ------------------------------------------------------------------------------------ losses, metrics
def test_masked_losses_and_metric_skip_nan_targets():
    y = torch.tensor([[1.0, float("nan"), 0.0, 1.0]])
    y_hat = torch.tensor([[3.0, 100.0, 1.0, 1.0]], requires_grad=True)
    loss = nb360.masked_mse(y_hat, y)
    assert float(loss.detach()) == pytest.approx((4.0 + 1.0 + 0.0) / 3)
    loss.backward()
    assert torch.isfinite(y_hat.grad).all() and float(y_hat.grad[0, 1]) == 0.0
    bce = nb360.masked_bce_with_logits(y_hat, y)
    expected = F.binary_cross_entropy_with_logits(y_hat[0, [0, 2, 3]], y[0, [0, 2, 3]])
    assert float(bce.detach()) == pytest.approx(float(expected.detach()))
    assert float(nb360.masked_mse(y_hat, torch.full_like(y, float("nan"))).detach()) == 0.0
    assert METRICS["1-auroc_masked"] is one_minus_auroc_masked
    assert one_minus_auroc_masked(torch.tensor([0.9, -5.0, 0.1, 0.8]), y[0]) == 0.0


def test_gaussian_normaliser_round_trip():
    x = torch.randn(6, 4, 4) * 3 + 2
    norm = PointwiseGaussian(x)
    z = norm.encode(x)
    assert z.mean(0).abs().max() < 1e-5 and (z.std(0) - 1).abs().max() < 1e-3
    torch.testing.assert_close(norm.decode(z), x)
    torch.testing.assert_close(norm.decode(z.double()), x.double(), rtol=1e-5, atol=1e-5)
