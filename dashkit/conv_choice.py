"""The measured choice between FFT and direct convolution, per layer shape, and its cache.

A convolution with a large kernel is cheaper through the FFT; one with a small kernel is cheaper directly; where
they cross depends on the device, the shapes and the libraries. dashkit does not guess: each layer shape is
decided once, by operation counts when one way is clearly cheaper and by timing both otherwise, and the choice is
cached for the rest of the process (`choose_backend`). `DashConv` and the retrained network's `AutoConv1d` /
`AutoConv2d` use it when their backend is "auto", both the same way:

    >>> estimates = conv_costs(batch, c_in, c_out, groups, out_positions, kernel_taps, N)   # operation counts
    >>> choice = measure(key, {"fft": fft_forward, "direct": direct_forward}, x, params, estimates)
"""
from __future__ import annotations

import math
from typing import Callable, Dict, Hashable, List, Optional, Sequence, Tuple

import torch

from .timing import best_time

__all__ = ["SEARCH_BACKENDS", "CONV_BACKENDS", "choose_backend", "backend_cache", "backend_choice",
           "clear_backend_cache", "conv_costs", "needs_grad", "timing_runners", "measure"]

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


def conv_costs(batch: int, in_channels: int, out_channels: int, groups: int, out_positions: int, kernel_taps: int,
               N: Sequence[int], kernel_transform: int = 0) -> Dict[str, float]:
    """Relative costs of one convolution computed directly and through the FFT, from operation counts.

    Direct: one multiply-add per output position, output channel, input channel of the group and kernel tap.
    FFT: forward and inverse transforms of every input and output channel (N log N each, twice for the
    backward), the per-frequency channel mixing, and ``kernel_transform`` for getting the kernel's spectrum when
    it is not negligible (`DashConv` passes C_out * C_in/groups * |offsets| * prod(N), its DFT-table matmuls).

    Args:
        batch, in_channels, out_channels, groups: the layer's B, C_in, C_out and G.
        out_positions: output positions, prod(ceil(n / stride)).
        kernel_taps: taps of the (cropped) kernel, prod(K).
        N: the FFT length per axis.
        kernel_transform: extra operations of the FFT path (0: none counted).

    Returns:
        ``{"fft": cost, "direct": cost}``, to pass as `choose_backend`'s ``estimates``.

    Example:
        >>> costs = conv_costs(8, 16, 16, 1, 32 * 32, 9 * 9, (48, 48))
        >>> costs["fft"] < costs["direct"]
        True
    """
    ci = in_channels // groups
    direct_cost = batch * out_channels * ci * out_positions * kernel_taps
    NN = math.prod(N)
    fft_cost = (batch * (in_channels + out_channels) * NN * max(math.log2(NN), 1) * 2
                + batch * out_channels * ci * NN * 2)
    if kernel_transform:
        fft_cost = fft_cost + kernel_transform
    return {"fft": fft_cost, "direct": direct_cost}


def needs_grad(x: torch.Tensor, params: Sequence[torch.Tensor]) -> bool:
    """Whether this forward will be differentiated: then the backward is timed too (and is part of the key)."""
    return torch.is_grad_enabled() and (x.requires_grad or bool(params))


def timing_runners(forwards: Dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor,
                   params: List[torch.Tensor], grad: bool) -> Dict[str, Callable[[], None]]:
    """One closure per way of computing a layer, each doing one forward (and backward, when ``grad``) on ``x``.

    Args:
        forwards: name -> ``f(x) -> y``, the layer's output computed that way.
        x: the real input, (B, C_in, *n); a detached copy is used, so the caller's graph is untouched.
        params: the layer's parameters that need gradients (the backward computes theirs).
        grad: time the backward as well.

    Returns:
        name -> a closure taking no argument, for `choose_backend`'s ``runners``.
    """
    x_probe = x.detach().requires_grad_(x.requires_grad)

    def runner(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def go() -> None:
            y = fn(x_probe)
            if grad:
                inputs = ([x_probe] if x_probe.requires_grad else []) + params
                torch.autograd.grad(y.float().sum(), inputs, allow_unused=True)
        return go

    return {name: runner(fn) for name, fn in forwards.items()}


def measure(key: Hashable, forwards: Dict[str, Callable[[torch.Tensor], torch.Tensor]], x: torch.Tensor,
            params: List[torch.Tensor], grad: bool, estimates: Dict[str, float]) -> str:
    """`choose_backend` for a layer: the estimates first, then timing ``forwards`` on ``x`` (see `timing_runners`).

    Args:
        key: what the choice depends on (device, dtype, shapes, ``grad``, ...), the cache key.
        forwards: name -> ``f(x) -> y``.
        x: (B, C_in, *n), the layer's real input.
        params: the parameters that need gradients.
        grad: whether the layer is being differentiated (`needs_grad`).
        estimates: from `conv_costs`.

    Returns:
        The chosen name.
    """
    hit = backend_choice(key)  # the common case: decided before, nothing to build
    if hit is not None:
        return hit
    runners = timing_runners(forwards, x, params, grad)
    with torch.enable_grad() if grad else torch.no_grad():
        return choose_backend(key, runners, x.device, estimates=estimates)
