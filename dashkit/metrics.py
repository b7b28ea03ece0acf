"""NAS-Bench-360 metrics, each computed once over a whole split (never averaged per batch).

Every metric is "lower is better", as NAS-Bench-360 reports them. Inputs are the model's raw outputs and the
targets of the whole split, concatenated on the first axis. Where a target is NaN ("no target here": PSICOV's
padding, Cosmic's ignore mask), the metrics that can meet one leave that entry out.

    >>> get_metric("error_pct")(torch.tensor([[2.0, 0.0], [0.0, 1.0]]), torch.tensor([0, 0]))
    50.0
"""
from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np
import torch

__all__ = ["METRICS", "error_pct", "one_minus_macro_f1", "one_minus_map", "one_minus_auroc",
           "one_minus_auroc_masked", "rel_l2", "mae8", "fnr_pct", "mse", "get_metric"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def _check(metric: str, y_hat: torch.Tensor, y: torch.Tensor, same_shape: bool = True) -> None:
    """Both tensors, at least one sample, and (same_shape) the same shape: otherwise say which and why."""
    for name, t in (("y_hat", y_hat), ("y", y)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{metric}: {name} has type {type(t).__name__}; accepted: a torch.Tensor")
    if y.ndim == 0 or len(y) == 0:
        raise ValueError(f"{metric}: y has shape {tuple(y.shape)!r}; accepted: at least one sample (N >= 1)")
    if same_shape and y_hat.shape != y.shape:
        raise ValueError(f"{metric}: y_hat has shape {tuple(y_hat.shape)!r} but y has {tuple(y.shape)!r}; "
                         "accepted: the same shape")


def _check_logits(metric: str, y_hat: torch.Tensor, y: torch.Tensor) -> None:
    """Class scores (N, classes) and class indices (N,)."""
    _check(metric, y_hat, y, same_shape=False)
    if y_hat.ndim != 2 or y.ndim != 1 or len(y_hat) != len(y):
        raise ValueError(f"{metric}: y_hat has shape {tuple(y_hat.shape)!r} and y {tuple(y.shape)!r}; accepted: "
                         "y_hat (N, classes) scores and y (N,) class indices")


def error_pct(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """0-1 error in percent. y_hat: (N, classes) logits; y: (N,) class indices."""
    _check_logits("error_pct", y_hat, y)
    return float((y_hat.argmax(1) != y).float().mean().item() * 100.0)


def one_minus_macro_f1(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """1 - macro F1 over the classes that occur in y or in the predictions.

    y_hat: (N, classes) logits; y: (N,) class indices.
    """
    from sklearn.metrics import f1_score

    _check_logits("one_minus_macro_f1", y_hat, y)
    return float(1.0 - f1_score(_np(y).astype(int), _np(y_hat.argmax(1)).astype(int), average="macro"))


def one_minus_map(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """1 - mean average precision over the labels that have a positive. y_hat: (N, labels) logits; y: same."""
    from sklearn.metrics import average_precision_score

    _check("one_minus_map", y_hat, y)
    if y.ndim != 2:
        raise ValueError(f"one_minus_map: y has shape {tuple(y.shape)!r}; accepted: (N, labels) of 0/1")
    yt, ys = _np(y), _np(y_hat)
    keep = yt.sum(0) > 0
    if not keep.any():
        raise ValueError(f"one_minus_map: y (shape {tuple(y.shape)!r}) has no positive for any label; accepted: "
                         "a split where at least one label has a positive")
    return float(1.0 - average_precision_score(yt[:, keep], ys[:, keep], average="macro"))


def _mean_auroc(metric: str, yt: np.ndarray, ys: np.ndarray) -> float:
    """Mean AUROC over the columns of (M, labels) arrays that hold both classes."""
    from sklearn.metrics import roc_auc_score

    aucs: List[float] = [roc_auc_score(yt[:, j], ys[:, j]) for j in range(yt.shape[1])
                         if 0 < yt[:, j].sum() < len(yt)]
    if not aucs:
        raise ValueError(f"{metric}: no label of y has both positives and negatives ({len(yt)} scored entries); "
                         "AUROC is undefined. Accepted: a split where at least one label has both")
    return float(np.mean(aucs))


def one_minus_auroc(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """1 - mean AUROC over the labels that have both classes in the split.

    Shapes: y_hat (scores) and y (0/1) the same: (N,) one label, (N, labels), or dense (N, labels, *spatial),
    where each label's pixels of all samples are pooled into one ranking.
    """
    _check("one_minus_auroc", y_hat, y)
    yt, ys = _np(y), _np(y_hat)
    if yt.ndim == 1:
        yt, ys = yt[:, None], ys[:, None]
    elif yt.ndim > 2:  # (N, L, *spatial) -> (N * pixels, L)
        yt = np.moveaxis(yt, 1, -1).reshape(-1, yt.shape[1])
        ys = np.moveaxis(ys, 1, -1).reshape(-1, ys.shape[1])
    return 1.0 - _mean_auroc("one_minus_auroc", yt, ys)


def one_minus_auroc_masked(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """1 - AUROC over every entry whose target is finite (NaN targets, e.g. Cosmic's ignore mask, are dropped).

    Shapes: y_hat (scores) and y (0/1 or NaN) (N, ...), the same; all kept entries are pooled as one binary
    problem (the pixel AUROC of a segmentation mask).
    """
    _check("one_minus_auroc_masked", y_hat, y)
    keep = torch.isfinite(y)
    return 1.0 - _mean_auroc("one_minus_auroc_masked", _np(y[keep])[:, None], _np(y_hat[keep])[:, None])


def rel_l2(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over samples of ||y_hat - y||_2 / ||y||_2 (the FNO/Darcy metric). Shapes (N, ...), the same."""
    _check("rel_l2", y_hat, y)
    d = (y_hat.double() - y.double()).reshape(len(y), -1).norm(dim=1)
    n = y.double().reshape(len(y), -1).norm(dim=1).clamp_min(1e-12)
    return float((d / n).mean().item())


def mse(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error over all entries. Shapes (N, ...), the same."""
    _check("mse", y_hat, y)
    return float(((y_hat.double() - y.double()) ** 2).mean().item())


def mae8(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """PSICOV's MAE8: mean absolute distance error over residue pairs whose true distance is below 8 A.

    Shapes (N, ...), the same; NaN targets (no distance) are never below 8, so they are left out.
    """
    _check("mae8", y_hat, y)
    mask = y < 8.0
    if not bool(mask.any()):
        raise ValueError(f"mae8: y (shape {tuple(y.shape)!r}) has no pair with a true distance below 8; "
                         "accepted: a split with at least one such pair")
    return float((y_hat[mask].double() - y[mask].double()).abs().mean().item())


def fnr_pct(y_hat: torch.Tensor, y: torch.Tensor, threshold: float = 0.0) -> float:
    """False negative rate in percent of a pixel mask at a logit threshold.

    Shapes (N, 1, H, W) or any (N, ...), the same; a positive is a target > 0.5 (NaN never is).
    """
    _check("fnr_pct", y_hat, y)
    pos = y > 0.5
    if not bool(pos.any()):
        raise ValueError(f"fnr_pct: y (shape {tuple(y.shape)!r}) has no positive pixel; the false negative rate "
                         "is undefined. Accepted: a split with at least one positive")
    return float(((y_hat <= threshold) & pos).sum().item() / pos.sum().item() * 100.0)


METRICS: Dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
    "error_pct": error_pct,
    "1-macro_f1": one_minus_macro_f1,
    "1-mAP": one_minus_map,
    "1-auroc": one_minus_auroc,
    "1-auroc_masked": one_minus_auroc_masked,
    "rel_l2": rel_l2,
    "mae8": mae8,
    "fnr_pct": fnr_pct,
    "mse": mse,
}


def get_metric(name: str) -> Callable[[torch.Tensor, torch.Tensor], float]:
    """The metric registered as ``name`` in :data:`METRICS`."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name]
