"""Whole runs against values recorded before a refactoring: a change that meant to move code moved no number.

Two smoke-preset runs (mnist1d and darcy) with the conv backends fixed (``search_backend="fft"``,
``retrain_conv_backend="direct"``: no timed choice) on one thread are bit-for-bit repeatable on one machine. Their
``archcard.json`` (timestamp aside) and ``metrics.json`` were recorded in ``tests/data/reference_runs`` before the
pipeline was split into stages and the operators into reference and fast modules; this test runs them again and
compares.

A change that is *meant* to change results (a new default, a new search rule) re-records them, and says so in its
commit:

    python tests/test_reference_runs.py --record

The runs happen in a subprocess, so that the thread count and the measured-backend cache of the test process are
left alone. Recorded with torch 2.13.0 (CPU build); with another torch the floats may differ in the last bits,
and the test is skipped.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "data" / "reference_runs"
TASKS = ("mnist1d", "darcy")
RECORDED_TORCH = "2.13.0"
SETTINGS = dict(preset="smoke", seed=0, device="cpu", figures=False, verbose=False, search_backend="fft",
                retrain_conv_backend="direct")

pytestmark = pytest.mark.slow


def _run(out: Path) -> None:
    """The reference runs into ``out/<task>`` (in this process: call it from a fresh one)."""
    torch.set_num_threads(1)
    import dashkit

    for task in TASKS:
        dashkit.run(task, out=out / task, overwrite=True, **SETTINGS)


def _card(path: Path) -> dict:
    card = json.loads(path.read_text())
    card["meta"].pop("created", None)  # when the search finished: the one field that differs between runs
    return card


def _same(a: object, b: object, where: str = "") -> list:
    """Where two JSON values differ: floats to 1e-9 relative (printing rounds no further), the rest exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in _same(a[k], b[k], f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same(x, y, f"{where}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


@pytest.mark.skipif(not torch.__version__.startswith(RECORDED_TORCH),
                    reason=f"reference runs recorded with torch {RECORDED_TORCH}")
def test_smoke_runs_of_mnist1d_and_darcy_match_the_recorded_archcards_and_metrics(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DASHKIT_PROGRESS": "plain"}
    done = subprocess.run([sys.executable, __file__, "--run", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for task in TASKS:
        card = _same(_card(REFERENCE / task / "archcard.json"), _card(tmp_path / task / "archcard.json"), task)
        assert not card, f"{task}: the searched architecture changed:\n" + "\n".join(card[:20])
        metrics = _same(json.loads((REFERENCE / task / "metrics.json").read_text()),
                        json.loads((tmp_path / task / "metrics.json").read_text()), task)
        assert not metrics, f"{task}: the metrics changed:\n" + "\n".join(metrics[:20])


def test_the_comparison_sees_a_changed_choice_and_a_changed_last_digit():
    card = _card(REFERENCE / "mnist1d" / "archcard.json")
    moved = json.loads(json.dumps(card))
    k = card["layers"][0]["k"]
    moved["layers"][0]["k"] = k + 2
    assert _same(card, moved) == [f".layers[0].k: {k} != {k + 2}"]
    metrics = json.loads((REFERENCE / "darcy" / "metrics.json").read_text())
    nudged = json.loads(json.dumps(metrics))
    nudged["dash"]["test"] *= 1 + 1e-7
    assert [d.split(":")[0] for d in _same(metrics, nudged)] == [".dash.test"]
    assert _same(metrics, json.loads(json.dumps(metrics))) == []


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--run":
        _run(Path(sys.argv[2]))
    elif sys.argv[1:] == ["--record"]:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            _run(Path(tmp))
            for task in TASKS:
                (REFERENCE / task).mkdir(parents=True, exist_ok=True)
                (REFERENCE / task / "archcard.json").write_text(json.dumps(_card(Path(tmp) / task / "archcard.json"),
                                                                           indent=1))
                (REFERENCE / task / "metrics.json").write_text((Path(tmp) / task / "metrics.json").read_text())
        print(f"recorded {', '.join(TASKS)} in {REFERENCE}")
    else:
        sys.exit("usage: python tests/test_reference_runs.py --record")
