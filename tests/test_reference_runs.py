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

Bit for bit holds on one kind of CPU only: torch picks its kernels by the CPU's vector capability
(``torch.backends.cpu.get_cpu_capability()``, recorded in ``recorded.json``), and the roundings of another set
move the floats. Measured: the same code on an AVX2 machine against references recorded on another one differed by
up to 2.5e-4 (mnist1d) and 1.3e-3 (darcy) relative in alpha and 2.8e-5 in a metric, with every choice (k, d, the
decision flags, the best epochs) the same. So on the recording capability floats must agree to 1e-9, and on
another one to ``ACROSS_CPUS`` (1e-2) relative, everything that is not a float exactly in both cases.
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
RECORDED = REFERENCE / "recorded.json"  # {"torch": ..., "cpu_capability": ...} of the machine that recorded them
RECORDED_TORCH = json.loads(RECORDED.read_text())["torch"]
SAME_CPU, ACROSS_CPUS = 1e-9, 1e-2  # relative tolerance of a float: recording capability, another one
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


def _capability() -> str:
    """This machine's CPU vector capability as torch dispatches on it ("AVX2", "AVX512", ...)."""
    return str(torch.backends.cpu.get_cpu_capability())


def _same(a: object, b: object, where: str = "", rel: float = SAME_CPU) -> list:
    """Where two JSON values differ: floats to ``rel`` relative (1e-9: printing rounds no further), the rest
    exactly."""
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{where}: keys {sorted(a)} != {sorted(b)}"]
        return [d for k in a for d in _same(a[k], b[k], f"{where}.{k}", rel)]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} items != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _same(x, y, f"{where}[{i}]", rel)]
    if isinstance(a, float) and isinstance(b, float):
        return [] if math.isclose(a, b, rel_tol=rel, abs_tol=1e-12) else [f"{where}: {a!r} != {b!r}"]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


@pytest.mark.skipif(not torch.__version__.startswith(RECORDED_TORCH),
                    reason=f"reference runs recorded with torch {RECORDED_TORCH}")
def test_smoke_runs_of_mnist1d_and_darcy_match_the_recorded_archcards_and_metrics(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "DASHKIT_PROGRESS": "plain"}
    done = subprocess.run([sys.executable, __file__, "--run", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    recorded = json.loads(RECORDED.read_text())["cpu_capability"]
    rel = SAME_CPU if _capability() == recorded else ACROSS_CPUS
    how = f"floats to {rel:g} relative (recorded on {recorded}, this machine {_capability()})"
    for task in TASKS:
        card = _same(_card(REFERENCE / task / "archcard.json"), _card(tmp_path / task / "archcard.json"), task, rel)
        assert not card, f"{task}: the searched architecture changed, {how}:\n" + "\n".join(card[:20])
        metrics = _same(json.loads((REFERENCE / task / "metrics.json").read_text()),
                        json.loads((tmp_path / task / "metrics.json").read_text()), task, rel)
        assert not metrics, f"{task}: the metrics changed, {how}:\n" + "\n".join(metrics[:20])


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
    assert _same(metrics, nudged, rel=ACROSS_CPUS) == []  # another CPU's roundings pass
    nudged["dash"]["test"] *= 1.05
    assert [d.split(":")[0] for d in _same(metrics, nudged, rel=ACROSS_CPUS)] == [".dash.test"]  # a real change not
    assert _same(card, moved, rel=ACROSS_CPUS) == [f".layers[0].k: {k} != {k + 2}"]  # a choice: exactly, always
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
        RECORDED.write_text(json.dumps({"torch": torch.__version__.split("+")[0],
                                        "cpu_capability": _capability()}, indent=1) + "\n")
        print(f"recorded {', '.join(TASKS)} in {REFERENCE} (cpu capability {_capability()})")
    else:
        sys.exit("usage: python tests/test_reference_runs.py --record")
