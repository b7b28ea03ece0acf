"""What every stage shares: the task, the config and the run directory they come with, seeds, progress, warnings.

A stage (``search``, ``tune``, ``retrain``) takes ``(task, cfg, run_dir)``: a task name or ``Task``, a
``RunConfig`` and a run directory (a folder path or a ``RunDir``). The helpers here check and open those three,
and `StageContext` carries them, with the device, the stage's name, the card and the initial weights, through the
helpers of one stage.
"""
from __future__ import annotations

import functools
import inspect
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple, Union

import numpy as np
import torch

from .. import distributed
from ..config import RetrainConfig, RunConfig, SearchConfig, TuneConfig, stage_seed
from ..progress import PlainProgress, progress
from ..rundir import PathLike, RunDir

if TYPE_CHECKING:  # type hints only: the tasks package loads data modules, and the card needs the supernet
    from ..budget import StagePlan
    from ..supernet import ArchCard
    from ..tasks.base import Task

__all__ = ["StageContext", "resolve_task", "check_cfg", "run_config_dict", "open_run_dir", "as_run_dir",
           "read_run", "stage_device", "stage_done", "progress_bar", "seed_everything", "stage_seed",
           "caller_stacklevel", "RESUMABLE_KEYS"]

# config keys that may change when a run is resumed: they do not change what is computed
RESUMABLE_KEYS = ("preset", "config.device", "config.num_workers")


@dataclass(frozen=True, eq=False)  # identity: comparing two sets of initial weights means nothing
class StageContext:
    """What travels together through the helpers of one stage (an epoch, a tuning trial, the tuning queue).

    Attributes:
        task: the task being trained.
        cfg: the run's configuration.
        rd: the run directory (read-only on the ranks > 0 of a torchrun launch).
        device: where this process computes.
        stage: the stage's name as in its files: "search", "tune", "retrain", "baseline_tune" or
            "baseline_retrain".
        card: the searched architecture; None for the baseline.
        init: the initial weights that every tuning trial and the retraining start from.
    """

    task: "Task"
    cfg: RunConfig
    rd: RunDir
    device: torch.device
    stage: str
    card: Optional["ArchCard"] = None
    init: Optional[Dict[str, torch.Tensor]] = None

    @property
    def seed(self) -> int:
        """The stage's seed (`stage_seed` of the run's seed)."""
        return stage_seed(self.cfg.seed, self.stage)

    @functools.cached_property
    def plan(self) -> "StagePlan":
        """The stage's steps, epochs and batch size on this task (`dashkit.budget.stage_plan`)."""
        from ..budget import stage_plan

        return stage_plan(self.task, self.cfg, self.stage)

    @property
    def budget(self) -> Union[SearchConfig, TuneConfig, RetrainConfig]:
        """The stage's part of the config: ``cfg.search``, ``cfg.tune`` or ``cfg.retrain`` (baseline stages too)."""
        return getattr(self.cfg, self.stage.split("_")[-1])


# ------------------------------------------------------------------------------------ task, config, run dir
def resolve_task(task: Union["Task", str]) -> "Task":
    """A Task from a registered name or a Task object."""
    from ..tasks import TASKS, Task

    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        return TASKS.get(task)  # an unknown name lists the known ones
    raise TypeError(f"task = {task!r}: expected a registered task name (see dashkit.tasks.names()) or a "
                    f"dashkit.tasks.Task")


def check_cfg(cfg: Any) -> RunConfig:
    """`cfg` itself when it is a RunConfig; a TypeError otherwise."""
    if not isinstance(cfg, RunConfig):
        raise TypeError(f"cfg = {cfg!r}: expected a dashkit.config.RunConfig (e.g. make_config('smoke'))")
    return cfg


def run_config_dict(task: "Task", cfg: RunConfig, preset: Optional[str] = None,
                    budget: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What config.json holds: the task's name, summary and classes, the preset, the full config, the plan of each
    stage on this task's data (`dashkit.budget.run_plan`) and, for a run with a time budget, its record."""
    from ..budget import run_plan
    from ..tasks.base import split_digest

    data = {"task": task.name, "task_summary": task.summary(), "task_digest": split_digest(task),
            "task_info": task_record(task), "preset": preset, "config": cfg.to_dict(), "plan": run_plan(task, cfg)}
    if budget is not None:
        data["budget"] = budget
    return data


def task_record(task: "Task") -> Dict[str, Any]:
    """The task's labels as config.json records them: for classification ``classes`` (the user's labels in
    class-index order, ``task.info["classes"]``, else 0..K-1) and ``class_counts``, the training split's examples
    per class (the validation and test splits are not read here: they are read where a stage needs them); empty
    otherwise."""
    if task.kind != "classification":
        return {}
    from ..tasks.base import split_targets

    classes = list(task.info.get("classes", range(task.num_outputs)))
    counts = torch.bincount(split_targets(task.train).long(), minlength=task.num_outputs).tolist()
    return {"classes": [c.item() if hasattr(c, "item") else c for c in classes], "class_counts": counts}


def open_run_dir(out: PathLike, task: "Task", cfg: RunConfig, resume: bool = True, overwrite: bool = False,
                 preset: Optional[str] = None, budget: Optional[Dict[str, Any]] = None) -> RunDir:
    """Create or reopen the run directory for `task` and `cfg` (another config there is refused).

    Under torchrun rank 0 creates or checks it; the other ranks get a read-only view once rank 0 is done (or
    raise rank 0's error).

    Args:
        budget: a time budget's record (`dashkit.budget.plan_budget`), stored in config.json; without one, a
            folder's stored record is not compared (a stage called on its own reopens a budgeted run).
    """
    # the plan follows from the config and the task (compared through its summary): its lines would only repeat
    # the config's in a message
    ignore = RESUMABLE_KEYS + ("plan",) + (() if budget is not None else ("budget",))
    rd = distributed.on_main(_create, out, run_config_dict(task, cfg, preset, budget), overwrite=overwrite,
                             resume=resume, ignore=ignore)
    return rd if rd is not None else RunDir(out, writable=False)


def _create(out: PathLike, data: Dict[str, Any], overwrite: bool, resume: bool, ignore: Tuple[str, ...]) -> RunDir:
    """`RunDir.create`, with a clear error when a resumed run's data are not the run's own (`split_digest`): the
    same summary, other examples."""
    rd = RunDir(out)
    old: Dict[str, Any] = {}
    if (rd.path / RunDir.CONFIG).is_file() and not overwrite:
        try:
            old = rd.read_json(RunDir.CONFIG)
        except ValueError:  # a corrupt config.json: RunDir.create says so
            pass
    digest = old.get("task_digest")
    if digest is not None and digest != data["task_digest"] and old.get("task_summary") == data["task_summary"]:
        raise ValueError(f"run directory {str(rd.path)!r} was made with other data under the same task summary (data "
                         f"digest {digest}, this task's {data['task_digest']}): other examples in a split, e.g. a "
                         f"from_arrays task split with another seed, or other arrays. Build the task as the run was "
                         f"built, pass overwrite=True (--overwrite) to start afresh, or choose another folder")
    return RunDir.create(out, data, overwrite=overwrite, resume=resume, ignore=ignore, new_keys=("task_digest",))


def as_run_dir(run_dir: Union[RunDir, PathLike], task: "Task", cfg: RunConfig) -> RunDir:
    """A stage's `run_dir` argument as a RunDir: a folder path is opened (or created) for `task` and `cfg`."""
    if isinstance(run_dir, RunDir):
        if not distributed.is_main() and run_dir.writable:  # rank 0 alone writes, whoever made this RunDir
            return RunDir(run_dir.path, writable=False)
        return run_dir
    if isinstance(run_dir, (str, Path)):
        return open_run_dir(run_dir, task, cfg)
    raise TypeError(f"run_dir = {run_dir!r}: expected a folder path or a dashkit.rundir.RunDir")


def read_run(rd: RunDir, task: Union["Task", str, None] = None, resolve: bool = True
             ) -> Tuple[Dict[str, Any], RunConfig, Optional["Task"]]:
    """Read and check a run directory's config.json.

    Args:
        rd: the run directory.
        task: the Task or its registered name; default the name in config.json. It must be the run's task.
        resolve: False leaves the task unresolved (a run of an unregistered task can still be read).

    Returns:
        (config.json as a dict, the RunConfig, the Task or None when ``resolve`` is False).

    Raises:
        FileNotFoundError: the folder has no config.json.
        ValueError: config.json is not a dashkit run config, or `task` is another task than the run's.
    """
    if not rd.exists(RunDir.CONFIG):
        raise FileNotFoundError(f"{str(rd.path)!r} is not a dashkit run directory (no {RunDir.CONFIG})")
    meta = rd.read_json(RunDir.CONFIG)
    if not isinstance(meta, dict) or "config" not in meta or "task" not in meta:
        raise ValueError(f"{str(rd.file(RunDir.CONFIG))!r} is not a dashkit run config (it needs 'task' and "
                         f"'config')")
    cfg = RunConfig.from_dict(meta["config"])
    if not resolve:
        return meta, cfg, None
    the_task = resolve_task(meta["task"] if task is None else task)
    if the_task.name != meta["task"]:
        raise ValueError(f"task = {the_task.name!r}, but the run in {str(rd.path)!r} is for task {meta['task']!r}")
    return meta, cfg, the_task


# ------------------------------------------------------------------------------------------ process, seeds
def stage_device(cfg: RunConfig) -> torch.device:
    """This process's device; under torchrun it also joins the process group (once)."""
    return distributed.setup(cfg.device)


def stage_done(rd: RunDir, stage: str, files: Tuple[str, ...] = ()) -> bool:
    """Whether a stage is finished, as rank 0 sees it (rank 0 writes the markers, so every rank agrees)."""
    return distributed.main_decides(rd.is_done(stage, files))


def progress_bar(**kwargs: Any) -> Any:
    """A progress display on rank 0; a silent one on the other ranks (one set of lines per run)."""
    if distributed.is_main():
        return progress(**kwargs)
    return PlainProgress(total=kwargs.get("total"), initial=kwargs.get("initial", 0), silent=True)


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's `random` from one int."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def caller_stacklevel() -> int:
    """The ``stacklevel`` for a warning raised in dashkit that names the first frame outside the dashkit package."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = inspect.currentframe(), 0
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return max(level, 1)  # this helper's frame is level 0 and the warn call's frame is level 1
