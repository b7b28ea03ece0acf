"""Does a time budget's cost model predict a tuning? Predicted against measured seconds, side by side in one run.

    python benchmarks/tune_costs.py RUN_DIR [RUN_DIR ...] [--steps 100] [--configs 2]

For each run directory (its config.json names a registered task, or a UCR/UEA dataset of `benchmarks/ucr.py`,
which needs ``aeon``), the searched network is its ``archcard.json``. On the same machine, in one process: the
step costs a budget measures (`dashkit.stages.costs.measure_costs`, DASH's network costed as a typical
architecture of the space), the searched network's ratios to that typical one (`measure_chosen`), and then DASH's
and the baseline's tunings of ``--configs`` configurations x ``--steps`` steps, as a run with
``tune_small_val="cv"`` makes them (k-fold cross-validated on a small validation split), timed. Prints, per
network, the tuning's seconds against the cost model's prediction with the typical costs (what a plan made before
the search assumes) and with the searched network's (what the re-plan after the search uses). A busy machine moves
every number alike; the ratios are what to read.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Dict

import torch

from dashkit import budget as B
from dashkit import pipeline
from dashkit.config import make_config
from dashkit.stages import costs as C
from dashkit.stages.tune import tune
from dashkit.supernet import ArchCard


def check(task: Any, card: ArchCard, steps: int = 100, configs: int = 2, seed: int = 0) -> Dict[str, Any]:
    """Predicted and measured seconds of DASH's tuning of ``card`` and of the baseline's, on ``task`` (CPU)."""
    cfg = make_config("standard", task.defaults, seed=seed, device="cpu", tune_steps=steps, tune_n_trials=configs,
                      tune_small_val="cv")  # a tuning that trains (the default skips it on a too-small split)
    dev = torch.device("cpu")
    typical = C.measure_costs(task, cfg, dev, figures=False)
    ratios = C.measure_chosen(task, cfg, card, dev)
    searched = {**typical, "dash_step": typical["dash_step"] * ratios["step"],
                "dash_eval": typical["dash_eval"] * ratios["eval"]}
    folds = B.tuning_folds(task, cfg)
    per_pass = {s: B.stage_plan(task, cfg, s).batches_per_pass for s in ("search", "tune", "retrain")}

    def predicted(costs: Dict[str, float], net: str) -> float:
        return B.tune_seconds(costs, net, steps, per_pass, configs=configs, folds=folds)

    out: Dict[str, Any] = {"task": task.name, "folds": folds, "steps": steps, "configs": configs,
                           "step_ratio": ratios["step"], "eval_ratio": ratios["eval"]}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for net, which in (("dash", card), ("baseline", None)):
            t0 = time.perf_counter()
            tune(task, cfg, Path(tmp) / "run", which)
            out[net] = {"seconds": time.perf_counter() - t0, "typical": predicted(typical, net),
                        "searched": predicted(searched, net)}
    return out


def load_task(run_dir: Path, seed: int = 0) -> Any:
    """The run's task: registered by name, else a UCR/UEA dataset loaded as `benchmarks/ucr.py` loads it."""
    import dashkit

    name = json.loads((run_dir / "config.json").read_text())["task"]
    if name in dashkit.tasks.names():
        return pipeline.resolve_task(name)
    sys.path.insert(0, str(Path(__file__).parent))
    import ucr

    x_train, y_train, x_test, y_test = ucr.load(name)
    return dashkit.tasks.from_arrays(x_train, y_train, x_test=x_test, y_test=y_test, name=name, seed=seed)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--configs", type=int, default=2)
    a = p.parse_args(argv)
    print("| run | folds | searched / typical step | network | tuning s | predicted, typical costs | ratio | "
          "predicted, searched costs | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for run in a.runs:
        r = check(load_task(run), ArchCard.load(run / "archcard.json"), a.steps, a.configs)
        for net in ("dash", "baseline"):
            m = r[net]
            print(f"| {run.name} | {r['folds']} | {r['step_ratio']:.2f} | {net} | {m['seconds']:.1f} | "
                  f"{m['typical']:.1f} | {m['seconds'] / m['typical']:.2f} | {m['searched']:.1f} | "
                  f"{m['seconds'] / m['searched']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
