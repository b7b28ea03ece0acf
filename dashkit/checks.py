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
from collections.abc import Iterable
from typing import Any, Optional, Tuple

import numpy as np

__all__ = ["check_int", "check_ints", "check_optional_int", "check_float", "check_bool", "check_seed"]


def _bound(low: int, high: Optional[int]) -> str:
    return f">= {low}" if high is None else f"in [{low}, {high}]"


def _int_range(low: int, high: Optional[int], odd: bool = False) -> str:
    return f"{'an odd integer' if odd else 'an integer'} {_bound(low, high)}"


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _in_range(value: Any, low: int, high: Optional[int], odd: bool) -> bool:
    return low <= value and (high is None or value <= high) and not (odd and value % 2 == 0)


def _check_int(name: str, value: Any, low: int, high: Optional[int], accepted: str, odd: bool = False) -> int:
    if not _is_int(value):
        raise TypeError(f"{name}={value!r} has type {type(value).__name__}; accepted: {accepted}")
    if not _in_range(value, low, high, odd):
        problem = "out of range" if not _in_range(value, low, high, False) else "even"
        raise ValueError(f"{name}={value!r} is {problem}; accepted: {accepted}")
    return int(value)


def check_int(name: str, value: Any, low: int, high: Optional[int] = None, *, odd: bool = False) -> int:
    """``value`` as an int if it is an integer in [low, high] (high=None: no upper bound), odd if ``odd``.

    bool is refused although it is an int subclass: ``n_train=True`` is a mistake, not the number 1.

    Raises:
        TypeError: not an int (numpy integers are accepted).
        ValueError: outside [low, high], or even where an odd integer is asked for.
    """
    return _check_int(name, value, low, high, _int_range(low, high, odd), odd)


def check_ints(name: str, values: Any, low: int, high: Optional[int] = None, *, odd: bool = False) -> Tuple[int, ...]:
    """``values`` as a tuple of ints if it is a non-empty sequence of integers each accepted by `check_int`.

    Example:
        >>> check_ints("kernel_sizes", (3, 4), 1, odd=True)
        Traceback (most recent call last):
        ValueError: kernel_sizes=(3, 4) holds 4; accepted: a non-empty sequence of odd integers >= 1

    Raises:
        TypeError: not a sequence (a str or a single number is refused), or an item that is not an int.
        ValueError: empty, or an item outside [low, high] (or even, with ``odd``).
    """
    accepted = f"a non-empty sequence of {'odd integers' if odd else 'integers'} {_bound(low, high)}"
    # a str is iterable, but "357" for (3, 5, 7) is a mistake, not three kernel sizes
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise TypeError(f"{name}={values!r} has type {type(values).__name__}; accepted: {accepted}")
    out = tuple(values)
    if not out:
        raise ValueError(f"{name}={values!r} is empty; accepted: {accepted}")
    for v in out:
        if not _is_int(v):
            raise TypeError(f"{name}={values!r} holds {v!r} of type {type(v).__name__}; accepted: {accepted}")
        if not _in_range(v, low, high, odd):
            raise ValueError(f"{name}={values!r} holds {v!r}; accepted: {accepted}")
    return tuple(int(v) for v in out)


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
