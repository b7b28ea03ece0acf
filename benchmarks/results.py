"""DASH vs its default-kernel backbone on the offline tasks: the RESULTS.md table.

    python benchmarks/results.py --preset standard --seeds 0 1 2 --out runs/results

Runs `dashkit.run` for every task and seed (resuming finished runs), then writes runs/results/results.json and
prints the Markdown table for RESULTS.md: the test metric (lower is better) of DASH, of the baseline (the default
kernels) and of the random-architecture control (architectures drawn uniformly from the same space, trained on the
same budget with DASH's hyper-parameters; per run the mean over its draws), mean ± sd over seeds; how many of the
searched layers passed the decision test; how often two seeds chose the same (k, d) for a layer, against the 1/M
that independent uniform choices would give; and the time of DASH's search + retrain against the baseline's
training time.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import dashkit
from dashkit.pipeline import best_network

TASKS = ("mnist1d", "darcy", "genomics", "spherical_mnist", "ecg_synth")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="standard")
    p.add_argument("--tasks", nargs="+", default=list(TASKS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="runs/results")
    p.add_argument("--device", default="auto")
    p.add_argument("--no-time-cap", dest="time_cap", action="store_false",
                   help="run the preset's own steps even where they are forecast to take well over its time here "
                        "(dashkit.run(time_cap=False); by default such a standard run is fit to its 5 minutes)")
    p.add_argument("--collect", nargs="+", default=None, metavar="DIR[:TASK,...]",
                   help="run nothing: print the table of the results.json files in these folders (only the rows "
                        "of the tasks named after a colon, when given)")
    a = p.parse_args(argv)
    if a.collect:
        rows = []
        for spec in a.collect:
            folder, _, names = spec.partition(":")
            keep = set(names.split(",")) if names else None
            rows += [_chosen_from_run(r, Path(folder)) for r in json.loads((Path(folder) / "results.json").read_text())
                     if keep is None or r["task"] in keep]
        print(table(sorted(rows, key=lambda r: (r["task"], r["seed"]))))
        return 0
    out = Path(a.out)
    rows = []
    for task in a.tasks:
        for seed in a.seeds:
            t0 = time.perf_counter()
            r = dashkit.run(task, preset=a.preset, out=out / f"{task}-s{seed}", seed=seed, device=a.device,
                            resume=True, time_cap=a.time_cap)
            decided = r.card.decided_count() if r.card is not None else None
            rows.append({"task": task, "seed": seed, "metric": r.metric, "dash": r.metrics["dash"],
                         "baseline": r.metrics["baseline"], "random": r.metrics.get("random"),
                         "chosen": r.best, "chosen_metric": r.metrics[r.best],
                         "random_per_draw": (r.random or {}).get("per_draw"),
                         "choices": {layer.name: [layer.k, layer.d] for layer in r.card.layers},
                         "candidates": len(r.card.layers[0].alpha) if r.card.layers else None,
                         "decided": list(decided) if decided else None,
                         "times": r.times, "wall": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
            (out / "results.json").write_text(json.dumps(rows, indent=2))
    print(table(rows))
    return 0


def _chosen_from_run(row: dict, folder: Path) -> dict:
    """A row made before rows recorded the network chosen on validation, completed from its run's metrics.json
    (`dashkit.pipeline.best_network`), when the run directory is there."""
    metrics = folder / f"{row['task']}-s{row['seed']}" / "metrics.json"
    if "chosen" in row or not metrics.exists():
        return row
    m = json.loads(metrics.read_text())
    chosen = best_network({k: m[k]["val"] for k in ("dash", "baseline") if k in m})
    return {**row, "chosen": chosen, "chosen_metric": m[chosen]["test"]}


def agreement(rows) -> tuple:
    """(share of seed pairs that chose the same (k, d) for a layer, over layers and pairs; the number of pairs)."""
    same = [a["choices"][name] == b["choices"][name] for a, b in itertools.combinations(rows, 2)
            for name in a.get("choices", {}) if name in b.get("choices", {})]
    return (sum(same) / len(same) if same else None), len(same)


def table(rows) -> str:
    lines = ["| task | metric | seeds | DASH | baseline | random archs | DASH better than baseline | DASH better than "
             "random | layers decided | same choice across seeds (chance 1/M) | (search + retrain) / baseline time "
             "| run (min) | chosen on validation |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for task in dict.fromkeys(r["task"] for r in rows):
        rs = [r for r in rows if r["task"] == task]
        d = [r["dash"] for r in rs]
        b = [r["baseline"] for r in rs]
        rnd = [r.get("random") for r in rs]
        # the paper's cost claim: DASH's search + retrain against training the backbone once (its retrain stage)
        t = [(r["times"]["search"] + r["times"]["retrain"]) / r["times"]["baseline_retrain"] for r in rs]
        fmt = lambda v: f"{statistics.mean(v):.4g}" + (f" ± {statistics.stdev(v):.2g}" if len(v) > 1 else "")  # noqa: E731
        better = lambda x, y: (f"{'yes' if statistics.mean(x) < statistics.mean(y) else 'no'} "  # noqa: E731
                               f"({sum(p < q for p, q in zip(x, y))} of {len(x)} seeds)")
        have_random = all(v is not None for v in rnd)
        decided = [r["decided"] for r in rs if r.get("decided")]
        share, pairs = agreement(rs)
        m = rs[0].get("candidates")
        chosen = [r for r in rs if r.get("chosen")]
        chosen_text = (f"{fmt([r['chosen_metric'] for r in chosen])} (baseline "
                       f"{sum(r['chosen'] == 'baseline' for r in chosen)}/{len(chosen)})" if chosen else "-")
        lines.append(f"| {task} | {rs[0]['metric']} | {len(rs)} | {fmt(d)} | {fmt(b)} | "
                     f"{fmt(rnd) if have_random else '-'} | {better(d, b)} | "
                     f"{better(d, rnd) if have_random else '-'} | "
                     f"{f'{sum(x[0] for x in decided)}/{sum(x[1] for x in decided)}' if decided else '-'} | "
                     f"{f'{share:.2f} ({pairs} layer pairs; 1/M = {1 / m:.2f})' if share is not None and m else '-'} | "
                     f"{statistics.mean(t):.2f} ({min(t):.2f}-{max(t):.2f}) | "
                     f"{statistics.mean(r['wall'] for r in rs) / 60:.1f} | {chosen_text} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
