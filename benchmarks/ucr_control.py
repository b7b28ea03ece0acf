"""The shuffled-target control of the UCR benchmark's runs: which of each search's choices are the data's.

    python benchmarks/ucr.py --datasets OSULeaf,ACSF1 --seeds 0,1,2 --preset standard --budget 5m --out runs/ucr
    python benchmarks/ucr_control.py --runs runs/ucr --datasets OSULeaf,ACSF1 --seeds 0,1,2

For every finished run ``--runs``/DATASET-sSEED of `benchmarks/ucr.py` it calls `dashkit.pipeline.shuffled_control`:
the run's own search (its config, plan, seed and inputs) again with the training labels shuffled, in the run's
``shuffled_control`` folder, compared layer by layer (`dashkit.stages.shuffled`). A layer's choice is the data's when
it passed the decision test and the control did not make it decisively, the method's when the control chose the
same pair and decided. Only the search runs again (no tuning, retraining or test split); a finished control is read
back. The rows (with the run's DASH and baseline accuracies, for reading beside) go to ``--runs``/control.json, the
table to stdout. Needs aeon, as ``ucr.py`` does.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import dashkit
from dashkit.pipeline import shuffled_control
from dashkit.rundir import RunDir

sys.path.insert(0, str(Path(__file__).resolve().parent))
import ucr  # noqa: E402  (the benchmark's loader and split)


def control_row(runs: Path, name: str, seed: int) -> Optional[Dict[str, Any]]:
    """One run's control, or None when the run's search has not finished."""
    run_dir = runs / f"{name}-s{seed}"
    rd = RunDir(run_dir)
    if not rd.is_done("search"):
        return None
    x_train, y_train, x_test, y_test = ucr.load(name)
    task = dashkit.tasks.from_arrays(x_train, y_train, x_test=x_test, y_test=y_test, name=name, seed=seed)
    t0 = time.perf_counter()
    report = shuffled_control(run_dir, task=task)
    metrics = rd.read_json("metrics.json") if rd.exists("metrics.json") else {}
    nets = [m for m in ("dash", "baseline") if isinstance(metrics.get(m), dict)]
    acc = {m: ucr._accuracy(metrics[m]["test"]) for m in nets}  # the error in % as the benchmark reports it
    val = {m: metrics[m]["val"] for m in nets}
    passes = report.passes  # a card made before dashkit recorded it: the plan in config.json has it
    if passes is None:
        passes = rd.read_json("config.json").get("plan", {}).get("search", {}).get("passes")
    return {"dataset": name, "seed": seed, "layers": len(report.layers), "candidates": report.candidates,
            "passes": passes, "same": report.same, "p_value": report.p_value,
            "data": report.data_decided, "method": report.method_made,
            "undecided": sum(layer.reading == "undecided" for layer in report.layers),
            "prior_made_it": report.prior_made_it, "dash": acc.get("dash"), "baseline": acc.get("baseline"),
            "dash_val_error": val.get("dash"), "baseline_val_error": val.get("baseline"),
            "seconds": round(time.perf_counter() - t0, 1)}


def table(rows: List[Dict[str, Any]]) -> str:
    """A markdown table, one row per dataset: sums over its seeds."""
    head = ("| dataset | seeds | passes | same pair as the control (chance) | the data's | the method's | undecided "
            "| runs read as the method's | DASH | baseline |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        n = sum(r["layers"] for r in rs)

        def mean(key: str) -> str:
            values = [r[key] for r in rs if r[key] is not None]
            return f"{statistics.mean(values):.3f}" if values else "-"

        lines.append(f"| {name} | {len(rs)} | {statistics.mean(r['passes'] or 0 for r in rs):.0f} | "
                     f"{sum(r['same'] for r in rs)}/{n} ({n / rs[0]['candidates']:.1f}) | "
                     f"{sum(r['data'] for r in rs)}/{n} | {sum(r['method'] for r in rs)}/{n} | "
                     f"{sum(r['undecided'] for r in rs)}/{n} | {sum(r['prior_made_it'] for r in rs)}/{len(rs)} | "
                     f"{mean('dash')} | {mean('baseline')} |")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", required=True, help="the --out folder of benchmarks/ucr.py")
    p.add_argument("--datasets", default=",".join(ucr.DATASETS), help="comma-separated names")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    a = p.parse_args(argv)
    runs = Path(a.runs)
    rows: List[Dict[str, Any]] = []
    for name in [d for d in a.datasets.split(",") if d]:
        for seed in [int(s) for s in a.seeds.split(",") if s]:
            row = control_row(runs, name, seed)
            if row is None:
                print(f"{name} seed {seed}: no finished search in {runs / f'{name}-s{seed}'}; skipped", flush=True)
                continue
            rows.append(row)
            print(json.dumps(row), flush=True)
    path = runs / "control.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    done = {(r["dataset"], r["seed"]) for r in rows}
    path.write_text(json.dumps([r for r in earlier if (r["dataset"], r["seed"]) not in done] + rows, indent=2))
    if rows:
        print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
