"""from_arrays: bring-your-own data checks, splits and defaults, for 1D and 2D inputs and every kind."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from dashkit import backbones
from dashkit.config import make_config
from dashkit.tasks import KINDS, from_arrays
from dashkit.tasks.byod import InputScaler, pad_series
from dashkit.tasks.base import SMALL_SPLIT_PER_CLASS, SMALL_SPLIT_SIZE, small_split_note, tensor_dataset
from dashkit.tasks.byod import (EmptyClassWarning, SeriesLengthWarning, SmallSplitWarning, default_search_space)


def stack(ds, key):
    return torch.stack([ds[i][key] for i in range(len(ds))])


def labelled(n=100, c=2, length=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1, length)).astype(np.float32)
    x[:, 0, 0] = np.arange(n)  # a sample's id, to follow it through the splits
    return x, np.arange(n) % c


# ------------------------------------------------------------------------------------------- checks
@pytest.mark.parametrize("bad, match", [
    ("abc", r"x_train: expected a numpy array, a torch tensor, a list or a pandas/xarray object, got str"),
    (np.array([[1 + 2j, 3j]] * 4), r"x_train: dtype complex128 is not numeric"),
    (np.array([["a", "b"]] * 4), r"x_train: dtype <U1 is not numeric"),
])
def test_x_type_and_dtype(bad, match):
    with pytest.raises(TypeError, match=match):
        from_arrays(bad, np.array([0, 1, 0, 1]))


@pytest.mark.parametrize("shape", [(4,), (4, 1, 2, 3, 5)])
def test_x_rank(shape):
    with pytest.raises(ValueError, match=r"x_train has shape .*; expected \(N, L\), \(N, C, L\) or \(N, C, H, W\)"):
        from_arrays(np.zeros(shape), np.array([0, 1, 0, 1]))


def test_empty_arrays():
    with pytest.raises(ValueError, match=r"x_train is empty \(shape \(0, 1, 8\)\)"):
        from_arrays(np.zeros((0, 1, 8)), np.zeros(0))
    with pytest.raises(ValueError, match=r"y_train is empty"):
        from_arrays(np.zeros((4, 1, 8)), np.zeros(0))


def test_sample_counts_must_match():
    with pytest.raises(ValueError, match=r"y_train has 9 samples but its inputs have 10; expected the same N"):
        from_arrays(np.zeros((10, 1, 8)), np.arange(9) % 2)
    x, y = labelled(20)
    with pytest.raises(ValueError, match=r"y_val has 3 samples but its inputs have 4"):
        from_arrays(x, y, x_val=x[:4], y_val=y[:3])


@pytest.mark.parametrize("which", ["x", "y"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_values(which, value):
    x, y = np.zeros((10, 1, 8)), np.zeros(10)
    (x if which == "x" else y)[3] = value
    with pytest.raises(ValueError, match=rf"{which}_train holds \d+ NaN or infinite value\(s\)"):
        from_arrays(x, y, kind="regression")


def test_unknown_kind():
    with pytest.raises(ValueError, match=r"kind='segmentation' is not one of \('classification', 'multilabel', "):
        from_arrays(*labelled(), kind="segmentation")


@pytest.mark.parametrize("y, match", [
    (np.array([0, 1, 0.5, 1] * 5), r"y_train holds non-integer labels such as 0\.5; expected class indices 0\.\.C-1"),
    (np.zeros(20, dtype=int), r"y_train has the single class 0; classification needs at least 2 classes"),
    (np.zeros((20, 2), dtype=int), r"y_train has shape \(20, 2\); kind='classification' expects \(N,\) class indices"),
])
def test_classification_labels(y, match):
    with pytest.raises(ValueError, match=match):
        from_arrays(np.zeros((20, 1, 8)), y)


def test_multilabel_targets():
    x = np.zeros((20, 1, 8))
    with pytest.raises(ValueError, match=r"y_train holds values other than 0 and 1, such as 2"):
        from_arrays(x, np.full((20, 3), 2), kind="multilabel")
    with pytest.raises(ValueError, match=r"y_train has shape \(20,\); kind='multilabel' expects \(N, labels\) of 0/1"):
        from_arrays(x, np.zeros(20), kind="multilabel")


def test_dense_targets_need_the_inputs_spatial_size():
    x = np.zeros((20, 2, 6, 7))
    with pytest.raises(ValueError, match=r"y_train has shape \(20, 6, 6\); kind='dense' expects "
                                         r".* spatial size \(6, 7\)"):
        from_arrays(x, np.zeros((20, 6, 6)), kind="dense")
    with pytest.raises(ValueError, match=r"y_train has shape \(20, 1, 5, 7\)"):
        from_arrays(x, np.zeros((20, 1, 5, 7)), kind="dense")


def test_regression_targets_rank():
    with pytest.raises(ValueError, match=r"y_train has shape \(20, 2, 2\); kind='regression' expects"):
        from_arrays(np.zeros((20, 1, 8)), np.zeros((20, 2, 2)), kind="regression")


def test_given_splits_must_be_complete_and_consistent():
    x, y = labelled(30)
    with pytest.raises(ValueError, match=r"y_val is missing: pass both x_val and y_val, or neither"):
        from_arrays(x, y, x_val=x[:5])
    with pytest.raises(ValueError, match=r"x_test is missing"):
        from_arrays(x, y, y_test=y[:5])
    with pytest.raises(ValueError, match=r"x_val has samples of shape \(1, 12\) but x_train has \(1, 16\)"):
        from_arrays(x, y, x_val=x[:5, :, :12], y_val=y[:5])
    with pytest.raises(ValueError, match=r"y_test has targets of shape \(2,\) but y_train has \(3,\)"):
        from_arrays(x, np.ones((30, 3)), x_test=x[:4], y_test=np.ones((4, 2)), kind="multilabel")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(metric="accuracy"), ValueError, r"metric='accuracy' is not a known metric; known: .*error_pct"),
    (dict(test_fraction=0.0), ValueError, r"test_fraction=0\.0 with no x_test/y_test leaves no test split"),
    (dict(val_fraction=0.0), ValueError,
     r"val_fraction=0\.0 is out of range; accepted: a finite number in \(0\.0, 1\.0\)"),
    (dict(val_fraction=1.5), ValueError,
     r"val_fraction=1\.5 is out of range; accepted: a finite number in \(0\.0, 1\.0\)"),
    (dict(test_fraction=-0.1), ValueError,
     r"test_fraction=-0\.1 is out of range; accepted: a finite number in \[0\.0, 1\.0\)"),
    (dict(val_fraction=0.5, test_fraction=0.5), ValueError, r"leaves no training data"),
    (dict(val_fraction=0.001), ValueError, r"val_fraction=0\.001 of 100 training samples rounds to 0 samples"),
    (dict(kernel_sizes=(3, 4)), ValueError, r"kernel_sizes=\(3, 4\): expected a non-empty tuple of odd ints"),
    (dict(kernel_sizes=()), ValueError, r"kernel_sizes=\(\): expected a non-empty tuple"),
    (dict(dilations=(1, 0)), ValueError, r"dilations=\(1, 0\): expected a non-empty tuple of ints >= 1"),
    (dict(backbone="vgg"), ValueError, r"backbone='vgg' is not a known backbone; known: .*resnet1d"),
    (dict(backbone=3), TypeError, r"backbone=3: expected None or the name of a backbone"),
    (dict(name=""), ValueError, r"name='': expected a non-empty str"),
    (dict(seed=1.5), TypeError, r"seed=1\.5 has type float; accepted: an integer >= 0"),
])
def test_option_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        from_arrays(*labelled(), **kwargs)


# ------------------------------------------------------------------------------------------- splits
def test_split_sizes_are_disjoint_and_cover_the_data():
    x, y = labelled(100)
    task = from_arrays(x, y, val_fraction=0.1, test_fraction=0.2, seed=3, input_scaling="none")
    assert (len(task.train), len(task.val), len(task.test)) == (70, 10, 20)
    ids = [stack(getattr(task, s), 0)[:, 0, 0].long().tolist() for s in ("train", "val", "test")]
    assert sorted(sum(ids, [])) == list(range(100))
    for split_ids, split in zip(ids, ("train", "val", "test")):
        labels = stack(getattr(task, split), 1)
        assert labels.tolist() == [i % 2 for i in split_ids]  # x and y stay paired


def test_classification_splits_are_stratified():
    x, _ = labelled(100)
    y = (np.arange(100) >= 80).astype(int)  # 80 of class 0, 20 of class 1
    for seed in range(5):
        task = from_arrays(x, y, val_fraction=0.1, test_fraction=0.1, seed=seed, input_scaling="none")
        counts = [np.bincount(stack(getattr(task, s), 1).numpy(), minlength=2).tolist()
                  for s in ("train", "val", "test")]
        assert counts == [[64, 16], [8, 2], [8, 2]]


def test_splits_follow_the_seed():
    x, y = labelled(60)

    def val_ids(seed):
        return stack(from_arrays(x, y, seed=seed).val, 0)[:, 0, 0].tolist()

    assert val_ids(0) == val_ids(0)
    assert val_ids(0) != val_ids(1)


def test_regression_split_is_random_with_the_right_sizes():
    x, _ = labelled(50)
    task = from_arrays(x, np.linspace(0, 1, 50), kind="regression", val_fraction=0.2, test_fraction=0.1)
    assert (len(task.train), len(task.val), len(task.test)) == (35, 10, 5)


def test_given_val_and_test_are_used_as_they_are():
    x, y = labelled(40)
    task = from_arrays(x[:20], y[:20], x_val=x[20:30], y_val=y[20:30], x_test=x[30:], y_test=y[30:],
                       input_scaling="none")
    assert [stack(getattr(task, s), 0)[:, 0, 0].long().tolist() for s in ("train", "val", "test")] == \
        [list(range(20)), list(range(20, 30)), list(range(30, 40))]
    task = from_arrays(x[:30], y[:30], x_test=x[30:], y_test=y[30:], val_fraction=0.2)
    assert (len(task.train), len(task.val), len(task.test)) == (24, 6, 10)


def test_splits_are_tensor_datasets_over_the_checked_arrays():
    x, y = labelled(20)
    task = from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, input_scaling="none")
    for split in (task.train, task.val, task.test):
        assert isinstance(split, TensorDataset) and split.tensors[0].dtype == torch.float32
    # the one constructor of in-memory splits: numpy arrays are shared, not copied; tensors pass as they are
    a, b = np.zeros((3, 1, 4), dtype=np.float32), np.arange(3)
    ds = tensor_dataset(a, b)
    a[1, 0, 2] = 7.0
    assert ds[1][0][0, 2] == 7.0 and ds[2][1] == 2
    t = torch.ones(2, 1, 4)
    assert tensor_dataset(t, torch.zeros(2)).tensors[0] is t


def test_number_of_classes_counts_every_split():
    x, y = labelled(30, c=3)
    with pytest.warns(EmptyClassWarning, match=r"3 of 6 classes have no examples in y_train: 3 \(val 0, test 0\), "
                                               r"4 \(val 0, test 0\), 5 \(val 0, test 1\)"):
        task = from_arrays(x, y, x_test=x[:4], y_test=np.array([0, 1, 5, 2]))
    assert task.num_outputs == 6


# --------------------------------------------------------------------------------- kinds and defaults
def _check_runs_on_its_backbone(task):
    kwargs = dict(task.defaults.backbone_kwargs)
    net = backbones.get(task.defaults.backbone, in_channels=task.in_shape[0], num_classes=task.num_outputs,
                        **kwargs).eval()
    x, y = stack(task.train, 0)[:2], stack(task.train, 1)[:2]
    with torch.no_grad():
        out = net(x)
    assert torch.isfinite(task.loss(out, y))
    return out


def test_1d_classification_from_n_by_l():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 1000)), np.arange(40) % 4
    task = from_arrays(x, y.astype(float))  # (N, L) gets a channel; integer-valued floats are labels
    assert task.in_shape == (1, 1000) and task.num_outputs == 4 and task.metric_name == "error_pct"
    xs, ys = task.train[0]
    assert xs.shape == (1, 1000) and xs.dtype == torch.float32 and ys.dtype == torch.int64
    # 4 classes: DASH's width rule gives 4 channels, from_arrays' floor 8
    assert task.defaults.backbone == "resnet1d" and task.defaults.backbone_kwargs == {"width": 8}
    assert (task.defaults.kernel_sizes, task.defaults.dilations) == ((3, 7, 11, 15, 19), (1, 3, 7, 15, 31))
    assert _check_runs_on_its_backbone(task).shape == (2, 4)
    y_test = stack(task.test, 1)
    assert task.metric(F.one_hot(y_test, 4).float(), y_test) == 0.0


def test_a_series_classifier_is_at_least_eight_channels_wide_and_the_class_rule_stands_above():
    """DASH's width rule gives 4 channels below 10 classes; from_arrays raises a classifier's resnet1d to 8
    (RESULTS.md, "The network's width on small real datasets"), keeps the rule's 16 from 10 classes, and leaves
    regression and a run's own width alone."""
    from dashkit.tasks.byod import SERIES_MIN_WIDTH

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2, 50)).astype(np.float32)
    for classes, want in ((2, {"width": 8}), (9, {"width": 8}), (10, {}), (12, {})):
        task = from_arrays(x, np.arange(60) % classes, seed=0)
        assert task.defaults.backbone_kwargs == want, classes
        net = backbones.get("resnet1d", in_channels=2, num_classes=classes, **task.defaults.backbone_kwargs)
        assert net.width == max(SERIES_MIN_WIDTH, backbones.ResNet1D.default_width(classes))
    reg = from_arrays(x, rng.normal(size=60), kind="regression", seed=0)
    assert reg.kind == "regression" and "width" not in reg.defaults.backbone_kwargs
    task = from_arrays(x, np.arange(60) % 3, seed=0)
    cfg = make_config("smoke", task.defaults, backbone_kwargs={"width": 4})
    assert cfg.backbone_kwargs == {"width": 4}  # a run's own width replaces the floor


def test_2d_classification_from_torch_tensors():
    x = torch.randn(30, 3, 8, 8, dtype=torch.bfloat16)
    y = torch.arange(30) % 3
    task = from_arrays(x, y, name="tiny2d", input_scaling="none")
    assert task.name == "tiny2d" and task.in_shape == (3, 8, 8) and task.dims == 2
    assert task.defaults.backbone == "wrn" and task.defaults.backbone_kwargs == {"dims": 2}
    assert (task.defaults.kernel_sizes, task.defaults.dilations) == ((3, 5, 7, 9), (1, 3, 7))
    torch.testing.assert_close(stack(task.train, 0).sum() + stack(task.val, 0).sum() + stack(task.test, 0).sum(),
                               x.float().sum(), rtol=1e-4, atol=1e-3)
    assert _check_runs_on_its_backbone(task).shape == (2, 3)


def test_multilabel_1d():
    rng = np.random.default_rng(1)
    y = (rng.uniform(size=(40, 5)) < 0.5).astype(np.int64)
    task = from_arrays(rng.normal(size=(40, 4, 50)), y, kind="multilabel")
    assert task.num_outputs == 5 and task.metric_name == "1-auroc" and task.train[0][1].dtype == torch.float32
    y_test = stack(task.test, 1)
    assert task.metric(y_test, y_test) == 0.0
    assert _check_runs_on_its_backbone(task).shape == (2, 5)


def test_regression_1d():
    rng = np.random.default_rng(2)
    task = from_arrays(rng.normal(size=(30, 2, 20)), rng.normal(size=30), kind="regression", metric="rel_l2",
                       target_scaling="none")
    assert task.num_outputs == 1 and task.metric_name == "rel_l2" and task.train[0][1].shape == (1,)
    y_test = stack(task.test, 1)
    assert task.metric(y_test, y_test) == 0.0 and task.metric(2 * y_test, y_test) == pytest.approx(1.0)
    assert task.decode is None and task.info["target_scaling"] == {"policy": "none"}


def test_inputs_are_standardised_per_channel_on_train_so_their_units_do_not_matter():
    """Two channels in different units: each is standardised with the training split's mean and std (val and test
    with the same ones), so a signal in other units or with an offset makes the same task."""
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(size=(60, 1, 16)), 0.001 * rng.normal(size=(60, 1, 16))], axis=1)
    y = np.arange(60) % 3
    task = from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=1)
    train = stack(task.train, 0).double()  # (N, 2, 16)
    assert train.mean(dim=(0, 2)).abs().max() < 1e-5
    assert (train.std(dim=(0, 2), unbiased=False) - 1).abs().max() < 1e-4
    scaling = task.info["input_scaling"]
    assert scaling["policy"] == "standardize" and scaling["channels"] == [0, 1] and scaling["mask_channel"] is None
    assert scaling["std"][1] == pytest.approx(0.001, rel=0.1)
    moved = x * np.array([1000.0, 1e6])[None, :, None] + np.array([5000.0, -3.0])[None, :, None]
    other = from_arrays(moved, y, val_fraction=0.2, test_fraction=0.2, seed=1)
    for split in ("train", "val", "test"):
        assert torch.allclose(stack(getattr(task, split), 0), stack(getattr(other, split), 0), atol=1e-3)
    raw = from_arrays(x, y, val_fraction=0.2, test_fraction=0.2, seed=1, input_scaling="none")
    mean, std = np.array(scaling["mean"]), np.array(scaling["std"])
    assert torch.allclose(stack(task.test, 0), ((stack(raw.test, 0).double() - torch.tensor(mean)[:, None])
                                                / torch.tensor(std)[:, None]).float(), atol=1e-5)
    assert raw.info["input_scaling"] == {"policy": "none"}
    constant = from_arrays(np.full((30, 1, 8), 4.0), np.arange(30) % 2)
    assert constant.info["input_scaling"]["std"] == [1.0] and float(stack(constant.train, 0).abs().max()) == 0.0
    with pytest.raises(ValueError, match=r"input_scaling='minmax' is not an input scaling; accepted: 'standardize', "
                                         r"'none'"):
        from_arrays(x, y, input_scaling="minmax")


def test_padded_series_standardise_their_real_positions_only():
    """The mask channel stays 0/1 and padded positions stay 0; the statistics count real positions only."""
    lengths = [6, 10] * 10
    series = [np.full((1, n), 100.0 + 10.0 * (i % 2), dtype=np.float32) for i, n in enumerate(lengths)]
    task = quiet(series, np.arange(20) % 2, val_fraction=0.2, input_scaling="standardize")
    scaling = task.info["input_scaling"]
    mask_channel = task.info["lengths"]["mask_channel"]
    assert mask_channel == 1 and scaling["mask_channel"] == 1 and scaling["channels"] == [0]
    assert scaling["mean"][0] == pytest.approx(100.0 + 10.0 * (10 / 16), abs=1.0)  # real positions only
    x = stack(task.train, 0)
    real = x[:, mask_channel] > 0.5
    assert set(x[:, mask_channel].unique().tolist()) == {0.0, 1.0}
    assert (x[:, 0][~real] == 0).all() and x[:, 0][real].abs().max() < 3
    scaler = InputScaler.from_info(scaling)  # what predict applies to inputs padded as the task's were
    padded = pad_series(series[:2], 10, True)  # (2, 2, 10): 6 and 10 real positions, the mask last
    encoded = scaler.encode(padded)
    mean, std = scaling["mean"][0], scaling["std"][0]
    assert np.allclose(encoded[0, 0], [(100.0 - mean) / std] * 6 + [0.0] * 4, atol=1e-5)
    assert np.allclose(encoded[1, 0], [(110.0 - mean) / std] * 10, atol=1e-5)
    assert np.array_equal(encoded[:, 1], padded[:, 1])
    with pytest.raises(ValueError, match=r"x has shape \(2, 1, 10\); expected \(N, 2, \.\.\.\)"):
        scaler.encode(padded[:, :1])


def test_regression_targets_are_standardised_on_train_and_metrics_are_in_their_units():
    """Targets of about 5e4 +- 1e3 in two outputs: the splits hold them standardised with the training split's
    mean and std (val and test with the same ones), and every metric and prediction goes back to the units."""
    rng = np.random.default_rng(4)
    y = np.stack([5e4 + 1e3 * rng.normal(size=60), -3.0 + 0.01 * rng.normal(size=60)], axis=1)
    task = from_arrays(rng.normal(size=(60, 1, 16)), y, kind="regression", val_fraction=0.2, test_fraction=0.2,
                       metric="mse")
    train, test = stack(task.train, 1).double(), stack(task.test, 1)
    assert train.mean(0).abs().max() < 1e-5 and (train.std(0, unbiased=False) - 1).abs().max() < 1e-5
    scaling = task.info["target_scaling"]
    assert scaling["policy"] == "standardize" and scaling["mean"][0] == pytest.approx(5e4, rel=0.01)
    assert scaling["std"][1] == pytest.approx(0.01, rel=0.3)
    raw_test = task.decode(test).double()
    assert ((raw_test[:, 0] - 5e4).abs() < 5e3).all() and ((raw_test[:, 1] + 3.0).abs() < 0.05).all()
    # one standard deviation of error on the first output is (about 1e3)^2 in the targets' units
    off = test.clone()
    off[:, 0] += 1.0
    assert task.metric(off, test) == pytest.approx(0.5 * scaling["std"][0] ** 2, rel=1e-4)  # mean over 2 outputs
    # the input-ignoring guess: the split's mean target, scored in the targets' units (MSE: its variance)
    raw = task.decode(test).double().numpy()
    assert task.chance_metric("test") == pytest.approx(raw.var(axis=0).mean(), rel=1e-3)
    constant = from_arrays(rng.normal(size=(30, 1, 16)), np.full(30, 7.0), kind="regression")
    assert constant.info["target_scaling"]["std"] == [1.0] and float(stack(constant.train, 1).abs().max()) == 0.0
    with pytest.raises(ValueError, match=r"target_scaling='minmax' is not a target scaling; accepted: "
                                         r"'standardize', 'none'"):
        from_arrays(rng.normal(size=(30, 1, 16)), np.zeros(30), kind="regression", target_scaling="minmax")


def test_dense_2d():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(20, 2, 9, 11))
    task = from_arrays(x, x[:, 0] ** 2, kind="dense")
    assert task.in_shape == (2, 9, 11) and task.num_outputs == 1 and task.metric_name == "rel_l2"
    assert task.train[0][1].shape == (1, 9, 11)
    assert task.defaults.backbone == "wrn" and task.defaults.backbone_kwargs == {"dims": 2, "dense": True}
    assert _check_runs_on_its_backbone(task).shape == (2, 1, 9, 11)
    y_test = stack(task.test, 1)
    assert task.metric(y_test, y_test) == 0.0


def test_dense_1d_with_channels_and_chosen_space():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 1, 64))
    task = from_arrays(x, np.concatenate([x, -x], axis=1), kind="dense", kernel_sizes=[3, 5], dilations=(1, 2),
                       backbone="tcn")
    assert task.num_outputs == 2 and task.defaults.backbone == "tcn"
    assert task.defaults.backbone_kwargs == {"dense": True}
    assert (task.defaults.kernel_sizes, task.defaults.dilations) == ((3, 5), (1, 2))
    assert _check_runs_on_its_backbone(task).shape == (2, 2, 64)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_a_task(kind):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(30, 1, 12))
    y = {"classification": np.arange(30) % 2, "multilabel": np.eye(2, dtype=int)[np.arange(30) % 2],
         "regression": rng.normal(size=(30, 3)), "dense": rng.normal(size=(30, 12))}[kind]
    task = from_arrays(x, y, kind=kind)
    # classification holds out at least 2 per class for validation (val_min_per_class)
    sizes = (23, 4, 3) if kind == "classification" else (24, 3, 3)
    assert task.kind == kind and (len(task.train), len(task.val), len(task.test)) == sizes


def test_default_search_space_fits_the_input():
    assert default_search_space(1, 1000) == ((3, 7, 11, 15, 19), (1, 3, 7, 15, 31))
    assert default_search_space(1, 46) == ((3, 7, 11, 15, 19), (1, 3, 7, 15))
    assert default_search_space(1, 8) == ((3, 7, 11, 15), (1, 3, 7))
    assert default_search_space(1, 5000) == ((3, 7, 11, 15, 19), (1, 3, 7, 15, 31, 63, 127))
    assert default_search_space(2, 32) == ((3, 5, 7, 9), (1, 3, 7, 15))
    assert default_search_space(2, 2) == ((3,), (1,))
    with pytest.raises(ValueError, match=r"dims=3: expected 1 or 2"):
        default_search_space(3, 10)


# ------------------------------------------------------------------------------------------- labels
def quiet(*args, **kwargs):
    """from_arrays with its small-split warnings silenced (the tests' data sets are small on purpose), and the
    inputs as given (``input_scaling="none"`` unless said), so that values can be followed through the splits."""
    kwargs.setdefault("input_scaling", "none")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSplitWarning)
        return from_arrays(*args, **kwargs)


def test_string_labels_are_numbered_in_sorted_order_and_decoded():
    x, _ = labelled(60)
    names = np.array(["setosa", "versicolor", "virginica"])
    y = names[np.arange(60) % 3][::-1].copy()  # a permutation: order in the data does not matter
    task = quiet(x, y)
    assert task.num_outputs == 3 and task.info["classes"] == ["setosa", "versicolor", "virginica"]
    ids, labels = stack(task.train, 0)[:, 0, 0].long().numpy(), stack(task.train, 1).numpy()
    np.testing.assert_array_equal(np.array(task.info["classes"])[labels], y[ids])  # x and its label stay paired
    assert task.to_labels(torch.tensor([2, 0, 1])).tolist() == ["virginica", "setosa", "versicolor"]
    logits = torch.tensor([[0.1, 3.0, -1.0], [5.0, 0.0, 0.0]])
    assert task.to_labels(logits).tolist() == ["versicolor", "setosa"]
    assert task.to_labels(logits.numpy()).dtype.kind == "U"
    json.dumps(task.info)  # a run can record it


@pytest.mark.parametrize("y, classes", [
    (np.arange(30) % 3 + 1, [1, 2, 3]),                                  # 1..3: no empty class 0
    (np.where(np.arange(30) % 2, 1, -1), [-1, 1]),                        # -1 / 1
    ((np.arange(30) % 3 + 1).astype(float), [1.0, 2.0, 3.0]),             # as np.loadtxt reads UCR files
    (list(np.array(["2", "1", "3"])[np.arange(30) % 3]), ["1", "2", "3"]),  # a list of str
    (torch.arange(30) % 2 + 5, [5, 6]),
    (np.arange(30) % 2 == 1, [False, True]),
    (np.array([b"b", b"a"] * 15), ["a", "b"]),                            # bytes are read as UTF-8 str
    (np.array(["10", "2", "-1"] * 10), ["-1", "2", "10"]),                 # integer strings by value
    (np.array(["10", "2", "x"] * 10), ["10", "2", "x"]),                   # other strings as str sorts them
])
def test_labels_that_are_not_0_based_indices_are_mapped_in_sorted_order(y, classes):
    task = quiet(labelled(30)[0], y)
    assert task.info["classes"] == classes and task.num_outputs == len(classes)
    assert sum(task.info["class_counts"]["train"]) == len(task.train)
    assert all(n > 0 for n in task.info["class_counts"]["train"])
    json.dumps(task.info)


def test_0_based_integer_labels_keep_their_values():
    x, _ = labelled(30)
    task = quiet(x, np.arange(30) % 3)
    assert task.info["classes"] == [0, 1, 2]
    assert task.to_labels(np.array([1, 2])).tolist() == [1, 2]
    with pytest.warns(EmptyClassWarning, match=r"1 of 4 classes have no examples in y_train: 2 \(val 0, test 0\)"):
        task = quiet(x, np.array([0, 1, 3] * 10))  # a gap: index 2 stays, without examples
    assert task.num_outputs == 4 and task.info["class_counts"]["train"][2] == 0


def test_classes_fix_order_and_set():
    x, _ = labelled(30)
    y = np.array(["lo", "hi"] * 15)
    task = quiet(x, y, classes=["lo", "hi"])
    assert task.info["classes"] == ["lo", "hi"]
    assert stack(task.train, 1).tolist() == [0 if v == "lo" else 1 for v in y[stack(task.train, 0)[:, 0, 0].long()]]
    task = quiet(x, np.arange(30) % 2, classes=[1, 0])  # even 0-based integers follow classes
    assert task.to_labels([0, 1]).tolist() == [1, 0]
    with pytest.warns(EmptyClassWarning, match=r"1 of 3 classes have no examples in y_train: 'mid'"):
        task = quiet(x, y, classes=["lo", "mid", "hi"])
    assert task.num_outputs == 3


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(classes=["lo"]), ValueError, r"classes=\['lo'\]: classification needs at least 2 classes"),
    (dict(classes=["lo", "hi", "lo"]), ValueError, r"classes lists 'lo' more than once"),
    (dict(classes=["hi", "mid"]), ValueError, r"y_train holds labels that classes does not list: 'lo'; "
                                              r"classes=\['hi', 'mid'\]"),
    (dict(classes=[0, 1]), TypeError, r"classes holds number labels but y_train holds str labels"),
    (dict(classes="lohi"), TypeError, r"classes='lohi': expected None or a list of labels"),
    (dict(classes=["lo", "hi"], kind="regression"), ValueError, r"classes=\['lo', 'hi'\] is for "
                                                                r"kind='classification', not kind='regression'"),
])
def test_classes_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        from_arrays(labelled(30)[0], np.array(["lo", "hi"] * 15), **kwargs)


@pytest.mark.parametrize("y, error, match", [
    ([1, "a"] * 10, TypeError, r"y_train mixes label types: number \(e\.g\. 1 at sample 0\) and str "
                               r"\(e\.g\. 'a' at sample 1\); expected str, int"),
    (np.array([True, 2] * 10, dtype=object), TypeError, r"y_train mixes label types: bool .* and number"),
    ([[1, 2]] * 20, TypeError, r"y_train\[0\] = \[1, 2\] has type list; accepted: str"),
    (np.array([(1,), "a"] * 10, dtype=object), TypeError, r"y_train\[0\] = \(1,\) has type tuple; accepted: str"),
    (["a", None] * 10, ValueError, r"y_train holds 10 missing label\(s\) \(None or NaN\), first at sample 1"),
    (np.array([0, 1, np.nan, 1] * 5), ValueError, r"y_train holds 5 NaN or infinite label\(s\), first at sample 2"),
    (np.array([0, 1, np.inf, 1] * 5), ValueError, r"y_train holds 5 NaN or infinite label\(s\)"),
    (np.array(["a"] * 20), ValueError, r"y_train has the single class 'a'; classification needs at least 2"),
    (np.array([1j, 2j] * 10), TypeError, r"y_train: dtype complex128 is not usable as labels"),
    ({"a": 1}, TypeError,
     r"y_train: expected a numpy array, a torch tensor, a list or a pandas/xarray object, got dict"),
])
def test_bad_labels(y, error, match):
    with pytest.raises(error, match=match):
        from_arrays(np.zeros((20, 1, 8)), y)


def test_val_and_test_labels_must_have_the_train_labels_type():
    x, _ = labelled(20)
    with pytest.raises(TypeError, match=r"y_test holds number labels but y_train holds str labels; expected one type"):
        from_arrays(x, np.array(["a", "b"] * 10), x_test=x[:4], y_test=np.array([0, 1, 0, 1]))


def test_labels_that_only_val_or_test_have_warn_and_become_classes():
    # A warning, not an error: dropping those samples would flatter the test metric, and refusing would leave the
    # user nothing to do but drop them; kept, they count as the errors the model makes on them.
    x, _ = labelled(40)
    y = np.array(["a", "b"] * 20)
    with pytest.warns(EmptyClassWarning, match=r"1 of 3 classes have no examples in y_train: 'c' \(val 0, test 4\)"):
        task = quiet(x[:30], y[:30], x_test=x[30:], y_test=np.array(["a", "b", "c", "c"] * 2 + ["a", "b"]))
    assert task.info["classes"] == ["a", "b", "c"] and task.info["class_counts"]["test"] == [3, 3, 4]


def test_to_labels_errors():
    task = quiet(labelled(30)[0], np.array(["a", "b", "c"] * 10))
    with pytest.raises(ValueError, match=r"y_hat has shape \(2, 2\); expected \(N,\) class indices or \(N, 3\) outputs"):
        task.to_labels(np.zeros((2, 2)))
    with pytest.raises(ValueError, match=r"y_hat holds values such as 3 \(dtype int64\); expected integer class "
                                         r"indices 0\.\.2"):
        task.to_labels(np.array([3, 0]))
    with pytest.raises(ValueError, match=r"y_hat holds values such as 0\.5 \(dtype float64\)"):
        task.to_labels(np.array([0.5]))
    with pytest.raises(ValueError, match=r"y_hat has shape \(1, 1, 3\)"):
        task.to_labels(np.zeros((1, 1, 3)))
    regression = quiet(labelled(30)[0], np.zeros(30), kind="regression")
    with pytest.raises(ValueError, match=r"to_labels: task 'custom' is kind='regression'; only classification"):
        regression.to_labels([0])


# ------------------------------------------------------------------------------ variable-length series
def ragged(lengths, channels=2, start=0):
    """Series (channels, L_i) whose values are 100 * sample id + position + 1 (never 0, so padding shows)."""
    return [np.stack([100.0 * (start + i) + np.arange(n) + 1 + 1000 * c for c in range(channels)])
            for i, n in enumerate(lengths)]


def by_id(ds):
    """{sample id: x} of a split of ragged() series."""
    xs = stack(ds, 0).numpy()
    return {int(round((x[0, 0] - 1) / 100)): x for x in xs}


def test_pad_is_the_default_and_marks_the_padding():
    series = ragged([3, 5, 4, 5, 2, 5] * 5)
    task = quiet(series, np.arange(30) % 2, val_fraction=0.2)
    assert task.in_shape == (3, 5)  # 2 channels + the mask
    assert task.info["lengths"] == {"policy": "pad", "length": 5, "mask_channel": 2, "train": [2, 5]}
    seen = {}
    for split in ("train", "val", "test"):
        seen.update(by_id(getattr(task, split)))
    assert sorted(seen) == list(range(30))
    for i, x in seen.items():
        n = series[i].shape[1]
        np.testing.assert_array_equal(x[:2, :n], series[i])
        assert (x[:2, n:] == 0).all() and x[2].tolist() == [1.0] * n + [0.0] * (5 - n)


def test_pad_fits_val_and_test_to_the_train_length():
    train, y = ragged([4, 6] * 10), np.arange(20) % 2
    val = ragged([3, 6], start=20)
    test = [np.arange(8.0)[None].repeat(2, 0), np.arange(6.0)[None].repeat(2, 0)]
    with pytest.warns(SeriesLengthWarning, match=r"x_test: 1 of 2 series are longer than x_train's longest \(6; the "
                                                 r"longest here is 8\); they are cut to 6 positions at the end"):
        task = quiet(train, y, x_val=val, y_val=[0, 1], x_test=test, y_test=[0, 1])
    assert task.in_shape == (3, 6) and task.info["lengths"]["test"] == [6, 8]
    json.dumps(task.info)
    x_val, x_test = stack(task.val, 0).numpy(), stack(task.test, 0).numpy()
    np.testing.assert_array_equal(x_val[0, :2, :3], val[0])
    assert x_val[0, 2].tolist() == [1, 1, 1, 0, 0, 0] and x_val[1, 2].tolist() == [1] * 6
    np.testing.assert_array_equal(x_test[0, :2], np.arange(6.0)[None].repeat(2, 0))
    assert x_test[:, 2].tolist() == [[1] * 6] * 2
    assert _check_runs_on_its_backbone(task).shape == (2, 2)  # the mask is one more input channel


def test_equal_lengths_as_a_list_need_no_mask_but_a_shorter_val_adds_it():
    train = [torch.randn(2, 8) for _ in range(20)]  # tensors are read too
    task = quiet(train, np.arange(20) % 2)
    assert task.in_shape == (2, 8) and task.info["lengths"]["mask_channel"] is None
    task = quiet(train, np.arange(20) % 2, x_val=[np.ones((2, 5)), np.ones((2, 8))], y_val=[0, 1])
    assert task.in_shape == (3, 8) and stack(task.train, 0)[:, 2].eq(1).all()
    assert stack(task.val, 0)[0, 2].tolist() == [1] * 5 + [0] * 3


def test_single_channel_series_and_object_arrays():
    items = np.empty(20, dtype=object)
    for i in range(20):
        items[i] = np.arange(3 + i % 4, dtype=float) if i % 2 else np.arange(3 + i % 4, dtype=float)[None]
    task = quiet(items, np.arange(20) % 2, lengths="crop")
    assert task.in_shape == (1, 3) and (stack(task.train, 0)[:, 0] == torch.tensor([0.0, 1, 2])).all()


def test_crop_cuts_to_the_shortest_and_refuses_shorter_val():
    series, y = ragged([4, 6, 5] * 8), np.arange(24) % 2
    task = quiet(series, y, lengths="crop", x_test=ragged([7, 4], start=30), y_test=[0, 1])
    assert task.in_shape == (2, 4) and task.info["lengths"] == {"policy": "crop", "length": 4, "mask_channel": None,
                                                                "train": [4, 6], "test": [4, 7]}
    for i, x in {**by_id(task.train), **by_id(task.test)}.items():
        np.testing.assert_array_equal(x[0], 100.0 * i + np.arange(4) + 1)
    with pytest.raises(ValueError, match=r"x_val\[1\] has length 3, shorter than 4, the length that lengths='crop' "
                                         r"cuts every series to \(x_train's shortest\); use lengths='pad' or "):
        from_arrays(series, y, lengths="crop", x_val=ragged([4, 3]), y_val=[0, 1])


def test_resample_interpolates_to_the_longest():
    train = [np.array([0.0, 2.0]), np.array([5.0]), np.array([0.0, 1.0, 2.0, 3.0, 4.0])] * 8
    task = quiet(train, np.arange(24) % 2, lengths="resample", x_test=[np.array([0.0, 8.0])], y_test=[1])
    assert task.in_shape == (1, 5) and task.info["lengths"]["length"] == 5
    rows = {tuple(r) for r in stack(task.train, 0)[:, 0].tolist()}
    assert rows == {(0.0, 0.5, 1.0, 1.5, 2.0), (5.0,) * 5, (0.0, 1.0, 2.0, 3.0, 4.0)}
    assert stack(task.test, 0)[0, 0].tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(x_train=ragged([3, 4]) + [np.zeros((3, 4))] * 18), ValueError,
     r"x_train\[2\] has 3 channel\(s\) but x_train\[0\] has 2; expected the same number of channels in every series"),
    (dict(x_val=[np.zeros((3, 4))] * 2, y_val=[0, 1]), ValueError,
     r"x_val has series of 3 channel\(s\) but x_train has 2; expected the same"),
    (dict(lengths="truncate"), ValueError,
     r"lengths='truncate' is not a length policy; accepted: 'pad', 'crop', 'resample'"),
    (dict(lengths=None), ValueError, r"lengths=None is not a length policy"),
    (dict(x_train=[]), ValueError, r"x_train is empty \(0 series\)"),
    (dict(x_train=ragged([3]) + [np.zeros((2, 0))] * 19), ValueError,
     r"x_train\[1\] has shape \(2, 0\); a list of series takes \(C, L\) or \(L,\) arrays with L >= 1"),
    (dict(x_train=[np.zeros((1, 4, 4))] * 20), ValueError, r"x_train\[0\] has shape \(1, 4, 4\); a list of series"),
    (dict(x_train=[np.array(["a", "b"])] * 20), TypeError, r"x_train\[0\]: dtype <U1 is not numeric"),
    (dict(x_train=[{"a": 1}] * 20), TypeError,
     r"x_train\[0\]: expected a numpy array, a torch tensor, a list or a pandas/xarray object, got dict"),
    (dict(x_test=np.zeros((2, 2, 4, 4)), y_test=[0, 1]), ValueError,
     r"x_test has shape \(2, 2, 4, 4\); with series given as a list, every split takes a list of series, \(N, L\) "),
    (dict(kind="dense", y_train=np.zeros((20, 4))), ValueError,
     r"inputs given as lists of series need kind 'classification', 'multilabel' or 'regression'"),
    (dict(y_train=[0, 1] * 9), ValueError, r"y_train has 18 samples but its inputs have 20"),
])
def test_series_errors(kwargs, error, match):
    args = {"x_train": ragged([3, 4] * 10), "y_train": np.arange(20) % 2, **kwargs}
    with pytest.raises(error, match=match):
        from_arrays(**args)


def test_arrays_of_different_lengths_are_still_refused():
    x, y = labelled(20)
    with pytest.raises(ValueError, match=r"x_val has samples of shape \(1, 12\) but x_train has \(1, 16\); expected the "
                                         r"same \(variable-length series come as lists\)"):
        from_arrays(x, y, x_val=x[:4, :, :12], y_val=y[:4])


# ------------------------------------------------------------------------------------------------ NaN
def test_nan_is_an_error_that_says_where():
    x, y = labelled(20)
    x[3, 0, 5] = x[7, 0, 1] = x[9, 0, 2] = x[11, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"x_train holds 4 NaN or infinite value\(s\); expected finite numbers only: "
                                         r"4 NaN and 0 infinite, first at \(sample, channel, position\) \(3, 0, 5\), "
                                         r"\(7, 0, 1\), \(9, 0, 2\); nan='zero' or nan='interpolate' fills NaN$"):
        from_arrays(x, y)
    images = np.zeros((20, 2, 4, 4))
    images[2, 1, 3, 0] = np.nan
    with pytest.raises(ValueError, match=r"x_test holds 1 NaN .* first at \(sample, channel, row, column\) "
                                         r"\(2, 1, 3, 0\)"):
        from_arrays(np.zeros((20, 2, 4, 4)), np.arange(20) % 2, x_test=images, y_test=np.arange(20) % 2)
    series = ragged([3, 4] * 10)
    series[6][1, 2] = np.nan
    with pytest.raises(ValueError, match=r"x_train holds 1 NaN .* \(sample, channel, position\) \(6, 1, 2\)"):
        from_arrays(series, np.arange(20) % 2)


def test_nan_zero_and_interpolate():
    x = np.tile(np.arange(6, dtype=np.float32), (20, 2, 1))  # (20, 2, 6): 0, 1, .., 5 in each row
    x[:, 0, 0] = np.arange(20)  # sample ids
    x[4, 1, [0, 2, 3, 5]] = np.nan  # an edge, two inner positions, the other edge
    holes = np.isnan(x)
    for policy, row in (("zero", [0, 1, 0, 0, 4, 0]), ("interpolate", [1, 1, 2, 3, 4, 4])):
        task = quiet(x, np.arange(20) % 2, nan=policy)
        assert task.info["nan"] == {"policy": policy, "x_train": 4}
        json.dumps(task.info)
        seen = {int(s[0, 0]): s for split in ("train", "val", "test") for s in stack(getattr(task, split), 0).numpy()}
        assert seen[4][1].tolist() == row
        assert all(np.array_equal(s, x[i]) for i, s in seen.items() if not holes[i].any())
    series = [np.array([np.nan, 2.0, np.nan, 4.0]), np.array([1.0, 2.0])] * 10
    task = quiet(series, np.arange(20) % 2, nan="interpolate")
    assert {tuple(r) for r in stack(task.train, 0)[:, 0].tolist()} == {(2.0, 2.0, 3.0, 4.0), (1.0, 2.0, 0.0, 0.0)}
    assert "nan" not in quiet(*labelled(20), nan="zero").info


def test_nan_fill_keeps_infinite_values_and_targets_an_error():
    x, y = labelled(20)
    x[2, 0, 3], x[5, 0, 4] = np.nan, np.inf
    with pytest.raises(ValueError, match=r"x_train holds 2 NaN or infinite value\(s\); expected finite numbers only: 1 "
                                         r"NaN and 1 infinite, first at \(sample, channel, position\) \(5, 0, 4\); "
                                         r"infinite values are an error under every nan= policy"):
        from_arrays(x, y, nan="zero")
    with pytest.raises(ValueError, match=r"y_train holds 1 NaN or infinite value\(s\); expected finite numbers only "
                                         r"\(first at \(3,\)\); the nan= option fills inputs only, never targets"):
        from_arrays(labelled(20)[0], np.where(np.arange(20) == 3, np.nan, 1.0), kind="regression", nan="zero")
    with pytest.raises(ValueError, match=r"y_train holds 1 NaN or infinite label\(s\), first at sample 3"):
        from_arrays(labelled(20)[0], np.where(np.arange(20) == 3, np.nan, np.arange(20) % 2), nan="interpolate")
    x = labelled(20)[0]
    x[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"x_train has a row of 16 positions that is NaN throughout; nan='interpolate' "
                                         r"needs a number in every row: use nan='zero'"):
        from_arrays(x, np.arange(20) % 2, nan="interpolate")


@pytest.mark.parametrize("nan", ["fill", None, "Zero"])
def test_unknown_nan_policy(nan):
    with pytest.raises(ValueError, match=rf"nan={nan!r} is not a NaN policy; accepted: 'error', 'zero', 'interpolate'"):
        from_arrays(*labelled(20), nan=nan)


# ----------------------------------------------------------------------------------------- small data
def arrowhead_like(n=36, classes=("1", "2", "3")):
    """n samples of string labels, equally many per class, as ArrowHead's 36 training series."""
    x, _ = labelled(n, length=32)
    return x, np.array(classes)[np.arange(n) % len(classes)]


def test_small_data_gets_a_validation_split_with_every_class_at_least_twice():
    x, y = arrowhead_like()
    xt, yt = arrowhead_like(60)
    with pytest.warns(SmallSplitWarning, match=r"custom: the val split has 6 samples \(per class: '1': 2, '2': 2, "
                                               r"'3': 2\), fewer than 30 in all or 5 in a class: its metric is too "
                                               r"noisy .* standard error of up to 20 points\)"):
        task = from_arrays(x, y, x_test=xt, y_test=yt)
    assert task.info["class_counts"] == {"train": [10, 10, 10], "val": [2, 2, 2], "test": [20, 20, 20]}
    assert task.info["sizes"] == {"train": 30, "val": 6, "test": 60}
    assert task.info["small_splits"] == ["val"] and task.too_small("val") and not task.too_small("test")
    assert "at least 2 per class" in task.info["splits"]
    with pytest.warns(SmallSplitWarning):
        proportional = from_arrays(x, y, x_test=xt, y_test=yt, val_min_per_class=0)
    assert proportional.info["class_counts"]["val"] == [2, 1, 1]  # 10% of 36 rounds to 4
    with pytest.warns(SmallSplitWarning):
        more = from_arrays(x, y, x_test=xt, y_test=yt, val_min_per_class=4)
    assert more.info["class_counts"]["val"] == [4, 4, 4]


def test_validation_minimum_takes_at_most_a_third_of_a_class_and_never_its_last_example():
    x, _ = labelled(40)
    y = np.array([0] * 30 + [1] * 6 + [2] * 3 + [3])
    with pytest.warns(SmallSplitWarning):
        task = from_arrays(x, y, val_fraction=0.2, x_test=x[:8], y_test=np.arange(8) % 4, val_min_per_class=3)
    # proportional 6, 1, 1, 0; the minimum of 3 lifts class 1 to a third of its 6, not 3; class 3's only example
    # stays in training
    assert task.info["class_counts"]["val"] == [6, 2, 1, 0]
    assert task.info["class_counts"]["train"] == [24, 4, 2, 1]
    with pytest.warns(SmallSplitWarning):
        task = from_arrays(x, y, test_fraction=0.2)  # a test split carved from train keeps the last example too
    assert all(n >= 1 for n in task.info["class_counts"]["train"])


def test_no_class_to_spare_is_an_error():
    with pytest.raises(ValueError, match=r"test_fraction=0\.25: no class of y_train has an example to spare for the "
                                         r"test split \(each has one left\); pass x_test and y_test"):
        from_arrays(np.zeros((4, 1, 8)), ["a", "b", "c", "d"], test_fraction=0.25, val_fraction=0.25)


def test_large_enough_splits_do_not_warn():
    x, y = labelled(400, c=4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        task = from_arrays(x, y)  # 40 in val and test, 10 per class
    assert task.info["small_splits"] == [] and not task.too_small("val") and not task.too_small("test")


def test_small_split_rule():
    assert SMALL_SPLIT_SIZE == 30 and SMALL_SPLIT_PER_CLASS == 5
    assert small_split_note("val", 30) is None
    assert small_split_note("val", 30, {"a": 5, "b": 25}) is None
    assert small_split_note("val", 100, {"a": 4, "b": 96}) == (
        "the val split has 100 samples (per class: 'a': 4, 'b': 96), fewer than 30 in all or 5 in a class: its metric "
        "is too noisy to rank tuning trials or epochs, or to quote to a few points (a 0-1 error on 100 samples has a "
        "standard error of up to 5 points)")
    assert small_split_note("test", 29) == (
        "the test split has 29 samples, fewer than 30 in all or 5 in a class: its metric is too noisy to rank tuning "
        "trials or epochs, or to quote to a few points")


def test_small_regression_splits_warn_without_classes():
    x, _ = labelled(50)
    with pytest.warns(SmallSplitWarning, match=r"custom: the test split has 5 samples, fewer than 30 in all"):
        task = from_arrays(x, np.linspace(0, 1, 50), kind="regression")
    assert task.info["small_splits"] == ["val", "test"] and task.too_small("test")
    assert "classes" not in task.info and task.info["sizes"] == {"train": 40, "val": 5, "test": 5}


def test_too_small_counts_only_classes_that_training_has():
    x, _ = labelled(400, c=4)
    with pytest.warns(EmptyClassWarning):
        task = from_arrays(x, np.arange(400) % 4, classes=[0, 1, 2, 3, 4])
    assert not task.too_small("val") and task.info["small_splits"] == []
    with pytest.raises(ValueError, match=r"split = 'dev': expected 'train', 'val' or 'test'"):
        task.too_small("dev")


@pytest.mark.parametrize("value, error, match", [
    (-1, ValueError, r"val_min_per_class=-1 is out of range; accepted: an integer >= 0"),
    (1.5, TypeError, r"val_min_per_class=1\.5 has type float; accepted: an integer >= 0"),
])
def test_val_min_per_class_errors(value, error, match):
    with pytest.raises(error, match=match):
        from_arrays(*labelled(), val_min_per_class=value)


# ------------------------------------------------------------------------------------------ end to end
TINY = dict(search_backend="fft", retrain_conv_backend="direct", search_epochs=2, search_batch_size=32,
            search_batches_per_epoch=1.0, tune_lrs=(0.1, 0.01), tune_dropouts=(0.0,), tune_weight_decays=(5e-4,),
            tune_momentums=(0.9,), tune_epochs=2, tune_batch_size=32, tune_batches_per_epoch=0.5, tune_pruner="none",
            retrain_epochs=3, retrain_batch_size=32, search_max_batches=None, tune_max_batches=None,
            retrain_max_batches=None, backbone_kwargs={"width": 2})


def gaps(n, seed):
    """Two spikes in noise; the class ("near", "mid", "far") is the gap between them. x (n, 1, 32), y (n,) str."""
    rng = np.random.default_rng(seed)
    k = np.arange(n) % 3
    x = 0.3 * rng.standard_normal((n, 1, 32)).astype(np.float32)
    start = rng.integers(2, 12, n)
    x[np.arange(n), 0, start] += 3.0
    x[np.arange(n), 0, start + np.array([4, 9, 16])[k]] += 3.0
    return x, np.array(["near", "mid", "far"])[k]


def test_string_labels_train_through_the_pipeline(tmp_path):
    import dashkit
    from dashkit import pipeline

    (x, y), (xv, yv), (xt, yt) = gaps(96, 0), gaps(48, 1), gaps(48, 2)
    task = from_arrays(x, list(y), x_val=xv, y_val=yv, x_test=xt, y_test=yt, name="gaps", kernel_sizes=(3, 5),
                       dilations=(1, 2))
    assert task.info["classes"] == ["far", "mid", "near"] and task.info["small_splits"] == []
    result = dashkit.run(task, preset="smoke", out=tmp_path / "run", figures=False, verbose=False, **TINY)
    assert 0.0 <= result.metrics["dash"] <= 100.0
    model = pipeline.load_model(tmp_path / "run", "dash", task=task)
    with torch.no_grad():
        logits = model(torch.from_numpy(xt))
    labels = task.to_labels(logits)
    assert labels.shape == (48,) and set(labels.tolist()) <= {"near", "mid", "far"}
    assert all(isinstance(v, str) for v in labels.tolist())
    # the labels are the predictions the recorded test error was computed from, in the user's words
    assert 100 * np.mean(labels != yt) == pytest.approx(result.metrics["dash"], abs=1e-3)


# ------------------------------------------------------------------------------ pandas and other array-likes
def same_task(a, b):
    """Two tasks hold the same inputs, targets and classes in every split."""
    for split in ("train", "val", "test"):
        da, db = getattr(a, split), getattr(b, split)
        assert len(da) == len(db)
        for key in (0, 1):
            assert torch.equal(stack(da, key), stack(db, key)), (split, key)
    assert a.info.get("classes") == b.info.get("classes") and a.in_shape == b.in_shape


class ArrayLike:
    """An object numpy reads through ``__array__`` alone (as xarray and many others are read)."""

    def __init__(self, a):
        self.a = np.asarray(a)

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


def test_array_likes_read_as_their_numpy_arrays():
    x, y = labelled(60, 3, 12)
    labels = np.array(["a", "b", "c"])[y]
    want = from_arrays(x[:50], labels[:50], x_test=x[50:], y_test=labels[50:], seed=1)
    got = from_arrays(ArrayLike(x[:50]), ArrayLike(labels[:50]), x_test=ArrayLike(x[50:]),
                      y_test=ArrayLike(labels[50:]), seed=1)
    same_task(want, got)
    assert got.info["classes"] == ["a", "b", "c"]


def test_pandas_frames_and_series_read_as_their_arrays():
    pd = pytest.importorskip("pandas")
    x, y = labelled(60, 3, 12)
    labels = np.array(["low", "mid", "high"])[y]
    want = from_arrays(x[:50, 0], labels[:50], x_test=x[50:, 0], y_test=labels[50:], seed=2)
    got = from_arrays(pd.DataFrame(x[:50, 0]), pd.Series(labels[:50]), x_test=pd.DataFrame(x[50:, 0]),
                      y_test=pd.Series(labels[50:]).astype("category"), seed=2)  # (N, L): one channel
    same_task(want, got)
    assert got.info["classes"] == ["high", "low", "mid"]
    targets = np.linspace(0, 1, 60)  # regression targets as a Series
    want = from_arrays(x[:, 0], targets, kind="regression", seed=2)
    same_task(want, from_arrays(pd.DataFrame(x[:, 0]), pd.Series(targets), kind="regression", seed=2))


def nested_series(n=40, seed=0):
    """n two-channel series of lengths 8..19: as a list of (2, L_i) arrays, and as a table of cells."""
    rng = np.random.default_rng(seed)
    series = [rng.normal(size=(2, int(length))).astype(np.float32) for length in rng.integers(8, 20, n)]
    table = np.empty((n, 2), dtype=object)
    for i, s in enumerate(series):
        table[i, 0], table[i, 1] = s[0], s[1]
    return series, table, np.arange(n) % 2


def test_a_table_of_series_reads_as_a_list_of_series():
    series, table, y = nested_series()
    want = from_arrays(series, y, seed=3)
    same_task(want, from_arrays(table, y, seed=3))  # a 2-D object array: one row per sample, a column per channel
    assert want.info["lengths"]["length"] == max(s.shape[1] for s in series)
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({f"dim_{c}": [pd.Series(s[c]) for s in series] for c in range(2)})  # sktime's nested frame
    same_task(want, from_arrays(frame, pd.Series(y), seed=3))


def test_a_table_of_series_needs_one_length_per_row():
    series, table, y = nested_series()
    table[5, 1] = table[5, 1][:-1]
    with pytest.raises(ValueError, match=r"x_train\[5\]: a table of series .* row 5 has series of shapes "
                                         r"\(\d+,\), \(\d+,\)"):
        from_arrays(table, y)
