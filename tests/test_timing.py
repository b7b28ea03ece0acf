"""Tests of dashkit.timing: the one timer (best of repeats, and round-robin rounds) and its argument checks."""
from __future__ import annotations

import math
import time

import pytest
import torch

from dashkit import timing


def _sleeper(durations, calls):
    """A function that sleeps the next of ``durations`` seconds and records its call in ``calls``."""
    it = iter(durations)

    def fn():
        calls.append(1)
        time.sleep(next(it))

    return fn


def test_best_time_returns_the_best_of_the_repeats():
    calls = []
    best = timing.best_time(_sleeper([0.0, 0.06, 0.001, 0.08], calls), repeats=3, warmup=1)  # warm-up, then 3 timed
    assert len(calls) == 4
    assert 0.001 <= best < 0.05  # the 1 ms run, not the 60 or 80 ms ones


def test_best_time_stops_at_the_budget_but_times_one_call_at_least():
    calls = []
    best = timing.best_time(_sleeper([0.03] * 10, calls), repeats=10, warmup=0, budget_s=0.05)
    assert len(calls) == 2  # 30 ms, then 60 ms spent > 50 ms: stop
    assert best >= 0.03
    calls.clear()
    timing.best_time(_sleeper([0.02] * 3, calls), repeats=3, warmup=0, budget_s=1e-9)
    assert len(calls) == 1


def test_best_time_on_a_named_cpu_device():
    x = torch.randn(50, 50)
    assert 0 < timing.best_time(lambda: x @ x, device="cpu", repeats=2) < 1.0
    timing.sync("cpu")  # nothing to wait for on a CPU: returns at once


@pytest.mark.parametrize("kw, error, match", [
    ({"repeats": 0}, ValueError, r"^repeats=0 is out of range; accepted: an integer >= 1$"),
    ({"repeats": 2.5}, TypeError, r"^repeats=2\.5 has type float; accepted: an integer >= 1$"),
    ({"warmup": -1}, ValueError, r"^warmup=-1 is out of range; accepted: an integer >= 0$"),
    ({"budget_s": 0}, ValueError, r"^budget_s=0 is out of range; accepted: a finite number in \(0\.0, inf\)$"),
    ({"budget_s": math.nan}, ValueError, r"^budget_s=nan is out of range"),
    ({"budget_s": "1s"}, TypeError, r"^budget_s='1s' has type str"),
])
def test_best_time_rejects_bad_arguments(kw, error, match):
    with pytest.raises(error, match=match):
        timing.best_time(lambda: None, **kw)


def test_best_time_rejects_what_it_cannot_call():
    with pytest.raises(TypeError, match=r"^fn=3 has type int; accepted: a function of no arguments$"):
        timing.best_time(3)


def test_timed_rounds_goes_round_robin_after_the_warmup(capsys):
    order = []
    steps = {name: (lambda name=name: order.append(name)) for name in ("a", "b")}
    times = timing.timed_rounds(steps, "cpu", rounds=3, warmup=2, progress=True)
    assert order == ["a", "a", "b", "b"] + ["a", "b"] * 3  # each warmed up in turn, then one of each per round
    assert set(times) == {"a", "b"} and all(len(v) == 3 and min(v) >= 0 for v in times.values())
    assert capsys.readouterr().err.count("done") == 3  # a progress line per round
    timing.timed_rounds(steps, rounds=1, warmup=0, progress=False)
    assert capsys.readouterr().err == ""


def test_timed_rounds_times_each_step():
    times = timing.timed_rounds({"slow": lambda: time.sleep(0.02), "fast": lambda: None}, rounds=2, warmup=0,
                                progress=False)
    assert min(times["slow"]) >= 0.02 > max(times["fast"])


@pytest.mark.parametrize("args, kw, error, match", [
    ([lambda: None], {}, TypeError, r"^steps=<function .*> has type function; accepted: a dict of name -> function"),
    ([{"a": 1}], {}, TypeError, r"^steps=\{'a': 1\} has type dict; accepted: a dict of name -> function"),
    ([{"a": print}], {"rounds": 0}, ValueError, r"^rounds=0 is out of range; accepted: an integer >= 1$"),
    ([{"a": print}], {"warmup": -2}, ValueError, r"^warmup=-2 is out of range; accepted: an integer >= 0$"),
    ([{"a": print}], {"progress": 1}, TypeError, r"^progress=1 has type int; accepted: True or False$"),
])
def test_timed_rounds_rejects_bad_arguments(args, kw, error, match):
    with pytest.raises(error, match=match):
        timing.timed_rounds(*args, **kw)
