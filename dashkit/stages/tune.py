"""The tune stage: DASH's hyper-parameter grid on the discrete network, chosen on the validation split only.

The grid is walked lr block by lr block (`walk_lr_blocks`); each configuration is one trial
(`dashkit.stages.trials`), run here one after the other or, with ``tune_parallel=True``, taken from the tuning
queue (`dashkit.stages.queue`) by this process and any number of workers.
"""
from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

import torch

from .. import distributed
from ..config import RunConfig, TuneConfig
from ..progress import PlainProgress
from ..rundir import PathLike, RunDir
from . import trials
from .common import StageContext, as_run_dir, caller_stacklevel, check_cfg, progress_bar, resolve_task, \
    stage_device, stage_done
from .models import initial_state
from .queue import open_queue, queue_results, work_through_queue
from .training import NonFiniteLossError

if TYPE_CHECKING:
    import optuna

    from ..supernet import ArchCard
    from ..tasks.base import Task

__all__ = ["tune", "tuning_decided", "walk_lr_blocks", "stage_names", "retrain_hparams", "UNDECIDED_MARGIN",
           "TuningUndecidedWarning", "SmallValidationWarning"]

# the best tuning trial must beat the input-ignoring guess by this share of it to count as a decision
UNDECIDED_MARGIN = 0.02


class TuningUndecidedWarning(UserWarning):
    """No tuning configuration beat the input-ignoring guess on validation: the choice among them was noise."""


class SmallValidationWarning(UserWarning):
    """The validation split is too small to rank tuning configurations (``Task.too_small("val")``): tuning was
    skipped and the retrain_* hyper-parameters used (``tune_small_val="skip"``)."""


def tuning_decided(best_value: float, chance: Optional[float], margin: float = UNDECIDED_MARGIN) -> bool:
    """Whether a tuning's best validation metric (lower is better) beat the chance level by more than ``margin``.

    ``chance`` is the metric of the best input-ignoring guess (``Task.chance_metric("val")``); None (regression and
    dense tasks, which have no such level) counts as decided. When every configuration is still within
    ``margin * |chance|`` of it, none has learned anything measurable in the tuning budget, and their order is noise.
    """
    if chance is None or not math.isfinite(chance):
        return True
    return best_value < chance - margin * abs(chance)


def stage_names(card: Optional["ArchCard"]) -> Tuple[str, str, str]:
    """(model name, tune stage, retrain stage): DASH's network, or the baseline when `card` is None."""
    if card is None:
        return "baseline", "baseline_tune", "baseline_retrain"
    return "dash", "tune", "retrain"


def retrain_hparams(cfg: RunConfig) -> Dict[str, float]:
    """The configured retrain_* hyper-parameters (what is used when tuning is off or undecided)."""
    rc = cfg.retrain
    return {"lr": rc.lr, "dropout": rc.dropout, "weight_decay": rc.weight_decay, "momentum": rc.momentum}


def tune(task: Union["Task", str], cfg: RunConfig, run_dir: Union[RunDir, PathLike],
         card: Optional["ArchCard"] = None) -> Dict[str, float]:
    """DASH's hyper-parameter grid on the discrete network, selected on the validation split only.

    Every configuration starts from the same saved initial weights and sees the same batches. Configurations
    are tried lr block by lr block (DASH's order); a block is left early when its first
    ``tune_lr_block_patience`` configurations do not beat the best of the earlier blocks. Trials run through an
    Optuna study (GridSampler over the grid, a MedianPruner on the per-epoch validation metric, storage from
    ``tune_storage``: with a journal file, a resumed tuning keeps its finished trials).

    With ``tune_parallel=True`` the whole grid is queued in the shared study instead, and this process and any
    number of ``dashkit tune-worker`` processes take configurations from the queue, each exactly once; the choice
    then replays the lr-block walk over the stored values, so it is the one a sequential tuning makes (with
    ``tune_pruner="none"``; a median pruner sees trials in another order when they run in parallel).

    When no configuration beats the input-ignoring guess on validation by 2% (`tuning_decided`; classification
    and multi-label tasks), the tuning has not seen any of them learn, and their order is noise: a
    `TuningUndecidedWarning` says so, and with ``tune_undecided="retrain_defaults"`` (the default) the retrain_*
    hyper-parameters are used instead of the noisy best.

    Args:
        card: the ArchCard to tune; None tunes the baseline (default kernels).

    Returns:
        The chosen ``{"lr", "dropout", "weight_decay", "momentum"}``; also written to ``tune.json`` (or
        ``baseline_tune.json``) as "best", with the best-scoring trial ("best_trial", "best_val"), the chance
        level ("chance_val"), whether the tuning decided ("decided"), why it was skipped ("skipped", or None) and
        every trial.

    A validation split too small to rank configurations (``task.too_small("val")``: fewer than 30 examples, or
    fewer than 5 of a class) skips the tuning with ``tune_small_val="skip"`` (the default): a
    `SmallValidationWarning` says so and the retrain_* hyper-parameters are used. Repeated hold-outs or k-fold over
    the training split would be the statistician's alternative; they are not done here.
    """
    import optuna

    task, cfg = resolve_task(task), check_cfg(cfg)
    rd = as_run_dir(run_dir, task, cfg)
    tc = cfg.tune
    if not tc.enabled:
        return retrain_hparams(cfg)
    name, stage, _ = stage_names(card)
    if stage_done(rd, stage, (f"{stage}.json",)):
        return dict(rd.read_json(f"{stage}.json")["best"])
    if tc.small_val == "skip" and task.too_small("val"):
        return _skip_small_val(task, cfg, rd, stage)
    device = stage_device(cfg)
    t0 = time.perf_counter()
    ctx = StageContext(task, cfg, rd, device, stage, card, initial_state(task, cfg, rd, card, name))
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would drown the progress bar
    try:
        if tc.parallel:
            study = open_queue(task, cfg, rd, stage) if distributed.is_main() else None
            work_through_queue(study, ctx, wait_for_others=True)
            lookup = queue_results(study, tc) if distributed.is_main() else {}
        else:
            study, lookup = trials.open_sequential_study(task, cfg, rd, stage)
        try_config, bar = _trier(study, lookup, ctx, sequential=not tc.parallel)
        tried, best, best_value = walk_lr_blocks(tc, try_config)
        bar.close()
    finally:
        optuna.logging.set_verbosity(verbosity)
    if best is None:
        raise NonFiniteLossError(f"{stage}: every configuration diverged or was pruned (the training loss became "
                                 f"NaN or infinite); try smaller learning rates (tune_lrs)")
    chance = task.chance_metric("val")
    decided = tuning_decided(best_value, chance)
    chosen = best if decided or tc.undecided == "best" else retrain_hparams(cfg)
    if not decided and distributed.is_main():
        then = ("kept anyway (tune_undecided='best')" if tc.undecided == "best" else
                f"not used: retraining with the retrain_* hyper-parameters {chosen} (tune_undecided="
                f"'retrain_defaults')")
        warnings.warn(f"{stage}: no configuration beat the input-ignoring guess on validation ({task.metric_name} "
                      f"{best_value:.4g} at best, chance level {chance:.4g}), so their order is noise; the best one, "
                      f"{best}, is {then}. Give every configuration more steps (tune_steps) for a tuning that "
                      f"decides.", TuningUndecidedWarning, stacklevel=caller_stacklevel())
    rd.write_history(stage, [{"trial": i, **t} for i, t in enumerate(tried)])
    rd.write_json(f"{stage}.json", {"best": chosen, "best_trial": best, "best_val": best_value,
                                    "metric": task.metric_name, "chance_val": chance, "decided": decided,
                                    "skipped": None, "study": trials.study_name(task, cfg, stage), "trials": tried})
    rd.mark_done(stage, {"seconds": time.perf_counter() - t0, "best": chosen, "best_val": best_value})
    return dict(chosen)


def _skip_small_val(task: "Task", cfg: RunConfig, rd: RunDir, stage: str) -> Dict[str, float]:
    """No tuning on a validation split too small to rank configurations: the retrain_* hyper-parameters, a
    `SmallValidationWarning` and ``"skipped"`` in the stage's JSON say so."""
    from ..tasks.base import small_split_note, split_targets

    chosen = retrain_hparams(cfg)
    per_class = None
    if task.kind == "classification":
        counts = torch.bincount(split_targets(task.val).long(), minlength=task.num_outputs)
        trained = torch.bincount(split_targets(task.train).long(), minlength=task.num_outputs) > 0
        per_class = {i: int(counts[i]) for i in range(task.num_outputs) if trained[i]}
    note = small_split_note("val", len(task.val), per_class) or "the validation split is too small"
    reason = (f"{stage}: skipped, {note}; retraining with the retrain_* hyper-parameters {chosen} (tune_small_val="
              f"'skip'; 'tune' tunes anyway)")
    if distributed.is_main():
        warnings.warn(reason, SmallValidationWarning, stacklevel=caller_stacklevel())
    rd.write_history(stage, [])
    rd.write_json(f"{stage}.json", {"best": chosen, "best_trial": None, "best_val": None, "metric": task.metric_name,
                                    "chance_val": task.chance_metric("val"), "decided": False, "skipped": reason,
                                    "trials": []})
    rd.mark_done(stage, {"seconds": 0.0, "best": chosen, "best_val": None, "skipped": True})
    return dict(chosen)


def _trier(study: Optional["optuna.Study"], lookup: Dict[Tuple, Tuple], ctx: StageContext, sequential: bool
           ) -> Tuple[Callable[[Dict[str, float]], Tuple[str, Optional[float]]], Any]:
    """(``try_config`` for `walk_lr_blocks`, its progress bar): a stored result (rank 0's, sent to every rank),
    or, in a sequential tuning, a new trial."""
    from optuna.trial import TrialState

    tc = ctx.cfg.tune
    total = len(tc.grid()) if tc.n_trials is None else min(tc.n_trials, len(tc.grid()))
    bar = progress_bar(total=total, desc=ctx.stage) if sequential else PlainProgress(total=total, silent=True)

    def try_config(params: Dict[str, float]) -> Tuple[str, Optional[float]]:
        found = lookup.get(trials.trial_key(params)) if distributed.is_main() else None
        info = ([1.0, float(found[0].value), math.nan if found[1] is None else found[1]] if found is not None
                else [0.0, 0.0, math.nan]) if distributed.is_main() else None
        have, code, value = distributed.broadcast_floats(info, 3)
        if have:  # a trial finished before an interruption (journal storage), or by a tuning worker
            state, value = TrialState(int(code)), (None if math.isnan(value) else value)
        elif sequential:  # looked up in its module at each call, so that tests can stand in for a trial
            state, value = trials.run_trial(study, params, trials.grid_space(tc), ctx)
        else:
            raise RuntimeError(f"{ctx.stage}: the tuning queue holds no result for {params}; please report this bug")
        bar.update(1)
        return state.name.lower(), (value if state == TrialState.COMPLETE else None)

    return try_config, bar


def walk_lr_blocks(tc: TuneConfig, try_config: Callable[[Dict[str, float]], Tuple[str, Optional[float]]]
                   ) -> Tuple[List[Dict[str, Any]], Optional[Dict[str, float]], float]:
    """DASH's walk through the grid, one lr block after another.

    A block is left early when its first ``lr_block_patience`` configurations bring no improvement over the
    best of the earlier blocks; at most ``n_trials`` configurations are tried.

    Args:
        tc: the TuneConfig.
        try_config: ``params -> (state, validation metric or None)``.

    Returns:
        (every configuration with its state and value, the best configuration or None, its value).
    """
    grid = tc.grid()
    budget = len(grid) if tc.n_trials is None else min(tc.n_trials, len(grid))
    tried_configs: List[Dict[str, Any]] = []
    best, best_value, tried = None, math.inf, 0
    for lr in tc.lrs:
        before, improved, misses = best_value, False, 0
        for params in (p for p in grid if p["lr"] == lr):
            if tried >= budget:
                return tried_configs, best, best_value
            if tc.lr_block_patience and math.isfinite(before) and not improved and misses >= tc.lr_block_patience:
                tried_configs.append({**params, "value": None, "state": "skipped", "seconds": 0.0})
                continue
            t0 = time.perf_counter()
            state, value = try_config(params)
            tried += 1
            tried_configs.append({**params, "value": value, "state": state,
                                  "seconds": round(time.perf_counter() - t0, 3)})
            if value is not None and value < best_value:
                best, best_value = params, value
            if value is not None and value < before:
                improved = True
            else:
                misses += 1
    return tried_configs, best, best_value
