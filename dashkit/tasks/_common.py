"""What the task modules share: the generated-data cache and Darcy-flow helpers (parameter checks are
`dashkit.checks`, re-exported here for the task modules).

Generated data sets are cached as ``.npz`` files under ``dashkit.paths.cache_dir(task)``, one file per set of
generator parameters (seed included): see :func:`cached_arrays`.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from ..checks import check_bool, check_float, check_int, check_optional_int, check_seed
from ..paths import cache_dir

__all__ = [
    "check_int", "check_optional_int", "check_float", "check_bool", "check_seed",
    "cache_path", "cached_arrays", "fitting_dilations",
    "PointwiseGaussian", "rel_l2_loss", "DecodedRelL2",
]


# ----------------------------------------------------------------------------------------------------------
# The cache of generated data sets

# Bump when the cache's own layout changes. Generators record their own version among their parameters.
_CACHE_FORMAT = 2
_PARAMS_KEY = "__params__"
_TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# What a truncated or overwritten .npz raises on reading, depending on where the damage is.
_READ_ERRORS = (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error)


def cache_path(task: str, params: Mapping[str, Any]) -> Tuple[Path, str]:
    """The cache file of a generated set, and the JSON text of what determines it (the hash's input).

    Args:
        task: the task name: the cache folder and the file name's prefix.
        params: JSON-serialisable values that fully determine the arrays (sizes, seed, generator version, ...).

    Returns:
        (``cache_dir(task) / "<task>-<16 hex digits>.npz"``, the JSON text).
    """
    if not isinstance(task, str) or not _TASK_NAME.fullmatch(task):
        raise ValueError(f"task={task!r} is not usable as a folder name; accepted: a non-empty str of letters, "
                         "digits, '_', '.' and '-'")
    try:
        blob = json.dumps({"format": _CACHE_FORMAT, "task": task, "params": dict(params)}, sort_keys=True,
                          allow_nan=False)
    except (TypeError, ValueError) as e:  # a type json cannot write, or NaN / infinity
        raise type(e)(f"params={params!r} cannot key a cache file ({e}); accepted: a dict of JSON values (str, "
                      "int, finite float, bool, None, and lists and dicts of them)") from e
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return cache_dir(task) / f"{task}-{key}.npz", blob


def _read(path: Path, blob: str) -> Optional[Dict[str, np.ndarray]]:
    """The arrays of a cache file, or None (with a warning) when it is damaged or holds another set."""
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz archive")
        with f:
            arrays = {k: f[k] for k in f.files}  # reading each member checks its CRC, so damage shows here
        stored = str(arrays.pop(_PARAMS_KEY))
    except _READ_ERRORS as e:
        warnings.warn(f"cache file {path.name} is unreadable ({type(e).__name__}: {e}); regenerating it",
                      RuntimeWarning, stacklevel=3)
        return None
    if stored != blob:  # a hash collision, or a file copied in under another name
        warnings.warn(f"cache file {path.name} holds other parameters; regenerating it", RuntimeWarning,
                      stacklevel=3)
        return None
    return arrays


def _write_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    # A temporary file in the same folder, then os.replace: a reader sees the old file or the whole new one,
    # and a crash leaves no half-written file under the final name.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a data cache is for every user of the folder
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_arrays(task: str, params: Mapping[str, Any], make: Callable[[], Dict[str, np.ndarray]]
                  ) -> Dict[str, np.ndarray]:
    """Arrays made by ``make()``, read from the cache when the same task and parameters made them before.

    The file (see :func:`cache_path`) also stores the parameters' JSON, which must match on reading. It is
    written atomically (a temporary file, then ``os.replace``). A file that cannot be read back in full
    (truncated, corrupt) or that holds other parameters is regenerated and replaced, with a RuntimeWarning.

    Args:
        task: the task name; the file goes under ``dashkit.paths.cache_dir(task)``.
        params: JSON-serialisable values that fully determine the arrays, the seed included.
        make: makes the arrays; called only when no valid cache file exists.

    Returns:
        A dict of numpy arrays, by name.

    Example:
        >>> make = lambda: {"x": np.random.default_rng(0).normal(size=(10, 8))}
        >>> cached_arrays("demo", {"n": 10, "seed": 0}, make)["x"].shape  # generated once, then read
        (10, 8)
    """
    path, blob = cache_path(task, params)
    if path.exists():
        arrays = _read(path, blob)
        if arrays is not None:
            return arrays
    arrays = make()
    if not isinstance(arrays, dict):
        raise TypeError(f"make() returned {type(arrays).__name__}; accepted: a dict of numpy arrays by name")
    for name, a in arrays.items():
        if name == _PARAMS_KEY or not isinstance(name, str):
            raise ValueError(f"make() returned an array named {name!r}; accepted: str names other than "
                             f"{_PARAMS_KEY!r}")
        if not isinstance(a, np.ndarray) or a.dtype.hasobject:
            raise TypeError(f"make() returned {name}={type(a).__name__}; accepted: numpy arrays of numbers, "
                            "bools or strings (object arrays cannot be read back without pickle)")
    _write_atomic(path, {**arrays, _PARAMS_KEY: np.array(blob)})
    return arrays


# ----------------------------------------------------------------------------------------------------------
# Search-space fit


def fitting_dilations(size: int, max_kernel: int, ladder: Tuple[int, ...] = (1, 2, 4, 8, 16)) -> Tuple[int, ...]:
    """Dilations of ``ladder`` whose widest kernel span d * (max_kernel - 1) + 1 fits in ``size`` (at least 1).

    A candidate wider than the map mostly reads zero padding, so the search space stops where spans fit.

    Example:
        >>> fitting_dilations(30, 7)
        (1, 2, 4)
    """
    fit = tuple(d for d in ladder if d * (max_kernel - 1) + 1 <= size)
    return fit or (1,)


# ----------------------------------------------------------------------------------------------------------
# Darcy flow: the normaliser and the loss of the FNO setup, shared by the generated and the NAS-Bench-360 task


class PointwiseGaussian:
    """Per-position standardisation fit on a training set (FNO's "unit Gaussian normaliser").

    encode(t) = (t - mean) / (std + eps) and decode undoes it, with mean and std taken over the first (sample)
    axis, so each grid point has its own. Where the training values are constant (the zero boundary of u),
    std = 0 and eps keeps the map finite and invertible. The statistics are kept in float64.

    Args:
        data: (N, *shape) training values, N >= 2.
        eps: added to std.
    """

    def __init__(self, data: torch.Tensor, eps: float = 1e-5):
        data = torch.as_tensor(data, dtype=torch.float64)
        if data.ndim < 1 or data.shape[0] < 2:
            raise ValueError(f"data must have shape (N, ...) with N >= 2, got shape {tuple(data.shape)!r}")
        self.mean = data.mean(0)  # (*shape)
        self.std = data.std(0)
        self.eps = float(eps)

    def _stats(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.dtype]:
        # Work in at least float32, so that a half-precision network output is decoded without further loss.
        dtype = torch.promote_types(t.dtype, torch.float32)
        return self.mean.to(t.device, dtype), (self.std + self.eps).to(t.device, dtype), dtype

    def encode(self, t: torch.Tensor) -> torch.Tensor:
        """t: (N, *shape) -> (N, *shape) standardised, in at least float32."""
        mean, scale, dtype = self._stats(t)
        return (t.to(dtype) - mean) / scale

    def decode(self, t: torch.Tensor) -> torch.Tensor:
        """t: (N, *shape) standardised -> (N, *shape) in the original units, in at least float32."""
        mean, scale, dtype = self._stats(t)
        return t.to(dtype) * scale + mean

    __call__ = decode


def rel_l2_loss(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over samples of ||y_hat - y||_2 / ||y||_2, differentiable. y_hat, y: (N, ...)."""
    diff = (y_hat - y).flatten(1).norm(dim=1)
    return (diff / y.flatten(1).norm(dim=1).clamp_min(1e-12)).mean()


class DecodedRelL2:
    """The Darcy training loss: relative L2 of the decoded fields, as FNO and DASH train it."""

    def __init__(self, normaliser: PointwiseGaussian):
        self.normaliser = normaliser

    def __call__(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return rel_l2_loss(self.normaliser.decode(y_hat), self.normaliser.decode(y))
