"""The tune stage: DASH's hyper-parameter grid on the discrete network, chosen on the validation split only.

The grid is walked lr block by lr block (`walk_lr_blocks`); each configuration is one trial
(`dashkit.stages.trials`), run here one after the other or, with ``tune_parallel=True``, taken from the tuning
queue (`dashkit.stages.queue`) by this process and any number of workers. On a validation split too small to rank
configurations, a trial is scored by k-fold cross-validation over train + val (``tune_small_val="cv"``), or the
tuning is skipped (``"skip"``).
"""
from __future__ import annotations

import dataclasses
import math
import statistics
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

__all__ = ["tune", "tuning_decided", "against_defaults", "walk_lr_blocks", "stage_names", "retrain_hparams",
           "UNDECIDED_MARGIN", "DEFAULTS_MARGIN_SE", "TuningUndecidedWarning", "SmallValidationWarning"]

# the best tuning trial must beat the input-ignoring guess by this share of it to count as a decision
UNDECIDED_MARGIN = 0.02
# a cross-validated tuning's best configuration must beat the retrain_* defaults, fold by fold, by more than this
# many standard errors of the paired differences to replace them
DEFAULTS_MARGIN_SE = 2.0


class TuningUndecidedWarning(UserWarning):
    """No tuning configuration beat the input-ignoring guess on validation, or (cross-validated) the best one did not
    beat the retrain_* defaults beyond the noise of its folds: the choice among them was noise."""


class SmallValidationWarning(UserWarning):
    """The validation split is too small to rank tuning configurations or pick an epoch (``Task.too_small("val")``):
    the tuning cross-validated over train + val (``tune_small_val="cv"``) or was skipped and the retrain_*
    hyper-parameters used (``"skip"``, or "cv" when train + val cannot fill the folds); the retraining keeps its
    last epoch."""


def tuning_decided(best_value: float, chance: Optional[float], margin: float = UNDECIDED_MARGIN) -> bool:
    """Whether a tuning's best validation metric (lower is better) beat the chance level by more than ``margin``.

    ``chance`` is the metric of the best input-ignoring guess (``Task.chance_metric("val")``: for regression, the
    split's mean); None (dense tasks, which have no such level) counts as decided. When every configuration is still
    within ``margin * |chance|`` of it, none has learned anything measurable in the tuning budget, and their order
    is noise.
    """
    if chance is None or not math.isfinite(chance):
        return True
    return best_value < chance - margin * abs(chance)


def against_defaults(default_folds: List[float], best_folds: List[float], margin_se: float = DEFAULTS_MARGIN_SE
                     ) -> Dict[str, Any]:
    """Whether a cross-validated tuning's best configuration beat the retrain_* defaults beyond the folds' noise.

    Both were scored on the same k folds (lower is better), so the comparison is paired: d_i = default_i - best_i,
    the gain is their mean and its standard error sd(d) / sqrt(k). The best configuration replaces the defaults only
    when the gain is positive and larger than ``margin_se`` standard errors (about a one-sided 5% t-test at k = 5,
    t_4 = 2.13). With five folds of a few dozen examples, a configuration that merely ranks first is usually one
    fold's luck.

    Returns:
        ``{"gain", "se", "folds", "margin_se", "beats_defaults"}``.

    Example:
        >>> against_defaults([30.0, 30.0, 40.0], [25.0, 35.0, 30.0])["beats_defaults"]
        False
    """
    if len(default_folds) != len(best_folds) or not default_folds:
        raise ValueError(f"default_folds ({len(default_folds)} values) and best_folds ({len(best_folds)}) must be "
                         f"the same, non-empty number of folds")
    diffs = [float(a) - float(b) for a, b in zip(default_folds, best_folds)]
    k = len(diffs)
    gain = math.fsum(diffs) / k
    se = statistics.stdev(diffs) / math.sqrt(k) if k > 1 else math.inf
    return {"gain": gain, "se": se, "folds": k, "margin_se": margin_se,
            "beats_defaults": bool(gain > 0 and gain > margin_se * se)}


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
    hyper-parameters are used instead of the noisy best. A cross-validated tuning must also beat the retrain_*
    defaults (a configuration of the grid) fold by fold by more than `DEFAULTS_MARGIN_SE` standard errors
    (`against_defaults`); otherwise the defaults are used and a `TuningUndecidedWarning` says so, giving the gain
    and its error (``"vs_defaults"`` in the stage's JSON; ``tune_undecided="best"`` keeps the best anyway).

    Args:
        card: the ArchCard to tune; None tunes the baseline (default kernels).

    Returns:
        The chosen ``{"lr", "dropout", "weight_decay", "momentum"}``; also written to ``tune.json`` (or
        ``baseline_tune.json``) as "best", with the best-scoring trial ("best_trial", "best_val"), the chance
        level ("chance_val"), whether the tuning decided ("decided"), why it was skipped ("skipped", or None), how
        the trials were scored ("scored_by": "val" or "cv", with "folds", "fold_sizes" and "folds_digest") and
        every trial.

    A validation split too small to rank configurations (``task.too_small("val")``: fewer than 30 examples, or
    fewer than 5 of a class) cannot decide among them. With ``tune_small_val="skip"`` (the default) the tuning is
    skipped and the retrain_* hyper-parameters used. With ``tune_small_val="cv"`` each configuration is scored by
    k-fold cross-validation (``tune_cv_folds``, 5; stratified by class for classification) over train + val pooled,
    the same folds for every configuration (`dashkit.stages.trials.cv_folds`): trained on k - 1 folds with a normal
    trial's steps, measured on the held-out one at the last epoch; the trial's value is the mean over the folds,
    and its record says ``"scored_by": "cv"`` with the ``"folds"``, ``"fold_values"`` and their
    ``"sd"``. The decided rule compares that mean with the chance level of train + val. It costs k times the
    tuning's training (a time budget counts it: `dashkit.budget.plan_budget`). When train + val cannot fill k folds
    (a class with fewer than k examples), the tuning is skipped as with "skip". A `SmallValidationWarning` says
    which, giving the split's size.
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
    mode, folds, why = trials.tuning_scoring(task, cfg)
    if mode == "skip":
        return _skip_small_val(task, cfg, rd, stage, why)
    if mode == "cv" and distributed.is_main():
        pool = len(trials.cv_pool(task))
        warnings.warn(f"{stage}: {_val_note(task)}; each configuration is scored by {len(folds)}-fold "
                      f"cross-validation over train + val ({pool} examples) instead, at {len(folds)} times the "
                      f"tuning's training (tune_small_val='cv'; 'skip' skips the tuning)", SmallValidationWarning,
                      stacklevel=caller_stacklevel())
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
    where = "on validation"
    if mode == "cv":  # the chance level of the data the folds are cut from
        chance = dataclasses.replace(task, val=trials.cv_pool(task)).chance_metric("val")
        where = f"in {len(folds)}-fold cross-validation"
    else:
        chance = task.chance_metric("val")
    decided = tuning_decided(best_value, chance)
    tried = _scored(tried, mode, folds, study)
    defaults = retrain_hparams(cfg)
    vs_defaults, beats = None, True
    if mode == "cv":  # rank 0 alone holds the folds' values (the study); every rank must choose alike
        vs_defaults = _vs_defaults(tried, best, defaults) if distributed.is_main() else None
        beats = distributed.main_decides(vs_defaults is None or vs_defaults["beats_defaults"])
    chosen = best if (decided and beats) or tc.undecided == "best" else defaults
    if not decided and distributed.is_main():
        then = ("kept anyway (tune_undecided='best')" if tc.undecided == "best" else
                f"not used: retraining with the retrain_* hyper-parameters {chosen} (tune_undecided="
                f"'retrain_defaults')")
        warnings.warn(f"{stage}: no configuration beat the input-ignoring guess {where} ({task.metric_name} "
                      f"{best_value:.4g} at best, chance level {chance:.4g}), so their order is noise; the best one, "
                      f"{best}, is {then}. Give every configuration more steps (tune_steps) for a tuning that "
                      f"decides.", TuningUndecidedWarning, stacklevel=caller_stacklevel())
    elif not beats and distributed.is_main():
        then = ("kept anyway (tune_undecided='best')" if tc.undecided == "best" else
                "not used: retraining with the retrain_* hyper-parameters (tune_undecided='retrain_defaults')")
        warnings.warn(f"{stage}: the best configuration {best} beat the retrain_* hyper-parameters {defaults} by "
                      f"{vs_defaults['gain']:.3g} {task.metric_name} on average over {vs_defaults['folds']} folds, "
                      f"within {DEFAULTS_MARGIN_SE:g} standard errors of the paired fold differences "
                      f"(se {vs_defaults['se']:.3g}): its rank is the folds' noise, and it is {then}. More examples "
                      f"or more tuning steps (tune_steps) would let a tuning decide.", TuningUndecidedWarning,
                      stacklevel=caller_stacklevel())
    rd.write_history(stage, [{"trial": i, **t} for i, t in enumerate(tried)])
    rd.write_json(f"{stage}.json", {"best": chosen, "best_trial": best, "best_val": best_value,
                                    "metric": task.metric_name, "chance_val": chance, "decided": decided,
                                    "skipped": None, "study": trials.study_name(task, cfg, stage),
                                    "scored_by": mode, **_fold_record(folds), "vs_defaults": vs_defaults,
                                    "trials": tried})
    rd.mark_done(stage, {"seconds": time.perf_counter() - t0, "best": chosen, "best_val": best_value})
    return dict(chosen)


def _vs_defaults(tried: List[Dict[str, Any]], best: Optional[Dict[str, float]], defaults: Dict[str, float]
                 ) -> Optional[Dict[str, Any]]:
    """`against_defaults` for a cross-validated tuning's trial records, with ``"defaults"`` added; None when the
    best configuration is the defaults, or the defaults have no fold values (not in the grid, or diverged)."""
    if best is None or trials.trial_key(best) == trials.trial_key(defaults):
        return None
    folds_of = {trials.trial_key(t): t.get("fold_values") for t in tried if t["state"] == "complete"}
    default_folds, best_folds = folds_of.get(trials.trial_key(defaults)), folds_of.get(trials.trial_key(best))
    if not default_folds or not best_folds:
        return None
    return {"defaults": dict(defaults), **against_defaults(default_folds, best_folds)}


def _val_note(task: "Task") -> str:
    """Why the validation split is too small (`dashkit.tasks.base.small_split_note`): its size, per class too."""
    from ..tasks.base import small_split_note, split_targets

    per_class = None
    if task.kind == "classification":
        counts = torch.bincount(split_targets(task.val).long(), minlength=task.num_outputs)
        trained = torch.bincount(split_targets(task.train).long(), minlength=task.num_outputs) > 0
        per_class = {i: int(counts[i]) for i in range(task.num_outputs) if trained[i]}
    return small_split_note("val", len(task.val), per_class) or "the validation split is too small"


def _fold_record(folds: Optional[List[List[int]]]) -> Dict[str, Any]:
    """tune.json's description of the folds: their number, sizes and a digest of their indices (None without)."""
    import hashlib

    if folds is None:
        return {"folds": None}
    digest = hashlib.sha1(repr([list(f) for f in folds]).encode()).hexdigest()[:12]
    return {"folds": len(folds), "fold_sizes": [len(f) for f in folds], "folds_digest": digest}


def _scored(tried: List[Dict[str, Any]], mode: str, folds: Optional[List[List[int]]],
            study: Optional["optuna.Study"]) -> List[Dict[str, Any]]:
    """The trial records with how each was scored: ``"scored_by": "val"``, or ``"cv"`` with the number of
    ``"folds"``, the ``"fold_values"`` (stored with the study's trial) and their sample ``"sd"``."""
    if mode != "cv":
        return [{**t, "scored_by": "val"} for t in tried]
    stored: Dict[Tuple, List[float]] = {}
    for t in (study.trials if study is not None else []):  # the completed ones; a resumed run's earlier ones too
        values = t.user_attrs.get("dashkit_folds")
        if values is not None and all(k in t.params for k in trials.HP_NAMES):
            stored[trials.trial_key(t.params)] = [float(v) for v in values]
    out = []
    for t in tried:
        values = stored.get(trials.trial_key(t)) if t["state"] == "complete" else None
        sd = statistics.stdev(values) if values is not None and len(values) > 1 else None
        out.append({**t, "scored_by": "cv", "folds": len(folds), "fold_values": values, "sd": sd})
    return out


def _skip_small_val(task: "Task", cfg: RunConfig, rd: RunDir, stage: str, why: Optional[str] = None
                    ) -> Dict[str, float]:
    """No tuning on a validation split too small to rank configurations: the retrain_* hyper-parameters, a
    `SmallValidationWarning` and ``"skipped"`` in the stage's JSON say so. ``why``: why cross-validation could not
    stand in (``tune_small_val="cv"``), or None (``"skip"``)."""
    chosen = retrain_hparams(cfg)
    note = _val_note(task)
    how = ("tune_small_val='skip'; 'cv' cross-validates over train + val, 'tune' tunes anyway" if why is None else
           f"tune_small_val='cv' could not cross-validate instead: {why}")
    reason = f"{stage}: skipped, {note}; retraining with the retrain_* hyper-parameters {chosen} ({how})"
    if distributed.is_main():
        warnings.warn(reason, SmallValidationWarning, stacklevel=caller_stacklevel())
    rd.write_history(stage, [])
    rd.write_json(f"{stage}.json", {"best": chosen, "best_trial": None, "best_val": None, "metric": task.metric_name,
                                    "chance_val": task.chance_metric("val"), "decided": False, "skipped": reason,
                                    "scored_by": None, "folds": None, "trials": []})
    rd.mark_done(stage, {"seconds": 0.0, "best": chosen, "best_val": None, "skipped": True})
    return dict(chosen)


def _trier(study: Optional["optuna.Study"], lookup: Dict[Tuple, Tuple], ctx: StageContext, sequential: bool
           ) -> Tuple[Callable[[Dict[str, float]], Tuple[str, Optional[float]]], Any]:
    """(``try_config`` for `walk_lr_blocks`, its progress bar): a stored result (rank 0's, sent to every rank),
    or, in a sequential tuning, a new trial."""
    from optuna.trial import TrialState

    tc = ctx.cfg.tune
    total = tc.n_configs()
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
    best of the earlier blocks; at most ``n_trials`` configurations are tried, and when that cap cuts the grid
    (e.g. a time budget's), a block is also left once the configurations left to try are only enough for one of
    each later block: every learning rate is tried when the cap allows one configuration per lr. A configuration
    not tried for the cap is not listed.

    Args:
        tc: the TuneConfig.
        try_config: ``params -> (state, validation metric or None)``.

    Returns:
        (every configuration with its state and value, the best configuration or None, its value).
    """
    grid = tc.grid()
    budget = tc.n_configs()
    tried_configs: List[Dict[str, Any]] = []
    best, best_value, tried = None, math.inf, 0
    for b, lr in enumerate(tc.lrs):
        before, improved, misses, in_block = best_value, False, 0, 0
        reserve = len(tc.lrs) - 1 - b if budget < len(grid) else 0  # one configuration for each later block
        for params in (p for p in grid if p["lr"] == lr):
            if tried >= budget:
                return tried_configs, best, best_value
            if in_block and tried >= budget - reserve:  # the later blocks' turn
                break
            if tc.lr_block_patience and math.isfinite(before) and not improved and misses >= tc.lr_block_patience:
                tried_configs.append({**params, "value": None, "state": "skipped", "seconds": 0.0})
                continue
            t0 = time.perf_counter()
            state, value = try_config(params)
            tried, in_block = tried + 1, in_block + 1
            tried_configs.append({**params, "value": value, "state": state,
                                  "seconds": round(time.perf_counter() - t0, 3)})
            if value is not None and value < best_value:
                best, best_value = params, value
            if value is not None and value < before:
                improved = True
            else:
                misses += 1
    return tried_configs, best, best_value
