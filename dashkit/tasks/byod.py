"""Bring your own data: a Task from arrays (numpy or torch), checked, split and given sensible defaults.

    >>> task = dashkit.tasks.from_arrays(x, y)                       # (N, C, L) or (N, C, H, W), labels 0..C-1
    >>> task = dashkit.tasks.from_arrays(x, y, kind="dense", x_test=xt, y_test=yt)
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ..metrics import METRICS
from ._common import check_float, check_seed
from .base import KINDS, Task, TaskDefaults, tensor_dataset

__all__ = ["from_arrays", "default_search_space"]

_METRIC_BY_KIND = {"classification": "error_pct", "multilabel": "1-auroc", "regression": "mse", "dense": "rel_l2"}
# DASH's candidate sets (dash-method.md) by number of spatial dims, and the dilations added for long inputs.
_BASE_SPACE = {1: ((3, 7, 11, 15, 19), (1, 3, 7, 15)), 2: ((3, 5, 7, 9), (1, 3, 7, 15))}
_LONG_DILATIONS = (31, 63, 127)


def default_search_space(dims: int, length: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """DASH's kernel sizes and dilations, fitted to inputs of ``length`` positions per spatial dimension.

    Starts from DASH's sets (1D: K = 3..19, D = 1..15; 2D: K = 3..9, D = 1..15). For long inputs it adds the
    dilations 31, 63, 127 (in turn) while the largest kernel's receptive field (k_max - 1) d + 1 still fits
    in the input, so the search can reach across it. For short inputs it drops kernels, and dilations whose
    smallest-kernel receptive field, exceed 2 * length - 1: taps further than length - 1 from the centre
    never meet the input, so such candidates only duplicate smaller ones.

    Args:
        dims: 1 or 2.
        length: the input's length (1D) or its shorter side (2D).

    Returns:
        (kernel_sizes, dilations), e.g. ``default_search_space(1, 1000) == ((3, 7, 11, 15, 19), (1, 3, 7, 15, 31))``.
    """
    if dims not in _BASE_SPACE:
        raise ValueError(f"dims={dims!r}: expected 1 or 2")
    kernels, dilations = _BASE_SPACE[dims]
    reach = 2 * length - 1
    kernels = tuple(k for k in kernels if k <= reach) or (min(kernels),)
    dilations = tuple(d for d in dilations if (min(kernels) - 1) * d + 1 <= reach) or (1,)
    for d in _LONG_DILATIONS:
        if (max(kernels) - 1) * d + 1 > length:
            break
        dilations += (d,)
    return kernels, dilations


# -------------------------------------------------------------------------------------------- checks
def _array(name: str, value: Any) -> np.ndarray:
    """A numeric, non-empty, finite numpy array from a numpy array or torch tensor."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        value = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    elif not isinstance(value, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array or a torch tensor, got {type(value).__name__}")
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{name}: dtype {value.dtype} is not numeric; expected bool, integer or floating-point "
                        "values")
    if value.ndim == 0 or value.size == 0:
        raise ValueError(f"{name} is empty (shape {value.shape}); expected at least one sample")
    if value.dtype.kind == "f":
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if bad:
            raise ValueError(f"{name} holds {bad} NaN or infinite value(s); expected finite numbers only")
    return value


def _inputs(name: str, x: np.ndarray) -> np.ndarray:
    """x as (N, C, L) or (N, C, H, W) float32; (N, L) gets a channel axis."""
    if x.ndim == 2:
        x = x[:, None, :]  # (N, L) -> (N, 1, L): one channel
    elif x.ndim not in (3, 4):
        raise ValueError(f"{name} has shape {x.shape}; expected (N, L), (N, C, L) or (N, C, H, W)")
    return np.ascontiguousarray(x, dtype=np.float32)


def _targets(name: str, y: np.ndarray, kind: str, x: np.ndarray) -> np.ndarray:
    """y checked and shaped for ``kind``, given its inputs x (N, C, *spatial)."""
    if len(y) != len(x):
        raise ValueError(f"{name} has {len(y)} samples but its inputs have {len(x)}; expected the same N")
    if kind == "classification":
        if y.ndim != 1:
            raise ValueError(f"{name} has shape {y.shape}; kind='classification' expects (N,) class indices "
                             "(a 0/1 matrix of labels is kind='multilabel')")
        if y.dtype.kind == "f" and not np.array_equal(y, np.round(y)):
            bad = y[y != np.round(y)][0].item()
            raise ValueError(f"{name} holds non-integer labels such as {bad!r}; expected class indices 0..C-1")
        if y.min() < 0:
            raise ValueError(f"{name} holds the negative label {int(y.min())!r}; expected class indices 0..C-1")
        return y.astype(np.int64)
    if kind == "multilabel":
        if y.ndim != 2:
            raise ValueError(f"{name} has shape {y.shape}; kind='multilabel' expects (N, labels) of 0/1")
        if not np.isin(y, (0, 1)).all():
            raise ValueError(f"{name} holds values other than 0 and 1, such as {y[~np.isin(y, (0, 1))][0].item()!r}; "
                             "kind='multilabel' expects (N, labels) of 0/1")
        return y.astype(np.float32)
    if kind == "regression":
        if y.ndim == 1:
            y = y[:, None]  # (N,) -> (N, 1): one output
        if y.ndim != 2:
            raise ValueError(f"{name} has shape {y.shape}; kind='regression' expects (N,) or (N, outputs)")
        return y.astype(np.float32)
    spatial = x.shape[2:]
    shaped = y[:, None] if y.ndim == 1 + len(spatial) else y  # (N, *spatial) -> (N, 1, *spatial)
    if shaped.ndim != 2 + len(spatial) or shaped.shape[2:] != spatial:
        raise ValueError(f"{name} has shape {y.shape}; kind='dense' expects (N, *spatial) or (N, C_out, *spatial) "
                         f"with the inputs' spatial size {tuple(spatial)}")
    return np.ascontiguousarray(shaped, dtype=np.float32)


def _candidates(name: str, value: Any, odd: bool) -> Tuple[int, ...]:
    values = tuple(value) if isinstance(value, (list, tuple)) else None
    if (not values or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in values)
            or (odd and any(v % 2 == 0 for v in values))):
        what = "odd ints >= 1 (odd keeps 'same' padding centred)" if odd else "ints >= 1"
        raise ValueError(f"{name}={value!r}: expected a non-empty tuple of {what}")
    return tuple(int(v) for v in values)


def _backbone_name(backbone: Any, dims: int) -> str:
    if backbone is None:
        return "resnet1d" if dims == 1 else "wrn"
    if not isinstance(backbone, str):
        raise TypeError(f"backbone={backbone!r}: expected None or the name of a backbone in dashkit.backbones")
    from .. import backbones  # imported here: backbones are not needed to build data

    if backbone not in backbones.BACKBONES:
        raise ValueError(f"backbone={backbone!r} is not a known backbone; known: {', '.join(backbones.names())}")
    return backbone


# -------------------------------------------------------------------------------------------- splits
def _holdout(pool: np.ndarray, count: int, labels: Optional[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``count`` indices drawn from ``pool``: at random, or (labels given) from each class in proportion to
    its size in the pool, the rounding remainders going to the classes with the largest fractional quota."""
    if labels is None:
        return np.sort(rng.choice(pool, size=count, replace=False))
    classes, sizes = np.unique(labels[pool], return_counts=True)
    quota = sizes * count / len(pool)
    take = np.floor(quota).astype(int)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:count - int(take.sum())]] += 1
    chosen = [rng.choice(pool[labels[pool] == c], size=k, replace=False) for c, k in zip(classes, take) if k]
    return np.sort(np.concatenate(chosen))


def _split_counts(n: int, fractions: Dict[str, float]) -> Dict[str, int]:
    counts = {name: int(round(f * n)) for name, f in fractions.items()}
    for name, k in counts.items():
        if k < 1:
            raise ValueError(f"{name}={fractions[name]!r} of {n} training samples rounds to 0 samples; give more "
                             "data, a larger fraction, or the split's own arrays")
    if n - sum(counts.values()) < 1:
        raise ValueError(f"{' + '.join(f'{k}={v!r}' for k, v in fractions.items())} of {n} training samples leaves "
                         "no training data; expected the fractions to sum to less than 1")
    return counts


# ----------------------------------------------------------------------------------------------- API
def from_arrays(x_train: Any, y_train: Any, x_val: Any = None, y_val: Any = None, x_test: Any = None,
                y_test: Any = None, kind: str = "classification", name: str = "custom", val_fraction: float = 0.1,
                test_fraction: float = 0.1, metric: Optional[str] = None, seed: int = 0,
                backbone: Optional[str] = None, kernel_sizes: Optional[Sequence[int]] = None,
                dilations: Optional[Sequence[int]] = None) -> Task:
    """A Task from your own arrays: numpy arrays or torch tensors, checked and split.

    Args:
        x_train: (N, C, L) for 1D or (N, C, H, W) for 2D inputs; (N, L) is read as one channel (N, 1, L).
            Numeric and finite.
        y_train: targets, by ``kind``: "classification" (N,) integer-valued class indices 0..C-1 (C is the
            largest label + 1, and y_train needs at least 2 classes); "multilabel" (N, labels) of 0/1;
            "regression" (N,) or (N, outputs); "dense" (N, *spatial) or (N, C_out, *spatial), the same
            spatial size as x.
        x_val, y_val: the validation split. When not given, ``val_fraction`` of x_train is split off.
        x_test, y_test: the test split. When not given, ``test_fraction`` of x_train is split off and
            never used for training or model selection (default 10%; 0 with no test arrays is an error,
            since the test split must be data nothing was tuned on).
        kind: one of "classification", "multilabel", "regression", "dense".
        name: the task's name in runs and reports.
        val_fraction, test_fraction: fractions of x_train held out (each rounds to at least one sample).
            Splits are seeded by ``seed`` and, for classification, stratified: each class is held out in
            proportion to its size.
        metric: a key of ``dashkit.metrics.METRICS``; default by kind: error_pct, 1-auroc, mse, rel_l2.
        backbone: a name in ``dashkit.backbones``; default resnet1d for 1D, wrn for 2D (per-position output
            when kind is "dense").
        kernel_sizes, dilations: the search space; default :func:`default_search_space` for the input size.

    Returns:
        Task whose datasets yield x float32 (C, *spatial) and y int64 (classification) or float32.
    """
    if not isinstance(kind, str) or kind not in KINDS:
        raise ValueError(f"kind={kind!r} is not one of {KINDS}")
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r}: expected a non-empty str")
    seed = check_seed(seed)
    if metric is None:
        metric = _METRIC_BY_KIND[kind]
    elif metric not in METRICS:
        raise ValueError(f"metric={metric!r} is not a known metric; known: {', '.join(sorted(METRICS))}")

    x_tr = _inputs("x_train", _array("x_train", x_train))
    y_tr = _targets("y_train", _array("y_train", y_train), kind, x_tr)
    given: Dict[str, Tuple[np.ndarray, np.ndarray]] = {}
    for split, xv, yv in (("val", x_val, y_val), ("test", x_test, y_test)):
        if (xv is None) != (yv is None):
            missing = f"y_{split}" if yv is None else f"x_{split}"
            raise ValueError(f"{missing} is missing: pass both x_{split} and y_{split}, or neither")
        if xv is None:
            continue
        xs = _inputs(f"x_{split}", _array(f"x_{split}", xv))
        if xs.shape[1:] != x_tr.shape[1:]:
            raise ValueError(f"x_{split} has samples of shape {xs.shape[1:]} but x_train has {x_tr.shape[1:]}; "
                             "expected the same")
        ys = _targets(f"y_{split}", _array(f"y_{split}", yv), kind, xs)
        if kind != "classification" and ys.shape[1:] != y_tr.shape[1:]:
            raise ValueError(f"y_{split} has targets of shape {ys.shape[1:]} but y_train has {y_tr.shape[1:]}; "
                             "expected the same")
        given[split] = (xs, ys)

    num_outputs = int(y_tr.shape[1]) if kind != "classification" else 0
    if kind == "classification":
        if len(np.unique(y_tr)) < 2:
            raise ValueError(f"y_train has the single class {int(y_tr[0])!r}; classification needs at least 2 "
                             "classes")
        num_outputs = int(max(int(ys.max()) for ys in [y_tr] + [v[1] for v in given.values()])) + 1

    fractions: Dict[str, float] = {}
    if "test" not in given:
        fractions["test_fraction"] = check_float("test_fraction", test_fraction, 0.0, 1.0, high_open=True)
        if fractions["test_fraction"] == 0.0:
            raise ValueError("test_fraction=0.0 with no x_test/y_test leaves no test split; pass test arrays or "
                             "a test_fraction in (0, 1)")
    if "val" not in given:
        fractions["val_fraction"] = check_float("val_fraction", val_fraction, 0.0, 1.0, low_open=True,
                                                high_open=True)
    counts = _split_counts(len(x_tr), fractions)
    rng = np.random.default_rng(seed)
    strata = y_tr if kind == "classification" else None
    pool = np.arange(len(x_tr))
    for split in ("test", "val"):
        if f"{split}_fraction" in counts:
            held = _holdout(pool, counts[f"{split}_fraction"], strata, rng)
            given[split] = (x_tr[held], y_tr[held])
            pool = np.setdiff1d(pool, held)
    x_tr, y_tr = x_tr[pool], y_tr[pool]

    dims = x_tr.ndim - 2
    net = _backbone_name(backbone, dims)
    backbone_kwargs: Dict[str, Any] = {"dims": dims} if net == "wrn" else {}
    if kind == "dense":
        backbone_kwargs["dense"] = True
    auto_k, auto_d = default_search_space(dims, min(x_tr.shape[2:]))
    ks = auto_k if kernel_sizes is None else _candidates("kernel_sizes", kernel_sizes, odd=True)
    ds = auto_d if dilations is None else _candidates("dilations", dilations, odd=False)

    return Task(
        name=name, kind=kind, train=tensor_dataset(x_tr, y_tr), val=tensor_dataset(*given["val"]),
        test=tensor_dataset(*given["test"]), in_shape=tuple(int(s) for s in x_tr.shape[1:]), num_outputs=num_outputs,
        metric_name=metric,
        defaults=TaskDefaults(backbone=net, backbone_kwargs=backbone_kwargs, kernel_sizes=ks, dilations=ds),
        info={"source": "from_arrays",
              "splits": ", ".join(f"{k} {v!r} of x_train (seed {seed}"
                                  f"{', stratified' if strata is not None else ''})" for k, v in fractions.items())
              or "as given"})
