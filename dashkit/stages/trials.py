"""One tuning trial, and the Optuna study it is told to: what the sequential tuning and the tuning queue share.

A trial trains one configuration of DASH's hyper-parameter grid from the stage's saved initial weights for
``tune_epochs`` and reports its best validation metric to the study (rank 0 alone talks to Optuna).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Mapping, Optional, Tuple, Union

from .. import distributed
from ..budget import stage_plan
from ..config import RunConfig, TuneConfig, storage_spec
from ..rundir import RunDir
from .common import StageContext, seed_everything
from .models import build_model
from .training import evaluate, sgd, train_epoch

if TYPE_CHECKING:
    import optuna

    from ..tasks.base import Task

__all__ = ["HP_NAMES", "storage", "journal_path", "grid_space", "pruner", "study_name", "trial_key",
           "queued_grid_sampler", "open_sequential_study", "run_trial", "train_trial"]

HP_NAMES = ("lr", "dropout", "weight_decay", "momentum")  # the grid's axes, in DASH's order


# -------------------------------------------------------------------------------------------- the study
def storage(spec: Optional[str], rd: RunDir) -> Union[None, str, "optuna.storages.JournalStorage"]:
    """The Optuna storage for a ``tune_storage`` value: None (in memory), a journal file or a database URL."""
    kind, target = storage_spec(spec)
    if kind == "memory":
        return None
    if kind == "url":  # a database URL, e.g. postgresql://...
        return target
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = journal_path(target, rd)
    path.parent.mkdir(parents=True, exist_ok=True)
    _repair_journal(path)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def journal_path(target: str, rd: RunDir) -> Path:
    """A journal file's path; a relative one is inside the run directory."""
    path = Path(target)
    return path if path.is_absolute() else rd.path / path


def _repair_journal(path: Path) -> None:
    """Cut a journal's last line when a killed process left it half written.

    Optuna appends one JSON line per operation; a line without its newline can only be the torn end of a write
    that never finished, and the next append would glue onto it and make the whole journal unreadable.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return
    from optuna.storages.journal import JournalFileSymlinkLock

    lock = JournalFileSymlinkLock(str(path))  # the lock Optuna's own appends take
    while not lock.acquire():
        time.sleep(0.01)
    try:
        with open(path, "rb+") as f:
            data = f.read()
            if data.endswith(b"\n"):
                return
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())
    finally:
        lock.release()


def grid_space(tc: TuneConfig) -> Dict[str, list]:
    """The grid's values per hyper-parameter, as Optuna's GridSampler takes them."""
    return {"lr": list(tc.lrs), "dropout": list(tc.dropouts), "weight_decay": list(tc.weight_decays),
            "momentum": list(tc.momentums)}


def pruner(tc: TuneConfig, epochs: int) -> "optuna.pruners.BasePruner":
    """``tune_pruner``: a median pruner on the per-epoch validation metric (after a quarter of a trial's `epochs`),
    or none."""
    import optuna

    return (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, epochs // 4))
            if tc.pruner == "median" else optuna.pruners.NopPruner())


def study_name(task: "Task", cfg: RunConfig, stage: str) -> str:
    """Unique per task, stage and config: a shared study database never mixes two different runs."""
    data = {k: v for k, v in cfg.to_dict().items() if k not in ("device", "num_workers")}
    digest = hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
    return f"{task.name}-{stage}-seed{cfg.seed}-{digest}"


def trial_key(params: Mapping[str, Any]) -> Tuple[float, ...]:
    """A configuration as a tuple of floats (lr, dropout, weight_decay, momentum): a dict key."""
    return tuple(float(params[k]) for k in HP_NAMES)


def queued_grid_sampler(space: Dict[str, list], seed: int) -> "optuna.samplers.GridSampler":
    """Optuna's GridSampler for a grid whose trials dashkit enqueues itself, in DASH's lr-block order.

    Enqueued trials carry no grid id, and GridSampler.after_trial looks one up when a single grid point is left
    (a KeyError, e.g. for a one-point grid); dashkit decides itself when the grid is done, so that step is skipped
    for enqueued trials.
    """
    import optuna

    class QueuedGridSampler(optuna.samplers.GridSampler):
        def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
            if "grid_id" in trial.system_attrs:
                super().after_trial(study, trial, state, values)

    return QueuedGridSampler(space, seed=seed)


def open_sequential_study(task: "Task", cfg: RunConfig, rd: RunDir, stage: str
                          ) -> Tuple[Optional["optuna.Study"], Dict[Tuple, Tuple]]:
    """The study (on rank 0) and the trials it finished before an interruption: {key: (state, value)}."""
    import optuna
    from optuna.trial import TrialState

    if not distributed.is_main():
        return None, {}
    tc = cfg.tune
    study = optuna.create_study(storage=storage(tc.storage, rd), study_name=study_name(task, cfg, stage),
                                sampler=queued_grid_sampler(grid_space(tc), cfg.seed),
                                pruner=pruner(tc, stage_plan(task, cfg, "tune").epochs), direction="minimize",
                                load_if_exists=True)
    finished = {trial_key(t.params): (t.state, t.value) for t in study.trials  # not the abandoned ones (no params)
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) and all(k in t.params
                                                                                                for k in HP_NAMES)}
    return study, finished


# -------------------------------------------------------------------------------------------- one trial
def run_trial(study: Optional["optuna.Study"], params: Dict[str, float], space: Dict[str, list],
              ctx: StageContext) -> Tuple[Any, Optional[float]]:
    """Ask the study for ``params`` (DASH's order, not the sampler's), train it and tell the result.

    `study` is None on the ranks > 0 of a torchrun launch: rank 0 alone talks to Optuna.

    Returns:
        (the trial's TrialState, its best validation metric or None).
    """
    from optuna.trial import TrialState

    trial = None
    if study is not None:
        key = list(trial_key(params))
        study.enqueue_trial(params, user_attrs={"dashkit_key": key})  # DASH's lr-block order, not the sampler's
        trial = study.ask()
        while trial.user_attrs.get("dashkit_key") != key:  # a trial queued by a process killed before its ask
            study.tell(trial, state=TrialState.FAIL)
            trial = study.ask()
        params = {k: trial.suggest_categorical(k, space[k]) for k in HP_NAMES}
    return train_trial(study, trial, params, ctx)


def train_trial(study: Optional["optuna.Study"], trial: Optional["optuna.trial.Trial"], hp: Dict[str, float],
                ctx: StageContext) -> Tuple[Any, Optional[float]]:
    """Train ``hp`` from ``ctx.init`` for the tuning plan's steps and tell the study; returns (state, best validation
    metric).

    A diverging configuration ends as a failed trial (not a failed run), a pruned one as pruned.
    """
    import optuna
    from optuna.trial import TrialState

    task, cfg, device = ctx.task, ctx.cfg, ctx.device
    tc, rc = cfg.tune, cfg.retrain
    seed_everything(ctx.seed)  # the same batches and dropout draws for every configuration
    model = build_model(task, cfg, ctx.card, dropout=hp["dropout"])
    model.load_state_dict(ctx.init)
    model.to(device)
    net = distributed.wrap(model, device)
    opt = sgd(model.parameters(), hp["lr"], hp["momentum"], rc.nesterov, hp["weight_decay"])
    best = math.inf

    def tell(state: TrialState, value: Optional[float], result: str) -> None:
        if trial is not None:
            trial.set_user_attr("dashkit_result", result)  # marks a result, as opposed to a trial abandoned
            study.tell(trial, value if state == TrialState.COMPLETE else None,
                       state=None if state == TrialState.COMPLETE else state)

    try:
        for epoch in range(ctx.plan.epochs):
            train_epoch(ctx, model, net, opt, epoch, hp["lr"])
            value, _ = evaluate(model, task.val, task, device, 2 * tc.batch_size, cfg.num_workers)
            best = min(best, value)
            prune = False
            if trial is not None:
                trial.report(value, epoch)
                prune = trial.should_prune()
            if distributed.main_decides(prune):
                raise optuna.TrialPruned()
    except optuna.TrialPruned:
        tell(TrialState.PRUNED, None, "pruned")
        return TrialState.PRUNED, None
    except FloatingPointError:  # a diverging configuration is a bad configuration, not a broken run
        tell(TrialState.FAIL, None, "diverged")
        return TrialState.FAIL, None
    tell(TrialState.COMPLETE, best, "complete")
    return TrialState.COMPLETE, best

