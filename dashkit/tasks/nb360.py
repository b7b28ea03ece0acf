"""NAS-Bench-360 loaders: the ten tasks DASH was evaluated on, read from the original files in a folder you name.

NAS-Bench-360 (Tu et al., NeurIPS 2022 Datasets and Benchmarks track) gathers ten tasks from vision, audio,
physics, biology and medicine. dashkit never downloads them: fetch the files from the benchmark's page, put
them in a folder, and pass that folder as ``root``::

    >>> task = dashkit.tasks.get("nb360_satellite", root="~/data/satellite", limit=2000)

Each loader reads the files in their original format, makes the benchmark's splits, and carries the metric
NAS-Bench-360 reports (lower is better) and DASH's search space and stage settings for the task.
``limit=N`` keeps the first N samples of each split, for quick runs.

Python pickles. Five of the original formats are Python pickles: CIFAR-100's batches, Spherical's gzip file,
PSICOV's feature files (and its distance maps, which are pickled tuples), ECG's ``challenge2017.pkl`` and
Satellite's ``.npy`` files (each holds a dict). Unpickling can run code stored in the file, so these are read
only for those tasks and only from the folder you pass; every other file is read with
``np.load(..., allow_pickle=False)``. Point ``root`` only at files you trust.

Ignored targets. Where a target has no value (PSICOV: padding, short-range pairs, missing residues; Cosmic:
the ignore mask), the target tensor holds NaN; the task's loss and metric skip those entries.
"""
from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
import pickle
import tarfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ._common import (DecodedRelL2, PointwiseGaussian, check_float, check_int, check_optional_int,
                      check_seed)
from .base import Task, TaskDefaults, register

__all__ = [
    "cifar100", "spherical", "ninapro", "fsd50k", "darcy", "psicov", "cosmic", "ecg", "satellite", "deepsea",
    "ArrayDataset", "mel_filterbank", "log_mel_spectrogram", "read_mat_fields", "psicov_features",
    "ecg_windows", "masked_mse", "masked_bce_with_logits",
]

PathLike = Union[str, "os.PathLike[str]"]

# DASH's search spaces (dash-method: 2D, NinaPro, 1D) and its per-task stage settings.
_SPACE_2D = dict(kernel_sizes=(3, 5, 7, 9), dilations=(1, 3, 7, 15))
_SPACE_NINAPRO = dict(kernel_sizes=(3, 5, 7), dilations=(1, 3, 7))
_SPACE_1D = dict(kernel_sizes=(3, 7, 11, 15, 19), dilations=(1, 3, 7, 15))
_DENSE_SEARCH = {"lr": 0.01, "arch_lr": 0.005}
_FEW_LRS = {"lrs": (1e-2, 1e-3, 1e-4)}  # DASH tunes only the lr on PSICOV, Cosmic and FSD50K
_SOURCE = "NAS-Bench-360 (Tu et al., NeurIPS 2022 Datasets and Benchmarks track)"


def _defaults_2d(dense: bool = False, space: Optional[Dict[str, Tuple[int, ...]]] = None,
                 search: Optional[Dict[str, Any]] = None, tune: Optional[Dict[str, Any]] = None) -> TaskDefaults:
    kwargs: Dict[str, Any] = {"dims": 2}
    if dense:
        kwargs["dense"] = True
    return TaskDefaults(backbone="wrn", backbone_kwargs=kwargs, **(space or _SPACE_2D),
                        search=dict(search or {}), tune=dict(tune or {}))


def _defaults_1d(search: Optional[Dict[str, Any]] = None) -> TaskDefaults:
    return TaskDefaults(backbone="resnet1d", **_SPACE_1D, search=dict(search or {}))


# ------------------------------------------------------------------------------------------------ errors
class _FileError(ValueError):
    """A file that exists but does not hold what the task expects (the message names the file)."""


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names)


def _folder(task: str, root: Any, expected: Sequence[str]) -> Path:
    """The user's data folder, checked: a str or path that exists."""
    if root is None:
        raise TypeError(f"{task}: root is required: the folder that holds {_listing(expected)} "
                        "(the NAS-Bench-360 files; dashkit never downloads them)")
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{task}: root={root!r} is not a folder path; expected a str or os.PathLike naming "
                        f"the folder that holds {_listing(expected)}")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{task}: the root folder {str(folder)!r} does not exist; expected a folder "
                                f"that holds {_listing(expected)}")
    return folder


def _require(task: str, folder: Path, expected: Sequence[str]) -> Dict[str, Path]:
    """Paths of the expected files in ``folder``; every missing one is named in a single error."""
    missing = [name for name in expected if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"{task}: {_listing(missing)} not found in {str(folder)!r}; expected there: {_listing(expected)} "
            "(the NAS-Bench-360 files; dashkit never downloads them)")
    return {name: folder / name for name in expected}


@contextlib.contextmanager
def _reading(task: str, path: Path) -> Iterator[None]:
    """Turn any failure to parse ``path`` into a ValueError that names the file."""
    try:
        yield
    except (_FileError, FileNotFoundError, ImportError, MemoryError):
        raise
    except Exception as err:  # a truncated file fails in many ways: EOFError, zlib, pickle, tar, numpy
        raise _FileError(f"{task}: could not read {str(path)!r}: the file is truncated or not in the "
                         f"NAS-Bench-360 format ({type(err).__name__}: {err})") from err


def _check_limit(limit: Any) -> Optional[int]:
    """``limit=N`` keeps the first N samples of each split; None keeps them all."""
    return check_optional_int("limit", limit, 1, none="every sample")


def _head(limit: Optional[int], *arrays: Any) -> Tuple[Any, ...]:
    """The first ``limit`` items of each array (all of them when limit is None)."""
    return tuple(a if limit is None else a[:limit] for a in arrays)


def _zscore_rows(x: np.ndarray) -> np.ndarray:
    """(N, L) -> (N, L) float32, each row shifted to mean 0 and scaled to std 1 (a constant row only shifted)."""
    std = x.std(axis=1, keepdims=True)
    return ((x - x.mean(axis=1, keepdims=True)) / np.where(std > 0, std, 1.0)).astype(np.float32)


def _np_load(task: str, path: Path) -> Any:
    """``np.load`` without pickle, with a clear error for a bad file."""
    with _reading(task, path):
        return np.load(path, allow_pickle=False)


# ---------------------------------------------------------------------------------------------- datasets
class ArrayDataset(Dataset):
    """Samples from in-memory arrays, turned into tensors one at a time.

    Keeping the arrays as stored (uint8 images stay uint8) saves memory on the large splits; the conversion
    to float32 happens per sample.

    Args:
        x: (N, ...) array of inputs.
        y: (N, ...) array of targets.
        transform: optional callable applied to each float32 input tensor (normalise, augment, transpose).
        y_dtype: torch.int64 for class indices, torch.float32 for everything else.
    """

    def __init__(self, x: Any, y: Any, transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
                 y_dtype: torch.dtype = torch.float32):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        self.x, self.y, self.transform, self.y_dtype = x, y, transform, y_dtype

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.array(self.x[i], dtype=np.float32))
        if self.transform is not None:
            x = self.transform(x)
        return x, torch.as_tensor(np.asarray(self.y[i]), dtype=self.y_dtype)

    def targets(self) -> torch.Tensor:
        """Every target, (N, ...), without converting any input."""
        return torch.as_tensor(np.asarray(self.y), dtype=self.y_dtype)


class _ImageTransform:
    """x * scale, normalised per channel, then (training only) a random crop after zero padding and a
    random horizontal flip. x: (C, H, W). A class rather than a closure so DataLoader workers can pickle it."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], scale: float = 1.0 / 255.0,
                 augment: bool = False, pad: int = 4):
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.scale, self.augment, self.pad = scale, augment, pad

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        x = (x * self.scale - self.mean) / self.std
        if not self.augment:
            return x
        _, h, w = x.shape
        p = self.pad
        i, j = torch.randint(0, 2 * p + 1, (2,)).tolist()
        x = F.pad(x, (p, p, p, p))[:, i:i + h, j:j + w]
        return x.flip(-1) if bool(torch.rand(()) < 0.5) else x


class _Scale:
    """x -> x * scale (picklable)."""

    def __init__(self, scale: float):
        self.scale = scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class _SwapLastTwo:
    """(L, C) -> (C, L): the channels-last arrays of the original files to torch's channels-first."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(-1, -2).contiguous()


# ---------------------------------------------------------------------------------------------- losses
def masked_mse(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the entries whose target is finite (NaN marks "no target here").

    Shapes: y_hat and y (N, ...), the same.
    """
    keep = torch.isfinite(y)
    if not bool(keep.any()):
        return y_hat.sum() * 0.0  # no target in this batch: a zero that keeps the graph
    return F.mse_loss(y_hat[keep], y[keep].to(y_hat.dtype))


def masked_bce_with_logits(y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy with logits over the entries whose target is finite (NaN = ignored).

    Shapes: y_hat (logits) and y (0/1 or NaN) (N, ...), the same.
    """
    keep = torch.isfinite(y)
    if not bool(keep.any()):
        return y_hat.sum() * 0.0
    return F.binary_cross_entropy_with_logits(y_hat[keep], y[keep].to(y_hat.dtype))


# ------------------------------------------------------------------------------------------ CIFAR-100
_CIFAR_MEAN = (0.5071, 0.4867, 0.4408)
_CIFAR_STD = (0.2675, 0.2565, 0.2761)
_CIFAR_DIR = "cifar-100-python"
_CIFAR_TAR = "cifar-100-python.tar.gz"


def _cifar_batch(task: str, path: Path, raw: Any) -> Tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and fine labels (N,) from one unpickled CIFAR-100 batch."""
    if not isinstance(raw, dict):
        raise _FileError(f"{task}: {str(path)!r} does not hold a CIFAR-100 batch (a dict), got {type(raw).__name__}")
    keys = {k.decode() if isinstance(k, bytes) else k: v for k, v in raw.items()}
    if "data" not in keys or "fine_labels" not in keys:
        raise _FileError(f"{task}: {str(path)!r} lacks the keys 'data' and 'fine_labels' of a CIFAR-100 batch; "
                         f"found {sorted(keys)}")
    data = np.asarray(keys["data"], dtype=np.uint8)
    labels = np.asarray(keys["fine_labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise _FileError(f"{task}: {str(path)!r}: data {data.shape} and fine_labels ({len(labels)},) do not "
                         "match the CIFAR-100 layout (N, 3072) and (N,)")
    return data.reshape(-1, 3, 32, 32), labels


def _read_cifar(task: str, folder: Path) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """Train and test batches, from the extracted folder (torchvision layout) or from the tar.gz."""
    extracted = folder / _CIFAR_DIR
    out = {}
    if (extracted / "train").is_file() and (extracted / "test").is_file():
        for split in ("train", "test"):
            path = extracted / split
            with _reading(task, path), open(path, "rb") as f:
                out[split] = _cifar_batch(task, path, pickle.load(f, encoding="bytes"))
        return out
    archive = folder / _CIFAR_TAR
    if not archive.is_file():
        raise FileNotFoundError(
            f"{task}: neither {_CIFAR_TAR} nor the extracted {_CIFAR_DIR}/train and {_CIFAR_DIR}/test found in "
            f"{str(folder)!r}; expected there: {_CIFAR_TAR} (or its extracted folder {_CIFAR_DIR}/ with the files "
            "train and test), the NAS-Bench-360 / torchvision CIFAR-100 files; dashkit never downloads them")
    with _reading(task, archive), tarfile.open(archive, "r:gz") as tar:
        for split in ("train", "test"):
            member = tar.extractfile(f"{_CIFAR_DIR}/{split}")
            if member is None:
                raise _FileError(f"{task}: {str(archive)!r} has no file {_CIFAR_DIR}/{split}")
            out[split] = _cifar_batch(task, archive, pickle.load(member, encoding="bytes"))
    return out


@register("nb360_cifar100")
def cifar100(root: Optional[PathLike] = None, limit: Optional[int] = None, val_size: int = 10_000,
             augment: bool = True) -> Task:
    """CIFAR-100: 100-class classification of 3x32x32 images; metric 0-1 error in percent.

    Reads ``cifar-100-python.tar.gz`` (or the folder ``cifar-100-python/`` that torchvision extracts from it)
    in ``root``; its ``train`` and ``test`` files are Python pickles (keys ``b"data"``, ``b"fine_labels"``),
    unpickled only from that folder. Splits: the last ``val_size`` training images are the validation split
    (40K/10K/10K). Inputs are scaled to [0, 1] and normalised per channel; with ``augment`` the training
    split gets a random crop after 4-pixel padding and a random horizontal flip.

    Returns a Task with x (3, 32, 32) float32 and y int64 in 0..99; DASH's 2D search space with
    ``grad_scale`` 5000.
    """
    task = "nb360_cifar100"
    folder = _folder(task, root, [_CIFAR_TAR])
    limit = _check_limit(limit)
    val_size = check_int("val_size", val_size, 1)
    batches = _read_cifar(task, folder)
    x_all, y_all = batches["train"]
    if val_size >= len(x_all):
        raise ValueError(f"val_size={val_size!r}: the training file has only {len(x_all)} images; expected "
                         f"val_size < {len(x_all)}")
    x_tr, y_tr = _head(limit, x_all[:-val_size], y_all[:-val_size])
    x_va, y_va = _head(limit, x_all[-val_size:], y_all[-val_size:])
    x_te, y_te = _head(limit, *batches["test"])
    plain = _ImageTransform(_CIFAR_MEAN, _CIFAR_STD)
    train_tf = _ImageTransform(_CIFAR_MEAN, _CIFAR_STD, augment=augment)
    return Task(
        name=task, kind="classification",
        train=ArrayDataset(x_tr, y_tr, train_tf, torch.int64),
        val=ArrayDataset(x_va, y_va, plain, torch.int64),
        test=ArrayDataset(x_te, y_te, plain, torch.int64),
        in_shape=(3, 32, 32), num_outputs=100, metric_name="error_pct",
        defaults=_defaults_2d(search={"grad_scale": 5000}),
        info={"source": _SOURCE, "root": str(folder), "files": [_CIFAR_TAR],
              "splits": f"last {val_size} training images = validation", "augment": augment})


# ----------------------------------------------------------------------------------------- Spherical
@register("nb360_spherical")
def spherical(root: Optional[PathLike] = None, limit: Optional[int] = None, val_size: int = 10_000,
              seed: int = 0) -> Task:
    """Spherical CIFAR-100: CIFAR-100 projected onto the sphere, 3x60x60, 100 classes; metric 0-1 error %.

    Reads ``s2_cifar100.gz`` in ``root``: a gzip-compressed Python pickle ``{"train": {"images", "labels"},
    "test": {...}}`` with images (N, 3, 60, 60) in 0..255, unpickled only from that folder. Splits: a seeded
    permutation of the training images, the last ``val_size`` of it for validation (40K/10K/10K). Inputs are
    scaled to [0, 1].

    Returns a Task with x (3, 60, 60) float32 and y int64 in 0..99; DASH's 2D search space with
    ``grad_scale`` 500.
    """
    task, name = "nb360_spherical", "s2_cifar100.gz"
    folder = _folder(task, root, [name])
    limit = _check_limit(limit)
    val_size = check_int("val_size", val_size, 1)
    seed = check_seed(seed)
    path = _require(task, folder, [name])[name]
    with _reading(task, path), gzip.open(path, "rb") as f:
        raw = pickle.load(f)
    split = {}
    for part in ("train", "test"):
        try:
            images, labels = np.asarray(raw[part]["images"]), np.asarray(raw[part]["labels"], dtype=np.int64)
        except (KeyError, TypeError, IndexError) as err:
            raise _FileError(f"{task}: {str(path)!r} lacks {part}/images or {part}/labels ({err!r})") from err
        if images.ndim != 4 or images.shape[1] != 3 or len(labels) != len(images):
            raise _FileError(f"{task}: {str(path)!r}: {part} images {images.shape} / labels {labels.shape} are not "
                             "(N, 3, H, W) / (N,)")
        split[part] = (images, labels)
    x_all, y_all = split["train"]
    if val_size >= len(x_all):
        raise ValueError(f"val_size={val_size!r}: the file has only {len(x_all)} training images; expected "
                         f"val_size < {len(x_all)}")
    order = np.random.default_rng(seed).permutation(len(x_all))
    tr, va = _head(limit, order[:-val_size], order[-val_size:])  # limit first: indexing copies the images
    x_tr, y_tr, x_va, y_va = x_all[tr], y_all[tr], x_all[va], y_all[va]
    x_te, y_te = _head(limit, *split["test"])
    scale = _Scale(1.0 / 255.0)
    return Task(
        name=task, kind="classification",
        train=ArrayDataset(x_tr, y_tr, scale, torch.int64), val=ArrayDataset(x_va, y_va, scale, torch.int64),
        test=ArrayDataset(x_te, y_te, scale, torch.int64),
        in_shape=tuple(int(s) for s in x_all.shape[1:]), num_outputs=100, metric_name="error_pct",
        defaults=_defaults_2d(search={"grad_scale": 500}),
        info={"source": _SOURCE, "root": str(folder), "files": [name],
              "splits": f"seeded permutation (seed {seed}) of train, last {val_size} = validation"})


# ------------------------------------------------------------------------------------------- NinaPro
@register("nb360_ninapro")
def ninapro(root: Optional[PathLike] = None, limit: Optional[int] = None) -> Task:
    """NinaPro DB5: 18 hand gestures from 16 sEMG channels x 52 time steps; metric 0-1 error in percent.

    Reads ``ninapro_{train,val,test}.npy`` (N, 52, 16) and ``label_{train,val,test}.npy`` (N,) in ``root``
    (``allow_pickle=False``); the benchmark's own splits (2638/659/659). Each sample becomes a 1x16x52 image.

    Returns a Task with x (1, 16, 52) float32 and y int64 in 0..17; DASH's NinaPro search space
    K = (3, 5, 7), D = (1, 3, 7).
    """
    task = "nb360_ninapro"
    files = [f"{kind}_{s}.npy" for s in ("train", "val", "test") for kind in ("ninapro", "label")]
    folder = _folder(task, root, files)
    limit = _check_limit(limit)
    paths = _require(task, folder, files)
    splits = {}
    for s in ("train", "val", "test"):
        x = _np_load(task, paths[f"ninapro_{s}.npy"])
        y = _np_load(task, paths[f"label_{s}.npy"])
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise _FileError(f"{task}: ninapro_{s}.npy {x.shape} and label_{s}.npy {y.shape} in {str(folder)!r} "
                             "are not (N, 52, 16) and (N,)")
        x = x.transpose(0, 2, 1)[:, None]  # (N, 52, 16) -> (N, 1, 16, 52): channels as rows, time as columns
        splits[s] = _head(limit, x, y.astype(np.int64))
    return Task(
        name=task, kind="classification",
        **{s: ArrayDataset(*splits[s], y_dtype=torch.int64) for s in ("train", "val", "test")},
        in_shape=tuple(int(v) for v in splits["train"][0].shape[1:]), num_outputs=18, metric_name="error_pct",
        defaults=_defaults_2d(space=_SPACE_NINAPRO),
        info={"source": _SOURCE, "root": str(folder), "files": files, "splits": "the benchmark's own files"})


# -------------------------------------------------------------------------------------------- FSD50K
def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int, f_min: float = 0.0,
                   f_max: Optional[float] = None) -> torch.Tensor:
    """Triangular mel filters on the HTK mel scale, m = 2595 log10(1 + f / 700), unnormalised (peak 1).

    Filter i rises linearly from mel point i to its peak at point i + 1 and falls to zero at point i + 2;
    the n_mels + 2 points are evenly spaced in mel between f_min and f_max. This is the filterbank of
    torchaudio's MelSpectrogram defaults, which NAS-Bench-360's FSD50K features used.

    Args:
        n_freqs: number of STFT frequency bins (n_fft // 2 + 1), spread evenly over 0..sample_rate // 2.
        n_mels: number of filters.
        sample_rate: in Hz.
        f_min, f_max: frequency range in Hz (f_max defaults to sample_rate / 2).

    Returns:
        (n_freqs, n_mels) float32 tensor: power spectrum (..., n_freqs) @ filters -> (..., n_mels).
    """
    f_max = sample_rate / 2.0 if f_max is None else float(f_max)
    freqs = torch.linspace(0.0, float(sample_rate // 2), n_freqs, dtype=torch.float64)
    mel_lo, mel_hi = (2595.0 * np.log10(1.0 + f / 700.0) for f in (f_min, f_max))
    points = 700.0 * (10.0 ** (torch.linspace(mel_lo, mel_hi, n_mels + 2, dtype=torch.float64) / 2595.0) - 1.0)
    lower, centre, upper = points[:-2], points[1:-1], points[2:]
    rise = (freqs[:, None] - lower) / (centre - lower)  # (n_freqs, n_mels)
    fall = (upper - freqs[:, None]) / (upper - centre)
    return torch.minimum(rise, fall).clamp_min(0.0).float()


def log_mel_spectrogram(wave: torch.Tensor, sample_rate: int = 22050, n_fft: int = 1920, win_length: int = 661,
                        hop_length: int = 220, n_mels: int = 96, top_db: float = 80.0) -> torch.Tensor:
    """Log-mel power spectrogram in dB, the FSD50K features of NAS-Bench-360.

    A Hann window (periodic) of ``win_length`` samples, centred in ``n_fft``; frames every ``hop_length``
    samples with the signal reflect-padded by n_fft // 2 on both sides (so a 1 s chunk at 22050 Hz gives
    1 + 22050 // 220 = 101 frames); power |STFT|^2; mel filters from :func:`mel_filterbank`; then
    10 log10(max(power, 1e-10)), floored at (maximum - top_db). The defaults (30 ms window, 10 ms hop,
    96 mels) are those of the FSD50K baseline that NAS-Bench-360 used.

    Args:
        wave: (T,) float waveform, T > n_fft // 2.

    Returns:
        (n_mels, 1 + T // hop_length) float32 tensor.
    """
    if wave.ndim != 1:
        raise ValueError(f"wave: expected a 1-D waveform (T,), got shape {tuple(wave.shape)}")
    if len(wave) <= n_fft // 2:
        raise ValueError(f"wave: {len(wave)} samples is too short for n_fft={n_fft} (needs > {n_fft // 2})")
    window = torch.hann_window(win_length, periodic=True, dtype=torch.float32)
    spec = torch.stft(wave.float(), n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
                      center=True, pad_mode="reflect", return_complex=True)  # (n_fft // 2 + 1, frames)
    power = spec.abs() ** 2
    mel = mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate).T @ power  # (n_mels, frames)
    db = 10.0 * torch.log10(mel.clamp_min(1e-10))
    return torch.maximum(db, db.max() - top_db)


def _read_wav(task: str, path: Path, sample_rate: int) -> np.ndarray:
    """A mono float32 waveform in [-1, 1] from a PCM or float wav file at ``sample_rate``."""
    from scipy.io import wavfile

    with _reading(task, path):
        rate, data = wavfile.read(path)
    if rate != sample_rate:
        raise _FileError(f"{task}: {str(path)!r} is sampled at {rate} Hz; expected {sample_rate} Hz (NAS-Bench-360 "
                         "resampled FSD50K to 22050 Hz before cutting chunks)")
    if data.dtype == np.uint8:
        wave = (data.astype(np.float32) - 128.0) / 128.0
    elif np.issubdtype(data.dtype, np.integer):
        wave = data.astype(np.float32) / float(-np.iinfo(data.dtype).min)
    else:
        wave = data.astype(np.float32)
    if wave.ndim == 2:
        wave = wave.mean(1)  # stereo -> mono
    if wave.size == 0:
        raise _FileError(f"{task}: {str(path)!r} holds no samples")
    return wave


class _AudioChunks(Dataset):
    """FSD50K chunks: log-mel features computed when a sample is read.

    Each chunk is tiled to at least one second (as the FSD50K baseline does for short clips), turned into a
    log-mel spectrogram, centred on its mean, and cropped or zero-padded to ``frames`` frames: x (1, 96, 101).
    """

    def __init__(self, task: str, files: List[Path], labels: np.ndarray, sample_rate: int = 22050,
                 frames: int = 101):
        self.task, self.files, self.labels = task, files, labels
        self.sample_rate, self.frames = sample_rate, frames

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        wave = _read_wav(self.task, self.files[i], self.sample_rate)
        if len(wave) < self.sample_rate:
            wave = np.tile(wave, self.sample_rate // len(wave) + 1)[:self.sample_rate]
        feats = log_mel_spectrogram(torch.from_numpy(wave), sample_rate=self.sample_rate)
        feats = feats - feats.mean()
        feats = F.pad(feats, (0, max(0, self.frames - feats.shape[1])))[:, :self.frames]
        return feats[None], torch.from_numpy(self.labels[i].astype(np.float32))

    def targets(self) -> torch.Tensor:
        """Every chunk's labels, (N, labels), without reading any audio."""
        return torch.from_numpy(np.asarray(self.labels, dtype=np.float32))


def _chunk_path(folder: Path, entry: str) -> Optional[Path]:
    """Where a manifest's chunk is, or None: the path as written (a relative one under ``folder``), else
    ``folder/<its folder>/<name>``, else ``folder/<name>`` (the baseline's manifests hold absolute paths of
    the machine that cut the chunks, so a moved data folder is found this way)."""
    path = Path(entry)
    written = path if path.is_absolute() else folder / path
    for candidate in (written, folder / path.parent.name / path.name, folder / path.name):
        if candidate.is_file():
            return candidate
    return None


def _fsd_manifest(task: str, folder: Path, name: str, label_map: Dict[str, int]) -> Tuple[List[Path], np.ndarray]:
    """Chunk paths and multi-hot labels (N, n_labels) from one manifest csv (columns files, labels)."""
    path = folder / name
    files: List[Path] = []
    rows: List[List[int]] = []
    missing: List[str] = []
    with _reading(task, path), open(path, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"files", "labels"} <= set(reader.fieldnames):
            raise _FileError(f"{task}: {str(path)!r} needs the columns 'files' and 'labels'; found "
                             f"{reader.fieldnames!r}")
        for row in reader:
            names = [n for n in row["labels"].split(",") if n]
            unknown = [n for n in names if n not in label_map]
            if unknown:
                raise _FileError(f"{task}: {str(path)!r} line {reader.line_num}: labels {unknown!r} are not in "
                                 "lbl_map.json")
            found = _chunk_path(folder, row["files"])
            if found is None:
                missing.append(row["files"])
                continue
            files.append(found)
            rows.append([label_map[n] for n in names])
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        raise FileNotFoundError(f"{task}: {len(missing)} audio chunk(s) listed in {name} not found, e.g. {shown}; "
                                f"looked for each as written (relative: under {str(folder)!r}), then as "
                                "<root>/<its folder>/<file name> and <root>/<file name>")
    labels = np.zeros((len(files), len(label_map)), dtype=np.uint8)
    for i, idx in enumerate(rows):
        labels[i, idx] = 1
    return files, labels


@register("nb360_fsd50k")
def fsd50k(root: Optional[PathLike] = None, limit: Optional[int] = None) -> Task:
    """FSD50K: 200 sound-event labels per 1 s audio chunk (multi-label); metric 1 - mAP.

    Reads, in ``root``, the manifests ``tr.csv``, ``val.csv`` and ``eval.csv`` (columns ``files``: a chunk's
    wav path, absolute or relative to ``root``; ``labels``: comma-separated label names) and ``lbl_map.json``
    (label name -> index), as made by the FSD50K baseline that NAS-Bench-360 used; the chunks are 22050 Hz
    wav files. A chunk not found where its manifest says (those paths are the ones of the machine that cut
    the chunks) is looked for as ``root/<its folder>/<file name>``, then ``root/<file name>``. Features are
    computed when a chunk is read (:func:`log_mel_spectrogram`: 96 mel bins x 101 frames, centred on the
    chunk's mean). Splits: the three manifests. Validation and test are scored per
    chunk (the baseline also averaged chunk predictions per clip; that is not done here).

    Returns a Task with x (1, 96, 101) float32 and y (n_labels,) float 0/1; DASH's 2D search space, tuning
    only the learning rate in {1e-2, 1e-3, 1e-4}.
    """
    task = "nb360_fsd50k"
    files = ["tr.csv", "val.csv", "eval.csv", "lbl_map.json"]
    folder = _folder(task, root, files)
    limit = _check_limit(limit)
    paths = _require(task, folder, files)
    with _reading(task, paths["lbl_map.json"]), open(paths["lbl_map.json"]) as f:
        label_map = {str(k): int(v) for k, v in json.load(f).items()}
    if sorted(label_map.values()) != list(range(len(label_map))):
        raise _FileError(f"{task}: {str(paths['lbl_map.json'])!r}: label indices must be 0..{len(label_map) - 1}, "
                         "each once")
    splits = {}
    for s, name in (("train", "tr.csv"), ("val", "val.csv"), ("test", "eval.csv")):
        chunk_files, labels = _fsd_manifest(task, folder, name, label_map)
        splits[s] = _AudioChunks(task, *_head(limit, chunk_files, labels))
    return Task(
        name=task, kind="multilabel", **splits, in_shape=(1, 96, 101), num_outputs=len(label_map),
        metric_name="1-mAP", defaults=_defaults_2d(tune=_FEW_LRS),
        info={"source": _SOURCE, "root": str(folder), "files": files,
              "features": "log-mel, 22050 Hz, n_fft 1920, window 661, hop 220, 96 mels, 101 frames",
              "splits": "tr.csv / val.csv / eval.csv, scored per chunk"})


# --------------------------------------------------------------------------------------------- Darcy
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _is_hdf5(path: Path) -> bool:
    """MATLAB v7.3 files are HDF5, whose signature sits at byte 0 or after a 512-byte (or larger) user block."""
    with open(path, "rb") as f:
        for offset in (0, 512, 1024, 2048):
            f.seek(offset)
            if f.read(8) == _HDF5_SIGNATURE:
                return True
    return False


def read_mat_fields(path: PathLike, fields: Sequence[str], n: Optional[int] = None, step: int = 1,
                    task: str = "read_mat_fields") -> Dict[str, np.ndarray]:
    """Read 3-D fields (N, H, W) from a MATLAB file: v5 with scipy, v7.3 (HDF5) with h5py.

    MATLAB stores arrays column-major, so h5py sees a v7.3 array with its axes reversed (W, H, N); they are
    put back in MATLAB's order here. For v7.3 only the requested samples and grid points are read from disk.

    Args:
        path: the .mat file.
        fields: names of the variables to read.
        n: keep the first n samples (None: all).
        step: keep every step-th grid point along H and W.

    Returns:
        {field: (n, ceil(H / step), ceil(W / step)) float32 array}.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{task}: {str(path)!r} not found")
    sl = slice(None, n)
    out: Dict[str, np.ndarray] = {}
    if _is_hdf5(path):
        try:
            import h5py
        except ImportError as err:
            raise ImportError(f"{task}: {str(path)!r} is a MATLAB v7.3 (HDF5) file; reading it needs h5py: "
                              "pip install h5py") from err
        with _reading(task, path), h5py.File(path, "r") as f:
            for name in fields:
                if name not in f:
                    raise _FileError(f"{task}: {str(path)!r} has no field {name!r}; found {sorted(f.keys())}")
                ds = f[name]
                if ds.ndim != 3:
                    raise _FileError(f"{task}: field {name!r} of {str(path)!r} has shape {ds.shape}; expected 3-D")
                out[name] = np.asarray(ds[::step, ::step, sl]).transpose(2, 1, 0).astype(np.float32)
        return out
    import scipy.io

    with _reading(task, path):
        mat = scipy.io.loadmat(str(path), variable_names=list(fields))
    for name in fields:
        if name not in mat:
            raise _FileError(f"{task}: {str(path)!r} has no field {name!r}")
        arr = np.asarray(mat[name])
        if arr.ndim != 3:
            raise _FileError(f"{task}: field {name!r} of {str(path)!r} has shape {arr.shape}; expected 3-D")
        out[name] = arr[sl, ::step, ::step].astype(np.float32)
    return out


def _darcy_inputs(coeff: torch.Tensor, normaliser: PointwiseGaussian) -> torch.Tensor:
    """(N, s, s) coefficients -> (N, 3, s, s): normalised coefficient, x coordinate, y coordinate."""
    n, s, _ = coeff.shape
    axis = torch.linspace(0.0, 1.0, s)
    grid_x = axis.view(1, s).expand(s, s)  # varies along columns
    grid_y = axis.view(s, 1).expand(s, s)  # varies along rows
    grid = torch.stack([grid_x, grid_y]).expand(n, 2, s, s)
    return torch.cat([normaliser.encode(coeff)[:, None], grid], dim=1)


@register("nb360_darcy")
def darcy(root: Optional[PathLike] = None, limit: Optional[int] = None, n_train: int = 900, n_val: int = 100,
          n_test: int = 100, step: int = 5) -> Task:
    """Darcy flow: the solution field of a 2D elliptic PDE from its coefficient field; metric relative L2.

    Reads ``piececonst_r421_N1024_smooth1.mat`` (train and validation: its first n_train + n_val samples)
    and ``piececonst_r421_N1024_smooth2.mat`` (test: its first n_test) in ``root``, fields ``coeff`` and
    ``sol`` (1024, 421, 421), MATLAB v5 (scipy) or v7.3 (h5py, axes reversed); grid points [::step, ::step]
    (85 x 85 at step 5), 900/100/100 samples. The coefficient and the solution are each normalised per grid
    point with mean and std of the training split (``PointwiseGaussian``); the input adds the x and y
    grid coordinates as two channels. The model predicts the normalised solution; ``Task.decode`` undoes
    the normalisation, so the metric (and the training loss, relative L2 as in the FNO code) is measured on
    the solution's own scale.

    Returns a dense Task with x (3, s, s) and y (1, s, s) float32; WRN with stride 1 and a per-pixel head,
    DASH's 2D search space and dense-task learning rates.
    """
    task = "nb360_darcy"
    files = ["piececonst_r421_N1024_smooth1.mat", "piececonst_r421_N1024_smooth2.mat"]
    folder = _folder(task, root, files)
    limit = _check_limit(limit)
    n_train, n_val, n_test = (check_int(k, v, 1) for k, v in (("n_train", n_train), ("n_val", n_val),
                                                            ("n_test", n_test)))
    step = check_int("step", step, 1)
    paths = _require(task, folder, files)
    dev = read_mat_fields(paths[files[0]], ("coeff", "sol"), n=n_train + n_val, step=step, task=task)
    test = read_mat_fields(paths[files[1]], ("coeff", "sol"), n=n_test, step=step, task=task)
    for name, fields, needed in ((files[0], dev, n_train + n_val), (files[1], test, n_test)):
        have = len(fields["coeff"])
        if have < needed or len(fields["sol"]) != have:
            raise _FileError(f"{task}: {name} holds {have} samples; {needed} needed (n_train + n_val = "
                             f"{n_train} + {n_val}, n_test = {n_test})")
    coeff = torch.from_numpy(dev["coeff"])
    sol = torch.from_numpy(dev["sol"])
    split = {"train": (coeff[:n_train], sol[:n_train]), "val": (coeff[n_train:], sol[n_train:]),
             "test": (torch.from_numpy(test["coeff"]), torch.from_numpy(test["sol"]))}
    split = {k: _head(limit, *v) for k, v in split.items()}
    if len(split["train"][0]) < 2:
        raise ValueError(f"limit={limit!r}: the normaliser needs at least 2 training samples")
    x_norm = PointwiseGaussian(split["train"][0])
    y_norm = PointwiseGaussian(split["train"][1][:, None])
    data = {k: torch.utils.data.TensorDataset(_darcy_inputs(c, x_norm), y_norm.encode(u[:, None]))
            for k, (c, u) in split.items()}
    s = int(coeff.shape[-1])
    return Task(
        name=task, kind="dense", **data, in_shape=(3, s, s), num_outputs=1, metric_name="rel_l2",
        defaults=_defaults_2d(dense=True, search=_DENSE_SEARCH), decode=y_norm.decode,
        loss_fn=DecodedRelL2(y_norm),
        info={"source": _SOURCE, "root": str(folder), "files": files, "grid": f"[::{step}, ::{step}] -> {s}x{s}",
              "splits": f"smooth1 [:{n_train}] / [{n_train}:{n_train + n_val}], smooth2 [:{n_test}]"})


# -------------------------------------------------------------------------------------------- PSICOV
_PSICOV_CHANNELS = 57


def psicov_features(features: Dict[str, Any]) -> np.ndarray:
    """The 57 pair-feature planes PDNET builds from one protein's feature dict.

    Per-residue features v (L,) become two planes, v[j] along each row and v[i] along each column:
    secondary structure ``ss`` (3, L) -> 6 planes, ``pssm`` (L, 22) -> 44, ``sa`` (L,) -> 2,
    ``entropy`` (L,) -> 2; the pair features ``ccmpred``, ``freecon`` and ``potential`` (L, L) are one plane
    each. L = len(features["seq"]).

    Returns:
        (57, L, L) float32 array.
    """
    length = len(features["seq"])

    def per_residue(name: str, shape: Tuple[int, ...]) -> np.ndarray:
        v = np.asarray(features[name], dtype=np.float32)
        if v.shape != shape:
            raise ValueError(f"feature {name!r} has shape {v.shape}; expected {shape} for a sequence of {length}")
        return v

    def both_ways(v: np.ndarray) -> List[np.ndarray]:
        rows = np.broadcast_to(v[None, :], (length, length))
        return [rows, rows.T]

    planes: List[np.ndarray] = []
    ss = per_residue("ss", (3, length))
    for j in range(3):
        planes += both_ways(ss[j])
    pssm = per_residue("pssm", (length, 22))
    for j in range(22):
        planes += both_ways(pssm[:, j])
    planes += both_ways(per_residue("sa", (length,)))
    planes += both_ways(per_residue("entropy", (length,)))
    planes += [per_residue(name, (length, length)) for name in ("ccmpred", "freecon", "potential")]
    return np.stack(planes)


def _psicov_x(task: str, path: Path) -> np.ndarray:
    with _reading(task, path), open(path, "rb") as f:
        # latin1: the feature files may come from Python 2 pickles of numpy arrays
        return psicov_features(pickle.load(f, encoding="latin1"))


def _psicov_y(task: str, path: Path) -> np.ndarray:
    """The Cb distance map (L, L) in Angstrom; PDNET stores a pickled (length, sequence, map) triple."""
    with _reading(task, path):
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as err:
            if "allow_pickle" not in str(err):
                raise
            arr = np.load(path, allow_pickle=True)[2]  # only from the user's folder, as the module says
        arr = np.array(arr, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[0] != arr.shape[1]:
        raise _FileError(f"{task}: {str(path)!r} holds a distance map of shape {arr.shape}; expected (L, L)")
    arr[~np.isfinite(arr)] = np.nan  # a missing residue: no target
    return np.maximum(arr, 1.0)  # as PDNET: distances below 1 A are set to 1 (NaN stays NaN)


class _Proteins(Dataset):
    """PSICOV samples built from per-protein files when read.

    Training (crop set): a random ``crop`` x ``crop`` window of the pair map (independent row and column
    offsets, as PDNET), proteins shorter than ``crop`` placed top-left; targets clipped at ``clip`` Angstrom.
    Evaluation (crop None): the full map placed top-left on a ``size`` x ``size`` canvas, pairs closer than
    ``min_separation`` in sequence set to NaN. Padding: zeros in x, NaN in y.
    """

    def __init__(self, task: str, items: List[Tuple[Path, Path]], size: int, crop: bool,
                 clip: Optional[float] = None, min_separation: int = 0):
        self.task, self.items, self.size, self.crop = task, items, size, crop
        self.clip, self.min_separation = clip, min_separation

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        feat_path, dist_path = self.items[i]
        x, y = _psicov_x(self.task, feat_path), _psicov_y(self.task, dist_path)
        if y.shape != x.shape[1:]:
            raise _FileError(f"{self.task}: {str(dist_path)!r} is {y.shape} but the features in "
                             f"{str(feat_path)!r} are for a sequence of {x.shape[1]}")
        if self.clip is not None:
            y = np.minimum(y, self.clip)
        length = y.shape[0]
        if self.min_separation > 0:
            sep = np.abs(np.arange(length)[:, None] - np.arange(length)[None, :])
            y = np.where(sep < self.min_separation, np.nan, y)
        if self.crop and length > self.size:
            r, c = torch.randint(0, length - self.size + 1, (2,)).tolist()
            x, y = x[:, r:r + self.size, c:c + self.size], y[r:r + self.size, c:c + self.size]
        n = min(length, self.size)
        xx = torch.zeros(_PSICOV_CHANNELS, self.size, self.size)
        yy = torch.full((1, self.size, self.size), float("nan"))
        xx[:, :n, :n] = torch.from_numpy(np.ascontiguousarray(x[:, :n, :n]))
        yy[0, :n, :n] = torch.from_numpy(np.ascontiguousarray(y[:n, :n]))
        return xx, yy


def _psicov_items(task: str, base: Path, subset: str) -> List[Tuple[Path, Path]]:
    """(feature .pkl, distance -cb.npy) paths of the proteins in ``<subset>.lst``, all checked to exist."""
    lst = base / f"{subset}.lst"
    with _reading(task, lst), open(lst) as f:
        ids = [line.split()[0] for line in f if line.strip()]
    items = [(base / subset / "features" / f"{p}.pkl", base / subset / "distance" / f"{p}-cb.npy") for p in ids]
    missing = [str(p) for pair in items for p in pair if not p.is_file()]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        raise FileNotFoundError(f"{task}: {len(missing)} file(s) for the proteins of {subset}.lst not found, e.g. "
                                f"{shown}; expected {subset}/features/<id>.pkl and {subset}/distance/<id>-cb.npy "
                                f"under {str(base)!r}")
    return items


@register("nb360_psicov")
def psicov(root: Optional[PathLike] = None, limit: Optional[int] = None, n_val: int = 100, crop: int = 128,
           clip: float = 16.0, min_separation: int = 24, eval_size: Optional[int] = None) -> Task:
    """PSICOV: inter-residue distances (Angstrom) from 57 pair-feature planes; metric MAE8.

    Reads PDNET's data in ``root`` (or in ``root/protein``): ``deepcov.lst`` and ``psicov.lst`` (protein ids),
    and per protein ``<set>/features/<id>.pkl`` (a Python pickle of per-residue and pair features, see
    :func:`psicov_features`) and ``<set>/distance/<id>-cb.npy`` (PDNET's pickled (length, sequence, map)
    triple, or a plain (L, L) array). The pickles are read only from that folder. Splits: DeepCov minus its
    first ``n_val`` proteins for training, those ``n_val`` for validation, the 150 PSICOV proteins for test
    (3356/100/150).

    What is done about sizes: training samples are random ``crop`` x ``crop`` windows of a protein's map (a
    new window each time the sample is read; shorter proteins are padded), with targets clipped at ``clip``
    Angstrom (PDNET's label engineering). Validation and test samples are full maps, placed top-left on a
    square canvas as large as the split's longest protein (or ``eval_size``), so batches stack; padding and
    pairs closer than ``min_separation`` residues in sequence hold NaN targets and are not scored. The metric
    is ``mae8``: mean absolute error over the remaining pairs whose true distance is below 8 Angstrom, pooled
    over the split (PDNET averages per protein and first averages the two triangles' predictions).

    Returns a dense Task with x (57, crop, crop) in training (full-size canvases at evaluation) and y (1, ., .)
    float32 with NaN for "no target"; masked MSE loss; WRN with stride 1, DASH's 2D space and dense-task
    learning rates, tuning only the learning rate.
    """
    task = "nb360_psicov"
    expected = ["deepcov.lst", "psicov.lst", "deepcov/features/", "deepcov/distance/", "psicov/features/",
                "psicov/distance/"]
    folder = _folder(task, root, expected)
    limit = _check_limit(limit)
    n_val, crop = check_int("n_val", n_val, 1), check_int("crop", crop, 1)
    min_separation = check_int("min_separation", min_separation, 0)
    clip = check_float("clip", clip, 0.0, low_open=True)  # Angstrom
    eval_size = check_optional_int("eval_size", eval_size, 1, none="the split's longest protein")
    base = folder / "protein" if not (folder / "deepcov.lst").is_file() and (folder / "protein").is_dir() else folder
    _require(task, base, ["deepcov.lst", "psicov.lst"])
    deepcov, test_items = _psicov_items(task, base, "deepcov"), _psicov_items(task, base, "psicov")
    if n_val >= len(deepcov):
        raise ValueError(f"n_val={n_val!r}: deepcov.lst lists {len(deepcov)} proteins; expected n_val < {len(deepcov)}")
    train_items, val_items = _head(limit, deepcov[n_val:], deepcov[:n_val])
    (test_items,) = _head(limit, test_items)

    def canvas(items: List[Tuple[Path, Path]]) -> int:
        if eval_size is not None:
            return eval_size
        return max(_psicov_y(task, d).shape[0] for _, d in items)

    return Task(
        name=task, kind="dense",
        train=_Proteins(task, train_items, crop, crop=True, clip=clip),
        val=_Proteins(task, val_items, canvas(val_items), crop=False, min_separation=min_separation),
        test=_Proteins(task, test_items, canvas(test_items), crop=False, min_separation=min_separation),
        in_shape=(_PSICOV_CHANNELS, crop, crop), num_outputs=1, metric_name="mae8", loss_fn=masked_mse,
        defaults=_defaults_2d(dense=True, search=_DENSE_SEARCH, tune=_FEW_LRS),
        info={"source": _SOURCE, "root": str(base), "files": expected,
              "splits": f"deepcov[{n_val}:] / deepcov[:{n_val}] / psicov",
              "sizes": f"train: random {crop}x{crop} crops; val/test: full maps on a padded canvas",
              "scored_pairs": f"sequence separation >= {min_separation}, true distance < 8 A"})


# -------------------------------------------------------------------------------------------- Cosmic
class _CosmicImages(Dataset):
    """deepCR images: each file (3, H, W) = image, cosmic-ray mask, ignore mask (or 2 planes, no ignore).

    The centre ``crop`` x ``crop`` is kept (NAS-Bench-360 keeps the centre 128 x 128 of 256 x 256 images).
    With ``sky_aug`` = (lo, hi) (training only), the visit's sky level (``sky.npy`` beside the file, indexed
    by the number before the first "_" of the file name) times U(lo, hi) is added, as deepCR does.
    Target: the mask, NaN where the ignore mask is set.
    """

    def __init__(self, task: str, files: List[Path], crop: Optional[int],
                 sky_aug: Optional[Tuple[float, float]] = None):
        self.task, self.files, self.crop, self.sky_aug = task, files, crop, sky_aug

    def __len__(self) -> int:
        return len(self.files)

    def _sky(self, path: Path) -> float:
        sky_path = path.parent / "sky.npy"
        prefix = path.name.split("_")[0]
        if self.sky_aug is None or not sky_path.is_file() or not prefix.isdigit():
            return 0.0
        level = float(np.ravel(_np_load(self.task, sky_path))[int(prefix) - 1])
        lo, hi = self.sky_aug
        return level * (lo + (hi - lo) * float(torch.rand(())))

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        path = self.files[i]
        planes = _np_load(self.task, path)
        if planes.ndim != 3 or planes.shape[0] not in (2, 3):
            raise _FileError(f"{self.task}: {str(path)!r} has shape {planes.shape}; expected (3, H, W) planes "
                             "image, mask, ignore (or 2 planes without ignore)")
        h, w = planes.shape[1:]
        if self.crop is not None:
            if h < self.crop or w < self.crop:
                raise _FileError(f"{self.task}: {str(path)!r} is {h}x{w}, smaller than crop={self.crop}")
            top, left = (h - self.crop) // 2, (w - self.crop) // 2
            planes = planes[:, top:top + self.crop, left:left + self.crop]
        image = planes[0].astype(np.float32) + self._sky(path)
        target = planes[1].astype(np.float32)
        if planes.shape[0] == 3:
            target = np.where(planes[2] > 0, np.float32(np.nan), target)
        return torch.from_numpy(image[None]), torch.from_numpy(np.ascontiguousarray(target[None]))


def _cosmic_files(task: str, folder: Path, list_name: str) -> List[Path]:
    path = folder / list_name
    entries = _np_load(task, path)
    if entries.ndim != 1 or entries.dtype.kind not in "US":
        raise _FileError(f"{task}: {str(path)!r} should be a 1-D array of file paths; got {entries.dtype} "
                         f"{entries.shape}")
    # the lists hold paths like "./train/..." relative to the data folder
    names = [e.decode() if isinstance(e, bytes) else str(e) for e in entries]
    files = [folder / (n[2:] if n.startswith("./") else n) for n in names]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        raise FileNotFoundError(f"{task}: {len(missing)} image file(s) listed in {list_name} not found, e.g. {shown}; "
                                f"the paths in {list_name} are looked up under {str(folder)!r}")
    return files


@register("nb360_cosmic")
def cosmic(root: Optional[PathLike] = None, limit: Optional[int] = None, val_fraction: float = 0.1,
           seed: int = 0, crop: Optional[int] = 128, sky_aug: Optional[Tuple[float, float]] = (-0.9, 3.0)) -> Task:
    """Cosmic: per-pixel cosmic-ray masks of Hubble ACS/WFC images (deepCR data); metric 1 - AUROC.

    Reads ``train_dirs.npy`` and ``test_dirs.npy`` in ``root`` (arrays of paths, relative to ``root``, of
    .npy files with planes image, cosmic-ray mask, ignore mask) and ``sky.npy`` beside the images; all with
    ``allow_pickle=False``. Splits: a seeded ``val_fraction`` of the training list for validation, the test
    list for test (4347/483/420). The centre ``crop`` x ``crop`` of each image is used; training images get
    deepCR's random sky-level augmentation (``sky_aug``; None turns it off). Validation and test get none, so
    their metric is deterministic (the reference augments them too).

    Metric: 1 - AUROC over all non-ignored pixels of the split ("1-auroc_masked"). NAS-Bench-360's later
    versions report 1 - AUROC, and DASH reports its Cosmic number that way; unlike FNR at a fixed logit
    threshold it does not depend on how the network's outputs are calibrated. Pixels under the ignore mask
    hold NaN targets and are left out of the loss (masked BCE) and of the metric.

    Returns a dense Task with x (1, crop, crop) and y (1, crop, crop) float32; WRN with stride 1, DASH's 2D
    space, ``grad_scale`` 1000, dense-task learning rates, tuning only the learning rate.
    """
    task = "nb360_cosmic"
    files = ["train_dirs.npy", "test_dirs.npy"]
    folder = _folder(task, root, files)
    limit = _check_limit(limit)
    val_fraction = check_float("val_fraction", val_fraction, 0.0, 1.0, low_open=True, high_open=True)
    crop = check_optional_int("crop", crop, 1, none="the whole image")
    seed = check_seed(seed)
    if sky_aug is not None and (len(sky_aug) != 2 or not sky_aug[0] <= sky_aug[1]):
        raise ValueError(f"sky_aug={sky_aug!r}: expected None or (low, high) with low <= high")
    _require(task, folder, files)
    dev, test_files = _cosmic_files(task, folder, files[0]), _cosmic_files(task, folder, files[1])
    n_val = int(round(val_fraction * len(dev)))
    if not 0 < n_val < len(dev):
        raise ValueError(f"val_fraction={val_fraction!r} of {len(dev)} training images leaves an empty split")
    order = np.random.default_rng(seed).permutation(len(dev))
    train_files = [dev[i] for i in order[:-n_val]]
    val_files = [dev[i] for i in order[-n_val:]]
    train_files, val_files, test_files = _head(limit, train_files, val_files, test_files)
    size = crop if crop is not None else int(_np_load(task, train_files[0]).shape[-1])
    return Task(
        name=task, kind="dense",
        train=_CosmicImages(task, train_files, crop, sky_aug),
        val=_CosmicImages(task, val_files, crop), test=_CosmicImages(task, test_files, crop),
        in_shape=(1, size, size), num_outputs=1, metric_name="1-auroc_masked", loss_fn=masked_bce_with_logits,
        defaults=_defaults_2d(dense=True, search={**_DENSE_SEARCH, "grad_scale": 1000}, tune=_FEW_LRS),
        info={"source": _SOURCE + "; images from deepCR (Zhang & Bloom 2020)", "root": str(folder), "files": files,
              "splits": f"seeded (seed {seed}) {val_fraction:.0%} of train_dirs for validation",
              "metric": "1 - AUROC over non-ignored pixels"})


# ----------------------------------------------------------------------------------------------- ECG
_ECG_CLASSES = ("N", "A", "O", "~")  # normal, atrial fibrillation, other rhythm, noisy
_ECG_STRIDE_DIVISOR = (1, 6, 2, 20)  # rarer classes are cut with a smaller stride: more windows per record


def ecg_windows(lengths: Sequence[int], labels: Sequence[int], window: int = 1000,
                stride: int = 500) -> np.ndarray:
    """Start positions of the windows cut from each record, with a class-dependent stride.

    Class c uses stride // (1, 6, 2, 20)[c] (N, A, O, ~), as NAS-Bench-360; starts are 0, s, 2s, ... while
    start < length - window (so a record no longer than ``window`` gives none).

    Returns:
        (M, 2) int64 array of (record index, start).
    """
    rows = []
    for r, (n, c) in enumerate(zip(lengths, labels)):
        starts = np.arange(0, int(n) - window, max(1, stride // _ECG_STRIDE_DIVISOR[int(c)]))
        rows.append(np.stack([np.full(len(starts), r), starts], axis=1))
    return np.concatenate(rows).astype(np.int64) if rows else np.zeros((0, 2), dtype=np.int64)


class _Windows(Dataset):
    """Windows (1, window) of z-scored records, cut when read; y: the record's class."""

    def __init__(self, records: List[np.ndarray], labels: np.ndarray, index: np.ndarray, window: int):
        self.records, self.labels, self.index, self.window = records, labels, index, window

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        r, start = self.index[i]
        x = torch.from_numpy(self.records[r][start:start + self.window].copy())
        return x[None], torch.tensor(int(self.labels[r]))

    def targets(self) -> torch.Tensor:
        """Every window's class, (N,), without cutting any window."""
        return torch.as_tensor(np.asarray(self.labels)[np.asarray(self.index)[:, 0]].astype(np.int64))


@register("nb360_ecg")
def ecg(root: Optional[PathLike] = None, limit: Optional[int] = None, seed: int = 0, window: int = 1000,
        stride: int = 500) -> Task:
    """ECG (PhysioNet/CinC 2017): 4 rhythm classes N / A / O / ~ from single-lead ECG; metric 1 - macro F1.

    Reads ``challenge2017.pkl`` in ``root``: a Python pickle ``{"data": list of 1-D arrays at 300 Hz,
    "label": ["N" | "A" | "O" | "~", ...]}``, unpickled only from that folder. Each record is z-scored on its
    own, then records are split 80/10/10 (scikit-learn ``train_test_split`` with ``random_state=seed``, as
    NAS-Bench-360) and cut into windows of ``window`` samples with the class-dependent stride of
    :func:`ecg_windows` (about 260K/33K/33K windows). Windows are scored one by one.

    Returns a Task with x (1, window) float32 and y int64 in 0..3; ResNet1D with DASH's 1D search space.
    """
    from sklearn.model_selection import train_test_split

    task, name = "nb360_ecg", "challenge2017.pkl"
    folder = _folder(task, root, [name])
    limit = _check_limit(limit)
    window, stride = check_int("window", window, 1), check_int("stride", stride, 1)
    seed = check_seed(seed)
    path = _require(task, folder, [name])[name]
    with _reading(task, path), open(path, "rb") as f:
        raw = pickle.load(f)
    if not isinstance(raw, dict) or "data" not in raw or "label" not in raw or len(raw["data"]) != len(raw["label"]):
        raise _FileError(f"{task}: {str(path)!r} should hold a dict with 'data' and 'label' of the same length")
    unknown = sorted({str(c) for c in raw["label"]} - set(_ECG_CLASSES))
    if unknown:
        raise _FileError(f"{task}: {str(path)!r} has labels {unknown!r}; expected {_ECG_CLASSES}")
    labels = np.array([_ECG_CLASSES.index(str(c)) for c in raw["label"]], dtype=np.int64)
    records = [_zscore_rows(np.asarray(rec, dtype=np.float64).reshape(1, -1))[0] for rec in raw["data"]]
    idx = np.arange(len(records))
    train_idx, rest = train_test_split(idx, test_size=0.2, random_state=seed)
    val_idx, test_idx = train_test_split(rest, test_size=0.5, random_state=seed)
    lengths = [len(r) for r in records]

    def windows(chosen: np.ndarray) -> _Windows:
        index = ecg_windows([lengths[i] for i in chosen], labels[chosen], window, stride)
        index[:, 0] = chosen[index[:, 0]]  # back to positions in `records`
        (index,) = _head(limit, index)
        return _Windows(records, labels, index, window)

    return Task(
        name=task, kind="classification", train=windows(train_idx), val=windows(val_idx), test=windows(test_idx),
        in_shape=(1, window), num_outputs=4, metric_name="1-macro_f1", defaults=_defaults_1d(),
        info={"source": _SOURCE + "; PhysioNet/CinC Challenge 2017", "root": str(folder), "files": [name],
              "classes": list(_ECG_CLASSES),
              "splits": f"records 80/10/10 (train_test_split, random_state={seed}), windows {window}, stride "
                        f"{stride} // (1, 6, 2, 20) by class"})


# ----------------------------------------------------------------------------------------- Satellite
@register("nb360_satellite")
def satellite(root: Optional[PathLike] = None, limit: Optional[int] = None, val_size: int = 100_000) -> Task:
    """Satellite: 24 land-cover classes from a 46-step satellite image time series of one pixel; 0-1 error %.

    Reads ``satellite_train.npy`` and ``satellite_test.npy`` in ``root``. Each holds a Python dict
    ``{"data": (N, 46), "label": (N,) in 1..24}`` saved with ``np.save``: that format can only be read with
    ``allow_pickle=True``, which unpickles it, so it is read only from the folder you name. Labels become
    0..23; each series is z-scored on its own (as NAS-Bench-360). Splits: the last ``val_size`` training
    series for validation (800K/100K/100K).

    Returns a Task with x (1, 46) float32 and y int64 in 0..23; ResNet1D with DASH's 1D search space.
    """
    task = "nb360_satellite"
    files = ["satellite_train.npy", "satellite_test.npy"]
    folder = _folder(task, root, files)
    limit = _check_limit(limit)
    val_size = check_int("val_size", val_size, 1)
    paths = _require(task, folder, files)
    split = {}
    for name, path in paths.items():
        with _reading(task, path):
            raw = np.load(path, allow_pickle=True)[()]  # a dict: only from the user's folder
        if not isinstance(raw, dict) or "data" not in raw or "label" not in raw:
            raise _FileError(f"{task}: {str(path)!r} should hold a dict with 'data' and 'label'")
        x, y = np.asarray(raw["data"], dtype=np.float64), np.asarray(raw["label"]).astype(np.int64)
        if x.ndim != 2 or y.shape != (len(x),):
            raise _FileError(f"{task}: {str(path)!r}: data {x.shape} and label {y.shape} are not (N, L) and (N,)")
        if len(y) and (y.min() < 1 or y.max() > 24):
            raise _FileError(f"{task}: {str(path)!r} has labels in {y.min()}..{y.max()}; expected 1..24")
        split[name] = (_zscore_rows(x)[:, None], y - 1)
    x_all, y_all = split[files[0]]
    if val_size >= len(x_all):
        raise ValueError(f"val_size={val_size!r}: {files[0]} has only {len(x_all)} series; expected "
                         f"val_size < {len(x_all)}")
    data = {"train": _head(limit, x_all[:-val_size], y_all[:-val_size]),
            "val": _head(limit, x_all[-val_size:], y_all[-val_size:]),
            "test": _head(limit, *split[files[1]])}
    return Task(
        name=task, kind="classification", **{k: ArrayDataset(*v, y_dtype=torch.int64) for k, v in data.items()},
        in_shape=(1, int(x_all.shape[-1])), num_outputs=24, metric_name="error_pct", defaults=_defaults_1d(),
        info={"source": _SOURCE, "root": str(folder), "files": files,
              "splits": f"last {val_size} training series = validation"})


# ------------------------------------------------------------------------------------------- DeepSEA
@register("nb360_deepsea")
def deepsea(root: Optional[PathLike] = None, limit: Optional[int] = None) -> Task:
    """DeepSEA: 36 chromatin-profile labels of a 1000-bp DNA sequence (multi-label); metric 1 - mean AUROC.

    Reads ``deepsea_filtered.npz`` in ``root`` (``allow_pickle=False``): ``x_train`` (N, 1000, 4) one-hot
    DNA, ``y_train`` (N, 36) 0/1, and the same for ``val`` and ``test`` (71K/2.5K/149K): the benchmark's
    own splits. Sequences become (4, 1000), channels first, when a sample is read.

    Returns a Task with x (4, 1000) float32 and y (36,) float32; ResNet1D with DASH's 1D search space and
    ``grad_scale`` 10.
    """
    task, name = "nb360_deepsea", "deepsea_filtered.npz"
    folder = _folder(task, root, [name])
    limit = _check_limit(limit)
    path = _require(task, folder, [name])[name]
    keys = [f"{v}_{s}" for s in ("train", "val", "test") for v in ("x", "y")]
    arrays: Dict[str, np.ndarray] = {}
    with _reading(task, path), np.load(path, allow_pickle=False) as npz:
        absent = [k for k in keys if k not in npz.files]
        if absent:
            raise _FileError(f"{task}: {str(path)!r} lacks {absent}; expected the arrays {keys}")
        for k in keys:
            arrays[k] = npz[k]
    for s in ("train", "val", "test"):
        x, y = arrays[f"x_{s}"], arrays[f"y_{s}"]
        if x.ndim != 3 or y.ndim != 2 or len(x) != len(y):
            raise _FileError(f"{task}: {str(path)!r}: x_{s} {x.shape} and y_{s} {y.shape} are not (N, L, 4) and "
                             "(N, labels)")
    data = {s: ArrayDataset(*_head(limit, arrays[f"x_{s}"], arrays[f"y_{s}"]), transform=_SwapLastTwo())
            for s in ("train", "val", "test")}
    x_train = arrays["x_train"]
    return Task(
        name=task, kind="multilabel", **data, in_shape=(int(x_train.shape[2]), int(x_train.shape[1])),
        num_outputs=int(arrays["y_train"].shape[1]), metric_name="1-auroc",
        defaults=_defaults_1d(search={"grad_scale": 10}),
        info={"source": _SOURCE + "; DeepSEA (Zhou & Troyanskaya 2015)", "root": str(folder), "files": [name],
              "splits": "the file's x_train / x_val / x_test"})
