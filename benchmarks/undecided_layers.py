"""DASH's network with its undecided layers at the backbone's default kernels, beside the searched network.

    python benchmarks/undecided_layers.py darcy ecg_synth mnist1d --seeds 0 1 2 --out runs/undecided

For every task and seed: one run as the preset has it (``search_undecided="searched"``: every layer takes the
search's choice), then a copy of that run resumed with ``search_undecided="default_kernels"``, in which only DASH's
tuning and retraining are redone: the search, its plan, the baseline and the random draws do not depend on the
setting, so the copy keeps them (their metrics are checked to be the same). The two DASH networks are thus trained
after one search, on one plan, and differ only in the layers that did not pass the decision test
(`dashkit.DashConv.decision`). Rows give each network's validation and test metric (lower is better), the
baseline's and the random draws' mean, the decided layers and the seconds. Runs already in ``--out`` are read back.
Choose on the validation columns; ``--out``/undecided-layers.json keeps every row.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dashkit  # noqa: E402
from dashkit.rundir import RunDir  # noqa: E402

# DASH's tuning and retraining: the files a resumed run must not find, so that it redoes them
_DASH_FILES = ("tune.json", "history_tune.csv", "done/tune.json", "dash.safetensors", "init_dash.safetensors",
               "history_retrain.csv", "done/retrain.json", "tune.journal")


def gated_copy(searched: Path, gated: Path) -> None:
    """Copy the finished run ``searched`` to ``gated`` without DASH's tuning and retraining, its config and card
    set to ``undecided = "default_kernels"``: resumed, it tunes and retrains DASH's network anew, and nothing
    else."""
    if gated.exists():
        shutil.rmtree(gated)
    shutil.copytree(searched, gated)
    for name in _DASH_FILES:
        (gated / name).unlink(missing_ok=True)
    for pattern in ("retrain*", "tune*"):
        for f in (gated / "checkpoints").glob(pattern):
            f.unlink()
    rd = RunDir(gated)
    metrics = rd.read_json("metrics.json")
    metrics.pop("dash", None)
    rd.write_json("metrics.json", metrics)
    config = rd.read_json(RunDir.CONFIG)
    config["config"]["search"]["undecided"] = "default_kernels"
    rd.write_json(RunDir.CONFIG, config)
    card = rd.read_json("archcard.json")
    card["meta"]["undecided"] = "default_kernels"
    rd.write_json("archcard.json", card)


def compare(task: Any, seed: int, out: Path, preset: str = "standard", device: str = "cpu",
            **settings: Any) -> Dict[str, Any]:
    """One task and seed: the searched run, then its gated copy resumed; returns the row."""
    name = task if isinstance(task, str) else task.name
    searched, gated = out / f"{name}-seed{seed}-searched", out / f"{name}-seed{seed}-gated"
    common = dict(preset=preset, seed=seed, device=device, figures=False, verbose=False, **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the undecided warning of every run: the decided counts are in the row
        t0 = time.perf_counter()
        a = dashkit.run(task, out=searched, search_undecided="searched", **common)
        run_s = time.perf_counter() - t0
        if not (gated / "done" / "retrain.json").is_file():
            gated_copy(searched, gated)
        t0 = time.perf_counter()
        b = dashkit.run(task, out=gated, search_undecided="default_kernels", **common)
        gated_s = time.perf_counter() - t0
    ma, mb = RunDir(searched).read_json("metrics.json"), RunDir(gated).read_json("metrics.json")
    same = all(ma.get(k) == mb.get(k) for k in ma if k not in ("dash",))
    if not same:
        raise RuntimeError(f"{gated}: the baseline's or the draws' metrics differ from {searched}'s; the copy "
                           f"must keep them")
    pick = lambda m: None if not isinstance(m, dict) else {"val": m["val"], "test": m["test"]}  # noqa: E731
    counts = a.card.decided_count()
    return {"task": name, "seed": seed, "metric": ma["metric"], "decided": list(counts) if counts else None,
            "kept_default": len(b.card.kept_layers()),
            "searched": pick(ma["dash"]), "gated": pick(mb["dash"]), "baseline": pick(ma.get("baseline")),
            "random": pick(ma.get("random")), "run_s": round(run_s, 1), "gated_s": round(gated_s, 1)}


def _mean_sd(values: Sequence[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:  # one seed: no spread to give
        return f"{values[0]:.4g}"
    return f"{statistics.fmean(values):.4g} ± {statistics.stdev(values):.2g}"


def table(rows: List[Dict[str, Any]]) -> str:
    """A markdown table per task: validation and test mean ± sd over the seeds, of the four networks."""
    lines = ["| task | metric | seeds | layers decided | validation: searched | gated | baseline | random archs "
             "| test: searched | gated | baseline | random archs |", "|" + "---|" * 12]
    for task in dict.fromkeys(r["task"] for r in rows):
        rs = [r for r in rows if r["task"] == task]
        cells = []
        for split in ("val", "test"):
            for net in ("searched", "gated", "baseline", "random"):
                cells.append(_mean_sd([r[net][split] for r in rs if r[net] is not None]))
        decided = sum(r["decided"][0] for r in rs if r["decided"])
        layers = sum(r["decided"][1] for r in rs if r["decided"])
        lines.append(f"| {task} | {rs[0]['metric']} | {len(rs)} | {decided}/{layers} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("tasks", nargs="+", help="registered task names (dashkit.tasks.names())")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--preset", default="standard")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="runs/undecided")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for task in args.tasks:
        for seed in args.seeds:
            rows.append(compare(task, seed, out, preset=args.preset, device=args.device))
            print(json.dumps(rows[-1]), flush=True)
    (out / "undecided-layers.json").write_text(json.dumps(rows, indent=1))
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
