"""DASH vs its default-kernel backbone on the offline tasks: the RESULTS.md table.

    python benchmarks/results.py --preset standard --seeds 0 1 2 --out runs/results

Runs `dashkit.run` for every task and seed (resuming finished runs), then writes runs/results/results.json and
prints the Markdown table for RESULTS.md: the test metric (lower is better) of DASH and of the baseline, mean over
seeds, and the time of DASH's search + retrain against the baseline's training time.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import dashkit

TASKS = ("mnist1d", "darcy", "genomics", "spherical_mnist", "ecg_synth")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="standard")
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="runs/results")
    p.add_argument("--device", default="auto")
    p.add_argument("--collect", nargs="+", default=None, metavar="DIR[:TASK,...]",
                   help="run nothing: print the table of the results.json files in these folders (only the rows "
                        "of the tasks named after a colon, when given)")
    a = p.parse_args(argv)
    if a.collect:
        rows = []
        for spec in a.collect:
            folder, _, names = spec.partition(":")
            keep = set(names.split(",")) if names else None
            rows += [r for r in json.loads((Path(folder) / "results.json").read_text())
                     if keep is None or r["task"] in keep]
        print(table(sorted(rows, key=lambda r: (r["task"], r["seed"]))))
        return 0
    out = Path(a.out)
    rows = []
    for task in a.tasks:
        for seed in a.seeds:
            t0 = time.perf_counter()
            r = dashkit.run(task, preset=a.preset, out=out / f"{task}-s{seed}", seed=seed, device=a.device,
                            resume=True)
            rows.append({"task": task, "seed": seed, "metric": r.metric, "dash": r.metrics["dash"],
                         "baseline": r.metrics["baseline"], "times": r.times, "wall": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
            (out / "results.json").write_text(json.dumps(rows, indent=2))
    print(table(rows))
    return 0


def table(rows) -> str:
    lines = ["| task | metric | seeds | DASH | baseline | DASH better (mean) | (search + retrain) / baseline time "
             "| run (min) |",
             "|---|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        rs = [r for r in rows if r["task"] == task]
        d = [r["dash"] for r in rs]
        b = [r["baseline"] for r in rs]
        # the paper's cost claim: DASH's search + retrain against training the backbone once (its retrain stage)
        t = [(r["times"]["search"] + r["times"]["retrain"]) / r["times"]["baseline_retrain"] for r in rs]
        fmt = lambda v: f"{statistics.mean(v):.4g}" + (f" ± {statistics.stdev(v):.2g}" if len(v) > 1 else "")  # noqa: E731
        lines.append(f"| {task} | {rs[0]['metric']} | {len(rs)} | {fmt(d)} | {fmt(b)} | "
                     f"{'yes' if statistics.mean(d) < statistics.mean(b) else 'no'} "
                     f"({sum(x < y for x, y in zip(d, b))} of {len(rs)} seeds) | {statistics.mean(t):.2f} "
                     f"({min(t):.2f}-{max(t):.2f}) | {statistics.mean(r['wall'] for r in rs) / 60:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
