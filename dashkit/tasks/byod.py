"""Bring your own data: a Task from arrays (numpy, torch or pandas), checked, split and given sensible defaults.

    >>> task = dashkit.tasks.from_arrays(x, y)                       # (N, C, L) or (N, C, H, W), labels 0..C-1
    >>> task = dashkit.tasks.from_arrays(x, ["1", "3", ...])         # any labels of one type; task.info["classes"]
    >>> task = dashkit.tasks.from_arrays([s1, s2, ...], y)           # series (C, L_i) of varying length: padded
    >>> task.to_labels(logits)                                       # (N, C) outputs -> the labels you gave
    >>> task = dashkit.tasks.from_arrays(x, y, kind="dense", x_test=xt, y_test=yt)
"""
from __future__ import annotations

import re
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from ..metrics import METRICS
from ._common import check_float, check_int, check_seed
from .base import (KINDS, SMALL_SPLIT_PER_CLASS, SMALL_SPLIT_SIZE, SmallSplitWarning, Task, TaskDefaults,
                   small_split_note, tensor_dataset)

__all__ = ["from_arrays", "from_array_like", "default_search_space", "pad_series", "EmptyClassWarning",
           "SeriesLengthWarning", "SmallSplitWarning", "SMALL_SPLIT_SIZE", "SMALL_SPLIT_PER_CLASS", "LENGTH_POLICIES",
           "NAN_POLICIES", "SCALINGS", "TargetScaler", "InputScaler"]

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


def pad_series(series: Sequence[np.ndarray], length: int, mask: bool) -> np.ndarray:
    """Series of different lengths as one array: zeros after the end, cut at ``length``, and an optional mask.

    The ``lengths="pad"`` policy of `from_arrays`, public so that a baseline fed outside dashkit (e.g. MiniRocket in
    ``benchmarks/ucr.py``) sees exactly the same inputs.

    Args:
        series: N arrays (C, L_i), the same C.
        length: T, the output length; longer series are cut at the end.
        mask: add a last channel that is 1 on real positions and 0 on padding.

    Returns:
        (N, C + mask, T) float32.
    """
    channels = series[0].shape[0]
    x = np.zeros((len(series), channels + int(mask), length), dtype=np.float32)  # (N, C [+ mask], T)
    for i, s in enumerate(series):
        n = min(s.shape[1], length)
        x[i, :channels, :n] = s[:, :n]
        if mask:
            x[i, channels, :n] = 1.0
    return x


# -------------------------------------------------------------------------------------------- checks
class EmptyClassWarning(UserWarning):
    """A class has no training examples (a gap in 0-based integer labels, an entry of ``classes`` that y_train
    lacks, or a label that only y_val or y_test has): the network cannot learn to predict it."""


class SeriesLengthWarning(UserWarning):
    """Validation or test series longer than x_train's longest were cut to that length (``lengths="pad"``)."""


LENGTH_POLICIES = ("pad", "crop", "resample")
NAN_POLICIES = ("error", "zero", "interpolate")
SCALINGS = ("standardize", "none")  # input_scaling and target_scaling
# a from_arrays resnet1d classifier's least first-block width (DASH's rule: 4 below 10 classes); chosen by 4-fold
# cross-validation on five real training splits, RESULTS.md "The network's width on small real datasets"
SERIES_MIN_WIDTH = 8


def _unit_if_constant(std: np.ndarray) -> np.ndarray:
    """Standard deviations with 1 where a column is constant (std 0), so that standardising keeps it finite."""
    return np.where(std > 0, std, 1.0)


class InputScaler:
    """Inputs standardised per channel with the training split's statistics.

    ``encode(x)[:, c] = (x[:, c] - mean_c) / std_c`` for every data channel c, with mean and std (population) over
    the training split's samples and positions; the mask channel of padded series (`pad_series`) is left as it is,
    and padded positions stay 0 (the statistics count real positions only). A channel that is constant there keeps
    std 1. Networks then see inputs of the scale their initialisation assumes whatever the units: a sensor in
    millivolts or in volts, an offset of thousands, channels of different units side by side. Statistics are kept
    in float64.

    Args:
        x_train: (N, C, *spatial) training inputs (numpy).
        mask_channel: the index of the 0/1 padding mask channel, or None.
    """

    def __init__(self, x_train: np.ndarray, mask_channel: Optional[int] = None):
        x = np.asarray(x_train)
        if x.ndim < 3 or len(x) < 1:
            raise ValueError(f"x_train has shape {x.shape}; expected (N, C, *spatial) with N >= 1")
        self.mask_channel = mask_channel
        self.channels = [c for c in range(x.shape[1]) if c != mask_channel]
        real = None if mask_channel is None else x[:, mask_channel] > 0.5  # (N, *spatial)
        means, stds = [], []
        for c in self.channels:
            values = x[:, c] if real is None else x[:, c][real]
            mean = float(np.mean(values, dtype=np.float64)) if values.size else 0.0
            means.append(mean)
            stds.append(float(np.sqrt(np.mean(np.square(values - mean, dtype=np.float64)))) if values.size else 0.0)
        self.mean, self.std = np.array(means), _unit_if_constant(np.array(stds))

    @classmethod
    def from_info(cls, info: Dict[str, Any]) -> "InputScaler":
        """The scaler a task recorded (``Task.info["input_scaling"]``, `as_info`)."""
        scaler = cls.__new__(cls)
        scaler.mask_channel = info.get("mask_channel")
        scaler.channels = [int(c) for c in info["channels"]]
        scaler.mean, scaler.std = np.asarray(info["mean"], dtype=np.float64), np.asarray(info["std"], dtype=np.float64)
        return scaler

    def encode(self, x: np.ndarray) -> np.ndarray:
        """(N, C, *spatial) in the inputs' units -> (N, C, *spatial) float32, standardised (a new array)."""
        x = np.asarray(x)
        width = max(self.channels + [self.mask_channel if self.mask_channel is not None else -1]) + 1
        if x.ndim < 3 or x.shape[1] != width:
            raise ValueError(f"x has shape {x.shape}; expected (N, {width}, ...): the channels the task was made "
                             f"with{' (the last one the padding mask)' if self.mask_channel is not None else ''}")
        out = np.array(x, dtype=np.float32, copy=True)
        real = None if self.mask_channel is None else x[:, self.mask_channel] > 0.5
        for c, mean, std in zip(self.channels, self.mean, self.std):
            scaled = ((x[:, c].astype(np.float64) - mean) / std).astype(np.float32)
            out[:, c] = scaled if real is None else np.where(real, scaled, 0.0)
        return out

    def as_info(self) -> Dict[str, Any]:
        """JSON-ready: what ``Task.info["input_scaling"]`` records."""
        return {"policy": "standardize", "channels": list(self.channels), "mask_channel": self.mask_channel,
                "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}


class TargetScaler:
    """Regression targets standardised per output with the training split's statistics, and back.

    ``encode(y) = (y - mean) / std`` with mean and std (population) of each output over the training split; an
    output that is constant there keeps std 1. The network learns the standardised targets, whose scale is what
    its initialisation and learning rates assume (targets of 0.04 or of 40,000 train alike), and ``decode``, the
    task's `Task.decode`, turns its outputs back into the targets' units before every metric and in
    `dashkit.predict`. Statistics are kept in float64.

    Args:
        y_train: (N, outputs) training targets.
    """

    def __init__(self, y_train: np.ndarray):
        y = np.asarray(y_train, dtype=np.float64)
        if y.ndim != 2 or len(y) < 1:
            raise ValueError(f"y_train has shape {y.shape}; expected (N, outputs) with N >= 1")
        self.mean = y.mean(axis=0)  # (outputs,)
        self.std = _unit_if_constant(y.std(axis=0))

    def encode(self, y: np.ndarray) -> np.ndarray:
        """(N, outputs) in the targets' units -> (N, outputs) standardised, float32."""
        return ((np.asarray(y, dtype=np.float64) - self.mean) / self.std).astype(np.float32)

    def decode(self, t: torch.Tensor) -> torch.Tensor:
        """(N, outputs) standardised -> (N, outputs) in the targets' units, in at least float32."""
        dtype = torch.promote_types(t.dtype, torch.float32)
        mean = torch.as_tensor(self.mean, dtype=dtype, device=t.device)
        std = torch.as_tensor(self.std, dtype=dtype, device=t.device)
        return t.to(dtype) * std + mean

    __call__ = decode

    def as_info(self) -> Dict[str, Any]:
        """JSON-ready: what ``Task.info["target_scaling"]`` records."""
        return {"policy": "standardize", "mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}
_SHOWN = 3  # positions or labels quoted in a message


def _is_array_like(value: Any) -> bool:
    """A container of values that converts to numpy itself: a pandas DataFrame or Series, an xarray DataArray, a
    polars frame (``to_numpy``), or anything with ``__array__``; not a numpy array, tensor, list or string."""
    return not isinstance(value, (np.ndarray, torch.Tensor, list, tuple, str, bytes)) and (
        callable(getattr(value, "to_numpy", None)) or hasattr(value, "__array__"))


def from_array_like(value: Any) -> Any:
    """``value`` as a numpy array where it is an array-like (`_is_array_like`: pandas, xarray, polars), through its
    ``to_numpy`` where it has one; anything else (numpy arrays, tensors, lists, None) unchanged."""
    if not _is_array_like(value):
        return value
    return np.asarray(value.to_numpy() if callable(getattr(value, "to_numpy", None)) else value)


def _plain_inputs(name: str, value: Any) -> Any:
    """``from_arrays``'s inputs as its checks take them: numpy arrays, tensors, lists and None as they are;
    array-likes (pandas, xarray, polars: `_is_array_like`) as numpy arrays; and a table of series, one row per
    sample and one column per channel with a series in each cell (sktime's nested DataFrame, or a 2-D object
    array), as a list of (C, L_i) arrays (`_series`; the cells of one row must have one length).

    E.g. a DataFrame (N, L) of numbers -> (N, L) array; a DataFrame (N, C) whose cells are series of length L_i
    -> N arrays (C, L_i). (Targets only go through `from_array_like`: a Series of N labels -> (N,) array.)
    """
    value = from_array_like(value)
    if not (isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 2 and value.size):
        return value
    cells = value.ravel()
    if not all(_is_array_like(c) or isinstance(c, (np.ndarray, list, tuple)) for c in cells):
        return value  # not a table of series: the checks below say what is wrong with it
    rows = []
    for i, row in enumerate(value):
        channels = [np.asarray(from_array_like(c)) for c in row]
        lengths = sorted({c.shape for c in channels})
        if len(lengths) != 1 or len(lengths[0]) != 1:
            raise ValueError(f"{name}[{i}]: a table of series (one row per sample, one column per channel) needs "
                             f"one 1-D series of one length in every cell of a row; row {i} has series of shapes "
                             f"{', '.join(map(str, lengths))}")
        rows.append(np.stack(channels))  # (C, L_i)
    return rows


def _numpy(name: str, value: Any) -> np.ndarray:
    """A numpy array from a numpy array, a torch tensor (bfloat16 read as float32) or an array-like (pandas,
    xarray, polars: `_is_array_like`)."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu()
        return (t.float() if t.dtype == torch.bfloat16 else t).numpy()
    value = from_array_like(value)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name}: expected a numpy array, a torch tensor, a list or a pandas/xarray object, got "
                        f"{type(value).__name__}")
    return value


def _array(name: str, value: Any, finite: bool = True) -> np.ndarray:
    """A numeric, non-empty numpy array from a numpy array, torch tensor or array-like (`_numpy`); finite unless
    ``finite=False``."""
    value = _numpy(name, value)
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{name}: dtype {value.dtype} is not numeric; expected bool, integer or floating-point "
                        "values")
    if value.ndim == 0 or value.size == 0:
        raise ValueError(f"{name} is empty (shape {value.shape}); expected at least one sample")
    if finite and value.dtype.kind == "f":
        bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
        if bad:
            first = ", ".join(str(tuple(int(i) for i in w)) for w in np.argwhere(~np.isfinite(value))[:_SHOWN])
            raise ValueError(f"{name} holds {bad} NaN or infinite value(s); expected finite numbers only (first at "
                             f"{first}); the nan= option fills inputs only, never targets")
    return value


def _inputs(name: str, x: np.ndarray) -> np.ndarray:
    """x as (N, C, L) or (N, C, H, W) float32; (N, L) gets a channel axis."""
    if x.ndim == 2:
        x = x[:, None, :]  # (N, L) -> (N, 1, L): one channel
    elif x.ndim not in (3, 4):
        raise ValueError(f"{name} has shape {x.shape}; expected (N, L), (N, C, L) or (N, C, H, W)")
    return np.ascontiguousarray(x, dtype=np.float32)


def _fill_nan(name: str, blocks: List[np.ndarray], nan: str) -> Tuple[List[np.ndarray], int]:
    """Inputs with their NaN filled by policy, and how many were filled.

    Args:
        name: the array's name, for messages.
        blocks: float32 arrays (n_i, C, *spatial) whose first axes together count the samples (one block for an
            array, one block of one sample per series for a list of series).
        nan: "error" (raise, naming where), "zero" or "interpolate" (linear along the last axis, the edges taking
            the nearest number). Infinite values are an error under every policy.
    """
    bad = [~np.isfinite(b) for b in blocks]
    if not any(m.any() for m in bad):
        return blocks, 0
    isnan = [np.isnan(b) for b in blocks]
    n_nan = sum(int(m.sum()) for m in isnan)
    n_inf = sum(int(m.sum()) for m in bad) - n_nan
    if nan == "error" or n_inf:
        offsets = np.cumsum([0] + [len(b) for b in blocks])
        where = []
        for off, b_mask, n_mask in zip(offsets, bad, isnan):
            mask = b_mask if nan == "error" else b_mask & ~n_mask
            where += [(int(off + w[0]), *(int(i) for i in w[1:])) for w in np.argwhere(mask)[:_SHOWN - len(where)]]
            if len(where) >= _SHOWN:
                break
        axes = "(sample, channel, position)" if blocks[0].ndim == 3 else "(sample, channel, row, column)"
        hint = ("; nan='zero' or nan='interpolate' fills NaN" if nan == "error" and n_nan else "") + \
               ("; infinite values are an error under every nan= policy" if n_inf else "")
        raise ValueError(f"{name} holds {n_nan + n_inf} NaN or infinite value(s); "
                         f"expected finite numbers only: {n_nan} NaN and {n_inf} infinite, first at {axes} "
                         f"{', '.join(map(str, where))}{hint}")
    filled = []
    for b, m in zip(blocks, isnan):
        if not m.any():
            filled.append(b)
            continue
        b = b.copy()
        if nan == "zero":
            b[m] = 0.0
        else:
            rows, holes = b.reshape(-1, b.shape[-1]), m.reshape(-1, m.shape[-1])  # (rows, positions)
            for r in np.flatnonzero(holes.any(axis=1)):
                known = np.flatnonzero(~holes[r])
                if not len(known):
                    raise ValueError(f"{name} has a row of {holes.shape[1]} positions that is NaN throughout; "
                                     "nan='interpolate' needs a number in every row: use nan='zero' or drop it")
                rows[r, holes[r]] = np.interp(np.flatnonzero(holes[r]), known, rows[r, known])
        filled.append(b)
    return filled, n_nan


def _is_series_list(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.dtype == object
                                                and value.ndim == 1)


def _series(name: str, value: Any) -> List[np.ndarray]:
    """Variable-length 1D inputs as a list of (C, L_i) float32 arrays.

    ``value`` is a list (or 1-D object array) of (C, L_i) or (L_i,) arrays, tensors or lists of numbers, or an
    array (N, L) / (N, C, L) whose samples are read as series.
    """
    if not _is_series_list(value):
        x = _array(name, value, finite=False)
        if x.ndim not in (2, 3):
            raise ValueError(f"{name} has shape {x.shape}; with series given as a list, every split takes a list of "
                             "series, (N, L) or (N, C, L): variable lengths are for 1D inputs")
        return list(_inputs(name, x))
    if len(value) == 0:
        raise ValueError(f"{name} is empty (0 series); expected at least one sample")
    out = []
    for i, item in enumerate(value):
        s = np.asarray(item) if isinstance(item, (list, tuple)) else _numpy(f"{name}[{i}]", item)
        if s.dtype.kind not in "biuf":
            raise TypeError(f"{name}[{i}]: dtype {s.dtype} is not numeric; expected bool, integer or floating-point "
                            "values")
        if s.ndim == 1:
            s = s[None, :]  # (L,) -> (1, L): one channel
        if s.ndim != 2 or s.shape[1] == 0:
            raise ValueError(f"{name}[{i}] has shape {s.shape}; a list of series takes (C, L) or (L,) arrays with "
                             "L >= 1 (2D inputs come as one (N, C, H, W) array)")
        if out and s.shape[0] != out[0].shape[0]:
            raise ValueError(f"{name}[{i}] has {s.shape[0]} channel(s) but {name}[0] has {out[0].shape[0]}; "
                             "expected the same number of channels in every series")
        out.append(np.ascontiguousarray(s, dtype=np.float32))
    return out


def _fit_lengths(series: Dict[str, List[np.ndarray]], policy: str) -> Tuple[Dict[str, np.ndarray], Dict[str, Any]]:
    """Series of every split brought to one length by ``policy``.

    Args:
        series: {"train": [(C, L_i), ...], "val": ..., "test": ...} (the splits given).
        policy: "pad" (zero-pad at the end to x_train's longest, plus a mask channel that is 1 on real samples and
            0 on padding when any series is padded; longer val/test series are cut at the end, with a
            SeriesLengthWarning), "crop" (cut at the end to x_train's shortest; shorter val/test series are an
            error) or "resample" (linear interpolation to x_train's longest).

    Returns:
        ({split: (N, C or C + 1, T) float32}, the info entry: policy, length T, mask channel, lengths per split).
    """
    lens = {split: np.array([s.shape[1] for s in ss]) for split, ss in series.items()}
    channels = series["train"][0].shape[0]
    for split, ss in series.items():
        if ss[0].shape[0] != channels:
            raise ValueError(f"x_{split} has series of {ss[0].shape[0]} channel(s) but x_train has {channels}; "
                             "expected the same")
    target = int(lens["train"].min() if policy == "crop" else lens["train"].max())
    info: Dict[str, Any] = {"policy": policy, "length": target, "mask_channel": None,
                            **{split: [int(v.min()), int(v.max())] for split, v in lens.items()}}
    if policy == "crop":
        for split, v in lens.items():
            if (v < target).any():
                i = int(np.argmax(v < target))
                raise ValueError(f"x_{split}[{i}] has length {int(v[i])}, shorter than {target}, the length that "
                                 "lengths='crop' cuts every series to (x_train's shortest); use lengths='pad' or "
                                 "lengths='resample'")
        return {split: np.stack([s[:, :target] for s in ss]) for split, ss in series.items()}, info
    if policy == "resample":
        grid = np.arange(target)
        out = {}
        for split, ss in series.items():
            out[split] = np.stack([np.stack([np.interp(grid * (s.shape[1] - 1) / max(target - 1, 1),
                                                       np.arange(s.shape[1]), row) for row in s])
                                   for s in ss]).astype(np.float32)
        return out, info
    for split in ("val", "test"):
        v = lens.get(split)
        if v is not None and (v > target).any():
            warnings.warn(SeriesLengthWarning(
                f"x_{split}: {int((v > target).sum())} of {len(v)} series are longer than x_train's longest "
                f"({target}; the longest here is {int(v.max())}); they are cut to {target} positions at the end"),
                stacklevel=3)
    mask = any((v < target).any() for v in lens.values())
    info["mask_channel"] = channels if mask else None
    return {split: pad_series(ss, target, mask) for split, ss in series.items()}, info


def _targets(name: str, y: np.ndarray, kind: str, n: int, spatial: Tuple[int, ...]) -> np.ndarray:
    """y checked and shaped for ``kind`` (not classification), given its inputs' N and spatial size."""
    if len(y) != n:
        raise ValueError(f"{name} has {len(y)} samples but its inputs have {n}; expected the same N")
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
    shaped = y[:, None] if y.ndim == 1 + len(spatial) else y  # (N, *spatial) -> (N, 1, *spatial)
    if shaped.ndim != 2 + len(spatial) or shaped.shape[2:] != spatial:
        raise ValueError(f"{name} has shape {y.shape}; kind='dense' expects (N, *spatial) or (N, C_out, *spatial) "
                         f"with the inputs' spatial size {tuple(spatial)}")
    return np.ascontiguousarray(shaped, dtype=np.float32)


# -------------------------------------------------------------------------------------------- labels
_LABEL_TYPES = "str, int, integer-valued float or bool labels, one type for all"
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _family(value: Any) -> str:
    """A label's type family: "str", "bool", "number", "missing" (None, NaN) or "other"."""
    if isinstance(value, (str, bytes, np.str_, np.bytes_)):
        return "str"
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, (int, np.integer)):
        return "number"
    if isinstance(value, (float, np.floating)):
        return "missing" if np.isnan(value) else "number"
    return "missing" if value is None else "other"


def _labels(name: str, y: Any) -> Tuple[np.ndarray, str]:
    """Class labels as a 1-D numpy array (str, bool, int64 or float64) and their family ("str", "bool", "number").

    Accepts a numpy array, a torch tensor or a list; an object array or a list must hold labels of one type.
    """
    if isinstance(y, (list, tuple)) or (isinstance(y, np.ndarray) and y.dtype == object):
        items = list(y) if isinstance(y, (list, tuple)) else list(y.ravel())
        if isinstance(y, np.ndarray) and y.ndim != 1:
            raise ValueError(f"{name} has shape {y.shape}; kind='classification' expects (N,) class indices or "
                             "labels (a 0/1 matrix of labels is kind='multilabel')")
        if not items:
            raise ValueError(f"{name} is empty (0 labels); expected at least one sample")
        families = [_family(v) for v in items]
        for bad in ("missing", "other"):
            if bad in families:
                i = families.index(bad)
                if bad == "missing":
                    raise ValueError(f"{name} holds {families.count(bad)} missing label(s) (None or NaN), first at "
                                     f"sample {i}; expected a label for every sample")
                raise TypeError(f"{name}[{i}] = {items[i]!r} has type {type(items[i]).__name__}; accepted: "
                                f"{_LABEL_TYPES}")
        if len(set(families)) > 1:
            first = {f: families.index(f) for f in dict.fromkeys(families)}
            shown = " and ".join(f"{f} (e.g. {items[i]!r} at sample {i})" for f, i in first.items())
            raise TypeError(f"{name} mixes label types: {shown}; expected {_LABEL_TYPES}")
        if families[0] == "str":
            items = [v.decode() if isinstance(v, (bytes, np.bytes_)) else str(v) for v in items]
        y = np.array(items)
    else:
        y = _numpy(name, y)
    if y.ndim == 0 or y.size == 0:
        raise ValueError(f"{name} is empty (shape {y.shape}); expected at least one sample")
    if y.ndim != 1:
        raise ValueError(f"{name} has shape {y.shape}; kind='classification' expects (N,) class indices or labels "
                         "(a 0/1 matrix of labels is kind='multilabel')")
    if y.dtype.kind == "S":
        y = np.char.decode(y)
    if y.dtype.kind == "U":
        return y, "str"
    if y.dtype.kind == "b":
        return y, "bool"
    if y.dtype.kind not in "iuf":
        raise TypeError(f"{name}: dtype {y.dtype} is not usable as labels; accepted: {_LABEL_TYPES}")
    if y.dtype.kind == "f":
        finite = np.isfinite(y)
        if not finite.all():
            raise ValueError(f"{name} holds {int((~finite).sum())} NaN or infinite label(s), first at sample "
                             f"{int(np.argmin(finite))}; expected a label for every sample")
        if not np.array_equal(y, np.round(y)):
            bad = y[y != np.round(y)][0].item()
            raise ValueError(f"{name} holds non-integer labels such as {bad!r}; expected class indices 0..C-1 or "
                             "labels of one type (pass them as str to use them as names; kind='regression' for "
                             "continuous targets)")
    return y, "number"


def _encode(ys: Dict[str, Tuple[np.ndarray, str]], classes: Any) -> Tuple[Dict[str, np.ndarray], List[Any]]:
    """Labels of every split as class indices, and the labels in index order (JSON values).

    Rule: with ``classes`` given, a label's index is its position there. Otherwise integer labels whose smallest
    value over all splits is 0 are class indices as they are (C = largest + 1); any other labels (strings, bools,
    integers not starting at 0) are numbered in sorted order over all splits, strings that all read as integers
    by their value ("2" before "10").
    """
    family = ys["train"][1]
    for split, (_, fam) in ys.items():
        if fam != family:
            raise TypeError(f"y_{split} holds {fam} labels but y_train holds {family} labels; expected one type")
    if classes is not None:
        if isinstance(classes, (str, bytes)) or not (_is_series_list(classes) or isinstance(
                classes, (np.ndarray, torch.Tensor))):
            raise TypeError(f"classes={classes!r}: expected None or a list of labels ({_LABEL_TYPES})")
        values, fam = _labels("classes", classes)
        if fam != family:
            raise TypeError(f"classes holds {fam} labels but y_train holds {family} labels; expected one type")
        order = values.tolist()
        if len(set(order)) != len(order):
            twice = next(v for i, v in enumerate(order) if v in order[:i])
            raise ValueError(f"classes lists {twice!r} more than once; expected each class once")
        if len(order) < 2:
            raise ValueError(f"classes={order!r}: classification needs at least 2 classes")
    else:
        everything = np.concatenate([y for y, _ in ys.values()])
        if family == "number" and everything.min() == 0:
            order = list(range(int(everything.max()) + 1))
        else:
            order = np.unique(everything).tolist()
            if family == "str" and all(_INTEGER.fullmatch(v) for v in order):
                order.sort(key=int)  # UCR's "1", "2", .., "10": by value, not "1", "10", "2"
    index = {v: i for i, v in enumerate(order)}
    out = {}
    for split, (y, _) in ys.items():
        uniq, inverse = np.unique(y, return_inverse=True)
        missing = [v for v in uniq.tolist() if v not in index]
        if missing:
            shown = ", ".join(repr(v) for v in missing[:_SHOWN]) + (f" and {len(missing) - _SHOWN} more"
                                                                    if len(missing) > _SHOWN else "")
            raise ValueError(f"y_{split} holds labels that classes does not list: {shown}; classes={order!r}")
        out[split] = np.array([index[v] for v in uniq.tolist()], dtype=np.int64)[inverse.reshape(-1)]
    present = np.unique(out["train"])
    if len(present) < 2:
        raise ValueError(f"y_train has the single class {order[int(present[0])]!r}; classification needs at least "
                         "2 classes")
    return out, order


def _class_counts(y: np.ndarray, num_classes: int) -> List[int]:
    return np.bincount(y, minlength=num_classes).tolist()


def _warn_empty_classes(counts: Dict[str, List[int]], order: List[Any]) -> None:
    """An EmptyClassWarning when a class has no training examples; ``counts``: {split: [count per class]}."""
    empty = [i for i, n in enumerate(counts["train"]) if n == 0]
    if not empty:
        return
    others = [s for s in ("val", "test") if s in counts]
    shown = ", ".join(f"{order[i]!r}" + (f" ({', '.join(f'{s} {counts[s][i]}' for s in others)})" if others else "")
                      for i in empty[:10]) + (f" and {len(empty) - 10} more" if len(empty) > 10 else "")
    warnings.warn(EmptyClassWarning(
        f"{len(empty)} of {len(order)} classes have no examples in y_train: {shown}; the network cannot learn to "
        "predict them, and their validation and test samples count as errors"), stacklevel=3)


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
def _holdout(pool: np.ndarray, count: int, labels: Optional[np.ndarray], rng: np.random.Generator,
             min_per_class: int = 0) -> np.ndarray:
    """About ``count`` indices drawn from ``pool``: at random, or (labels given) stratified.

    Stratified: each class in proportion to its size in the pool, the rounding remainders going to the classes
    with the largest fractional quota; then at least ``min_per_class`` of each class, but no more than a third of
    the class for that minimum (training keeps at least twice as many as are drawn: with 5 examples of a class,
    one is drawn, not 2), and never a class's last example, so that training keeps every class it has. The number
    drawn can therefore differ from ``count``.
    """
    if labels is None:
        return np.sort(rng.choice(pool, size=count, replace=False))
    classes, sizes = np.unique(labels[pool], return_counts=True)
    quota = sizes * count / len(pool)
    take = np.floor(quota).astype(int)
    order = np.argsort(-(quota - take), kind="stable")
    take[order[:count - int(take.sum())]] += 1
    take = np.maximum(take, np.minimum(min_per_class, sizes // 3))
    take = np.minimum(take, sizes - 1)
    chosen = [rng.choice(pool[labels[pool] == c], size=k, replace=False) for c, k in zip(classes, take) if k]
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=pool.dtype)


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
                dilations: Optional[Sequence[int]] = None, *, classes: Optional[Sequence[Any]] = None,
                lengths: str = "pad", nan: str = "error", val_min_per_class: int = 2,
                target_scaling: str = "standardize", input_scaling: str = "standardize") -> Task:
    """A Task from your own arrays: numpy arrays, torch tensors or lists of series, checked and split.

    Args:
        x_train: (N, C, L) for 1D or (N, C, H, W) for 2D inputs; (N, L) is read as one channel (N, 1, L).
            Variable-length 1D series come as a list (or 1-D object array) of N arrays (C, L_i) or (L_i,), brought
            to one length by ``lengths``. Every array may also be a pandas DataFrame or Series (or another object
            with ``to_numpy``/``__array__``: xarray, polars), read as its numpy array; a table with one row per
            sample and a series in each cell, one column per channel (sktime's nested DataFrame), is read as
            that list of series. Numeric; NaN as ``nan`` says; infinite values are an error.
        y_train: targets, by ``kind``: "classification" (N,) labels: integers 0..C-1, strings, other integers
            or bools, as an array, tensor, list or pandas Series, at least 2 classes (see ``classes`` for how they
            are numbered); "multilabel" (N, labels) of 0/1; "regression" (N,) or (N, outputs); "dense" (N, *spatial) or
            (N, C_out, *spatial), the same spatial size as x.
        x_val, y_val: the validation split. When not given, ``val_fraction`` of x_train is split off.
        x_test, y_test: the test split. When not given, ``test_fraction`` of x_train is split off and
            never used for training or model selection (default 10%; 0 with no test arrays is an error,
            since the test split must be data nothing was tuned on).
        kind: one of "classification", "multilabel", "regression", "dense".
        name: the task's name in runs and reports.
        val_fraction, test_fraction: fractions of x_train held out (each rounds to at least one sample).
            Splits are seeded by ``seed`` and, for classification, stratified: each class is held out in
            proportion to its size, never taking a class's last training example.
        metric: a key of ``dashkit.metrics.METRICS``; default by kind: error_pct, 1-auroc, mse, rel_l2.
        backbone: a name in ``dashkit.backbones``; default resnet1d for 1D, wrn for 2D (per-position output
            when kind is "dense"). A resnet1d classifier is at least ``SERIES_MIN_WIDTH`` (8) channels wide
            (``backbone_kwargs={"width": ...}`` in the task's defaults): DASH's class-count rule gives 4 below
            10 classes, and 8 made fewer held-out errors on five small real datasets (RESULTS.md, "The network's
            width on small real datasets"); a run's ``backbone_kwargs={"width": 4}`` restores the rule.
        kernel_sizes, dilations: the search space; default :func:`default_search_space` for the input size.
        classes: classification only: the labels in class-index order, fixing the set and the order (a label
            outside it is an error; an entry no training sample has gives an EmptyClassWarning). By default,
            integer labels whose smallest value over all splits is 0 are class indices as they are (C is the
            largest + 1, so 0, 2, 5 make 6 classes), and any other labels (strings, bools, integers such as 1..3
            or -1/1) are numbered in sorted order over all splits: 1, 2, 3 become 0, 1, 2; strings that all read
            as integers go by value ("2" before "10").
        lengths: how variable-length series (a list for any of x_train, x_val, x_test) get one length T:
            "pad" (default: nothing is lost) zero-pads each series at the end to x_train's longest and, when
            any series of any split is padded, adds a last input channel that is 1 on real positions and 0 on
            padding, so that the network can tell padding from a zero; val/test series longer than T are cut
            at the end with a SeriesLengthWarning. "crop" cuts every series at the end to x_train's shortest;
            val/test series shorter than that are an error. "resample" interpolates every series linearly to
            x_train's longest. Regular arrays are used as they are (their lengths must agree).
        nan: what NaN in the inputs become: "error" (default: an error naming where they are), "zero", or
            "interpolate" (linear along the last axis; positions before the first or after the last number take
            the nearest number). Targets must be finite whatever this says.
        val_min_per_class: classification, validation carved from x_train: at least this many examples of
            each class, as far as a third of the class allows (so training keeps at least twice as many), so
            that a small data set does not get a validation split of one example per class or none: ArrowHead's
            36 (12 per class) give 6 rather than 4. 0: proportional only.
        target_scaling: regression only: "standardize" (default) trains on targets standardised per output with
            the training split's mean and std (`TargetScaler`; the metrics and `dashkit.predict` are in the
            targets' own units, through ``Task.decode``); "none" trains on them as they are. Other kinds' targets
            are used as they are.
        input_scaling: "standardize" (default) standardises every input channel with the training split's mean
            and std over samples and positions (`InputScaler`; the padding mask and padded positions are left as
            they are; `dashkit.predict` applies the same to the inputs it is given); "none" uses the inputs as
            they are.

    Returns:
        Task whose datasets yield x float32 (C, *spatial) and y int64 (classification) or float32. Its ``info``
        records, JSON-serialisable: "source", "splits" (how they were made), "sizes" {split: N}, and for
        classification "classes" (the labels in class-index order; ``Task.to_labels`` maps predictions back to
        them) and "class_counts" {split: [count per class]}; "lengths" (policy, length T, mask channel index or
        None, [shortest, longest] per split) when series came as lists; "nan" {array: values filled} when NaN
        were filled; "small_splits" (the splits too small to trust, see ``Task.too_small``); for regression,
        "target_scaling" (policy, and the mean and std per output when standardised); "input_scaling" (policy,
        and the channels, mask channel, mean and std when standardised).

    Warns:
        EmptyClassWarning: a class has no training examples. A label that only y_val or y_test has warns too,
            rather than being an error: its samples are real cases the model gets wrong, so they count as errors;
            dropping them would flatter the metric, and an error would leave the user nothing to do but drop them.
            (To make such a label an error, list the expected ones in ``classes``.)
        SmallSplitWarning: the validation or test split has fewer than 30 samples, or (classification) fewer
            than 5 of a class that training has (see ``dashkit.tasks.base.small_split_note`` for why).
        SeriesLengthWarning: val/test series were cut to x_train's longest (``lengths="pad"``).
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
    if not isinstance(lengths, str) or lengths not in LENGTH_POLICIES:
        raise ValueError(f"lengths={lengths!r} is not a length policy; accepted: "
                         f"{', '.join(map(repr, LENGTH_POLICIES))}")
    if not isinstance(nan, str) or nan not in NAN_POLICIES:
        raise ValueError(f"nan={nan!r} is not a NaN policy; accepted: {', '.join(map(repr, NAN_POLICIES))}")
    if classes is not None and kind != "classification":
        raise ValueError(f"classes={classes!r} is for kind='classification', not kind={kind!r}")
    val_min_per_class = check_int("val_min_per_class", val_min_per_class, 0)
    for option, value, what in (("input_scaling", input_scaling, "an input"),
                                ("target_scaling", target_scaling, "a target")):
        if not isinstance(value, str) or value not in SCALINGS:
            raise ValueError(f"{option}={value!r} is not {what} scaling; accepted: {', '.join(map(repr, SCALINGS))}")

    raw = {s: (_plain_inputs(f"x_{s}", x), from_array_like(y))
           for s, (x, y) in {"train": (x_train, y_train), "val": (x_val, y_val), "test": (x_test, y_test)}.items()}
    for split in ("val", "test"):
        xv, yv = raw[split]
        if (xv is None) != (yv is None):
            missing = f"y_{split}" if yv is None else f"x_{split}"
            raise ValueError(f"{missing} is missing: pass both x_{split} and y_{split}, or neither")
    splits = [s for s in ("train", "val", "test") if raw[s][0] is not None]

    # inputs: (N, C, *spatial) float32 per split, NaN filled by policy
    xs: Dict[str, np.ndarray] = {}
    filled: Dict[str, int] = {}
    length_info = None
    if any(_is_series_list(raw[s][0]) for s in splits):
        if kind == "dense":
            raise ValueError("x_train and the other inputs given as lists of series need kind 'classification', "
                             "'multilabel' or 'regression': dense targets have the inputs' length, so give "
                             "them as one array")
        series = {}
        for s in splits:
            blocks, filled[f"x_{s}"] = _fill_nan(f"x_{s}", [b[None] for b in _series(f"x_{s}", raw[s][0])], nan)
            series[s] = [b[0] for b in blocks]  # (1, C, L_i) -> (C, L_i)
        xs, length_info = _fit_lengths(series, lengths)
    else:
        for s in splits:
            x = _inputs(f"x_{s}", _array(f"x_{s}", raw[s][0], finite=False))
            [x], filled[f"x_{s}"] = _fill_nan(f"x_{s}", [x], nan)
            if s != "train" and x.shape[1:] != xs["train"].shape[1:]:
                raise ValueError(f"x_{s} has samples of shape {x.shape[1:]} but x_train has "
                                 f"{xs['train'].shape[1:]}; expected the same (variable-length series come as lists)")
            xs[s] = x

    # targets
    ys: Dict[str, np.ndarray] = {}
    order: Optional[List[Any]] = None
    if kind == "classification":
        labels = {}
        for s in splits:
            labels[s] = _labels(f"y_{s}", raw[s][1])
            if len(labels[s][0]) != len(xs[s]):
                raise ValueError(f"y_{s} has {len(labels[s][0])} samples but its inputs have {len(xs[s])}; "
                                 "expected the same N")
        ys, order = _encode(labels, classes)
        num_outputs = len(order)
    else:
        for s in splits:
            y = raw[s][1]
            y = np.asarray(y) if isinstance(y, (list, tuple)) else y
            ys[s] = _targets(f"y_{s}", _array(f"y_{s}", y), kind, len(xs[s]), xs[s].shape[2:])
            if s != "train" and ys[s].shape[1:] != ys["train"].shape[1:]:
                raise ValueError(f"y_{s} has targets of shape {ys[s].shape[1:]} but y_train has "
                                 f"{ys['train'].shape[1:]}; expected the same")
        num_outputs = int(ys["train"].shape[1])
    given = {s: (xs[s], ys[s]) for s in splits if s != "train"}
    x_tr, y_tr = xs["train"], ys["train"]

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
            held = _holdout(pool, counts[f"{split}_fraction"], strata, rng,
                            val_min_per_class if split == "val" else 0)
            if not len(held):
                raise ValueError(f"{split}_fraction={fractions[f'{split}_fraction']!r}: no class of y_train has an "
                                 f"example to spare for the {split} split (each has one left); pass x_{split} and "
                                 f"y_{split}")
            given[split] = (x_tr[held], y_tr[held])
            pool = np.setdiff1d(pool, held)
    x_tr, y_tr = x_tr[pool], y_tr[pool]

    how = {k: f" (seed {seed}" + (", stratified" if strata is not None else "") + (
        f", at least {val_min_per_class} per class" if strata is not None and k == "val_fraction" and val_min_per_class
        else "") + ")" for k in fractions}
    info: Dict[str, Any] = {
        "source": "from_arrays",
        "splits": ", ".join(f"{k} {v!r} of x_train{how[k]}" for k, v in fractions.items()) or "as given",
        "sizes": {"train": len(x_tr), "val": len(given["val"][0]), "test": len(given["test"][0])}}
    small = []
    if order is not None:
        info["classes"] = order
        info["class_counts"] = {s: _class_counts(y, len(order)) for s, y in
                                (("train", y_tr), ("val", given["val"][1]), ("test", given["test"][1]))}
        _warn_empty_classes(info["class_counts"], order)
    for split in ("val", "test"):
        per_class = None
        if order is not None:
            per_class = {order[i]: n for i, n in enumerate(info["class_counts"][split])
                         if info["class_counts"]["train"][i]}
        note = small_split_note(split, info["sizes"][split], per_class)
        if note:
            small.append(split)
            warnings.warn(SmallSplitWarning(f"{name}: {note}"), stacklevel=2)
    info["small_splits"] = small
    if length_info is not None:
        info["lengths"] = length_info
    if any(filled.values()):
        info["nan"] = {"policy": nan, **{k: v for k, v in filled.items() if v}}

    if input_scaling == "standardize":
        x_scaler = InputScaler(x_tr, None if length_info is None else length_info["mask_channel"])
        x_tr = x_scaler.encode(x_tr)
        given = {s: (x_scaler.encode(xg), yg) for s, (xg, yg) in given.items()}
        info["input_scaling"] = x_scaler.as_info()
    else:
        info["input_scaling"] = {"policy": "none"}

    decode = None
    if kind == "regression":
        if target_scaling == "standardize":
            scaler = TargetScaler(y_tr)
            y_tr = scaler.encode(y_tr)
            given = {s: (xg, scaler.encode(yg)) for s, (xg, yg) in given.items()}
            decode = scaler.decode
            info["target_scaling"] = scaler.as_info()
        else:
            info["target_scaling"] = {"policy": "none"}

    dims = x_tr.ndim - 2
    net = _backbone_name(backbone, dims)
    backbone_kwargs: Dict[str, Any] = {"dims": dims} if net == "wrn" else {}
    if kind == "dense":
        backbone_kwargs["dense"] = True
    if net == "resnet1d" and kind == "classification":
        from ..backbones import ResNet1D  # imported here: backbones are not needed to build data

        if ResNet1D.default_width(num_outputs) < SERIES_MIN_WIDTH:  # from 10 classes the rule stands (16, 64)
            backbone_kwargs["width"] = SERIES_MIN_WIDTH
    auto_k, auto_d = default_search_space(dims, min(x_tr.shape[2:]))
    ks = auto_k if kernel_sizes is None else _candidates("kernel_sizes", kernel_sizes, odd=True)
    ds = auto_d if dilations is None else _candidates("dilations", dilations, odd=False)

    return Task(
        name=name, kind=kind, train=tensor_dataset(x_tr, y_tr), val=tensor_dataset(*given["val"]),
        test=tensor_dataset(*given["test"]), in_shape=tuple(int(s) for s in x_tr.shape[1:]), num_outputs=num_outputs,
        metric_name=metric,
        defaults=TaskDefaults(backbone=net, backbone_kwargs=backbone_kwargs, kernel_sizes=ks, dilations=ds),
        decode=decode, info=info)
