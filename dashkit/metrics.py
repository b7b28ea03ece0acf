"""NAS-Bench-360 metrics, each computed once over a whole split (never averaged per batch).

Every metric is "lower is better", as NAS-Bench-360 reports them. Inputs are the model's raw outputs and the
targets of the whole split, concatenated on the first axis.
"""
from __future__ import annotations

from typing import Callable, Dict

import numpy as np
import torch

__all__ = ["METRICS", "error_pct", "one_minus_macro_f1", "one_minus_map", "one_minus_auroc", "rel_l2",
           "mae8", "fnr_pct", "mse", "get_metric"]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def error_pct(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """0-1 error in percent. y_hat: (N, classes) logits; y: (N,) class indices."""
    return float((y_hat.argmax(1) != y).float().mean().item() * 100.0)


def one_minus_macro_f1(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """1 - macro F1 over classes. y_hat: (N, classes) logits; y: (N,) class indices."""
    from sklearn.metrics import f1_score

    return float(1.0 - f1_score(_np(y).astype(int), _np(y_hat.argmax(1)).astype(int), average="macro"))


def one_minus_map(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """1 - mean average precision over labels that have a positive. y_hat: (N, labels) logits; y: (N, labels)."""
    from sklearn.metrics import average_precision_score

    yt, ys = _np(y), _np(y_hat)
    keep = yt.sum(0) > 0
    if not keep.any():
        raise ValueError("one_minus_map needs at least one positive label in the split")
    return float(1.0 - average_precision_score(yt[:, keep], ys[:, keep], average="macro"))


def one_minus_auroc(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """1 - mean AUROC over labels that have both classes. y_hat: (N, labels, ...) logits; y: same shape.

    Dense (per-pixel) outputs are flattened to (N * pixels, labels); an optional ignore mask is not handled
    here (the task removes ignored pixels before calling).
    """
    from sklearn.metrics import roc_auc_score

    yt, ys = _np(y), _np(y_hat)
    if yt.ndim > 2 or (yt.ndim == 2 and ys.ndim == 2 and yt.shape != ys.shape):
        yt, ys = yt.reshape(-1, 1), ys.reshape(-1, 1)
    if yt.ndim == 1:
        yt, ys = yt[:, None], ys[:, None]
    aucs = [roc_auc_score(yt[:, j], ys[:, j]) for j in range(yt.shape[1]) if 0 < yt[:, j].sum() < len(yt)]
    if not aucs:
        raise ValueError("one_minus_auroc needs a label with both positives and negatives in the split")
    return float(1.0 - np.mean(aucs))


def rel_l2(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over samples of ||y_hat - y||_2 / ||y||_2 (the FNO/Darcy metric). Shapes (N, ...)."""
    d = (y_hat - y).reshape(len(y), -1).double().norm(dim=1)
    n = y.reshape(len(y), -1).double().norm(dim=1).clamp_min(1e-12)
    return float((d / n).mean().item())


def mse(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """Mean squared error over all entries."""
    return float(((y_hat.double() - y.double()) ** 2).mean().item())


def mae8(y_hat: torch.Tensor, y: torch.Tensor) -> float:
    """PSICOV's MAE8: mean absolute distance error over residue pairs whose true distance is below 8 A."""
    mask = y < 8.0
    if not bool(mask.any()):
        raise ValueError("mae8 needs pairs with a true distance below 8")
    return float((y_hat[mask] - y[mask]).abs().double().mean().item())


def fnr_pct(y_hat: torch.Tensor, y: torch.Tensor, threshold: float = 0.0) -> float:
    """False negative rate in percent of a pixel mask at a logit threshold. Shapes (N, 1, H, W)."""
    pos = y > 0.5
    if not bool(pos.any()):
        raise ValueError("fnr_pct needs positive pixels")
    return float(((y_hat <= threshold) & pos).sum().item() / pos.sum().item() * 100.0)


METRICS: Dict[str, Callable[[torch.Tensor, torch.Tensor], float]] = {
    "error_pct": error_pct,
    "1-macro_f1": one_minus_macro_f1,
    "1-mAP": one_minus_map,
    "1-auroc": one_minus_auroc,
    "rel_l2": rel_l2,
    "mae8": mae8,
    "fnr_pct": fnr_pct,
    "mse": mse,
}


def get_metric(name: str) -> Callable[[torch.Tensor, torch.Tensor], float]:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known metrics: {', '.join(sorted(METRICS))}")
    return METRICS[name]
