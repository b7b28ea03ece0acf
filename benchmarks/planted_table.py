"""The planted-architecture tasks' candidate table: is the planted (k, d) the best one, training each alone?

    python benchmarks/planted_table.py [--tasks planted1d planted2d] [--seeds 0 1 2]

For every searched layer of each task and every (k, d) of the task's space, the task's default backbone is
trained alone with that layer set to (k, d) and every other layer at its planted pair
(``dashkit.tasks.planted.candidate_losses``, fixed training ``CANDIDATE_TRAINING``); a cell is the validation
MSE, mean over the seeds. The planted pair is starred; "margin" is the runner-up's loss over the planted one's.
"""
from __future__ import annotations

import argparse
import time

import torch

import dashkit.tasks as tasks
from dashkit.tasks import planted


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=["planted1d", "planted2d"], choices=["planted1d", "planted2d"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    a = p.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s); validation MSE, mean over seeds "
          f"{a.seeds}; * planted; margin = runner-up / planted")
    for name in a.tasks:
        task = tasks.get(name)
        settings = planted.CANDIDATE_TRAINING[name]
        t0 = time.perf_counter()
        table = planted.candidate_losses(task, seeds=a.seeds, **settings)
        seconds = time.perf_counter() - t0
        print(f"\n{task.summary()}; noise^2 = {task.info['noise'] ** 2:.4g}")
        print(f"space K={task.defaults.kernel_sizes} x D={task.defaults.dilations}; planted {task.info['planted']}")
        print(f"each candidate: {settings}, backbone {task.defaults.backbone} {task.defaults.backbone_kwargs}; "
              f"{seconds:.0f} s")
        print(planted.format_table(task, table))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
