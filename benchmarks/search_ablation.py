"""Search settings side by side on one task, judged on the validation split only.

    python benchmarks/search_ablation.py mnist1d --seeds 0 1 2 --out runs/ablation \\
        --variant default --variant search_arch_lr=0.5 --variant "search_scheme=bilevel search_arch_lr=0.5"

Each variant is a set of flat settings (space-separated KEY=VALUE, as ``dashkit run --set`` reads them, or ``default``
for none) applied on top of the preset. For every variant and seed it runs DASH alone (search, tuning, retraining;
no baseline: the baseline does not depend on the search settings) and prints the validation metric of the retrained
network, how far the search moved alpha, and the architecture it chose. Runs already finished in ``--out`` are read
back, not repeated, and ``--out``/TASK-ablation.json keeps the rows of earlier calls (a variant and seed run again
replaces its row).

On a planted-architecture task (``task.info["planted"]``, e.g. ``planted1d``) each row also says how many layers got
their planted (k, d): the search's unit test. ``--search-only`` runs the search alone there (no tuning or retraining,
so no validation metric): enough to score recovery, in seconds a seed.

    python benchmarks/search_ablation.py planted1d --search-only --seeds 0 1 2 3 4 --variant default

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
from dashkit.tasks.planted import found_layers


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


def stacked_field(card) -> int:
    """The receptive field of the searched layers stacked, 1 + sum d (k - 1): how far the chosen network sees."""
    return 1 + sum(layer.receptive_field - 1 for layer in card.layers)


def recovered(card, planted) -> tuple:
    """(layers whose chosen (k, d) is the planted one, layers): the search's score on a planted task."""
    found = found_layers(card, planted)
    return sum(found.values()), len(found)


def run_variant(task, settings: dict, a, seed: int, out: Path):
    """The ArchCard, validation metric (None with --search-only) and search seconds of one variant and seed."""
    if a.search_only:
        from dashkit import pipeline
        from dashkit.config import make_config
        from dashkit.rundir import RunDir

        cfg = make_config(a.preset, task.defaults, seed=seed, device=a.device, **settings)
        card = pipeline.search(task, cfg, pipeline.open_run_dir(out, task, cfg, preset=a.preset))
        return card, None, float(RunDir(out).done_info("search")["seconds"]), None
    # time_cap=False: variants are compared at the preset's own steps, never at steps a slow machine cut
    r = dashkit.run(task, preset=a.preset, out=out, seed=seed, device=a.device, baseline=False, resume=True,
                    figures=False, verbose=False, time_cap=False, **settings)
    return r.card, r.val_metrics["dash"], r.times["search"], r.val_metrics.get("random")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("task")
    p.add_argument("--variant", action="append", required=True,
                   help="'default' or \"KEY=VALUE [KEY=VALUE ...]\"; give --variant once per variant")
    p.add_argument("--preset", default="standard")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", default="runs/ablation")
    p.add_argument("--device", default="auto")
    p.add_argument("--search-only", action="store_true",
                   help="run the search alone (no validation metric): for scoring recovery on a planted task")
    a = p.parse_args(argv)
    task = dashkit.tasks.get(a.task)
    planted = task.info.get("planted")
    variants = [parse_variant(v) for v in a.variant]
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, settings in variants:
        for seed in a.seeds:
            t0 = time.perf_counter()
            kind = "search" if a.search_only else "run"
            card, val, search_s, val_random = run_variant(task, settings, a, seed, out / f"{a.task}-{name}-{kind}-s{seed}"
                                              if a.search_only else out / f"{a.task}-{name}-s{seed}")
            preference, margin = search_reach(card)
            rows.append({"task": a.task, "variant": name, "seed": seed, "metric": task.metric_name,
                         "val": val, "val_random": val_random, "preference": preference, "margin": margin,
                         "field": stacked_field(card), "decided": card.decided_count(),
                         "candidates": len(card.space),
                         "arch": " ".join(f"{layer.k}/{layer.d}" for layer in card.layers),
                         "planted": (list(recovered(card, planted)) if planted else None),
                         "search_s": search_s, "wall_s": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
    path = out / f"{a.task}-{'search-' if a.search_only else ''}ablation.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    ran = {(r["variant"], r["seed"]) for r in rows}
    path.write_text(json.dumps([r for r in earlier if (r["variant"], r["seed"]) not in ran] + rows, indent=2))
    print(table(rows))
    return 0


def table(rows) -> str:
    """A markdown table, one row per variant: means over its seeds (validation columns "–" with --search-only).

    Layers decided: searched layers that passed the decision test, over all seeds; stacked field: the range over
    seeds of 1 + sum d (k - 1) over the searched layers; random archs: the mean validation metric of the
    random-architecture control, where the variant trained one (``random_draws``).
    """
    planted = rows[0].get("planted") is not None
    head = (f"| variant | candidates per layer (M) | validation {rows[0]['metric']} (mean ± sd) | per seed "
            f"| preference (1 = none, M = certain) | margin |"
            + (" planted pairs found (layers, all seeds) | seeds with every layer found |" if planted else "")
            + " layers decided | stacked field | validation, random archs | search (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == variant]
        vals = [r["val"] for r in rs if r["val"] is not None]
        if vals:
            sd = f" ± {statistics.stdev(vals):.2g}" if len(vals) > 1 else ""
            val, per_seed = f"{statistics.mean(vals):.4g}{sd}", ", ".join(f"{v:.4g}" for v in vals)
        else:
            val, per_seed = "–", "–"
        found = ""
        if planted:
            hits, layers = sum(r["planted"][0] for r in rs), sum(r["planted"][1] for r in rs)
            found = (f" {hits}/{layers} ({hits / layers:.0%}; chance {1 / rs[0]['candidates']:.0%}) | "
                     f"{sum(r['planted'][0] == r['planted'][1] for r in rs)}/{len(rs)} |")
        decided = [r["decided"] for r in rs if r.get("decided")]
        decided = f"{sum(d[0] for d in decided)}/{sum(d[1] for d in decided)}" if decided else "–"
        fields = [r["field"] for r in rs if r.get("field") is not None]
        fields = f"{min(fields)}-{max(fields)}" if fields else "–"
        randoms = [r["val_random"] for r in rs if r.get("val_random") is not None]
        randoms = (f"{statistics.mean(randoms):.4g}" + (f" ± {statistics.stdev(randoms):.2g}" if len(randoms) > 1
                                                          else "")) if randoms else "–"
        lines.append(f"| {variant} | {rs[0]['candidates']} | {val} | {per_seed} | "
                     f"{statistics.mean(r['preference'] for r in rs):.3f} | "
                     f"{statistics.mean(r['margin'] for r in rs):.2g} |{found} {decided} | {fields} | {randoms} | "
                     f"{statistics.mean(r['search_s'] for r in rs):.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
