"""A tiny two-class task written as a module file, for tests that start the command line in other processes.

Its reads can be slowed down by DK_SLOW seconds each (set only in the processes that must take long enough for a
second process to join or for a kill to land inside a stage).
"""
from __future__ import annotations

import importlib.util
import sys
import uuid
from pathlib import Path
from typing import Any, Tuple

TASK_MODULE = '''
import os
import time

import torch
from torch.utils.data import Dataset, TensorDataset

from dashkit.tasks import Task, TaskDefaults, register


class Slow(Dataset):
    def __init__(self, ds):
        self.ds, self.delay = ds, float(os.environ.get("DK_SLOW", "0"))

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        if self.delay:
            time.sleep(self.delay)
        return self.ds[i]


def _data(n, seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 24, generator=g)
    x[torch.arange(n), 0, 12] += 1.5 * (2 * y - 1)  # a weak signal: errors stay well above 0
    return Slow(TensorDataset(x, y))


@register("{name}")
def make():
    """A tiny two-class task for tests across processes."""
    return Task(name="{name}", kind="classification", train=_data(64, 0), val=_data(33, 1), test=_data(35, 2),
                in_shape=(1, 24), num_outputs=2, metric_name="error_pct",
                defaults=TaskDefaults(backbone="resnet1d", backbone_kwargs={{"width": 2}}, kernel_sizes=(3, 5),
                                      dilations=(1, 2)))
'''


def write_task_module(folder: Path, prefix: str) -> Tuple[str, str, Any]:
    """Write the module under a unique task name and import it here as the command line's --import would.

    Returns (task name, absolute path of the module, the Task built in this process).
    """
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    path = (Path(folder) / f"{prefix}_task.py").resolve()
    path.write_text(TASK_MODULE.format(name=name))
    spec = importlib.util.spec_from_file_location(f"dashkit_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return name, str(path), module.make()


def as_flags(settings: dict) -> list:
    """Settings as the command line's KEY=VALUE words (tuples comma-separated)."""
    return [f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in settings.items()]
