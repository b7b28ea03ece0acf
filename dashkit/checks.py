"""Parameter checks shared by the whole package: one message shape for every bad value.

Each raises ``TypeError`` for a value of the wrong type and ``ValueError`` for one out of range, both in one
shape, ``name=value ...; accepted: ...``:

    >>> check_int("n_train", 0, 1)
    Traceback (most recent call last):
    ValueError: n_train=0 is out of range; accepted: an integer >= 1

bool is refused wherever a number is asked for: ``width=True`` is a mistake, not the number 1.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

__all__ = ["check_int", "check_optional_int", "check_float", "check_bool", "check_seed"]


def _int_range(low: int, high: Optional[int]) -> str:
    return f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"


def _check_int(name: str, value: Any, low: int, high: Optional[int], accepted: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}={value!r} has type {type(value).__name__}; accepted: {accepted}")
    if value < low or (high is not None and value > high):
        raise ValueError(f"{name}={value!r} is out of range; accepted: {accepted}")
    return int(value)


def check_int(name: str, value: Any, low: int, high: Optional[int] = None) -> int:
    """``value`` as an int if it is an integer in [low, high] (high=None: no upper bound).

    bool is refused although it is an int subclass: ``n_train=True`` is a mistake, not the number 1.

    Raises:
        TypeError: not an int (numpy integers are accepted).
        ValueError: outside [low, high].
    """
    return _check_int(name, value, low, high, _int_range(low, high))


def check_optional_int(name: str, value: Any, low: int, high: Optional[int] = None, *, none: str) -> Optional[int]:
    """None, or ``value`` checked as by :func:`check_int`; ``none`` says what None means, for the message.

    Example:
        >>> check_optional_int("limit", 2.5, 1, none="every sample")
        Traceback (most recent call last):
        TypeError: limit=2.5 has type float; accepted: None (every sample) or an integer >= 1
    """
    if value is None:
        return None
    return _check_int(name, value, low, high, f"None ({none}) or {_int_range(low, high)}")


def check_float(name: str, value: Any, low: float = -math.inf, high: float = math.inf,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float if it is a finite number in the interval from low to high.

    Args:
        low_open, high_open: exclude the bound itself ((low, high] etc.). An infinite bound is always open,
            since the value must be finite.

    Raises:
        TypeError: not a real number (bool is refused).
        ValueError: NaN, infinite, or outside the interval.
    """
    low, high = float(low), float(high)
    interval = (f"{'(' if low_open or math.isinf(low) else '['}{low}, "
                f"{high}{')' if high_open or math.isinf(high) else ']'}")
    accepted = f"a finite number in {interval}"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}={value!r} has type {type(value).__name__}; accepted: {accepted}")
    v = float(value)
    below = v <= low if low_open else v < low
    above = v >= high if high_open else v > high
    if not math.isfinite(v) or below or above:
        raise ValueError(f"{name}={value!r} is out of range; accepted: {accepted}")
    return v


def check_bool(name: str, value: Any) -> bool:
    """``value`` as a bool if it is True or False (numpy bools too); 0 and 1 are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}={value!r} has type {type(value).__name__}; accepted: True or False")
    return bool(value)


def check_seed(seed: Any, name: str = "seed") -> int:
    """A seed: an integer >= 0 (what ``np.random.default_rng`` accepts)."""
    return check_int(name, seed, 0)
