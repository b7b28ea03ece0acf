"""Training-time augmentation of series: window slicing.

``RunConfig.augment`` names what every training batch of a run goes through before the network sees it (the
search's, the tuning's and every retraining's alike, so DASH and its controls train on the same data; validation,
test and prediction never are):

- "none" (default): the batches as the task gives them.
- "slice": window slicing (Le Guennec, Malinowski and Tavenard, 2016, "Data augmentation for time series
  classification using convolutional neural networks"): each series of the batch is cut to a random window of
  ``SLICE_FRACTION`` (90%) of its length, at a random start, and stretched back to the full length by linear
  interpolation, every channel alike (a padding mask channel included, its edge interpolated too). Labels are
  kept. For classification, multilabel and regression tasks on series (C, L); a per-position ("dense") task's
  targets would no longer line up with its inputs, and 2D inputs are not series, so both are refused
  (`check_augment`).

The random windows of a training loader come from a generator seeded from the loader's own seed, the torchrun rank
and the DataLoader worker, so a resumed run sees the windows an uninterrupted one would, two runs of one seed agree,
and ranks and workers draw windows of their own. Slicing a batch costs milliseconds
(7 ms for 64 series of 1460 steps on one CPU thread, about 1% of a step of ACSF1's network), which the step costs
measured for a time budget do not include.

It is not a default: by 4-fold cross-validation on three small UCR/UEA training splits at fixed steps it made more
held-out errors, for DASH (66 -> 91) and for the baseline (31 -> 42), and it did not change what the search chooses
there (RESULTS.md, "Window slicing of the training batches").
"""
from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any, Callable, List, Optional, Sequence

import torch
from torch.utils.data import default_collate, get_worker_info

if TYPE_CHECKING:
    from .tasks.base import Task

__all__ = ["AUGMENTATIONS", "SLICE_FRACTION", "window_slice", "check_augment", "AugmentingCollate", "collate_for"]

AUGMENTATIONS = ("none", "slice")
SLICE_FRACTION = 0.9


def window_slice(x: torch.Tensor, fraction: float = SLICE_FRACTION,
                 generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Each series of `x` cut to a random window and stretched back to its length.

    Args:
        x: (B, C, L) series, any float dtype.
        fraction: the window's share of L, in (0, 1]; the window has ``max(2, round(fraction * L))`` steps.
        generator: the source of the windows' starts (a CPU generator; None: torch's global one).

    Returns:
        (B, C, L), x's dtype and device: ``out[b, :, t] = x[b, :, s_b + t * (w - 1) / (L - 1)]``, linearly
        interpolated between neighbouring steps, for a start s_b drawn uniformly from 0 .. L - w. A series of fewer
        than 3 steps, or a window of the whole length, comes back unchanged.
    """
    if x.dim() != 3:
        raise ValueError(f"x has shape {tuple(x.shape)}; expected (B, C, L) series")
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or not 0 < fraction <= 1:
        raise ValueError(f"fraction = {fraction!r}: expected a number in (0, 1], the window's share of the length")
    b, c, length = x.shape
    w = max(2, int(round(fraction * length)))
    if length < 3 or w >= length:
        return x
    starts = torch.randint(0, length - w + 1, (b, 1), generator=generator).to(torch.float64)
    pos = (starts + torch.arange(length, dtype=torch.float64) * ((w - 1) / (length - 1))).to(x.device)  # (B, L)
    lo = pos.floor()  # pos ends at s_b + w - 1 <= L - 1
    hi = (lo + 1).clamp(max=length - 1)
    taps = lambda i: x.gather(2, i.long().unsqueeze(1).expand(-1, c, -1))  # noqa: E731  (B, C, L)
    return torch.lerp(taps(lo), taps(hi), (pos - lo).to(x.dtype).unsqueeze(1))


def check_augment(augment: str, task: Optional["Task"] = None) -> None:
    """Raise ValueError when `augment` is not a known augmentation, or not one for `task`'s inputs and targets."""
    if not isinstance(augment, str) or augment not in AUGMENTATIONS:
        raise ValueError(f"augment = {augment!r}: expected one of {', '.join(map(repr, AUGMENTATIONS))}")
    if task is None or augment == "none":
        return
    if len(task.in_shape) != 2:
        raise ValueError(f"augment = {augment!r} slices series (C, L); task {task.name!r} has inputs of shape "
                         f"{tuple(task.in_shape)} (2D): use augment='none'")
    if task.kind == "dense":
        raise ValueError(f"augment = {augment!r} moves the inputs' positions, and task {task.name!r} is 'dense' "
                         f"(one target per position), whose targets would no longer line up: use augment='none'")


def _stream_seed(seed: int, rank: int, worker: int) -> int:
    """A 64-bit seed for the windows of one loader (`seed`) on one torchrun rank and DataLoader worker (-1: none):
    distinct for distinct triples, and apart from the loader's shuffling generator, which `seed` seeds directly."""
    digest = hashlib.blake2b(f"dashkit.augment:{seed}:{rank}:{worker}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


class AugmentingCollate:
    """A DataLoader ``collate_fn``: torch's default collation, then `augment` on the batch's inputs.

    Args:
        augment: a name in `AUGMENTATIONS` other than "none".
        seed: the loader's seed; with `rank` and the DataLoader worker's id (in a worker process) it seeds the
            windows' generator, so that ranks and workers draw their own windows.
        rank: the torchrun rank (0 in one process).
    """

    def __init__(self, augment: str, seed: int, rank: int = 0) -> None:
        check_augment(augment)
        self.augment, self.seed, self.rank = augment, int(seed), int(rank)
        self._generator: Optional[torch.Generator] = None

    def _gen(self) -> torch.Generator:
        if self._generator is None:
            info = get_worker_info()
            self._generator = torch.Generator()
            self._generator.manual_seed(_stream_seed(self.seed, self.rank, -1 if info is None else info.id))
        return self._generator

    def __call__(self, batch: Sequence[Any]) -> List[Any]:
        x, *rest = default_collate(batch)
        if self.augment == "slice":
            x = window_slice(x, SLICE_FRACTION, self._gen())
        return [x, *rest]


def collate_for(augment: str, seed: int, rank: int = 0) -> Optional[Callable[[Sequence[Any]], List[Any]]]:
    """The training loaders' ``collate_fn`` for `augment` (None, torch's default, for "none")."""
    return None if augment == "none" else AugmentingCollate(augment, seed, rank)
