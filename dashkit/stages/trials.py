"""One tuning trial, and the Optuna study it is told to: what the sequential tuning and the tuning queue share.

A trial trains one configuration of DASH's hyper-parameter grid from the stage's saved initial weights for
``tune_epochs`` and reports its best validation metric to the study (rank 0 alone talks to Optuna).

On a validation split too small to rank configurations (``Task.too_small("val")``) with ``tune_small_val="cv"``
(the default, "skip", does not tune there), a trial is scored by k-fold cross-validation instead
(`cross_validate`; the folds come from `dashkit.budget.tuning_scoring` and `dashkit.budget.cv_folds`, re-exported
here): train + val pooled, cut into ``tune_cv_folds`` folds (stratified by class for classification) from a
generator seeded by the run's seed alone, so every configuration, the baseline's tuning and a resumed run see the
same folds. The configuration is trained k times, each time on k - 1 folds with the steps of a normal trial, and
its metric on the held-out fold is taken at the last epoch (the retraining on such a split keeps its last epoch
too, see `dashkit.stages.retrain`); the trial's value is the mean over the folds, and the fold values are stored
with the trial (user attribute ``dashkit_folds``). Such a trial is not pruned.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple, Union

from torch.utils.data import Subset

from .. import distributed
from ..budget import cv_folds, cv_pool, stage_plan, tuning_folds, tuning_scoring
from ..config import RunConfig, TuneConfig, storage_spec
from ..rundir import RunDir
from .common import StageContext, seed_everything
from .models import build_model
from .training import evaluate, sgd, train_epoch

if TYPE_CHECKING:
    import optuna

    from ..tasks.base import Task

__all__ = ["HP_NAMES", "storage", "journal_path", "grid_space", "pruner", "study_name", "trial_key",
           "queued_grid_sampler", "open_sequential_study", "run_trial", "train_trial", "tuning_scoring", "cv_folds",
           "cv_pool", "tuning_folds", "cross_validate"]

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
    metric), or, when the tuning cross-validates (`tuning_scoring`), (state, mean of the folds' last-epoch metrics).

    A diverging configuration ends as a failed trial (not a failed run), a pruned one as pruned.
    """
    import optuna
    from optuna.trial import TrialState

    mode, folds, _ = tuning_scoring(ctx.task, ctx.cfg)

    def tell(state: TrialState, value: Optional[float], result: str) -> None:
        if trial is not None:
            trial.set_user_attr("dashkit_result", result)  # marks a result, as opposed to a trial abandoned
            study.tell(trial, value if state == TrialState.COMPLETE else None,
                       state=None if state == TrialState.COMPLETE else state)

    try:
        if mode == "cv":
            values = cross_validate(hp, ctx, folds)
            if trial is not None:
                trial.set_user_attr("dashkit_folds", values)
            best = math.fsum(values) / len(values)
        else:
            best = _fit(hp, ctx, trial)
    except optuna.TrialPruned:
        tell(TrialState.PRUNED, None, "pruned")
        return TrialState.PRUNED, None
    except FloatingPointError:  # a diverging configuration is a bad configuration, not a broken run
        tell(TrialState.FAIL, None, "diverged")
        return TrialState.FAIL, None
    tell(TrialState.COMPLETE, best, "complete")
    return TrialState.COMPLETE, best


def _fit(hp: Dict[str, float], ctx: StageContext, trial: Optional["optuna.trial.Trial"] = None,
         every_epoch: bool = True) -> float:
    """Train ``hp`` from ``ctx.init`` on ``ctx.task.train`` for the plan's epochs; the best per-epoch metric on
    ``ctx.task.val`` (reported to ``trial``, which may prune), or with ``every_epoch=False`` the last epoch's.
    The epochs validated are every one, or those the plan picks under ``tune_val_interval``
    (`dashkit.budget.StagePlan.validates`)."""
    import optuna

    task, cfg, device = ctx.task, ctx.cfg, ctx.device
    tc, rc = cfg.tune, cfg.retrain
    seed_everything(ctx.seed)  # the same batches and dropout draws for every configuration
    model = build_model(task, cfg, ctx.card, dropout=hp["dropout"])
    model.load_state_dict(ctx.init)
    model.to(device)
    net = distributed.wrap(model, device)
    opt = sgd(model.parameters(), hp["lr"], hp["momentum"], rc.nesterov, hp["weight_decay"])
    best = math.inf
    epochs = ctx.plan.epochs
    for epoch in range(epochs):
        train_epoch(ctx, model, net, opt, epoch, hp["lr"])
        if not (ctx.plan.validates(epoch) if every_epoch else epoch == epochs - 1):
            continue
        value, _ = evaluate(model, task.val, task, device, 2 * tc.batch_size, cfg.num_workers)
        if not every_epoch:
            return value
        best = min(best, value)
        prune = False
        if trial is not None:
            trial.report(value, epoch)
            prune = trial.should_prune()
        if distributed.main_decides(prune):
            raise optuna.TrialPruned()
    return best


def cross_validate(hp: Dict[str, float], ctx: StageContext, folds: List[List[int]]) -> List[float]:
    """The metric of ``hp`` on each held-out fold, trained on the others (`cv_pool`'s indices) as a trial is: from
    ``ctx.init``, with the stage's seed and the tuning plan's steps (its epochs follow from the fold's training
    size), measured at the last epoch.

    Raises:
        FloatingPointError: a fold's training loss became NaN or infinite.
    """
    pool = cv_pool(ctx.task)
    values = []
    for i, held in enumerate(folds):
        rest = sorted(j for f, fold in enumerate(folds) if f != i for j in fold)
        fold_task = dataclasses.replace(ctx.task, train=Subset(pool, rest), val=Subset(pool, held))
        fold_ctx = StageContext(fold_task, ctx.cfg, ctx.rd, ctx.device, ctx.stage, ctx.card, ctx.init)
        values.append(_fit(hp, fold_ctx, every_epoch=False))
    return values
