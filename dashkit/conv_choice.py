"""The measured choice between FFT and direct convolution, per layer shape, and its cache.

A convolution with a large kernel is cheaper through the FFT; one with a small kernel is cheaper directly; where
they cross depends on the device, the shapes and the libraries. dashkit does not guess: each layer shape is
decided once, by operation counts when one way is clearly cheaper and by timing both otherwise, and the choice is
cached for the rest of the process (`choose_backend`). `DashConv` and the retrained network's `AutoConv1d` /
`AutoConv2d` use it when their backend is "auto".
"""
from __future__ import annotations

from typing import Callable, Dict, Hashable, Optional, Tuple

import torch

from .timing import best_time

__all__ = ["SEARCH_BACKENDS", "CONV_BACKENDS", "choose_backend", "backend_cache", "backend_choice",
           "clear_backend_cache"]

# how a searched layer may compute: the measured choice, the two ways, or DARTS' one convolution per candidate
SEARCH_BACKENDS = ("auto", "fft", "direct", "mixed_results")
# how a plain (retrained) convolution may compute
CONV_BACKENDS = ("auto", "fft", "direct")


_BACKEND_CACHE: Dict[Hashable, Tuple[str, Dict[str, float]]] = {}


def backend_cache() -> Dict[Hashable, Tuple[str, Dict[str, float]]]:
    """The measured choices so far: key -> (backend, {backend: seconds per forward + backward})."""
    return dict(_BACKEND_CACHE)


def backend_choice(key: Hashable) -> Optional[str]:
    """The cached choice for ``key`` or None (a cheap lookup for layers that check before building estimates)."""
    hit = _BACKEND_CACHE.get(key)
    return None if hit is None else hit[0]


def clear_backend_cache() -> None:
    _BACKEND_CACHE.clear()


def choose_backend(key: Hashable, runners: Dict[str, Callable[[], None]], device: torch.device,
                   estimates: Optional[Dict[str, float]] = None, reps: int = 3,
                   clear_ratio: float = 8.0) -> str:
    """Pick the fastest of several ways to compute the same layer, measured once per key and cached.

    The cost model: ``estimates`` (relative costs from operation counts) decide alone when one backend is
    predicted ``clear_ratio`` times cheaper than the other; otherwise each runner (a closure doing one forward
    and backward of the layer on its real input shape) is timed on the current device and the fastest wins.
    Timing takes the best of ``reps`` runs after a warm-up.
    """
    hit = _BACKEND_CACHE.get(key)
    if hit is not None:
        return hit[0]
    if estimates and len(estimates) == 2:
        (a, ea), (b, eb) = sorted(estimates.items(), key=lambda kv: kv[1])
        if eb > clear_ratio * ea:
            _BACKEND_CACHE[key] = (a, {})
            return a
    times = {name: best_time(fn, device, repeats=reps, warmup=1, budget_s=1.0) for name, fn in runners.items()}
    choice = min(times, key=times.get)
    _BACKEND_CACHE[key] = (choice, times)
    return choice
