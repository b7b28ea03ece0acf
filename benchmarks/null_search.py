"""What the search chooses when the labels carry no information: its prior, measured.

    python benchmarks/null_search.py mnist1d --seeds 0 1 2 --out runs/null \\
        --variant default --variant "search_scheme=bilevel search_arch_holdout=0.5"
    python benchmarks/null_search.py ucr:OSULeaf --seeds 0 1 2 --out runs/null --variant default   # needs aeon

For every variant and seed it runs the search twice on the same inputs: once with the task's own training targets
("real") and once with those targets shuffled among the training examples ("permuted": each input keeps its
values, the targets keep their distribution, and the link between the two is gone, so no candidate can be better
than another for a reason in the data: `dashkit.tasks.shuffle_targets`). A search without a prior of its own
would choose uniformly from the space on permuted targets; whatever it chooses there more often than 1/M is a
preference of the method (the supernet's weight sharing, its normalisation, the receptive-field push), not of the
data. The rows compare:

- passes: how many times the search goes through the training split (its steps times its batch over the examples);
- share of the largest kernel size, and of the largest dilation, among the chosen pairs (uniform: 1/|K| and 1/|D|);
- the chosen receptive field d (k - 1) + 1 as a fraction of the space's mean field (uniform: 1.0);
- layers that passed the decision test (`DashConv.decision`), and the median z and mean p(choice) = softmax(alpha)
  of the chosen pair: under permuted targets a "decided" layer is a push the method makes whatever the data;
- layers where the real and the permuted searches chose the same pair (chance 1/M): how much of the real choice
  the prior alone would have made.

Only the search runs (no tuning, retraining or test split). ``ucr:NAME`` builds the task from a dataset that
`aeon` ships, as ``benchmarks/ucr.py`` does (`from_arrays` with the archive's own test split, so that the training
and validation splits are the benchmark's; the search reads the training split only). Searches already in
``--out`` are read back, not repeated; ``--out``/null-search.json keeps every row. For one run of your own,
``python -m dashkit shuffled-control RUN_DIR`` is the same control with the run's own search
(`dashkit.stages.shuffled`).
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
from dashkit import pipeline
from dashkit.config import make_config
from dashkit.rundir import RunDir
from dashkit.stages.shuffled import PERMUTATION_SEED_OFFSET, compare_with_control
from dashkit.supernet import alpha_probs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search_ablation import parse_variant  # noqa: E402  (the same KEY=VALUE variants)


def build_task(name: str, seed: int):
    """A registered task, or ``ucr:NAME``: a dataset that aeon ships, split as ``benchmarks/ucr.py`` splits it."""
    if not name.startswith("ucr:"):
        return dashkit.tasks.get(name)
    import ucr  # benchmarks/ucr.py: the same loader as the UCR benchmark

    x_train, y_train, x_test, y_test = ucr.load(name[4:])
    return dashkit.tasks.from_arrays(x_train, y_train, x_test=x_test, y_test=y_test, name=name[4:].lower(), seed=seed)


def prior_stats(card) -> Dict[str, Any]:
    """The chosen pairs of one search, summarised against a uniform choice from its space."""
    space = card.space
    ks, ds = max(space.kernel_sizes), max(space.dilations)
    mean_field = statistics.mean(space.receptive_fields)
    layers = card.layers
    return {"pairs": [[layer.k, layer.d] for layer in layers],
            "max_k": sum(layer.k == ks for layer in layers), "max_d": sum(layer.d == ds for layer in layers),
            "field_ratio": statistics.mean(layer.receptive_field / mean_field for layer in layers),
            "decided": list(card.decided_count() or (0, len(layers))), "layers": len(layers),
            "z": [layer.z for layer in layers], "p_choice": [max(alpha_probs(layer.alpha)) for layer in layers],
            "candidates": len(space), "n_k": len(space.kernel_sizes), "n_d": len(space.dilations)}


def search_once(task, settings: Dict[str, Any], a: argparse.Namespace, seed: int, out: Path):
    """(ArchCard, search seconds) of one search; read back when ``out`` holds a finished one."""
    cfg = make_config(a.preset, task.defaults, seed=seed, device=a.device, **settings)
    card = pipeline.search(task, cfg, pipeline.open_run_dir(out, task, cfg, preset=a.preset))
    return card, float(RunDir(out).done_info("search")["seconds"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task", help="a registered task, or ucr:NAME for a dataset that aeon ships")
    p.add_argument("--variant", action="append", required=True,
                   help="'default' or \"KEY=VALUE [KEY=VALUE ...]\"; give --variant once per variant")
    p.add_argument("--preset", default="standard")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="runs/null")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    variants = [parse_variant(v) for v in a.variant]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    label = a.task.replace(":", "-")
    rows: List[Dict[str, Any]] = []
    for name, settings in variants:
        for seed in a.seeds:
            task = build_task(a.task, seed)
            cards = {}
            permuted = dashkit.tasks.shuffle_targets(task, PERMUTATION_SEED_OFFSET + seed)  # as shuffled_control
            for targets, t in (("real", task), ("permuted", permuted)):
                t0 = time.perf_counter()
                card, search_s = search_once(t, settings, a, seed, out / f"{label}-{name}-{targets}-s{seed}")
                cards[targets] = card
                rows.append({"task": a.task, "variant": name, "seed": seed, "targets": targets,
                             "passes": card.meta["passes"],  # the search's plan, as the card records it
                             **prior_stats(card), "search_s": search_s, "wall_s": time.perf_counter() - t0})
            same = compare_with_control(cards["real"], cards["permuted"], PERMUTATION_SEED_OFFSET + seed).same
            rows[-1]["same_as_real"] = rows[-2]["same_as_real"] = same
            print(json.dumps(rows[-2]), json.dumps(rows[-1]), sep="\n", flush=True)
    path = out / "null-search.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    ran = {(r["task"], r["variant"], r["seed"], r["targets"]) for r in rows}
    path.write_text(json.dumps([r for r in earlier if (r["task"], r["variant"], r["seed"], r["targets"]) not in ran]
                               + rows, indent=2))
    print(table(rows))
    return 0


def table(rows: List[Dict[str, Any]]) -> str:
    """A markdown table, one row per (task, variant, targets): sums and means over the seeds."""
    head = ("| task | variant | targets | seeds | passes | largest k chosen (uniform) | largest d chosen (uniform) "
            "| field / space's mean field (uniform 1.0) | layers decided | median z | mean p(choice) (1/M) "
            "| same pair, real and permuted (chance 1/M) | search (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    keys = dict.fromkeys((r["task"], r["variant"], r["targets"]) for r in rows)
    for task, variant, targets in keys:
        rs = [r for r in rows if (r["task"], r["variant"], r["targets"]) == (task, variant, targets)]
        n = sum(r["layers"] for r in rs)
        lines.append(
            f"| {task} | {variant} | {targets} | {len(rs)} | {statistics.mean(r['passes'] for r in rs):.0f} | "
            f"{sum(r['max_k'] for r in rs)}/{n} "
            f"({n / rs[0]['n_k']:.1f}) | {sum(r['max_d'] for r in rs)}/{n} ({n / rs[0]['n_d']:.1f}) | "
            f"{statistics.mean(r['field_ratio'] for r in rs):.2f} | {sum(r['decided'][0] for r in rs)}/{n} | "
            f"{statistics.median(z for r in rs for z in r['z'] if z is not None):.1f} | "
            f"{statistics.mean(p for r in rs for p in r['p_choice']):.3f} ({1 / rs[0]['candidates']:.3f}) | "
            f"{sum(r.get('same_as_real', 0) for r in rs)}/{n} ({n / rs[0]['candidates']:.1f}) | "
            f"{statistics.mean(r['search_s'] for r in rs):.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
