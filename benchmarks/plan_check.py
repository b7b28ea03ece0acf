"""Did a time budget's plan hold? Each stage's measured seconds over what its plan costed, read from finished runs.

    python benchmarks/plan_check.py RUN_DIR [RUN_DIR ...]

A RUN_DIR is a run made with ``budget=`` (its config.json holds the budget's record), or a directory of such runs
(`benchmarks/ucr.py --budget` writes one per dataset and seed). Nothing is trained or timed here: the seconds are
the runs' own, each stage's from its done marker (``done/<stage>.json``: the whole stage, its epochs' files and
its one test pass included), and the planned seconds come from the record's measured costs (after the search: the
searched network's, `dashkit.stages.costs.measure_chosen`) at the steps the run trained, counted as
`dashkit.budget` counts them (`dashkit.budget.epoch_writes` for the files).

A ratio of 1 means the cost model priced that network as it ran; a machine busier than when the costs were
measured moves every ratio of a run alike (the re-plans absorb that), so compare a network's ratio with the
baseline's of the same run (the last columns): a network the model prices wrongly stands out there.
"""
from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from dashkit.budget import epoch_writes, epochs_for

NETWORKS = (("dash", "retrain", "dash"), ("baseline", "baseline_retrain", "baseline"))


def seconds_of(run: Path, stage: str) -> Optional[float]:
    """A stage's seconds: its done marker's; else (a run stopped in it) the sum of its history's ``seconds``
    column, which leaves out the epochs' files; None when neither is there."""
    done = run / "done" / f"{stage}.json"
    if done.is_file():
        seconds = json.loads(done.read_text()).get("seconds")
        if isinstance(seconds, (int, float)):
            return float(seconds)
    path = run / f"history_{stage}.csv"
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "seconds" not in rows[0]:
        return None
    return sum(float(r["seconds"]) for r in rows)


def check_run(run: Path) -> Optional[Dict[str, Any]]:
    """Measured over planned seconds of the search and of each network's retraining of one budgeted run; None
    when ``run`` holds no finished budgeted run."""
    cfg_file = run / "config.json"
    if not cfg_file.is_file() or not (run / "metrics.json").is_file():
        return None
    meta = json.loads(cfg_file.read_text())
    record, plan = meta.get("budget"), meta.get("plan", {})
    if not record or "costs" not in record:
        return None
    costs = record["costs"]
    out: Dict[str, Any] = {"run": run.name, "budget_s": record.get("seconds")}
    search = plan.get("search", {})
    if search.get("steps"):
        planned = search["steps"] * costs["search_step"] + epochs_for(
            search["steps"], search["batches_per_pass"]) * epoch_writes(costs, "search")
        spent = seconds_of(run, "search")
        out["search"] = spent / planned if spent and planned > 0 else None
    retrain = plan.get("retrain", {})
    steps, per_pass = retrain.get("steps"), retrain.get("batches_per_pass")
    if not steps or not per_pass:
        return out
    epochs = epochs_for(steps, per_pass)
    writes = epoch_writes(costs, "retrain")

    def ratio(history: str, key: str) -> Optional[float]:
        step = costs.get(f"{key}_step", costs["dash_step"])
        evaluation = costs.get(f"{key}_eval", costs["dash_eval"])
        spent = seconds_of(run, history)
        planned = steps * step + epochs * (evaluation + writes)
        return spent / planned if spent and planned > 0 else None

    for name, history, key in NETWORKS:
        out[name] = ratio(history, key)
    out["random"] = [r for r in (ratio(f"random_{i}_retrain", "random")
                                 for i in range(int(record.get("random_draws", 0)))) if r is not None]
    return out


def runs_under(paths: List[str]) -> List[Path]:
    """The run directories named, or found one level under a directory that holds runs."""
    found = []
    for p in map(Path, paths):
        if (p / "config.json").is_file():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(q for q in p.iterdir() if (q / "config.json").is_file()))
        else:
            raise SystemExit(f"{p}: not a run directory or a directory of runs")
    return found


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    args = p.parse_args(argv)
    rows = [r for r in map(check_run, runs_under(args.runs)) if r is not None]
    if not rows:
        print("no finished budgeted run found", file=sys.stderr)
        return 1
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    print("| run | search | DASH | baseline | random draws | DASH / baseline | random / baseline |")
    print("|---|---|---|---|---|---|---|")
    per_base: Dict[str, List[float]] = {"dash": [], "random": []}
    for r in rows:
        base = r.get("baseline")
        d_b = r["dash"] / base if base and r.get("dash") else None
        r_b = [x / base for x in r.get("random", [])] if base else []
        if d_b is not None:
            per_base["dash"].append(d_b)
        per_base["random"].extend(r_b)
        print(f"| {r['run']} | {fmt(r.get('search'))} | {fmt(r.get('dash'))} | {fmt(base)} | "
              f"{', '.join(fmt(x) for x in r.get('random', [])) or '-'} | {fmt(d_b)} | "
              f"{', '.join(fmt(x) for x in r_b) or '-'} |")
    for name, values in per_base.items():
        if values:
            print(f"{name} / baseline over {len(values)}: median {statistics.median(values):.2f}, "
                  f"range {min(values):.2f}-{max(values):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
