"""Tests of dashkit.checks' sequence and odd-integer checks (the scalar checks are tested in test_tasks_common)."""
from __future__ import annotations

import numpy as np
import pytest

from dashkit.checks import check_int, check_ints


def test_check_int_odd():
    assert check_int("kernel_size", 15, 1, odd=True) == 15
    with pytest.raises(ValueError, match=r"^kernel_size=14 is even; accepted: an odd integer >= 1$"):
        check_int("kernel_size", 14, 1, odd=True)
    with pytest.raises(ValueError, match=r"^kernel_size=-1 is out of range; accepted: an odd integer >= 1$"):
        check_int("kernel_size", -1, 1, odd=True)  # odd, but below the bound: the bound is what is wrong
    with pytest.raises(TypeError, match=r"^kernel_size=3\.0 has type float; accepted: an odd integer in \[1, 9\]$"):
        check_int("kernel_size", 3.0, 1, 9, odd=True)


def test_check_ints_accepts_any_sequence_of_ints():
    assert check_ints("sizes", [32, 16], 1) == (32, 16)
    assert check_ints("pads", range(3), 0) == (0, 1, 2)
    out = check_ints("k", np.array([3, 5]), 1, odd=True)
    assert out == (3, 5) and all(type(v) is int for v in out)


@pytest.mark.parametrize("values, kw, error, match", [
    ((3, 4), {"odd": True}, ValueError, r"^k=\(3, 4\) holds 4; accepted: a non-empty sequence of odd integers >= 1$"),
    ((0, 2), {}, ValueError, r"^k=\(0, 2\) holds 0; accepted: a non-empty sequence of integers >= 1$"),
    ((), {}, ValueError, r"^k=\(\) is empty; accepted: a non-empty sequence of integers >= 1$"),
    ([2, 12], {"high": 9}, ValueError, r"^k=\[2, 12\] holds 12; accepted: a non-empty sequence of integers in "
                                       r"\[1, 9\]$"),
    (3, {}, TypeError, r"^k=3 has type int; accepted: a non-empty sequence of integers >= 1$"),
    ("357", {}, TypeError, r"^k='357' has type str; accepted: a non-empty sequence of integers >= 1$"),
    (None, {}, TypeError, r"^k=None has type NoneType"),
    ((3, 2.5), {}, TypeError, r"^k=\(3, 2\.5\) holds 2\.5 of type float; accepted: a non-empty sequence"),
    ([True], {}, TypeError, r"^k=\[True\] holds True of type bool"),
])
def test_check_ints_messages(values, kw, error, match):
    with pytest.raises(error, match=match):
        check_ints("k", values, 1, **kw)
