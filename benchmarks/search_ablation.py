"""Search settings side by side on one task, judged on the validation split only.

    python benchmarks/search_ablation.py mnist1d --seeds 0 1 2 --out runs/ablation \\
        --variant default --variant search_arch_lr=0.5 --variant "search_scheme=bilevel search_arch_lr=0.5"

Each variant is a set of flat settings (space-separated KEY=VALUE, as ``dashkit run --set`` reads them, or ``default``
for none) applied on top of the preset. For every variant and seed it runs DASH alone (search, tuning, retraining;
no baseline: the baseline does not depend on the search settings) and prints the validation metric of the retrained
network, how far the search moved alpha, and the architecture it chose. Runs already finished in ``--out`` are read
back, not repeated, and ``--out``/TASK-ablation.json keeps the rows of earlier calls (a variant and seed run again
replaces its row).

Test metrics are not printed: this is where a search setting gets chosen, and choosing it on the test split would
make the test number a selected one. Compare with the baseline's validation metric from a full run (``dashkit show``).

How far the search got, two ways, each averaged over layers:
- preference: the chosen pair's softmax(alpha) times the number of pairs M; 1 is no preference, M certainty;
- margin: alpha of the chosen pair minus alpha of the runner-up, i.e. log(p_chosen / p_runner_up), 0 for no
  preference (`dashkit.widgets.alpha_rows` defines it). Alpha starts at 1e-3 * randn, whose top two differ by 5e-4
  on average for 9-20 pairs (7e-4 for 4): a margin of that size the random start alone could give.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import dashkit
from dashkit import widgets
from dashkit.config import parse_setting


def parse_variant(text: str) -> tuple:
    """``"search_arch_lr=0.5 search_scheme=bilevel"`` -> (its name, the typed settings); ``"default"`` -> no settings.

    The name is the settings sorted by key and joined by "-": it names the variant's run directories.
    """
    if text.strip() == "default":
        return "default", {}
    try:
        settings = dict(parse_setting(token) for token in text.split())
    except (ValueError, TypeError, KeyError) as err:
        raise SystemExit(f"--variant {text!r}: {err}")
    if not settings:
        raise SystemExit(f"--variant {text!r}: expected 'default' or KEY=VALUE [KEY=VALUE ...]")
    return "-".join(sorted(text.split())), settings


def search_reach(card) -> tuple:
    """How far the search got, averaged over layers: (preference, margin) as the module docstring defines them.

    Both come from `dashkit.widgets.alpha_rows` (0 margin for a one-pair space).
    """
    rows = widgets.alpha_rows(card)
    preference = len(card.space) * statistics.mean(r["p_chosen"] for r in rows)
    margin = statistics.mean(r["margin"] for r in rows)
    return preference, margin


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task")
    p.add_argument("--variant", action="append", required=True,
                   help="'default' or \"KEY=VALUE [KEY=VALUE ...]\"; give --variant once per variant")
    p.add_argument("--preset", default="standard")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--device", default="auto")
    a = p.parse_args(argv)
    variants = [parse_variant(v) for v in a.variant]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, settings in variants:
        for seed in a.seeds:
            t0 = time.perf_counter()
            r = dashkit.run(a.task, preset=a.preset, out=out / f"{a.task}-{name}-s{seed}", seed=seed,
                            device=a.device, baseline=False, resume=True, figures=False, verbose=False, **settings)
            preference, margin = search_reach(r.card)
            rows.append({"task": a.task, "variant": name, "seed": seed, "metric": r.metric,
                         "val": r.val_metrics["dash"], "preference": preference, "margin": margin,
                         "candidates": len(r.card.space),
                         "arch": " ".join(f"{layer.k}/{layer.d}" for layer in r.card.layers),
                         "search_s": r.times["search"], "wall_s": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
    path = out / f"{a.task}-ablation.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    ran = {(r["variant"], r["seed"]) for r in rows}
    path.write_text(json.dumps([r for r in earlier if (r["variant"], r["seed"]) not in ran] + rows, indent=2))
    print(table(rows))
    return 0


def table(rows) -> str:
    lines = [f"| variant | candidates per layer (M) | validation {rows[0]['metric']} (mean ± sd) | per seed "
             f"| preference (1 = none, M = certain) | margin | search (s) |", "|---|---|---|---|---|---|---|"]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == variant]
        vals = [r["val"] for r in rs]
        sd = f" ± {statistics.stdev(vals):.2g}" if len(vals) > 1 else ""
        lines.append(f"| {variant} | {rs[0]['candidates']} | {statistics.mean(vals):.4g}{sd} | "
                     f"{', '.join(f'{v:.4g}' for v in vals)} | {statistics.mean(r['preference'] for r in rs):.3f} | "
                     f"{statistics.mean(r['margin'] for r in rs):.2g} | "
                     f"{statistics.mean(r['search_s'] for r in rs):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
