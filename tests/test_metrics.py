"""The NAS-Bench-360 metrics against hand computations and scikit-learn, and their errors on degenerate input."""
import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score, roc_auc_score

import dashkit.metrics as M
from dashkit.metrics import (METRICS, error_pct, fnr_pct, get_metric, mae8, mse, one_minus_auroc,
                             one_minus_auroc_masked, one_minus_macro_f1, one_minus_map, rel_l2)

NAN = float("nan")


def _logits(pred, classes):
    """One-hot logits that predict the given classes: (N, classes)."""
    return torch.nn.functional.one_hot(torch.as_tensor(pred), classes).float() * 3.0 - 1.0


# ---------------------------------------------------------------------------------------------------------
# the registry


def test_every_metric_is_registered_and_exported():
    assert set(METRICS) == {"error_pct", "1-macro_f1", "1-mAP", "1-auroc", "1-auroc_masked", "rel_l2", "mae8",
                            "fnr_pct", "mse"}
    for name, fn in METRICS.items():
        assert get_metric(name) is fn and fn.__name__ in M.__all__
    assert METRICS["1-auroc_masked"] is one_minus_auroc_masked


def test_unknown_metric_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown metric 'accuracy'; known metrics: 1-auroc, 1-auroc_masked, .*"
                                         r"error_pct, .*rel_l2"):
        get_metric("accuracy")


# ---------------------------------------------------------------------------------------------------------
# classification


def test_error_pct():
    y = torch.tensor([0, 1, 2, 2])
    assert error_pct(_logits([0, 1, 2, 2], 3), y) == 0.0
    assert error_pct(_logits([0, 1, 2, 0], 3), y) == 25.0
    assert error_pct(_logits([1, 2, 0, 0], 3), y) == 100.0


def test_one_minus_macro_f1_by_hand_and_against_sklearn():
    y = torch.tensor([0, 0, 1, 1])
    assert one_minus_macro_f1(_logits([0, 0, 1, 1], 2), y) == 0.0
    # class 0: precision 1, recall 1/2, F1 2/3; class 1: precision 2/3, recall 1, F1 4/5
    assert one_minus_macro_f1(_logits([0, 1, 1, 1], 2), y) == pytest.approx(1 - (2 / 3 + 4 / 5) / 2)
    rng = np.random.default_rng(0)
    yt, yp = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    expected = 1 - f1_score(yt, yp, average="macro")
    assert one_minus_macro_f1(_logits(yp, 4), torch.as_tensor(yt)) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("fn", [error_pct, one_minus_macro_f1])
def test_classification_shape_errors(fn):
    name = fn.__name__
    with pytest.raises(ValueError, match=rf"{name}: y_hat has shape \(4,\) and y \(4,\); accepted: y_hat "
                                         r"\(N, classes\) scores and y \(N,\) class indices"):
        fn(torch.zeros(4), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"{name}: y_hat has shape \(3, 2\) and y \(4,\)"):
        fn(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match=rf"{name}: y has shape \(0,\); accepted: at least one sample"):
        fn(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))
    with pytest.raises(TypeError, match=rf"{name}: y has type list; accepted: a torch\.Tensor"):
        fn(torch.zeros(2, 2), [0, 1])


# ---------------------------------------------------------------------------------------------------------
# multi-label: mAP and AUROC


def test_one_minus_map_by_hand():
    y = torch.tensor([[1.0], [0.0], [1.0], [0.0]])
    # ranked by score: positive, negative, positive, negative -> AP = (1/1 + 2/3) / 2
    s = torch.tensor([[0.9], [0.8], [0.7], [0.1]])
    assert one_minus_map(s, y) == pytest.approx(1 - (1 + 2 / 3) / 2)
    assert one_minus_map(y * 2 - 1, y) == pytest.approx(0.0)
    # a label with no positive in the split is left out, whatever its scores
    y2, s2 = torch.cat([y, torch.zeros(4, 1)], 1), torch.cat([s, torch.tensor([[5.0], [-1.0], [0.0], [2.0]])], 1)
    assert one_minus_map(s2, y2) == pytest.approx(1 - (1 + 2 / 3) / 2)


def test_one_minus_map_against_sklearn():
    rng = np.random.default_rng(1)
    yt = (rng.random((60, 5)) < 0.3).astype(np.float32)
    ys = rng.normal(size=(60, 5)).astype(np.float32) + 1.5 * yt
    expected = 1 - average_precision_score(yt, ys, average="macro")
    assert one_minus_map(torch.from_numpy(ys), torch.from_numpy(yt)) == pytest.approx(expected, abs=1e-6)


def test_one_minus_map_errors():
    with pytest.raises(ValueError, match=r"one_minus_map: y \(shape \(3, 2\)\) has no positive for any label"):
        one_minus_map(torch.rand(3, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"one_minus_map: y_hat has shape \(3, 2\) but y has \(3, 3\); accepted: "
                                         "the same shape"):
        one_minus_map(torch.rand(3, 2), torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"one_minus_map: y has shape \(3,\); accepted: \(N, labels\) of 0/1"):
        one_minus_map(torch.rand(3), torch.ones(3))


def test_one_minus_auroc_by_hand():
    y = torch.tensor([0.0, 0.0, 1.0, 1.0])
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of the 4 pairs ordered right
    assert one_minus_auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), y) == pytest.approx(0.25)
    assert one_minus_auroc(y, y) == 0.0
    assert one_minus_auroc(-y, y) == 1.0


def test_one_minus_auroc_averages_labels_and_skips_one_class_labels():
    y = torch.tensor([[0.0, 1.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
    s = torch.tensor([[0.1, 0.9, 0.3], [0.4, 0.2, 0.2], [0.35, 0.1, 0.6], [0.8, 0.3, 0.1]])
    # label 0: AUROC 3/4 (as above); label 1: positives 0.9, 0.1 vs negatives 0.2, 0.3 -> 2/4; label 2: all 1
    assert one_minus_auroc(s, y) == pytest.approx(1 - (0.75 + 0.5) / 2)


def test_one_minus_auroc_dense_pools_pixels_per_label():
    rng = np.random.default_rng(2)
    yt = (rng.random((3, 2, 4, 5)) < 0.4).astype(np.float32)  # (N, labels, H, W)
    ys = rng.normal(size=yt.shape).astype(np.float32) + yt
    per_label = [roc_auc_score(yt[:, j].ravel(), ys[:, j].ravel()) for j in range(2)]
    assert one_minus_auroc(torch.from_numpy(ys), torch.from_numpy(yt)) == pytest.approx(1 - np.mean(per_label))
    assert abs(per_label[0] - per_label[1]) > 1e-3  # the labels differ, so mixing them up would show


def test_one_minus_auroc_errors():
    with pytest.raises(ValueError, match=r"one_minus_auroc: no label of y has both positives and negatives "
                                         r"\(4 scored entries\); AUROC is undefined"):
        one_minus_auroc(torch.rand(4, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match=r"one_minus_auroc: y_hat has shape \(4, 1\) but y has \(4,\)"):
        one_minus_auroc(torch.rand(4, 1), torch.tensor([0.0, 1.0, 0.0, 1.0]))


def test_one_minus_auroc_masked_ignores_nan_targets():
    y = torch.tensor([[[0.0, NAN], [1.0, 0.0]], [[NAN, 1.0], [1.0, 0.0]]])[:, None]  # (2, 1, 2, 2)
    s = torch.tensor([[[0.2, 99.0], [0.7, 0.1]], [[-99.0, 0.9], [0.3, 0.4]]])[:, None]
    # kept: positives 0.7, 0.9, 0.3 against negatives 0.2, 0.1, 0.4: all pairs ordered right but 0.3 < 0.4
    assert one_minus_auroc_masked(s, y) == pytest.approx(1 - 8 / 9)
    keep = torch.isfinite(y)
    assert one_minus_auroc_masked(s, y) == pytest.approx(one_minus_auroc(s[keep], y[keep]))
    perfect = torch.where(keep, y, torch.full_like(y, -5.0))  # garbage where ignored
    assert one_minus_auroc_masked(perfect, y) == 0.0


def test_one_minus_auroc_masked_errors():
    with pytest.raises(ValueError, match=r"one_minus_auroc_masked: no label of y has both positives and negatives "
                                         r"\(2 scored entries\)"):
        one_minus_auroc_masked(torch.rand(4), torch.tensor([1.0, NAN, 1.0, NAN]))
    with pytest.raises(ValueError, match=r"one_minus_auroc_masked: y_hat has shape \(4,\) but y has \(2, 2\)"):
        one_minus_auroc_masked(torch.rand(4), torch.zeros(2, 2))


# ---------------------------------------------------------------------------------------------------------
# regression and dense targets


def test_rel_l2_by_hand():
    y = torch.tensor([[3.0, 4.0], [0.0, 2.0]])  # norms 5 and 2
    assert rel_l2(y, y) == 0.0
    assert rel_l2(torch.zeros_like(y), y) == pytest.approx(1.0)
    y_hat = y + torch.tensor([[0.5, 0.0], [0.0, 0.6]])  # relative errors 0.1 and 0.3
    assert rel_l2(y_hat, y) == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"rel_l2: y_hat has shape \(2,\) but y has \(2, 2\)"):
        rel_l2(torch.zeros(2), y)


def test_mse_by_hand():
    y = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert mse(y, y) == 0.0
    assert mse(y + torch.tensor([[1.0, -1.0], [2.0, 0.0]]), y) == pytest.approx((1 + 1 + 4 + 0) / 4)
    with pytest.raises(ValueError, match=r"mse: y_hat has shape \(2, 1\) but y has \(2, 2\)"):
        mse(torch.zeros(2, 1), y)  # broadcasting would silently give a number


def test_mae8_scores_close_pairs_only_and_skips_nan():
    y = torch.tensor([[[2.0, 9.0], [NAN, 7.5]]])
    y_hat = torch.tensor([[[3.0, 0.0], [100.0, 7.0]]])
    assert mae8(y_hat, y) == pytest.approx((1.0 + 0.5) / 2)  # 9 A and the NaN pair are not scored
    assert mae8(torch.where(torch.isnan(y), torch.zeros_like(y), y), y) == 0.0
    with pytest.raises(ValueError, match=r"mae8: y \(shape \(1, 3\)\) has no pair with a true distance below 8"):
        mae8(torch.zeros(1, 3), torch.tensor([[8.0, 12.0, NAN]]))


def test_fnr_pct_by_hand():
    y = torch.tensor([[1.0, 1.0, 1.0, 0.0, NAN]])
    y_hat = torch.tensor([[1.0, -1.0, 0.5, 5.0, -9.0]])
    assert fnr_pct(y_hat, y) == pytest.approx(100 / 3)  # one of three positives at or below the threshold
    assert fnr_pct(y_hat, y, threshold=0.6) == pytest.approx(200 / 3)
    assert fnr_pct(y * 2 - 1, torch.nan_to_num(y)) == 0.0
    with pytest.raises(ValueError, match=r"fnr_pct: y \(shape \(1, 2\)\) has no positive pixel"):
        fnr_pct(torch.zeros(1, 2), torch.tensor([[0.0, NAN]]))


@pytest.mark.parametrize("name", ["rel_l2", "mse", "mae8", "fnr_pct", "1-auroc", "1-auroc_masked", "1-mAP"])
def test_same_shape_metrics_reject_empty_and_non_tensors(name):
    fn = get_metric(name)
    with pytest.raises(ValueError, match=r"y has shape \(0, 3\); accepted: at least one sample \(N >= 1\)"):
        fn(torch.zeros(0, 3), torch.zeros(0, 3))
    with pytest.raises(TypeError, match=r"y_hat has type ndarray; accepted: a torch\.Tensor"):
        fn(np.zeros((2, 3)), torch.zeros(2, 3))
