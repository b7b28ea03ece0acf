"""How much `retrain_conv_backend` saves: one training step of the retrained networks, side by side.

    python benchmarks/retrain_convs.py RUN_DIR [RUN_DIR ...] [--batch 64] [--rounds 5]

For each finished run directory, builds the baseline (default kernels) and DASH's network (the run's ArchCard)
with each conv backend ("plain": PyTorch's nn.Conv as it is; "direct": dead taps cropped; "auto": cropped, then
FFT or direct measured per layer), and times one forward + backward on a batch of the task's training data.
Medians over ``--rounds`` round-robin rounds (`dashkit.timing.timed_rounds`), so that every variant sees the same
machine load. Prints, per run, seconds per step and the ratios DASH / baseline and plain / auto.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from dashkit import pipeline
from dashkit.config import RunConfig
from dashkit.supernet import ArchCard
from dashkit.timing import timed_rounds

BACKENDS = ("plain", "direct", "auto")


def _train_step(model: torch.nn.Module, x: torch.Tensor):
    model.train()

    def step() -> None:
        out = model(x)
        out.float().square().mean().backward()

    return step


def measure(run_dir: Path, batch: int, rounds: int) -> dict:
    saved = json.loads((run_dir / "config.json").read_text())
    cfg = RunConfig.from_dict(saved["config"])
    task = pipeline.resolve_task(saved["task"])
    card = ArchCard.load(run_dir / "archcard.json")
    n = min(batch, len(task.train))
    x = torch.stack([task.train[i][0] for i in range(n)])
    steps = {}
    for backend in BACKENDS:
        c = cfg.override(retrain_conv_backend=backend)
        steps[f"baseline/{backend}"] = _train_step(pipeline.build_model(task, c, None), x)
        steps[f"dash/{backend}"] = _train_step(pipeline.build_model(task, c, card), x)
    # two warm-up steps each: "auto" measures its layers in the first
    times = timed_rounds(steps, x.device, rounds=rounds, warmup=2, progress=False)
    med = {key: statistics.median(v) for key, v in times.items()}
    return {"run": str(run_dir), "task": task.name, "batch": n, "seconds": med,
            "dash_over_baseline": {b: med[f"dash/{b}"] / med[f"baseline/{b}"] for b in BACKENDS},
            "plain_over_auto": {net: med[f"{net}/plain"] / med[f"{net}/auto"] for net in ("baseline", "dash")}}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=5)
    a = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| task | batch | baseline plain / auto (s) | DASH plain / direct / auto (s) | DASH/baseline plain -> auto "
          "| DASH plain/auto |")
    print("|---|---|---|---|---|---|")
    for run_dir in a.runs:
        r = measure(run_dir, a.batch, a.rounds)
        s = r["seconds"]
        print(f"| {r['task']} | {r['batch']} | {s['baseline/plain']:.3f} / {s['baseline/auto']:.3f} | "
              f"{s['dash/plain']:.3f} / {s['dash/direct']:.3f} / {s['dash/auto']:.3f} | "
              f"{r['dash_over_baseline']['plain']:.2f} -> {r['dash_over_baseline']['auto']:.2f} | "
              f"{r['plain_over_auto']['dash']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
