"""One timer for the whole package: seconds a call takes on a device, with CUDA synchronised.

GPU work is asynchronous: without ``torch.cuda.synchronize`` a timer measures how long it took to *queue* the
kernels, not to run them. Every timing in dashkit (the measured FFT/direct choice, the speed benchmarks, the
notebooks' cost plots) goes through `best_time` or `timed_rounds`, which synchronise on CUDA and do nothing
extra elsewhere.
"""
from __future__ import annotations

import math
import sys
import time
from typing import Any, Callable, Dict, List, Mapping

import torch

from .checks import check_bool, check_float, check_int

__all__ = ["sync", "best_time", "timed_rounds"]


def sync(device: Any = None) -> None:
    """Wait for the device's queued work to finish (CUDA only; CPU and MPS calls return at once).

    Args:
        device: a ``torch.device`` or its name; None is the current CUDA device when CUDA is in use.
    """
    dev = torch.device(device) if device is not None else None
    if (dev is None and torch.cuda.is_available() and torch.cuda.is_initialized()) or (
            dev is not None and dev.type == "cuda"):
        torch.cuda.synchronize(dev)


def best_time(fn: Callable[[], Any], device: Any = None, repeats: int = 5, warmup: int = 1,
              budget_s: float = math.inf) -> float:
    """Seconds that ``fn()`` takes: the best of ``repeats`` timed calls after ``warmup`` untimed ones.

    The best, not the mean: on a shared machine the fastest run is the one least disturbed by others. Timing
    stops early once the timed calls have spent ``budget_s`` seconds (at least one call is always timed).

    Args:
        fn: the work to time, with no arguments.
        device: where ``fn`` runs (its CUDA work is waited for); None: the current CUDA device if in use.
        repeats: timed calls (>= 1).
        warmup: untimed calls first (>= 0): plans, allocations, caches.
        budget_s: stop timing after this many seconds of timed calls.

    Example:
        >>> best_time(lambda: torch.randn(100, 100) @ torch.randn(100, 100), repeats=3) < 1.0
        True
    """
    if not callable(fn):
        raise TypeError(f"fn={fn!r} has type {type(fn).__name__}; accepted: a function of no arguments")
    check_int("repeats", repeats, 1)
    check_int("warmup", warmup, 0)
    if budget_s != math.inf:  # inf, the default, is no budget; anything else must be a positive number
        check_float("budget_s", budget_s, 0.0, low_open=True)
    for _ in range(warmup):
        fn()
    sync(device)
    best, spent = math.inf, 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
        if spent > budget_s:
            break
    return best


def timed_rounds(steps: Mapping[str, Callable[[], Any]], device: Any = None, rounds: int = 5, warmup: int = 2,
                 progress: bool = True) -> Dict[str, List[float]]:
    """Time named step functions round-robin; returns seconds per call for each round, per name.

    Round-robin, so that the steps share whatever else the machine is doing: ratios between them are fair even
    when absolute times drift.

    Args:
        steps: name -> a function doing one step (e.g. a training step of one model).
        device: where they run (CUDA work is waited for after each call).
        rounds: timed calls of each step (>= 1).
        warmup: untimed calls of each step first (>= 0).
        progress: print a line to stderr after each round.

    Returns:
        ``{name: [seconds of round 1, ..., seconds of round `rounds`]}``.
    """
    if not isinstance(steps, Mapping) or not all(callable(fn) for fn in steps.values()):
        raise TypeError(f"steps={steps!r} has type {type(steps).__name__}; accepted: a dict of name -> function "
                        "of no arguments")
    check_int("rounds", rounds, 1)
    check_int("warmup", warmup, 0)
    check_bool("progress", progress)
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    sync(device)
    out: Dict[str, List[float]] = {name: [] for name in steps}
    for r in range(rounds):
        for name, fn in steps.items():
            t0 = time.perf_counter()
            fn()
            sync(device)
            out[name].append(time.perf_counter() - t0)
        if progress:
            print(f"  round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    return out
