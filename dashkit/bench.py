"""Speed benchmarks: DASH's timing study on your own hardware.

    python -m dashkit.bench ops                 # the full study (a few minutes on 2 CPU cores)
    python -m dashkit.bench ops --quick         # a smaller version for notebooks and CI
    python -m dashkit bench ops --out bench/    # the same through the main command

Every figure is milliseconds per training step (forward + backward + SGD step) of a supernet, beside the plain
backbone with its default kernels measured in the same run. Configurations are timed round-robin (one step of
each in turn, several rounds) so that a noisy, shared machine slows all of them alike; the tables report the
median step and ratios of medians. `bench_ratios` and `compare_with_dash` read a run's rows back: its headline
ratios, and the same figures beside those of DASH's own code (`DASH_REFERENCE`), as notebook 08 shows them.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from . import backbones
from .space import SearchSpace
from .supernet import dash_layers, to_supernet
from .timing import timed_rounds

__all__ = ["ops_benchmark", "BenchResult", "check_targets", "format_table", "plot", "DASH_REFERENCE", "bench_ratios",
           "compare_with_dash", "main"]

# The spaces of the study: DASH's 2D space, and the same space in 1D (so that 1D and 2D compare).
K4, D4 = (3, 5, 7, 9), (1, 3, 7, 15)
K5, D5 = (3, 5, 7, 9, 11), (1, 3, 7, 15, 31)


@dataclass
class BenchResult:
    """One benchmark run: rows of measurements plus where and how they were taken."""

    rows: List[Dict] = field(default_factory=list)
    env: Dict = field(default_factory=dict)
    targets: List[Dict] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    use_amp = x.device.type == "cuda"

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=use_amp):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def _backends_used(model: nn.Module) -> str:
    used = sorted({m.last_backend for _, m in dash_layers(model) if m.last_backend})
    return "+".join(used)


def _case(group: str, point: Dict, make_model: Callable[[], nn.Module], x: torch.Tensor, y: torch.Tensor,
          space: Optional[SearchSpace], backend: Optional[str], depthwise: bool, device: torch.device):
    model = make_model()
    if space is not None:
        model = to_supernet(model, space, backend=backend, depthwise=depthwise)
    model = model.to(device)
    meta = dict(group=group, **point, backend=backend or "plain", depthwise=depthwise if space is not None else None)
    return meta, model, _train_step(model, x, y)


def ops_benchmark(quick: bool = False, device: str = "cpu", rounds: Optional[int] = None, batch: int = 32,
                  sections: Sequence[str] = ("1d", "candidates", "lengths", "2d"),
                  progress: bool = True, command: Optional[str] = None) -> BenchResult:
    """Run the timing study and return its rows (ms per step and ratios to the plain backbone of the group).

    Sections:
        "1d": ResNet1D (width rule: 16 channels for 10 classes), length 1000, K={3,5,7,9}, D={1,3,7,15}: plain;
            mixed_results, direct, fft, auto; depthwise and full search.
        "candidates": |K| = |D| = 1..5 (K = 3,5,7,9,11; D = 1,3,7,15,31), fft and auto, both modes.
        "lengths": input lengths 128..2048, depthwise, plain / fft / direct / auto.
        "2d": WRN-16-1 on 3x32x32, K={3,5,7,9}, D={1,3,7,15}, depthwise: plain, mixed_results, direct, fft, auto.
    ``quick`` uses fewer rounds and points (for notebooks and CI); the numbers are then rougher.
    """
    dev = torch.device(device)
    rounds = rounds or (2 if quick else 5)
    torch.manual_seed(0)
    command = command or (f"dashkit.bench.ops_benchmark(quick={quick}, device={device!r}, rounds={rounds}, "
                          f"batch={batch}, sections={tuple(sections)!r})")
    res = BenchResult(env=_env(dev, quick, rounds, batch, command))
    warnings.filterwarnings("ignore", message="Using padding='same'")

    def run_group(group: str, cases) -> None:
        if progress:
            print(f"[{group}] {len(cases)} configurations, {rounds} rounds", file=sys.stderr, flush=True)
        steps, metas, models = {}, {}, {}
        for i, (meta, model, step) in enumerate(cases):
            key = f"{i}"
            steps[key], metas[key], models[key] = step, meta, model
        # the first warm-up steps also calibrate backend="auto" and build FFT plans
        times = timed_rounds(steps, dev, rounds=rounds, progress=progress)
        base = {}
        for key, meta in metas.items():
            ms = 1000 * statistics.median(times[key])
            meta.update(ms=ms, ms_min=1000 * min(times[key]), used=_backends_used(models[key]))
            if meta["backend"] == "plain":
                base[_point_key(meta)] = ms
        for meta in metas.values():
            b = base.get(_point_key(meta))
            meta["ratio_to_plain"] = meta["ms"] / b if b else None
            res.rows.append(meta)

    y1 = torch.randint(0, 10, (batch,), device=dev)
    if "1d" in sections:
        x = torch.randn(batch, 1, 1000, device=dev)
        mk = lambda: backbones.resnet1d(1, 10)  # noqa: E731
        sp = SearchSpace(K4, D4, dims=1)
        cases = [_case("1d", {"length": 1000}, mk, x, y1, None, None, True, dev)]
        for dw in (True, False):
            for b in ("mixed_results", "direct", "fft", "auto"):
                cases.append(_case("1d", {"length": 1000}, mk, x, y1, sp, b, dw, dev))
        run_group("1d", cases)
    if "candidates" in sections:
        x = torch.randn(batch, 1, 1000, device=dev)
        mk = lambda: backbones.resnet1d(1, 10)  # noqa: E731
        ms = (1, 2, 3, 5) if quick else (1, 2, 3, 4, 5)
        cases = [_case("candidates", {"length": 1000, "m": 0}, mk, x, y1, None, None, True, dev)]
        for m in ms:
            sp = SearchSpace(K5[:m], D5[:m], dims=1)
            for dw in (True, False):
                for b in ("fft", "auto"):
                    cases.append(_case("candidates", {"length": 1000, "m": m}, mk, x, y1, sp, b, dw, dev))
        run_group("candidates", cases)
    if "lengths" in sections:
        sp = SearchSpace(K4, D4, dims=1)
        for L in ((128, 512, 2048) if quick else (128, 256, 512, 1024, 2048)):
            x = torch.randn(batch, 1, L, device=dev)
            mk = lambda: backbones.resnet1d(1, 10)  # noqa: E731
            cases = [_case("lengths", {"length": L}, mk, x, y1, None, None, True, dev)]
            for b in ("fft", "direct", "auto"):
                cases.append(_case("lengths", {"length": L}, mk, x, y1, sp, b, True, dev))
            run_group("lengths", cases)
    if "2d" in sections:
        x = torch.randn(batch, 3, 32, 32, device=dev)
        mk = lambda: backbones.wrn(16, 1, in_channels=3, num_classes=10)  # noqa: E731
        sp = SearchSpace(K4, D4, dims=2)
        cases = [_case("2d", {"size": 32}, mk, x, y1, None, None, True, dev)]
        for b in ("mixed_results", "direct", "fft", "auto"):
            cases.append(_case("2d", {"size": 32}, mk, x, y1, sp, b, True, dev))
        run_group("2d", cases)
    res.targets = check_targets(res.rows)
    return res


def _point_key(meta: Dict) -> Tuple:
    return (meta["group"], meta.get("length"), meta.get("size"), meta.get("m") if meta["group"] != "candidates" else None)


def _env(dev: torch.device, quick: bool, rounds: int, batch: int, command: str) -> Dict:
    env = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine(),
           "processor": platform.processor(), "threads": torch.get_num_threads(), "device": str(dev),
           "quick": quick, "rounds": rounds, "batch": batch, "command": command}
    if dev.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(dev)
    return env


def _find(rows: List[Dict], **kw) -> Optional[Dict]:
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def check_targets(rows: List[Dict]) -> List[Dict]:
    """The issue's speed targets, evaluated on the measured rows (only those whose inputs were measured)."""
    out = []

    def add(name: str, value: Optional[float], limit: float, kind: str) -> None:
        if value is None:
            return
        ok = value <= limit if kind == "<=" else value >= limit
        out.append({"target": name, "value": round(value, 3), "limit": limit, "kind": kind, "met": bool(ok)})

    dw_auto = _find(rows, group="1d", backend="auto", depthwise=True)
    full_auto = _find(rows, group="1d", backend="auto", depthwise=False)
    full_mr = _find(rows, group="1d", backend="mixed_results", depthwise=False)
    add("1D depthwise auto / plain", dw_auto and dw_auto["ratio_to_plain"], 1.5, "<=")
    add("1D full auto / plain", full_auto and full_auto["ratio_to_plain"], 3.0, "<=")
    if full_auto and full_mr:
        add("1D full mixed_results / auto", full_mr["ms"] / full_auto["ms"], 5.0, ">=")
    for dw in (True, False):
        a2 = _find(rows, group="candidates", backend="auto", depthwise=dw, m=2)
        a5 = _find(rows, group="candidates", backend="auto", depthwise=dw, m=5)
        if a2 and a5:
            add(f"auto growth |K|=|D| 2 -> 5 ({'depthwise' if dw else 'full'})", a5["ms"] / a2["ms"], 1.5, "<=")
    a2d = _find(rows, group="2d", backend="auto")
    add("2D WRN-16-1 depthwise auto / plain", a2d and a2d["ratio_to_plain"], 4.0, "<=")
    worst = None
    for r in rows:
        if r["backend"] != "auto":
            continue
        same = dict(group=r["group"], depthwise=r["depthwise"])
        for k in ("length", "size", "m"):
            if k in r:
                same[k] = r[k]
        alts = [_find(rows, backend=b, **same) for b in ("fft", "direct")]
        alts = [a["ms"] for a in alts if a]
        if alts:
            v = r["ms"] / min(alts)
            worst = v if worst is None else max(worst, v)
    add("auto / best of fft and direct (worst point)", worst, 1.10, "<=")
    return out


def format_table(res: BenchResult) -> str:
    lines = []
    cols = ("group", "point", "mode", "backend", "used", "ms/step", "x plain")
    lines.append(f"{cols[0]:<11} {cols[1]:<12} {cols[2]:<9} {cols[3]:<14} {cols[4]:<11} {cols[5]:>9} {cols[6]:>8}")
    for r in res.rows:
        point = ", ".join(f"{k}={r[k]}" for k in ("length", "size", "m") if k in r and not (k == "m" and r[k] == 0))
        mode = "" if r["depthwise"] is None else ("depthwise" if r["depthwise"] else "full")
        ratio = f"{r['ratio_to_plain']:.2f}" if r["ratio_to_plain"] else ""
        lines.append(f"{r['group']:<11} {point:<12} {mode:<9} {r['backend']:<14} {r['used']:<11} {r['ms']:>9.1f} "
                     f"{ratio:>8}")
    if res.targets:
        lines.append("")
        lines.append("targets:")
        for t in res.targets:
            lines.append(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['value']} (target {t['kind']} "
                         f"{t['limit']})")
    return "\n".join(lines)


def plot(res: BenchResult):
    """A figure of the study: ratios to the plain backbone, growth with candidates, and input length.

    Only the panels whose sections were measured are drawn; the global matplotlib style is left untouched.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    from .viz import style  # here, not at the top: the benchmark itself runs without matplotlib

    bars = [r for r in res.rows if r["group"] in ("1d", "2d") and r["backend"] != "plain"]
    cand = [r for r in res.rows if r["group"] == "candidates" and r["backend"] != "plain"]
    lens = [r for r in res.rows if r["group"] == "lengths"]
    panels = [p for p, rows in (("bars", bars), ("cand", cand), ("lens", lens)) if rows]
    with style(font_scale=1.0):  # full-size text: three wide panels, read side by side
        fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(5.5 * max(len(panels), 1), 4.5), squeeze=False)
        axes = dict(zip(panels, axes[0]))
        if "bars" in axes:
            ax = axes["bars"]
            labels = [f"{r['group']} {'dw' if r['depthwise'] else 'full'}\n{r['backend']}" for r in bars]
            sns.barplot(x=labels, y=[r["ratio_to_plain"] for r in bars], ax=ax, color="tab:blue")
            ax.axhline(1.0, color="k", lw=1)
            ax.set_yscale("log")
            ax.set_ylabel("step time / plain backbone")
            ax.set_title("supernet step, relative to the plain network")
            ax.tick_params(axis="x", labelrotation=60, labelsize=8)
        if "cand" in axes:
            ax = axes["cand"]
            for dw in (True, False):
                for b in ("fft", "auto"):
                    pts = sorted((r["m"] ** 2, r["ms"]) for r in cand if r["backend"] == b and r["depthwise"] == dw)
                    if pts:
                        ax.plot(*zip(*pts), marker="o", label=f"{b}, {'depthwise' if dw else 'full'}")
            plain = _find(res.rows, group="candidates", backend="plain")
            if plain:
                ax.axhline(plain["ms"], color="k", ls="--", label="plain backbone")
            ax.set_xlabel("candidates per layer (|K| x |D|)")
            ax.set_ylabel("ms per step")
            ax.set_title("cost as candidates grow")
            ax.legend(fontsize=8)
        if "lens" in axes:
            ax = axes["lens"]
            for b in ("plain", "fft", "direct", "auto"):
                pts = sorted((r["length"], r["ms"]) for r in lens if r["backend"] == b)
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=b)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("input length")
            ax.set_ylabel("ms per step")
            ax.set_title("FFT vs direct as inputs grow (depthwise)")
            ax.legend(fontsize=8)
        fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------------------------
# beside DASH's own code

#: DASH's own code timed on a 2-core CPU (ms per training step and ratios to the plain backbone).
DASH_REFERENCE: Dict[str, Any] = {
    "1d_plain_ms": (70.0, 79.0),
    "1d_depthwise_over_plain": 2.1,
    "1d_full_over_plain": 5.0,
    "1d_full_mixed_results_ms": 1046.0,
    "1d_full_mixed_results_over_plain": 1046.0 / 74.5,  # middle of the plain range
    "1d_full_mixed_results_over_supernet": 2.8,
    "2d_plain_ms": 35.0,
    "2d_mixed_results_over_plain": 41.0,
    "2d_supernet_over_plain": 400.0,  # approximate: its FFT path runs on every layer, always
}


def _bench_rows(res: Any) -> List[Dict[str, Any]]:
    rows = getattr(res, "rows", res)
    if not isinstance(rows, list) or any(not isinstance(r, Mapping) or "group" not in r for r in rows):
        raise TypeError(f"res={res!r:.100} has type {type(res).__name__}; accepted: a dashkit.bench.BenchResult or "
                        "its rows (dicts with a 'group' key)")
    return rows


def bench_ratios(res: Any) -> Dict[str, float]:
    """The headline numbers of an `ops_benchmark` run as a flat dict (for ``dashkit.notebook.record``).

    Args:
        res: a `BenchResult`, or its rows.

    Returns:
        Keys (present when measured): ``<group>_plain_ms`` and ``<group>_<mode>_<backend>_over_plain`` for the
        "1d" and "2d" groups (mode "depthwise" or "full"); ``<group>_<mode>_mixed_results_over_fft`` and
        ``..._over_auto``; ``candidates_<mode>_auto_growth`` (time with the most candidates / with the fewest);
        ``lengths_<L>_direct_over_fft``; ``targets_met`` and ``targets_total``.
    """
    rows = _bench_rows(res)
    out: Dict[str, float] = {}
    for group in ("1d", "2d"):
        plain = _find(rows, group=group, backend="plain")
        if plain:
            out[f"{group}_plain_ms"] = plain["ms"]
        for r in rows:
            if r["group"] != group or r["backend"] == "plain":
                continue
            mode = "depthwise" if r["depthwise"] else "full"
            if r.get("ratio_to_plain") is not None:
                out[f"{group}_{mode}_{r['backend']}_over_plain"] = r["ratio_to_plain"]
        for mode, dw in (("depthwise", True), ("full", False)):
            mr = _find(rows, group=group, backend="mixed_results", depthwise=dw)
            for b in ("fft", "auto"):
                other = _find(rows, group=group, backend=b, depthwise=dw)
                if mr and other:
                    out[f"{group}_{mode}_mixed_results_over_{b}"] = mr["ms"] / other["ms"]
    for mode, dw in (("depthwise", True), ("full", False)):
        pts = sorted((r["m"], r["ms"]) for r in rows
                     if r["group"] == "candidates" and r["backend"] == "auto" and r["depthwise"] == dw)
        if len(pts) >= 2:
            out[f"candidates_{mode}_auto_growth"] = pts[-1][1] / pts[0][1]
    for r in rows:
        if r["group"] == "lengths" and r["backend"] == "direct":
            fft = _find(rows, group="lengths", backend="fft", length=r["length"])
            if fft:
                out[f"lengths_{r['length']}_direct_over_fft"] = r["ms"] / fft["ms"]
    targets = getattr(res, "targets", None) or []
    out["targets_met"] = sum(bool(t["met"]) for t in targets)
    out["targets_total"] = len(targets)
    return out


def compare_with_dash(res: Any) -> List[Dict[str, Any]]:
    """This machine's numbers beside those of DASH's own code on a 2-core CPU (`DASH_REFERENCE`).

    Args:
        res: a `BenchResult`, or its rows.

    Returns:
        One row per figure: ``figure``, ``this machine`` (None when that part was not measured), ``DASH code``.
    """
    rows = _bench_rows(res)
    ratios = bench_ratios(res)
    ref = DASH_REFERENCE

    def get(key: str) -> Optional[float]:
        v = ratios.get(key)
        return None if v is None else round(float(v), 2)

    sup_full = ratios.get("1d_full_auto_over_plain")
    mr_full = _find(rows, group="1d", backend="mixed_results", depthwise=False)
    full_auto = _find(rows, group="1d", backend="auto", depthwise=False)
    return [
        {"figure": "1D ResNet1D plain, ms/step", "this machine": get("1d_plain_ms"),
         "DASH code": f"{ref['1d_plain_ms'][0]:.0f}-{ref['1d_plain_ms'][1]:.0f}"},
        {"figure": "1D depthwise supernet / plain", "this machine": get("1d_depthwise_auto_over_plain"),
         "DASH code": ref["1d_depthwise_over_plain"]},
        {"figure": "1D full supernet / plain", "this machine": None if sup_full is None else round(sup_full, 2),
         "DASH code": ref["1d_full_over_plain"]},
        {"figure": "1D mixed results (full) / plain", "this machine": get("1d_full_mixed_results_over_plain"),
         "DASH code": round(ref["1d_full_mixed_results_over_plain"], 1)},
        {"figure": "1D mixed results / full supernet",
         "this machine": round(mr_full["ms"] / full_auto["ms"], 2) if mr_full and full_auto else None,
         "DASH code": ref["1d_full_mixed_results_over_supernet"]},
        {"figure": "2D WRN-16-1 plain, ms/step", "this machine": get("2d_plain_ms"), "DASH code": ref["2d_plain_ms"]},
        {"figure": "2D mixed results / plain", "this machine": get("2d_depthwise_mixed_results_over_plain"),
         "DASH code": ref["2d_mixed_results_over_plain"]},
        {"figure": "2D supernet / plain", "this machine": get("2d_depthwise_auto_over_plain"),
         "DASH code": f"~{ref['2d_supernet_over_plain']:.0f}"},
    ]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dashkit.bench", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    o = sub.add_parser("ops", help="ms per training step of supernets vs the plain backbone")
    o.add_argument("--quick", action="store_true", help="fewer rounds and points (rougher numbers)")
    o.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    o.add_argument("--rounds", type=int, default=None, help="timing rounds per configuration")
    o.add_argument("--batch", type=int, default=32)
    o.add_argument("--sections", default="1d,candidates,lengths,2d",
                   help="comma-separated subset of 1d,candidates,lengths,2d")
    o.add_argument("--out", default=None, help="folder for bench_ops.json and bench_ops.png")
    a = p.parse_args(argv)
    sections = tuple(s.strip() for s in a.sections.split(",") if s.strip())
    bad = [s for s in sections if s not in ("1d", "candidates", "lengths", "2d")]
    if bad:
        p.error(f"--sections: unknown {bad!r}; choose from 1d, candidates, lengths, 2d")
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {a.device!r}: CUDA is not available here")
    command = "python -m dashkit.bench " + " ".join(list(argv) if argv is not None else sys.argv[1:])
    res = ops_benchmark(quick=a.quick, device=a.device, rounds=a.rounds, batch=a.batch, sections=sections,
                        command=command)
    print(format_table(res))
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench_ops.json").write_text(res.to_json())
        plot(res).savefig(out / "bench_ops.png", dpi=120)
        print(f"\nwrote {out / 'bench_ops.json'} and {out / 'bench_ops.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
