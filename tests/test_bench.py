"""The speed benchmark: its rows, ratios, target checks and outputs (tiny sizes: the numbers are not the point)."""
import json

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from dashkit import bench  # noqa: E402


def _row(group, backend, ms, depthwise=True, **point):
    return dict(group=group, backend=backend, ms=ms, depthwise=None if backend == "plain" else depthwise,
                ratio_to_plain=None, used=backend, **point)


def test_check_targets_reads_the_measured_rows():
    rows = [_row("1d", "plain", 100.0, length=1000), _row("1d", "auto", 140.0, True, length=1000),
            _row("1d", "fft", 130.0, True, length=1000), _row("1d", "direct", 900.0, True, length=1000),
            _row("1d", "auto", 250.0, False, length=1000), _row("1d", "mixed_results", 2000.0, False, length=1000),
            _row("1d", "fft", 260.0, False, length=1000),
            _row("candidates", "auto", 100.0, True, length=1000, m=2),
            _row("candidates", "auto", 160.0, True, length=1000, m=5)]
    for r in rows:
        r["ratio_to_plain"] = r["ms"] / 100.0
    got = {t["target"]: t for t in bench.check_targets(rows)}
    assert got["1D depthwise auto / plain"]["value"] == 1.4 and got["1D depthwise auto / plain"]["met"]
    assert got["1D full auto / plain"]["value"] == 2.5 and got["1D full auto / plain"]["met"]
    assert got["1D full mixed_results / auto"]["value"] == 8.0 and got["1D full mixed_results / auto"]["met"]
    growth = got["auto growth |K|=|D| 2 -> 5 (depthwise)"]
    assert growth["value"] == 1.6 and not growth["met"]
    # worst point: depthwise auto 140 against the best of fft (130) and direct (900) = 1.077 (full: 250 / 260)
    worst = got["auto / best of fft and direct (worst point)"]
    assert worst["value"] == pytest.approx(140 / 130, abs=1e-3) and worst["met"]
    assert "2D WRN-16-1 depthwise auto / plain" not in got  # not measured, not judged


def test_tiny_benchmark_runs_and_writes_json_and_figure(tmp_path, capsys):
    rc = bench.main(["ops", "--quick", "--rounds", "1", "--batch", "2", "--sections", "1d", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "bench_ops.json").read_text())
    rows = data["rows"]
    backends = {(r["backend"], r["depthwise"]) for r in rows}
    assert ("plain", None) in backends and ("auto", True) in backends and ("mixed_results", False) in backends
    assert all(r["ms"] > 0 for r in rows)
    plain = next(r for r in rows if r["backend"] == "plain")
    assert plain["ratio_to_plain"] == pytest.approx(1.0)
    auto = next(r for r in rows if r["backend"] == "auto" and r["depthwise"])
    assert auto["used"] in ("fft", "direct", "direct+fft")
    assert (tmp_path / "bench_ops.png").stat().st_size > 10_000
    out = capsys.readouterr().out
    assert "targets:" in out and "1D depthwise auto / plain" in out


def test_bad_sections_are_refused(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["ops", "--sections", "1d,3d"])
    assert e.value.code == 2
    assert "unknown ['3d']" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- beside DASH's code

def _fake_bench() -> bench.BenchResult:
    rows = [
        {"group": "1d", "length": 1000, "backend": "plain", "depthwise": None, "ms": 50.0, "ratio_to_plain": 1.0},
        {"group": "1d", "length": 1000, "backend": "mixed_results", "depthwise": False, "ms": 800.0,
         "ratio_to_plain": 16.0},
        {"group": "1d", "length": 1000, "backend": "fft", "depthwise": False, "ms": 150.0, "ratio_to_plain": 3.0},
        {"group": "1d", "length": 1000, "backend": "auto", "depthwise": False, "ms": 100.0, "ratio_to_plain": 2.0},
        {"group": "1d", "length": 1000, "backend": "auto", "depthwise": True, "ms": 60.0, "ratio_to_plain": 1.2},
        {"group": "candidates", "length": 1000, "m": 1, "backend": "auto", "depthwise": True, "ms": 55.0},
        {"group": "candidates", "length": 1000, "m": 5, "backend": "auto", "depthwise": True, "ms": 66.0},
        {"group": "lengths", "length": 512, "backend": "fft", "depthwise": True, "ms": 20.0},
        {"group": "lengths", "length": 512, "backend": "direct", "depthwise": True, "ms": 160.0},
        {"group": "2d", "size": 32, "backend": "plain", "depthwise": None, "ms": 30.0, "ratio_to_plain": 1.0},
        {"group": "2d", "size": 32, "backend": "mixed_results", "depthwise": True, "ms": 1200.0,
         "ratio_to_plain": 40.0},
        {"group": "2d", "size": 32, "backend": "auto", "depthwise": True, "ms": 90.0, "ratio_to_plain": 3.0},
    ]
    return bench.BenchResult(rows=rows, targets=[{"target": "a", "met": True}, {"target": "b", "met": False}])


def test_bench_ratios():
    r = bench.bench_ratios(_fake_bench())
    assert r["1d_plain_ms"] == 50.0 and r["2d_plain_ms"] == 30.0
    assert r["1d_full_mixed_results_over_plain"] == 16.0 and r["1d_depthwise_auto_over_plain"] == 1.2
    assert r["1d_full_mixed_results_over_fft"] == pytest.approx(800 / 150)
    assert r["1d_full_mixed_results_over_auto"] == 8.0
    assert r["2d_depthwise_mixed_results_over_auto"] == pytest.approx(1200 / 90)
    assert r["candidates_depthwise_auto_growth"] == pytest.approx(66 / 55)
    assert r["lengths_512_direct_over_fft"] == 8.0
    assert (r["targets_met"], r["targets_total"]) == (1, 2)
    assert "1d_depthwise_mixed_results_over_fft" not in r  # not measured
    with pytest.raises(TypeError, match=r"^res=3 has type int; accepted: a dashkit.bench.BenchResult or its rows "
                                        r"\(dicts with a 'group' key\)$"):
        bench.bench_ratios(3)


def test_compare_with_dash():
    rows = {r["figure"]: r for r in bench.compare_with_dash(_fake_bench())}
    assert rows["1D full supernet / plain"]["this machine"] == 2.0
    assert rows["1D full supernet / plain"]["DASH code"] == 5.0
    assert rows["1D mixed results / full supernet"]["this machine"] == 8.0
    assert rows["2D mixed results / plain"]["this machine"] == 40.0
    assert rows["1D ResNet1D plain, ms/step"]["DASH code"] == "70-79"
    partial = bench.BenchResult(rows=[r for r in _fake_bench().rows if r["group"] == "2d"])
    rows = {r["figure"]: r for r in bench.compare_with_dash(partial)}
    assert rows["1D full supernet / plain"]["this machine"] is None
    assert rows["2D supernet / plain"]["this machine"] == 3.0
