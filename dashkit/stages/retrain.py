"""The retrain stage, and the baseline: train from the saved initial weights with the tuned hyper-parameters,
pick the best epoch on validation (the last one when the validation split is too small to pick), test once."""
from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

from .. import distributed
from ..config import RunConfig
from ..rundir import PathLike, RunDir
from .common import StageContext, as_run_dir, caller_stacklevel, check_cfg, progress_bar, resolve_task, \
    seed_everything, stage_device, stage_done
from .models import build_model, initial_state
from .training import evaluate, sgd, train_epoch
from .tune import SmallValidationWarning, stage_names, tune

if TYPE_CHECKING:
    from ..supernet import ArchCard
    from ..tasks.base import Task

__all__ = ["retrain", "baseline", "train_and_test", "retrain_done"]


def retrain(task: Union["Task", str], cfg: RunConfig, run_dir: Union[RunDir, PathLike],
            card: Optional["ArchCard"] = None) -> Dict[str, Any]:
    """Train the network from its saved initial weights with the tuned hyper-parameters, then test once.

    Tunes first when the tuning has not been done. The best epoch is picked on the validation split; the test
    split is read once, at the end, with the weights of that epoch (of the epochs validated: every one, or those
    `dashkit.budget.StagePlan.validates` picks under ``retrain_val_interval``; their history rows alone have
    ``val_loss`` and ``val_metric``). On a validation split too small to trust
    (``task.too_small("val")``) the best epoch would be picked by noise: the last epoch is kept instead (a fixed
    number of steps, as the tuning chose), metrics.json's entry says ``"selected_by": "last"`` (else
    ``"best_val"``), and a `SmallValidationWarning` says so.

    Args:
        card: the ArchCard to retrain; None retrains the baseline (default kernels).

    Returns:
        ``{"metric", "test", "val", "best_epoch", "selected_by", "hparams", "seconds"}``; also in metrics.json
        ("val" and "best_epoch" are those of the epoch kept).
    """
    task, cfg = resolve_task(task), check_cfg(cfg)
    rd = as_run_dir(run_dir, task, cfg)
    name, _, stage = stage_names(card)
    if retrain_done(rd, card):
        return rd.done_info(stage)
    hp = tune(task, cfg, rd, card)
    return train_and_test(task, cfg, rd, card, hp, name, stage)


def retrain_done(rd: RunDir, card: Optional["ArchCard"]) -> bool:
    """Whether the retraining of ``card``'s network (None: the baseline's) is done in ``rd``: its done marker and
    weights exist."""
    name, _, stage = stage_names(card)
    return stage_done(rd, stage, (f"{name}.safetensors",))


def train_and_test(task: "Task", cfg: RunConfig, rd: RunDir, card: Optional["ArchCard"], hp: Dict[str, float],
                   name: str, stage: str) -> Dict[str, Any]:
    """The retraining itself, for any network and hyper-parameters: DASH's, the baseline's and the random control's
    (`dashkit.stages.control`) networks are all trained by this one function.

    Args:
        card: the network's ArchCard; None: the baseline.
        hp: ``{"lr", "dropout", "weight_decay", "momentum"}``.
        name: the model's name in files and metrics.json: weights ``<name>.safetensors``, initial weights
            ``init_<name>.safetensors``, ``metrics.json[name]``.
        stage: the stage's name (history, checkpoint, done marker, seed); its plan is retrain's.

    Returns:
        As `retrain`. Resumes from the stage's checkpoint; does not look at the done marker (its callers do).
    """
    rc, device = cfg.retrain, stage_device(cfg)
    last = task.too_small("val")  # an epoch picked on a too-small split is picked by noise: keep the last one
    if last and distributed.is_main():
        from .tune import _val_note

        # the same text for DASH, the baseline and the random draws: Python shows it once
        warnings.warn(f"retraining: {_val_note(task)}; the last epoch is kept (a fixed number of steps), not the "
                      f"best on validation (metrics.json: selected_by 'last')", SmallValidationWarning,
                      stacklevel=caller_stacklevel())
    t0 = time.perf_counter()
    ctx = StageContext(task, cfg, rd, device, stage, card, initial_state(task, cfg, rd, card, name))
    seed_everything(ctx.seed)
    model = build_model(task, cfg, card, dropout=hp["dropout"])
    model.load_state_dict(ctx.init)
    model.to(device)
    opt = sgd(model.parameters(), hp["lr"], hp["momentum"], rc.nesterov, hp["weight_decay"])
    rows: List[Dict[str, Any]] = []
    start, best_val, best_epoch, seconds_before = 0, math.inf, -1, 0.0
    ck = rd.load_checkpoint(stage, model, {"sgd": opt})
    if ck is not None:
        start, extra = ck[0] + 1, ck[1]
        rows, best_val, best_epoch, seconds_before = (extra["history"], extra["best_val"], extra["best_epoch"],
                                                      extra["seconds"])
    net = distributed.wrap(model, device)
    plan = ctx.plan
    bar = progress_bar(total=plan.steps, initial=plan.steps_before(start), desc=stage)
    for epoch in range(start, plan.epochs):
        t_epoch = time.perf_counter()
        train_loss = train_epoch(ctx, model, net, opt, epoch, hp["lr"], bar)
        row: Dict[str, Any] = {"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss,
                               "val_loss": None, "val_metric": None}  # None: not validated (an empty CSV cell)
        if plan.validates(epoch):  # every epoch, or spaced when a pass costs far more than a step (val_interval)
            val_metric, val_loss = evaluate(model, task.val, task, device, 2 * rc.batch_size, cfg.num_workers)
            if (epoch == plan.epochs - 1) if last else val_metric < best_val:
                best_val, best_epoch = val_metric, epoch
                rd.save_weights(f"{name}.safetensors", model.state_dict())
            row.update(val_loss=val_loss, val_metric=val_metric)
            bar.set_postfix(epoch=epoch + 1, val=val_metric)
        else:
            bar.set_postfix(epoch=epoch + 1)
        rows.append({**row, "seconds": round(time.perf_counter() - t_epoch, 3)})
        rd.write_history(stage, rows)
        rd.save_checkpoint(stage, epoch, model, {"sgd": opt},
                           extra={"history": rows, "best_val": best_val, "best_epoch": best_epoch,
                                  "seconds": seconds_before + time.perf_counter() - t0})
    bar.close()
    distributed.barrier()  # the best weights are rank 0's file
    # the one and only look at the test split: the weights of the best validation epoch (or the last one)
    model.load_state_dict(rd.load_weights(f"{name}.safetensors"))
    test_metric, test_loss = evaluate(model, task.test, task, device, 2 * rc.batch_size, cfg.num_workers)
    result = {"metric": task.metric_name, "test": test_metric, "test_loss": test_loss, "val": best_val,
              "best_epoch": best_epoch + 1, "selected_by": "last" if last else "best_val", "hparams": hp,
              "seconds": seconds_before + time.perf_counter() - t0}
    metrics = rd.read_json("metrics.json") if rd.exists("metrics.json") else {"metric": task.metric_name}
    metrics[name] = {k: result[k] for k in ("test", "val", "best_epoch", "selected_by", "hparams")}
    rd.write_json("metrics.json", metrics)
    rd.mark_done(stage, result)
    distributed.debug_dump(stage, {k: result[k] for k in ("test", "test_loss", "val", "best_epoch", "hparams")})
    return result


def baseline(task: Union["Task", str], cfg: RunConfig, run_dir: Union[RunDir, PathLike]) -> Dict[str, Any]:
    """The backbone with its default kernels, tuned and retrained on DASH's budget, tested once."""
    task, cfg = resolve_task(task), check_cfg(cfg)
    rd = as_run_dir(run_dir, task, cfg)
    tune(task, cfg, rd, None)
    return retrain(task, cfg, rd, None)
