"""Budgets that fit the data and the clock: optimiser steps per stage, epochs derived from the data's size, and
a wall-time budget turned into steps by measuring what one step costs (the measuring is
`dashkit.stages.costs.measure_costs`; this module is the arithmetic).

**Steps.** A preset gives each stage a number of optimiser steps (``search_steps``; ``tune_steps`` per
configuration; ``retrain_steps``, which the baseline gets too), so a 40-example dataset and a 60,000-example one
both train for the same number of steps. What follows from the data (`stage_plan`):

- the batch size is the configured one, but never larger than the training split (under torchrun, rounded down
  to a multiple of the processes); the loaders drop a last partial batch, so BatchNorm never sees one example;
- batches per pass: how many such batches one shuffled pass over the training split gives;
- epochs, the unit of checkpoints, history rows, lr milestones and tuning's pruning reports::

      epochs = min(EPOCHS_MAX, ceil(steps / batches per pass)),
               raised to min(EPOCHS_MIN, ceil(steps / MIN_EPOCH_STEPS)) when below it

  and epoch ``e`` (0-based) takes ``floor((e + 1) steps / epochs) - floor(e steps / epochs)`` steps, so the steps
  add up exactly. Between the bounds an epoch is about one pass; a large dataset gets chunks of a pass (at least
  ``EPOCHS_MIN`` = 10 epochs, so the lr milestones fall where they should, unless that would leave fewer than
  ``MIN_EPOCH_STEPS`` = 4 steps per epoch), a small one several passes per epoch (at most ``EPOCHS_MAX`` = 50
  checkpoints and validation passes). Every pass is reshuffled from the epoch's seed, as one pass per epoch always
  was. E.g. 1000 steps of batch 64: 4,000 examples (62 batches a pass) get 17 epochs of about one pass; 40
  examples (one batch of 40) get 50 epochs of 20 passes; 60,000 examples get 10 epochs of a tenth of a pass.

``steps=None`` is the ``paper`` path: ``epochs`` epochs of ``batches_per_epoch`` of the batches (at most
``max_batches``), as DASH counts them. Overriding a stage's ``epochs`` (or ``batches_per_epoch``,
``max_batches``) without its ``steps`` puts that stage on this path too (see `dashkit.config.make_config`).

**Time.** ``dashkit.run(task, budget="5min")`` measures (on rank 0) a few timed steps of the three networks it
will train (the search's supernet, DASH's discrete network at the space's middle candidate, the baseline, the
random draws), one validation pass of each trained network and the files one epoch of the search and of a
retraining writes (`epoch_writes`), then shares the time left (`plan_budget`):

======================  =========================================================================================
search                  ``SEARCH_SHARE`` (40%) of the time left
tuning                  ``TUNE_SHARE`` (20%): DASH's and the baseline's grids, the same steps per configuration;
                        fewer configurations (``tune_n_trials``) when each would get fewer than
                        ``MIN_TUNE_STEPS`` steps, none (and its share to retraining) when fewer than two fit.
                        A tuning that cross-validates (a too-small validation split, ``tune_small_val="cv"``)
                        trains each configuration k times (``folds``): it gets the steps per configuration a
                        tuning without folds would, and k times fewer configurations (fewer steps only when
                        that would leave fewer than two; the lr-block walk keeps one configuration for each
                        lr when it is capped, `dashkit.stages.tune.walk_lr_blocks`)
retraining              the rest (40%): DASH's network, the baseline and the ``random_draws`` random architectures
                        (`dashkit.stages.control`), the *same* number of steps each, so the controls are fair; the
                        draws' steps are costed as drawn (the seed fixes them; their mean), DASH's as a typical
                        architecture of the space until the search has chosen. Draws that
                        would leave the retraining fewer than ``MIN_CONTROL_STEPS`` steps are dropped, with a
                        warning and a note in the record (``random_draws`` there and in the config is the count
                        kept)
======================  =========================================================================================

**Validation passes.** A tuning configuration and a retraining validate after every epoch, unless their passes
would cost more than ``VAL_SHARE`` (10%) of their steps' time (a large validation split): then a budget sets
``tune_val_interval`` / ``retrain_val_interval`` (`val_interval_for`), the stage validates ``steps // interval``
times, at least ``VAL_MIN_PASSES`` (4) and at most once an epoch, spread evenly with the last epoch always
(`val_passes`, `StagePlan.validates`), and the time saved goes to steps. The best epoch is picked among those
validated; the others' history rows have no validation values.

The time left is the budget less what was spent before the plan (building the task, measuring) and the work
after the stages (testing, figures). The plan (budget, measured costs, shares, steps) is written to config.json;
a resumed run reads it back and does not measure again.

**Re-planning.** The costs are measured once, at the start; a machine that gets busier later (another process
starts) makes every later stage slower than planned. So after the search, and after the tuning (DASH's and the
baseline's), the run compares the stage's seconds with its planned seconds (the slowdown factor ``f``) and, when
the stages left and the work after them, at ``f`` times their planned cost, would end after the budget, shrinks
them to fit the time left (`replan`): the tuning's steps per configuration (fewer configurations when each would
get fewer than ``MIN_TUNE_STEPS``, never fewer than two), and the retraining steps of DASH, the baseline and the
random draws alike, never below the planner's minimums; when even those cannot fit, they are kept and a warning
says so. The tuning gives way before the retraining: where keeping it would leave the retraining fewer than
``KEEP_RETRAIN`` (half) of its steps, it is dropped after the search (the retrain_* hyper-parameters, which a
tuning of a capped run's 20 steps a configuration rarely beats on validation anyway) and its time retrains, where
that leaves the retraining more steps. A run that is *ahead* of its plan (projected to leave more than
``GROW_SLACK`` of the budget unused, at the speed of the stage just done; after the search, never faster than
planned) gives the time left to the retraining: DASH's, the baseline's and the random draws' steps are raised
alike, so that the projected end is ``GROW_FILL`` of the budget, at most ``GROW_MAX`` times the steps they had.
Only the retraining grows (DASH's and the baseline's tunings keep equal steps), and only in the call that made
the plan (a resumed run's clock cannot tell how long the stages before it took). Each re-plan is appended to the
record's ``replans`` (the stage it followed, ``f``, the old and new steps, the projected end) and the new steps to
config.json's config, so a resumed run reads them back and does not re-plan a stage twice.

The retraining's steps are fixed once DASH's network starts them (the baseline and the random draws train as long),
so a slowdown that starts *during* the retraining is answered by the draws alone: before each draw the run
projects its end at the speed this call's retrainings ran; where it would end over ``CAP_SLACK`` times the budget,
the draws that would end it after the budget are not trained (`trim_draws`; the record's ``draws_dropped`` list,
and ``random_draws`` in config.json's config, so a resumed run keeps the count; a warning says so).
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Tuple, Union

from .backbones import ResNet1D
from .config import stage_seed

if TYPE_CHECKING:
    from torch.utils.data import ConcatDataset

    from .config import RunConfig
    from .tasks.base import Task

__all__ = ["EPOCHS_MIN", "EPOCHS_MAX", "MIN_EPOCH_STEPS", "SEARCH_SHARE", "TUNE_SHARE", "MIN_TUNE_STEPS", "StagePlan",
           "MIN_CONTROL_STEPS", "epochs_for", "stage_plan", "run_plan", "parse_budget", "plan_budget",
           "BudgetTooSmallError", "format_plan", "replan", "tuning_factor", "tune_seconds", "typical_costs",
           "stage_seconds", "batches_per_pass", "effective_batch",
           "FIGURES_SECONDS", "SETUP_SECONDS", "SEARCH_EPOCH_WRITES", "RETRAIN_EPOCH_WRITES", "epoch_writes",
           "cv_pool", "cv_folds",
           "tuning_scoring", "tuning_folds", "tuning_runs", "forecast_seconds", "PRESET_SECONDS", "LongRunWarning",
           "warn_if_long", "warn_capped", "cheaper_steps", "CAP_SLACK", "retrain_seconds", "trim_draws", "VAL_SHARE",
           "VAL_MIN_PASSES", "val_passes", "val_interval_for", "KEEP_RETRAIN"]

EPOCHS_MIN = 10  # at least this many epochs (or one per step) per stage: lr milestones, history rows, checkpoints
EPOCHS_MAX = 50  # at most this many: validation passes and checkpoints stay a small part of a stage's time
MIN_EPOCH_STEPS = 4  # EPOCHS_MIN gives way when it would leave fewer steps than this per epoch (a smoke run)
SEARCH_SHARE = 0.4
TUNE_SHARE = 0.2
MIN_TUNE_STEPS = 20  # a tuning configuration with fewer steps says little: fewer configurations instead
MIN_CONTROL_STEPS = 20  # random draws that would leave the retraining fewer steps than this are dropped
SEARCH_EPOCH_WRITES = 3  # atomic files a search epoch writes: checkpoint tensors and JSON, history
RETRAIN_EPOCH_WRITES = 4  # a retraining epoch: checkpoint tensors and JSON, history, the best weights
# (both only for costs without ``search_writes`` / ``retrain_writes``, which `measure_costs` now times: `epoch_writes`)
_STAGES = ("search", "tune", "retrain")
PRESET_SECONDS = {"standard": 300.0}  # what a preset promises a run on 2 CPU cores (smoke: seconds; paper: days)
LONG_RUN_FACTOR = 2.0  # a preset run forecast to take more than this times its promise is warned about
CAP_SLACK = 1.15  # ... and, with run(time_cap=True), one forecast over this times its promise is fit to the promise
GROW_SLACK = 0.10  # a run projected to leave more than this fraction of its budget unused grows its retraining
GROW_FILL = 0.95  # ... to end at this fraction of the budget (at the speed observed; after the search, at most 1x)
GROW_MAX = 3.0  # ... to at most this many times the retraining steps it had
KEEP_RETRAIN = 0.5  # a re-plan after the search drops the tuning rather than leave the retraining under this
# fraction of its steps (hyper-parameters tuned for a retraining it would not get; and at a capped run's 20 steps a
# configuration, the tuning rarely beats the input-ignoring guess, so the retrain defaults are what it keeps anyway)
VAL_SHARE = 0.1  # a time budget spaces the validation passes of a tuning or retraining whose passes cost far more
VAL_MIN_PASSES = 4  # than its steps to about this share of its steps' time, but keeps at least this many passes
# (with the standard milestones at 1/2 and 3/4 of the epochs: one at the end of each quarter, before each lr drop)


class LongRunWarning(UserWarning):
    """A preset's steps will take far longer on this task and machine than the preset promises."""


# ------------------------------------------------------------------------------------------ the stage plan
@dataclass(frozen=True)
class StagePlan:
    """How one stage spends its budget on one task.

    Attributes:
        stage: "search", "tune" (per configuration) or "retrain" (the baseline's too).
        steps: optimiser steps of the stage (of one configuration, for tuning).
        epochs: epochs (checkpoints, history rows, validation passes, lr milestones).
        batch_size: examples per step (over all processes).
        batches_per_pass: batches in one shuffled pass over the training split.
        per_epoch: None when the steps are shared out over the epochs by `epochs_for`'s rule; a fixed number of
            steps per epoch on the epochs path (``steps=None``).
        steps_asked: the steps configured, where ``search_max_passes`` cut them to ``steps``; else None.
        max_passes: the ``search_max_passes`` that cut them; else None.
        val_interval: ``tune_val_interval`` / ``retrain_val_interval``: None, a validation pass after every epoch;
            else about one every this many steps (`val_passes`, `validates`).
    """

    stage: str
    steps: int
    epochs: int
    batch_size: int
    batches_per_pass: int
    per_epoch: Optional[int] = None
    steps_asked: Optional[int] = None
    max_passes: Optional[float] = None
    val_interval: Optional[int] = None

    @property
    def val_passes(self) -> int:
        """Validation passes of the stage (a tuning configuration's or a retraining's): `val_passes`."""
        return val_passes(self.steps, self.epochs, self.val_interval)

    def validates(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (0-based) ends with a validation pass: every epoch, or `val_passes` of them
        spread evenly over the stage, the last one always."""
        n = self.val_passes
        return (epoch + 1) * n // self.epochs > epoch * n // self.epochs

    def steps_in_epoch(self, epoch: int) -> int:
        """Steps of epoch ``epoch`` (0-based)."""
        if self.per_epoch is not None:
            return self.per_epoch
        return (epoch + 1) * self.steps // self.epochs - epoch * self.steps // self.epochs

    def steps_before(self, epoch: int) -> int:
        """Steps of the epochs before ``epoch``: where a resumed stage's progress bar starts."""
        if self.per_epoch is not None:
            return epoch * self.per_epoch
        return epoch * self.steps // self.epochs

    @property
    def passes(self) -> float:
        """Passes over the training split (fractions of one for a large split)."""
        return self.steps / self.batches_per_pass

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: steps, epochs, steps per epoch (min-max), batch size, batches per pass, passes."""
        per = sorted({self.steps_in_epoch(e) for e in range(self.epochs)})
        return {"steps": self.steps, "epochs": self.epochs,
                "steps_per_epoch": per[0] if len(per) == 1 else [per[0], per[-1]], "batch_size": self.batch_size,
                "batches_per_pass": self.batches_per_pass, "passes": round(self.passes, 2),
                "counted_in": "epochs" if self.per_epoch is not None else "steps",
                **({"steps_asked": self.steps_asked, "max_passes": self.max_passes}
                   if self.steps_asked is not None else {}),
                **({"val_interval": self.val_interval, "val_passes": self.val_passes}
                   if self.val_interval is not None else {})}


def epochs_for(steps: int, batches_per_pass: int) -> int:
    """Epochs of a stage of ``steps`` steps: ceil(steps / batches per pass), at most EPOCHS_MAX, and at least
    EPOCHS_MIN unless that would leave fewer than MIN_EPOCH_STEPS steps per epoch."""
    if steps < 1 or batches_per_pass < 1:
        raise ValueError(f"steps = {steps!r}, batches_per_pass = {batches_per_pass!r}: expected ints >= 1")
    floor = min(EPOCHS_MIN, math.ceil(steps / MIN_EPOCH_STEPS))
    return max(floor, min(EPOCHS_MAX, math.ceil(steps / batches_per_pass)))


def val_passes(steps: int, epochs: int, interval: Optional[int]) -> int:
    """Validation passes of a stage of ``steps`` steps in ``epochs`` epochs: one after every epoch (``interval``
    None), else ``steps // interval``, at least ``VAL_MIN_PASSES`` and at most ``epochs``."""
    if interval is None:
        return epochs
    return min(epochs, max(VAL_MIN_PASSES, steps // interval))


def val_interval_for(step: float, per_val: float) -> Optional[int]:
    """The ``val_interval`` a time budget sets: the steps whose time pays for one validation pass at
    ``VAL_SHARE`` of it, ``ceil(per_val / (VAL_SHARE step))``; None (a pass after every epoch) where a pass costs
    at most ``VAL_SHARE`` of a step.

    Args:
        step: seconds of one optimiser step of the networks trained together (DASH's and the baseline's, and the
            random draws' in the retraining).
        per_val: seconds of one validation pass of the same networks.
    """
    if not (step > 0 and per_val >= 0):
        raise ValueError(f"step = {step!r}, per_val = {per_val!r}: expected measured seconds, step > 0")
    interval = math.ceil(per_val / (VAL_SHARE * step) - 1e-9)
    return interval if interval > 1 else None


def effective_batch(batch_size: int, n_train: int, world: int = 1) -> int:
    """The configured batch size, at most the training split's size, a multiple of the ``world`` processes."""
    if n_train < 2:
        raise ValueError(f"the training split has {n_train} example(s); expected at least 2 (BatchNorm needs two "
                         f"examples per batch)")
    b = min(batch_size, n_train)
    return max(world, b - b % world)


def batches_per_pass(n: int, batch_size: int, world: int = 1) -> int:
    """Batches in one shuffled pass over ``n`` examples, as the training loaders make them: a last partial batch is
    dropped unless it is the only one; under torchrun each of the ``world`` ranks takes ``batch_size / world`` per
    step from its shard of ``ceil(n / world)`` examples."""
    m, per = math.ceil(n / world), max(1, batch_size // world)
    return m // per if m > per else 1


def passes_cap(max_passes: float, batches_per_pass: int) -> int:
    """The most steps a search of at most ``max_passes`` passes takes: ceil(max_passes x batches per pass), >= 1."""
    return max(1, math.ceil(max_passes * batches_per_pass - 1e-9))


def stage_plan(task: "Task", cfg: "RunConfig", stage: str) -> StagePlan:
    """The plan of ``stage`` ("search", "tune" or "retrain"; "baseline_*" stages share tune's and retrain's).

    A search counted in steps with ``search_max_passes`` set takes at most `passes_cap` steps (the plan records
    the steps asked and the cap)."""
    from . import distributed

    stage = stage.split("_")[-1]
    if stage not in _STAGES:
        raise ValueError(f"stage = {stage!r}: expected one of {', '.join(_STAGES)}")
    budget = getattr(cfg, stage)
    n = len(task.train)  # type: ignore[arg-type]
    world = distributed.world_size()
    batch = effective_batch(budget.batch_size, n, world)
    per_pass = batches_per_pass(n, batch, world)
    interval = getattr(budget, "val_interval", None)  # the tuning's and the retraining's
    if budget.steps is None:  # the epochs path (paper): as DASH counts, a fraction of the batches per epoch
        per = n_batches_of(per_pass, budget.batches_per_epoch, budget.max_batches)
        return StagePlan(stage, budget.epochs * per, budget.epochs, batch, per_pass, per_epoch=per,
                         val_interval=interval)
    cap = getattr(budget, "max_passes", None)  # the search's alone
    most = budget.steps if cap is None else passes_cap(cap, per_pass)
    if budget.steps > most:
        return StagePlan(stage, most, epochs_for(most, per_pass), batch, per_pass, steps_asked=budget.steps,
                         max_passes=cap)
    return StagePlan(stage, budget.steps, epochs_for(budget.steps, per_pass), batch, per_pass,
                     val_interval=interval)


def n_batches_of(per_pass: int, fraction: float, cap: Optional[int]) -> int:
    """Batches in one epoch of the epochs path: `fraction` of a pass's (at least one), at most `cap`."""
    n = max(1, round(fraction * per_pass))
    return n if cap is None else min(n, cap)


def run_plan(task: "Task", cfg: "RunConfig") -> Dict[str, Dict[str, Any]]:
    """Every stage's plan as recorded in config.json: ``{"search": {...}, "tune": {...}, "retrain": {...}}``.

    Tuning's entry adds the configurations it tries (``configs``), whether it runs (``enabled``; ``skipped``: True
    when it is enabled but this task's validation split is too small to rank configurations and it will be
    skipped, `tuning_runs`) and the trainings per configuration (``folds``: k when it cross-validates, else 1,
    `tuning_folds`);
    retraining's adds the random architectures retrained on its plan beside DASH (``random_draws``,
    `dashkit.stages.control`).
    """
    plan = {stage: stage_plan(task, cfg, stage).to_dict() for stage in _STAGES}
    plan["tune"].update(enabled=cfg.tune.enabled, configs=cfg.tune.n_configs(), folds=tuning_folds(task, cfg))
    if cfg.tune.enabled and not tuning_runs(task, cfg):
        plan["tune"]["skipped"] = True
    plan["retrain"]["random_draws"] = cfg.random_draws
    return plan


def format_plan(plan: Mapping[str, Mapping[str, Any]], budget: Optional[Mapping[str, Any]] = None) -> str:
    """A few lines describing a run's plan (`run_plan`) and its time budget, for summaries."""
    lines = []
    if budget:
        lines.append(f"time budget {budget['text']} ({budget['seconds']:.0f} s): planned "
                     f"{budget['planned_seconds']:.0f} s after {budget['spent_before']:.1f} s of planning")
    cap = (budget or {}).get("time_cap")
    if cap and cap.get("fit_after"):
        lines.append(f"  the {cap['preset']} preset's steps were forecast at {cap['forecast_seconds']:.0f} s here, "
                     f"within {CAP_SLACK:g}x its {cap['promise_seconds']:.0f} s; after the {cap['fit_after']} they "
                     f"were projected to end at {cap['projected_seconds']:.0f} s: fit to the "
                     f"{cap['promise_seconds']:.0f} s (time_cap=False keeps the steps)")
    elif cap:
        lines.append(f"  the {cap['preset']} preset's steps were forecast at {_minutes(cap['forecast_seconds'])} "
                     f"here, over its {_minutes(cap['promise_seconds'])}: fit to them (time_cap=False keeps the steps)")
    chosen = (budget or {}).get("chosen_costs")
    if chosen:
        lines.append(f"  after the search, DASH's network costed as searched: one step {chosen['step_ratio']:.2f}x "
                     f"the typical architecture's the plan assumed")
    for r in (budget or {}).get("replans", []):
        o, n = r["old"], r["new"]
        lines.append(f"  re-planned after the {r['after']} ({r['factor']:.2f}x its planned time): "
                     + (f"tuning {o['tune_configs']} x {o['tune_steps']} -> "
                        + (f"{n['tune_configs']} x {n['tune_steps']} steps, " if n["tune_configs"] else "dropped, ")
                        if r["after"] == "search" and o["tune_configs"] else "")
                     + f"retraining {o['retrain_steps']} -> {n['retrain_steps']} steps"
                     + (" (ahead of plan: the retraining grows)" if r.get("grew") else "")
                     + f"; projected end {r['projected_end']:.0f} s")
    for d in (budget or {}).get("draws_dropped", []):
        lines.append(f"  before random draw {d['before']} the retrainings ran {d['factor']:.2f}x their planned "
                     f"time: {d['new']} of {d['old']} random draws kept; projected end {d['projected_end']:.0f} s")
    for stage in _STAGES:
        p = plan.get(stage)
        if not p:
            continue
        what = "steps per configuration" if stage == "tune" else "steps"
        extra = ""
        if stage == "tune":
            folds = p.get("folds", 1)
            extra = (" (tuning off)" if not p.get("enabled", True) else
                     " (skipped: the validation split is too small to rank configurations)" if p.get("skipped") else
                     f", {p['configs']} configurations" + (f", each {folds}-fold cross-validated" if folds > 1 else ""))
        elif stage == "retrain":
            draws = p.get("random_draws", 0)
            extra = ", the baseline the same" + (f", {draws} random architecture{'s' if draws != 1 else ''} too"
                                                 if draws else "")
        per = p["steps_per_epoch"]
        per = f"{per[0]}-{per[1]}" if isinstance(per, list) else per
        if p.get("steps_asked") is not None:
            extra += f" (of {p['steps_asked']}: at most {p['max_passes']:g} passes, search_max_passes)"
        if p.get("val_interval") is not None:
            extra += f"; validated after {p['val_passes']} of the epochs ({stage}_val_interval {p['val_interval']})"
        lines.append(f"  {stage:<8} {p['steps']:>6} {what} in {p['epochs']} epochs of {per} (batch "
                     f"{p['batch_size']}, {p['passes']:g} passes){extra}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- how a tuning trial is scored
def cv_pool(task: "Task") -> "ConcatDataset":
    """train + val, one after the other: what the folds of `cv_folds` index."""
    from torch.utils.data import ConcatDataset

    return ConcatDataset([task.train, task.val])


def cv_folds(task: "Task", cfg: "RunConfig") -> Tuple[Optional[List[List[int]]], Optional[str]]:
    """The ``tune_cv_folds`` folds over train + val (indices into `cv_pool`), or (None, why they cannot be made).

    Stratified by class for classification, plain k-fold otherwise (`dashkit.tasks.base.kfold_indices`), from the
    seed ``stage_seed(cfg.seed, "tune_cv")``: DASH's and the baseline's tunings, and a resumed run, get the same
    folds. They cannot be made when a class of train + val has fewer than k examples (a fold without it), or when
    a fold's k - 1 others hold fewer than two examples (a training batch needs two).
    """
    import torch

    from .tasks.base import kfold_indices, split_targets

    k, pool = cfg.tune.cv_folds, cv_pool(task)
    n = len(pool)
    labels = split_targets(pool).long() if task.kind == "classification" else None
    if labels is not None:
        counts = torch.bincount(labels, minlength=task.num_outputs)
        short = {c: int(counts[c]) for c in range(len(counts)) if 0 < counts[c] < k}
        if short:
            return None, (f"train + val ({n} examples) cannot fill tune_cv_folds = {k} folds with every class in each: "
                          f"{', '.join(f'class {c} has {m}' for c, m in short.items())}")
    if n - math.ceil(n / k) < 2:
        return None, (f"train + val has {n} examples: too few for tune_cv_folds = {k} folds whose training part "
                      f"holds at least 2")
    return kfold_indices(n, k, stage_seed(cfg.seed, "tune_cv"), labels), None


def tuning_scoring(task: "Task", cfg: "RunConfig") -> Tuple[str, Optional[List[List[int]]], Optional[str]]:
    """How this task's tuning scores a configuration: ("val", None, None) on the validation split; ("cv", folds,
    None) by cross-validation (`cv_folds`); ("skip", None, why or None) not at all (`tune_small_val="skip"`, or
    "cv" when the folds cannot be made: why)."""
    tc = cfg.tune
    if tc.small_val == "tune" or not task.too_small("val"):
        return "val", None, None
    if tc.small_val == "skip":
        return "skip", None, None
    folds, why = cv_folds(task, cfg)
    return ("cv", folds, None) if folds is not None else ("skip", None, why)


def tuning_runs(task: "Task", cfg: "RunConfig") -> bool:
    """Whether this task's tuning will train anything: enabled, and not skipped for a validation split too small to
    rank configurations (``tune_small_val="skip"``, or "cv" when the folds cannot be made: `tuning_scoring`)."""
    return cfg.tune.enabled and tuning_scoring(task, cfg)[0] != "skip"


def tuning_folds(task: "Task", cfg: "RunConfig") -> int:
    """Trainings per tuning configuration: ``tune_cv_folds`` when the tuning cross-validates, else 1."""
    return cfg.tune.cv_folds if cfg.tune.enabled and tuning_scoring(task, cfg)[0] == "cv" else 1


# ------------------------------------------------------------------------------------------- time budgets
FIGURES_SECONDS = 4.0  # saving a run's five PNG figures (matplotlib), about, on a laptop CPU
SETUP_SECONDS = 1.0  # initial weights, run files, model builds between stages, about

_UNITS = {"s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0, "m": 60.0, "min": 60.0, "mins": 60.0,
          "minute": 60.0, "minutes": 60.0, "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0}


class BudgetTooSmallError(ValueError):
    """A time budget that cannot pay for one step of every stage."""


def parse_budget(budget: Union[str, int, float]) -> float:
    """Seconds of a time budget: a number of seconds, or text such as ``"90s"``, ``"5m"``, ``"5min"``, ``"1h"``,
    ``"1.5 hours"``.

    Raises:
        ValueError: the text is not a positive number with one of the units s, m, min, h (or their long names).
    """
    accepted = "a number of seconds > 0 or text such as '90s', '5m', '5min', '1h'"
    if isinstance(budget, bool) or not isinstance(budget, (str, int, float)):
        raise TypeError(f"budget = {budget!r}: expected {accepted}")
    if isinstance(budget, str):
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-z]*)\s*", budget)
        unit = match.group(2).lower() if match else None
        if match is None or (unit and unit not in _UNITS):
            raise ValueError(f"budget = {budget!r}: expected {accepted} (units: s, m, min, h)")
        seconds = float(match.group(1)) * (_UNITS[unit] if unit else 1.0)
    else:
        seconds = float(budget)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"budget = {budget!r}: expected {accepted}")
    return seconds


def _fit(share: float, step: float, per_epoch: float, pass_len: int, per_val: float = 0.0,
         interval: Optional[int] = None) -> int:
    """Steps whose cost, with one `per_epoch` cost per epoch and one `per_val` cost per validation pass
    (`val_passes` at ``interval``), fits `share` seconds (at least 1).

    A few rounds of ``steps = (share - epochs(steps) per_epoch - passes(steps) per_val) / step`` settle it; where
    the epochs' cost is most of the share (many epochs of a tiny split) the rounds can swing between few steps and
    many, and then the most steps that fit are found by bisection (the cost grows with the steps).
    """
    def fixed(n: int) -> float:
        epochs = epochs_for(n, pass_len)
        return epochs * per_epoch + val_passes(n, epochs, interval) * per_val

    s = max(1, int(share / max(step, 1e-9)))
    for _ in range(4):  # the epochs depend on the steps: a few rounds settle it
        s = max(1, int((share - fixed(s)) / max(step, 1e-9)))

    def cost(n: int) -> float:
        return n * step + fixed(n)

    if s > 1 and cost(s) > share:
        lo, hi = 1, s  # cost(lo) may not fit either: 1 is the least
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if cost(mid) <= share else (lo, mid)
        s = lo
    return s


def plan_budget(seconds: float, costs: Mapping[str, float], cfg: "RunConfig", per_pass: Mapping[str, int],
                spent: float = 0.0, text: Optional[str] = None, folds: int = 1,
                ceilings: Optional[Mapping[str, int]] = None) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Share a time budget among the stages and turn each share into steps (pure arithmetic).

    Args:
        seconds: the whole budget, from the call of ``dashkit.run``.
        costs: measured seconds of ``search_step``, ``dash_step``, ``baseline_step`` (one optimiser step),
            ``dash_eval``, ``baseline_eval`` (one validation pass), ``search_writes`` and ``retrain_writes`` (the
            files of one search epoch, of one network's retraining epoch; or, as records made before them have,
            ``checkpoint``, one supernet-sized write, counted ``SEARCH_EPOCH_WRITES`` and
            ``RETRAIN_EPOCH_WRITES`` times: `epoch_writes`),
            ``after`` (the test passes and figures after the stages); optionally ``random_step`` and
            ``random_eval`` for a random draw of the control (`measure_costs` times the run's draws and gives their
            mean; default: DASH's ``dash_step`` and ``dash_eval``).
        cfg: the run's configuration (its grid, whether tuning and the baseline run, ``random_draws``).
        per_pass: batches per pass of each stage ("search", "tune", "retrain"), for the epochs each gets.
        spent: seconds already spent (building the task, measuring).
        text: the budget as the user wrote it, for the record.
        folds: trainings per tuning configuration: k when the tuning cross-validates
            (`tuning_folds`), each of the tuning's steps and one validation pass at its end;
            1: one training, a validation pass per epoch.
        ceilings: the most steps each stage may take ("search", "tune": per configuration, "retrain"), or None:
            a preset run fit to its promised time (`run(time_cap=True)`) never takes more steps in a stage than
            the preset gives it. A search or tuning held at its ceiling leaves part of its share to the
            retraining, and a retraining held at its own leaves its rest to the search (up to the search's
            ceiling). The record keeps them, and a re-plan never grows the retraining above its ceiling
            (`replan`).

    Returns:
        (flat overrides: ``search_steps``, ``tune_steps``, ``tune_n_trials``, ``tune_enabled``, ``retrain_steps``,
        ``random_draws``, ``tune_val_interval``, ``retrain_val_interval``; the record for config.json: budget,
        measured costs, shares, planned seconds per stage (the draws' retraining counted in "retrain"),
        ``random_draws`` kept, ``val_interval``).

    The retraining share pays for DASH, the baseline and the random draws, the same steps each. When that would
    leave fewer than ``MIN_CONTROL_STEPS`` retraining steps, draws are dropped one by one until it does not (or
    none is left): a ``UserWarning`` and the record's note say how many were kept.

    A validation pass after every epoch is what a stage does unless its passes would cost more than ``VAL_SHARE``
    of its steps' time: then the tuning's configurations and the retraining's networks (all alike) validate about
    once every ``val_interval_for`` steps, at least ``VAL_MIN_PASSES`` times, the last epoch always
    (``tune_val_interval``, ``retrain_val_interval``; `val_passes`), and the time saved goes to steps. On a large
    validation split a pass can cost 5-15 steps (ecg_synth's 2,000 validation series: a pass of DASH's network
    1.4 s, a step 0.09 s on two cores), and a pass after each of a capped retraining's 9 epochs took most of it.

    Raises:
        BudgetTooSmallError: the time left cannot pay for one step of the search and one of retraining.
    """
    measured = "checkpoint" not in costs or any(k in costs for k in ("search_writes", "retrain_writes"))
    writes = ("search_writes", "retrain_writes") if measured else ("checkpoint",)
    for key in ("search_step", "dash_step", "baseline_step", "dash_eval", "baseline_eval", *writes, "after"):
        if not (isinstance(costs.get(key), (int, float)) and costs[key] >= 0):
            raise ValueError(f"costs[{key!r}] = {costs.get(key)!r}: expected a measured number of seconds >= 0"
                             + (" (the files of an epoch: search_writes and retrain_writes, or checkpoint)"
                                if key in ("search_writes", "retrain_writes") else ""))
    baseline = cfg.baseline
    search_epoch = epoch_writes(costs, "search")
    asked = cfg.random_draws
    left = seconds - spent - costs["after"]
    minimum = (costs["search_step"] + search_epoch) + sum(_retrain_unit(costs, baseline, 0))  # a step of each
    if left < minimum:
        raise BudgetTooSmallError(
            f"budget = {text if text is not None else seconds!r}: {seconds:.1f} s is too small to take one step of "
            f"each stage: {spent:.1f} s went to planning, the test and figures take about {costs['after']:.1f} s, and "
            f"one search step, one retraining step (DASH{' and the baseline' if cfg.baseline else ''}) and their "
            f"checkpoints about {minimum:.2f} s; give at least {math.ceil(1.2 * (spent + costs['after'] + minimum))}"
            f" s")

    tc = cfg.tune
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ValueError(f"folds = {folds!r}: expected an int >= 1 (trainings per tuning configuration)")
    grid = tc.n_configs()
    tune_share = TUNE_SHARE * left if tc.enabled else 0.0
    configs, tune_steps = 0, 0
    # validation passes spaced to about VAL_SHARE of the steps' time where a pass costs far more than a step (a
    # cross-validated tuning validates once per fold's training: nothing to space)
    intervals: Dict[str, Optional[int]] = {
        "tune": val_interval_for(_tune_step(costs, baseline), _tune_epoch(costs, baseline)) if folds == 1 else None,
        "retrain": None}

    def config_cost(steps: int) -> float:
        """Seconds of one configuration (`stage_seconds` of a one-configuration tuning)."""
        return stage_seconds(costs, "tune", steps, per_pass, baseline, configs=1, folds=folds, intervals=intervals)

    def fit_config(share: float) -> int:
        return _fit_config(share, costs, baseline, folds, per_pass["tune"], intervals["tune"])

    if tc.enabled:
        # the steps a tuning without folds gives each configuration; with k folds, k times fewer configurations
        # (at least two: fewer steps then)
        tune_steps = _fit_config(tune_share / grid, costs, baseline, 1, per_pass["tune"], intervals["tune"])
        configs = grid
        if folds > 1:
            configs = min(grid, max(2, int(tune_share / config_cost(max(tune_steps, MIN_TUNE_STEPS)))))
            tune_steps = fit_config(tune_share / configs)
        if tune_steps < MIN_TUNE_STEPS:  # fewer configurations, each with enough steps to say something
            configs = min(grid, int(tune_share / config_cost(MIN_TUNE_STEPS)))
            if configs >= 2:
                tune_steps = fit_config(tune_share / configs)
    tuned = tc.enabled and configs >= 2
    ceiling = _check_ceilings(ceilings)
    if cfg.search.max_passes is not None:  # a search cut to its passes leaves the rest of its share to retraining
        ceiling["search"] = min(ceiling["search"], passes_cap(cfg.search.max_passes, per_pass["search"]))
    search_share = SEARCH_SHARE * left
    retrain_share = left - search_share - (tune_share if tuned else 0.0)
    search_steps = _fit(search_share, costs["search_step"], search_epoch, per_pass["search"])
    if search_steps > ceiling["search"]:  # held at its ceiling: the rest of its share goes to the retraining
        search_steps = int(ceiling["search"])
        retrain_share += search_share - stage_seconds(costs, "search", search_steps, per_pass)
    if tuned and tune_steps > ceiling["tune"]:
        tune_steps = int(ceiling["tune"])
        retrain_share += tune_share - stage_seconds(costs, "tune", tune_steps, per_pass, baseline, configs=configs,
                                                    folds=folds, intervals=intervals)
    draws = asked
    while True:  # DASH, the baseline and the draws, the same steps each; fewer draws when the steps would be too few
        step_rt, writes, evals = _retrain_unit(costs, baseline, draws)
        intervals["retrain"] = val_interval_for(step_rt, evals)
        retrain_steps = _fit(retrain_share, step_rt, writes, per_pass["retrain"], evals, intervals["retrain"])
        if draws == 0 or retrain_steps >= MIN_CONTROL_STEPS:
            break
        draws -= 1
    if retrain_steps > ceiling["retrain"]:  # held at its ceiling: the time it leaves grows the search to its own
        retrain_steps = int(ceiling["retrain"])
        room = retrain_share - stage_seconds(costs, "retrain", retrain_steps, per_pass, baseline, draws=draws,
                                             intervals=intervals)
        search_steps = int(min(ceiling["search"], _fit(stage_seconds(costs, "search", search_steps, per_pass) + room,
                                                       costs["search_step"], search_epoch, per_pass["search"])))
    draws_note = ""
    if draws < asked:
        draws_note = (f"random_draws reduced from {asked} to {draws}: with more, the retraining would get fewer than "
                      f"{MIN_CONTROL_STEPS} steps")
        warnings.warn(f"budget = {text if text is not None else seconds!r}: {draws_note} (of DASH, the baseline and "
                      f"each random architecture alike); give a larger budget for the random-architecture control",
                      stacklevel=2)
    for stage, steps in (("tune", tune_steps if tuned else 0), ("retrain", retrain_steps)):
        epochs = epochs_for(steps, per_pass[stage]) if steps >= 1 else 0
        if steps < 1 or val_passes(steps, epochs, intervals[stage]) >= epochs:
            intervals[stage] = None  # a pass after every epoch already fits the share: nothing to space
    overrides: Dict[str, Any] = {"search_steps": search_steps, "retrain_steps": retrain_steps,
                                 "tune_enabled": bool(tuned), "random_draws": draws,
                                 "tune_val_interval": intervals["tune"], "retrain_val_interval": intervals["retrain"]}
    if tuned:
        overrides["tune_steps"] = tune_steps
        if configs < grid:
            overrides["tune_n_trials"] = configs

    stages = {"search": stage_seconds(costs, "search", search_steps, per_pass),
              "tune": stage_seconds(costs, "tune", tune_steps, per_pass, baseline, configs=configs if tuned else 0,
                                    folds=folds, intervals=intervals),
              "retrain": stage_seconds(costs, "retrain", retrain_steps, per_pass, baseline, draws=draws,
                                       intervals=intervals)}
    stages = {stage: round(stages[stage], 2) for stage in _STAGES}
    record = {"text": text if text is not None else f"{seconds:g}s", "seconds": seconds,
              "spent_before": round(spent, 3), "costs": {k: float(f"{v:.4g}") for k, v in costs.items()},
              "shares": {"search": SEARCH_SHARE, "tune": TUNE_SHARE if tuned else 0.0,
                         "retrain": round(1 - SEARCH_SHARE - (TUNE_SHARE if tuned else 0.0), 6)},
              "planned": stages, "planned_seconds": round(spent + costs["after"] + sum(stages.values()), 2),
              "tune_configs": configs if tuned else 0, "tune_folds": folds, "random_draws": draws,
              "val_interval": dict(intervals),
              **({"ceilings": dict(ceiling)} if ceilings is not None else {}),
              "note": "; ".join(n for n in (
                  ("tuning reduced to %d of %d configurations to give each %d steps%s" % (
                      configs, grid, tune_steps, " in each of %d folds" % folds if folds > 1 else "")
                   if tuned and configs < grid else
                   "tuning off: its share could not give two configurations %d steps each%s" % (
                       MIN_TUNE_STEPS, " in each of %d folds" % folds if folds > 1 else "")
                   if tc.enabled and not tuned else ""), draws_note) if n)}
    return overrides, record


def _check_ceilings(ceilings: Optional[Mapping[str, int]]) -> Dict[str, float]:
    """`plan_budget`'s ``ceilings`` checked: the most steps of "search", "tune" and "retrain" (inf without them)."""
    if ceilings is None:
        return {stage: math.inf for stage in _STAGES}
    if not isinstance(ceilings, Mapping) or set(ceilings) != set(_STAGES) or any(
            isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in ceilings.values()):
        raise ValueError(f"ceilings = {ceilings!r}: expected None or the most steps of each stage, "
                         f"{{'search': int >= 1, 'tune': int >= 1, 'retrain': int >= 1}}")
    return dict(ceilings)


# ---------------------------------------------------------------------------------------------- re-planning
_REPLANNED = ("tune_steps", "tune_configs", "retrain_steps")


def stage_seconds(costs: Mapping[str, float], stage: str, steps: int, per_pass: Mapping[str, int],
                  baseline: bool = True, configs: int = 0, folds: int = 1, draws: int = 0,
                  intervals: Optional[Mapping[str, Optional[int]]] = None) -> float:
    """Planned seconds of one stage at the measured ``costs``, as `plan_budget` counts them (pure arithmetic).

    Args:
        stage: "search", "tune" (all ``configs`` configurations of DASH and the baseline, ``folds`` trainings
            each) or "retrain" (DASH, the baseline and ``draws`` random architectures, ``steps`` each).
        steps: the stage's steps (per configuration for "tune"; 0 configurations or steps: 0 seconds).
        per_pass: batches per pass of each stage, for the epochs.
        intervals: the ``val_interval`` of "tune" and "retrain" (a budget record's ``val_interval``; missing or
            None: a validation pass after every epoch), for the validation passes (`val_passes`).
    """
    if stage == "search":
        return steps * costs["search_step"] + epochs_for(steps, per_pass["search"]) * epoch_writes(costs, "search")
    step_rt, tune_epoch = _tune_step(costs, baseline), _tune_epoch(costs, baseline)
    interval = (intervals or {}).get(stage)
    if stage == "tune":
        if configs < 1 or steps < 1:
            return 0.0
        if folds == 1:
            epochs = epochs_for(steps, per_pass["tune"])
            return configs * (steps * step_rt + val_passes(steps, epochs, interval) * tune_epoch)
        return configs * folds * (steps * step_rt + tune_epoch)
    if stage != "retrain":
        raise ValueError(f"stage = {stage!r}: expected one of {', '.join(_STAGES)}")
    if steps < 1:
        return 0.0
    all_rt, writes, evals = _retrain_unit(costs, baseline, draws)
    epochs = epochs_for(steps, per_pass["retrain"])
    return steps * all_rt + epochs * writes + val_passes(steps, epochs, interval) * evals


def replan(record: Mapping[str, Any], steps: Mapping[str, int], stage_done: str, seconds_spent: float,
           now_elapsed: float, per_pass: Mapping[str, int], baseline: bool = True, grow: bool = False,
           factor: Optional[float] = None) -> Optional[Dict[str, Any]]:
    """Shrink the stages left after ``stage_done`` when, at the speed it just ran, they would overrun the budget;
    with ``grow``, raise the retraining's steps when they would leave much of it unused.

    Pure arithmetic on the budget's record (`plan_budget`): the slowdown factor is
    ``f = seconds_spent / planned seconds of stage_done`` (at the current steps and the measured costs); the
    run is projected to end at ``now_elapsed + f (planned seconds of the stages left + after)``. When that is
    within the budget, nothing changes (None). Otherwise the time left, ``budget - now_elapsed``, counted in
    planned seconds (divided by ``f``), less the work after the stages, is shared between the tuning and the
    retraining in the proportion of their current planned seconds, and turned into steps as `plan_budget` does:

    - tuning (after the search only): the steps per configuration that fit its part; when those are fewer than
      ``MIN_TUNE_STEPS``, fewer configurations (at least 2) of ``MIN_TUNE_STEPS`` steps each. What the tuning
      does not use goes to the retraining;
    - retraining: the steps that fit, the same for DASH, the baseline and every random draw (the controls stay
      fair), never fewer than ``MIN_CONTROL_STEPS``;
    - the tuning gives way first: when keeping it (at its minimums) would leave the retraining fewer than
      ``KEEP_RETRAIN`` (half) of its steps, and dropping it would leave more, it is dropped (``tune_configs`` and
      ``tune_steps`` 0 in ``new``; the run retrains DASH and the baseline with the retrain_* hyper-parameters)
      and the whole room goes to the retraining; the entry's ``note`` says so.

    A floor above the old steps keeps the old steps; when the floors cannot fit the time left, they are kept, a
    ``UserWarning`` says so and the entry's ``note`` too.

    Growing (``grow=True``; the pipeline passes it only in the call that made the plan, where every stage was
    timed whole): when the projected end leaves more than ``GROW_SLACK`` of the budget unused, the retraining's
    steps (DASH's, the baseline's and the random draws' alike) are raised to the most that end by ``GROW_FILL``
    of the budget, at most ``GROW_MAX`` times the old steps and never above the record's ``ceilings``
    (`plan_budget`: a preset run fit to its time). After the tuning (which trained DASH's network
    and the baseline, the networks the retraining trains) both projections run at ``f``; after the search (a
    supernet, whose retraining was costed as a typical architecture of the space) at ``max(f, 1)``: a fast search
    is not taken to say the retraining will be fast (on ACSF1, whose tuning is skipped, the searched network
    retrained slower than it was costed, and growing at the search's ``f`` of 0.87 ended runs 7-14% late). The
    tuning's steps are never raised: DASH's and the baseline's tunings must keep equal steps, and after the search
    the tuning's own speed is not known yet (a grow after the search is corrected by the re-plan after the tuning,
    either way). Without ``grow`` a run that is ahead of its plan ends early.

    Args:
        record: the budget's record (``costs``, ``seconds``, ``tune_folds``, ``random_draws``).
        steps: the current ``tune_steps`` (per configuration; 0 when the tuning is off), ``tune_configs``
            (configurations tried; 0 when off) and ``retrain_steps``; plus ``search_steps`` when ``stage_done``
            is "search".
        stage_done: "search" or "tune" (DASH's and the baseline's tunings together).
        seconds_spent: wall seconds the finished stage took.
        now_elapsed: seconds since the budget's clock started.
        per_pass: batches per pass of each stage ("search", "tune", "retrain").
        baseline: whether the baseline is trained (its steps are costed beside DASH's).
        factor: the slowdown factor observed otherwise, used instead of ``seconds_spent / planned``: after the
            tunings, whose lr-block walk and pruner leave configurations unrun or cut short, the pipeline passes
            their finished trials' seconds over those trials' planned seconds (`tuning_factor`).

    Returns:
        None (no change), or the entry for the record's ``replans``: ``after`` (``stage_done``), ``factor``,
        ``elapsed``, ``old`` and ``new`` (``tune_steps``, ``tune_configs``, ``retrain_steps``), ``planned``
        (the new planned seconds of the stages left, at the measured costs), ``projected_end`` (seconds from the
        clock's start, at ``f``), ``projected_before`` (where the old steps were heading, at ``f``: the end the
        re-plan avoids or, when grown, leaves unused), ``grew`` (whether the retraining was raised) and ``note``.
    """
    if stage_done not in ("search", "tune"):
        raise ValueError(f"stage_done = {stage_done!r}: expected 'search' or 'tune' (the stages followed by a "
                         f"re-plan)")
    costs, budget = record["costs"], float(record["seconds"])
    folds, draws = int(record.get("tune_folds", 1)), int(record.get("random_draws", 0))
    intervals = record.get("val_interval") or {}
    old = {k: int(steps[k]) for k in _REPLANNED}

    def seconds_of(stage: str, s: Mapping[str, int]) -> float:
        if stage == "search":
            return stage_seconds(costs, "search", int(steps["search_steps"]), per_pass)
        if stage == "tune":
            return stage_seconds(costs, "tune", s["tune_steps"], per_pass, baseline, configs=s["tune_configs"],
                                 folds=folds, intervals=intervals)
        return stage_seconds(costs, "retrain", s["retrain_steps"], per_pass, baseline, draws=draws,
                             intervals=intervals)

    planned_done = seconds_of(stage_done, old)
    if planned_done <= 0 or seconds_spent <= 0:
        return None  # nothing ran (a skipped tuning): no speed observed
    factor = seconds_spent / planned_done if factor is None else float(factor)
    left = ("tune", "retrain") if stage_done == "search" else ("retrain",)
    planned_left = {stage: seconds_of(stage, old) for stage in left}
    after = float(costs["after"])
    projected = now_elapsed + factor * (sum(planned_left.values()) + after)
    if projected <= budget:
        # after the tunings, which trained the networks the retraining trains, at their speed; after the search (a
        # supernet; the retraining costed as a typical architecture) never faster than planned
        speed = factor if stage_done == "tune" else max(factor, 1.0)
        if not grow or now_elapsed + speed * (sum(planned_left.values()) + after) >= (1 - GROW_SLACK) * budget:
            return None
        r_steps = _grown_steps(record, old["retrain_steps"], planned_left.get("tune", 0.0), speed, now_elapsed,
                               per_pass["retrain"], baseline)
        if r_steps is None:
            return None
        new = {**old, "retrain_steps": r_steps}
        planned_new = {stage: round(seconds_of(stage, new), 2) for stage in left}
        return _entry(stage_done, factor, seconds_spent, now_elapsed, old, new, planned_new,
                      now_elapsed + speed * (sum(planned_new.values()) + after), projected, True,
                      f"ahead of plan after the {stage_done} ({factor:.2f}x its planned time): the retraining "
                      f"grows from {old['retrain_steps']} to {r_steps} steps to use the budget")
    room = (budget - now_elapsed) / factor - after  # planned seconds that fit the time left at this speed
    new = dict(old)
    if "tune" in left and old["tune_configs"] >= 1 and old["tune_steps"] >= 1:
        tune_part = max(0.0, room) * planned_left["tune"] / sum(planned_left.values())

        def fit_config(share: float) -> int:
            return _fit_config(share, costs, baseline, folds, per_pass["tune"], intervals.get("tune"))

        floor, configs = min(old["tune_steps"], MIN_TUNE_STEPS), old["tune_configs"]
        t_steps = fit_config(tune_part / configs)
        if t_steps < floor and configs > 2:  # fewer configurations (at least two), each with the floor's steps
            one = stage_seconds(costs, "tune", floor, per_pass, baseline, configs=1, folds=folds,
                                intervals=intervals)
            configs = min(configs, max(2, int(tune_part / max(one, 1e-12))))
            t_steps = fit_config(tune_part / configs)
        new["tune_configs"], new["tune_steps"] = configs, min(old["tune_steps"], max(floor, t_steps))
    retrain_room = room - (seconds_of("tune", new) if "tune" in left else 0.0)
    r_floor = min(old["retrain_steps"], MIN_CONTROL_STEPS)
    step, writes, evals = _retrain_unit(costs, baseline, draws)
    r_steps = (_fit(retrain_room, step, writes, per_pass["retrain"], evals, intervals.get("retrain"))
               if retrain_room > 0 else 1)
    new["retrain_steps"] = min(old["retrain_steps"], max(r_floor, r_steps))
    dropped = ""
    if "tune" in left and new["tune_configs"] >= 1 and new["retrain_steps"] < KEEP_RETRAIN * old["retrain_steps"]:
        # the tuning gives way before the retraining: without it, every second of the room goes to the retraining
        alone = (_fit(room, step, writes, per_pass["retrain"], evals, intervals.get("retrain")) if room > 0 else 1)
        alone = min(old["retrain_steps"], max(r_floor, alone))
        if alone > new["retrain_steps"]:
            dropped = (f"the tuning is dropped (DASH and the baseline retrain with the retrain_* hyper-parameters): "
                       f"kept at {new['tune_configs']} x {new['tune_steps']} steps it would leave the retraining "
                       f"{new['retrain_steps']} of its {old['retrain_steps']} steps, without it {alone}")
            new.update(tune_configs=0, tune_steps=0, retrain_steps=alone)
    planned_new = {stage: round(seconds_of(stage, new), 2) for stage in left}
    end = now_elapsed + factor * (sum(planned_new.values()) + after)
    note = dropped
    if end > budget * (1 + 1e-9) and sum(planned_new.values()) > max(room, 0.0) + 1e-9:
        tuning = "" if dropped else f"tuning {MIN_TUNE_STEPS} steps per configuration, two configurations; "
        late = (f"after the {stage_done}, which ran {factor:.2f}x its planned time, even the minimum steps of the "
                f"stages left ({tuning}retraining {MIN_CONTROL_STEPS} steps) do not fit the "
                f"{max(budget - now_elapsed, 0.0):.0f} s left: the run is projected to end at {end:.0f} s of its "
                f"{budget:.0f} s budget")
        note = "; ".join(n for n in (dropped, late) if n)
        warnings.warn(f"budget = {record.get('text', budget)!r}: {late}", stacklevel=2)
    if new == old and not note:
        return None
    return _entry(stage_done, factor, seconds_spent, now_elapsed, old, new, planned_new, end, projected, False, note)


def tuning_factor(record: Mapping[str, Any], trials: Mapping[str, List[Mapping[str, Any]]], tune_steps: int,
                  per_pass: Mapping[str, int]) -> Optional[float]:
    """The tunings' slowdown factor from their finished trials: their seconds over what the record's costs plan
    for those trials (one configuration of ``tune_steps`` steps each, ``tune_folds`` trainings when
    cross-validated); None when no trial finished.

    The tunings' whole time over their plan is no speed: the plan counts every configuration, and the lr-block
    walk skips some and the pruner cuts others short (a tuning at 0.61x its plan on the quickstart had run two
    configurations of four whole, one pruned, one skipped, each whole one 1.1-1.3x slower than planned).

    Args:
        trials: ``{"dash": [...], "baseline": [...]}``, the trials of tune.json and baseline_tune.json (``state``
            and ``seconds`` each).
    """
    folds = int(record.get("tune_folds", 1))
    spent = planned = 0.0
    for net, rows in trials.items():
        done = [float(t["seconds"]) for t in rows if t.get("state") == "complete" and t.get("seconds")]
        spent += sum(done)
        planned += tune_seconds(record["costs"], net, tune_steps, per_pass, configs=len(done), folds=folds,
                                interval=(record.get("val_interval") or {}).get("tune"))
    return spent / planned if spent > 0 and planned > 0 else None


def tune_seconds(costs: Mapping[str, float], net: str, steps: int, per_pass: Mapping[str, int], configs: int = 1,
                 folds: int = 1, interval: Optional[int] = None) -> float:
    """Planned seconds of one network's tuning alone (``net``: "dash" or "baseline"), ``configs`` configurations
    of ``steps`` steps (``interval``: the tuning's ``val_interval``): `stage_seconds` counts DASH's and the
    baseline's together."""
    one = {**costs, "dash_step": costs[f"{net}_step"], "dash_eval": costs[f"{net}_eval"]}
    return stage_seconds(one, "tune", steps, per_pass, baseline=False, configs=configs, folds=folds,
                         intervals={"tune": interval})


def retrain_seconds(costs: Mapping[str, float], net: str, steps: int, retrain_pass: int,
                    interval: Optional[int] = None) -> float:
    """Planned seconds of one network's retraining (``net``: "dash", "baseline" or "random", a random draw costed
    at the draws' mean, ``random_step`` and ``random_eval``, or as DASH's network in costs without them): ``steps``
    steps, one epoch's files per epoch and its validation passes (after every epoch, or spaced by ``interval``,
    the retraining's ``val_interval``): `stage_seconds` of that network alone."""
    if net not in ("dash", "baseline", "random"):
        raise ValueError(f"net = {net!r}: expected 'dash', 'baseline' or 'random'")
    one = {**costs, "dash_step": costs.get(f"{net}_step", costs["dash_step"]),
           "dash_eval": costs.get(f"{net}_eval", costs["dash_eval"])}
    return stage_seconds(one, "retrain", steps, {"retrain": retrain_pass}, baseline=False,
                         intervals={"retrain": interval})


def trim_draws(record: Mapping[str, Any], retrain_steps: int, retrain_pass: int, ran: Mapping[str, float],
               now_elapsed: float, draws_done: int, draws: int, slack: float = CAP_SLACK
               ) -> Optional[Dict[str, Any]]:
    """Before random draw ``draws_done`` is retrained: how many of the run's ``draws`` random architectures still
    fit the time, at the speed this call's retrainings ran.

    The retraining's steps are fixed once DASH's network has started them (the baseline and every draw must train
    as long as DASH's, or the controls are not fair), so a machine that slows down during the retraining (another
    process starts) can only be answered by training fewer random draws: they come last, and each is a control
    of its own. Pure arithmetic on the budget's record (`plan_budget`): the slowdown factor is
    ``f = sum(ran's seconds) / their planned seconds`` (`retrain_seconds`), and with ``k`` draws in all the run is
    projected to end at ``now_elapsed + f ((k - draws_done) planned seconds of a draw + the work after)``. Every
    draw is kept while the run with all of them ends by ``slack`` times the budget (the tolerance a timed run is
    held to: a few seconds over the budget do not cost a control); past it, the most ``k``
    (``draws_done <= k <= draws``) that end by the budget itself are kept.

    Args:
        record: the budget's record (``costs``, ``seconds``: the budget, counted from the clock's start).
        retrain_steps: the retraining's steps (each network's).
        retrain_pass: batches per pass of the retraining.
        ran: wall seconds of each network retrained (wholly or partly) in this call, by name: "dash", "baseline",
            "random_<i>". A network resumed from a checkpoint looks faster than it was, so it may hide a
            slowdown, never invent one; a network read back done is not in it.
        now_elapsed: seconds since the budget's clock started.
        draws_done: the draws already retrained (these are kept).
        draws: the draws planned.
        slack: draws are dropped only when the run with all of them would end after ``slack`` times the budget.

    Returns:
        None when every draw fits (or no retraining ran in this call: no speed seen), else the record's
        ``draws_dropped`` entry: ``before`` (``draws_done``), ``factor``, ``elapsed``, ``old`` (``draws``),
        ``new`` (the draws kept, at least ``draws_done``), ``limit``, ``projected_end`` (with the draws kept),
        ``projected_before`` (with all of them) and ``note``.
    """
    if isinstance(draws_done, bool) or not isinstance(draws_done, int) or not 0 <= draws_done <= draws:
        raise ValueError(f"draws_done = {draws_done!r}: expected an int from 0 to draws ({draws})")
    if not slack >= 1:
        raise ValueError(f"slack = {slack!r}: expected a number >= 1")
    costs = record["costs"]
    limit = float(record["seconds"])
    interval = (record.get("val_interval") or {}).get("retrain")
    planned = math.fsum(retrain_seconds(costs, name.split("_")[0], retrain_steps, retrain_pass, interval)
                        for name in ran)
    spent = math.fsum(float(s) for s in ran.values())
    if planned <= 0 or spent <= 0 or draws_done == draws:
        return None
    factor = spent / planned
    one = retrain_seconds(costs, "random", retrain_steps, retrain_pass, interval)
    after = float(costs["after"])

    def end(k: int) -> float:
        return now_elapsed + factor * ((k - draws_done) * one + after)

    if end(draws) <= slack * limit:
        return None
    kept = draws_done
    while kept < draws and end(kept + 1) <= limit:
        kept += 1
    note = (f"the retrainings ran {factor:.2f}x their planned time; {draws} random draw{'s' if draws != 1 else ''} "
            f"would end the run at {end(draws):.0f} s of {limit:.0f} s: {kept} kept")
    return {"before": draws_done, "factor": round(factor, 4), "elapsed": round(now_elapsed, 3), "old": draws,
            "new": kept, "limit": round(limit, 2), "projected_end": round(end(kept), 2),
            "projected_before": round(end(draws), 2), "note": note}


def typical_costs(record: Mapping[str, Any]) -> Dict[str, float]:
    """A budget record's costs with DASH's network costed as before the search (a typical architecture of the
    space), undoing the searched network's costing (``chosen_costs``) for a plan of another seed's run."""
    return {**record["costs"], **(record.get("chosen_costs") or {}).get("typical", {})}


def _entry(stage_done: str, factor: float, seconds_spent: float, now_elapsed: float, old: Mapping[str, int],
           new: Mapping[str, int], planned: Mapping[str, float], end: float, before: float, grew: bool, note: str
           ) -> Dict[str, Any]:
    """One entry of the budget record's ``replans`` (`replan`'s return value)."""
    return {"after": stage_done, "factor": round(factor, 4), "seconds_spent": round(seconds_spent, 3),
            "elapsed": round(now_elapsed, 3), "old": dict(old), "new": dict(new), "planned": dict(planned),
            "projected_end": round(end, 2), "projected_before": round(before, 2), "grew": grew, "note": note}


def _grown_steps(record: Mapping[str, Any], old_steps: int, tune_left: float, speed: float, now_elapsed: float,
                 retrain_pass: int, baseline: bool) -> Optional[int]:
    """The retraining steps of a run ahead of its plan: the most that end by ``GROW_FILL`` of the budget at
    ``speed`` (after ``tune_left`` planned seconds of tuning still to run), at most ``GROW_MAX`` times
    ``old_steps`` and the record's retraining ceiling (`plan_budget`'s ``ceilings``); None when that is not more
    than ``old_steps``."""
    costs, budget = record["costs"], float(record["seconds"])
    room = (GROW_FILL * budget - now_elapsed) / speed - float(costs["after"]) - tune_left
    step, writes, evals = _retrain_unit(costs, baseline, int(record.get("random_draws", 0)))
    interval = (record.get("val_interval") or {}).get("retrain")
    steps = min(int(GROW_MAX * old_steps), _fit(room, step, writes, retrain_pass, evals, interval) if room > 0 else 0)
    ceiling = record.get("ceilings", {}).get("retrain")
    if ceiling is not None:  # a preset run fit to its time never retrains longer than the preset
        steps = min(steps, int(ceiling))
    return steps if steps > old_steps else None


def _fit_config(share: float, costs: Mapping[str, float], baseline: bool, folds: int, tune_pass: int,
                interval: Optional[int] = None) -> int:
    """Steps per tuning configuration whose cost (`stage_seconds` of one configuration) fits `share` seconds: one
    training with its validation passes (after every epoch, or spaced by ``interval``), or `folds` trainings with
    one pass each (on the held-out fold)."""
    step, epoch = _tune_step(costs, baseline), _tune_epoch(costs, baseline)
    if folds == 1:
        return _fit(share, step, 0.0, tune_pass, epoch, interval)
    return max(1, int((share / folds - epoch) / max(step, 1e-9)))


def _tune_step(costs: Mapping[str, float], baseline: bool) -> float:
    """Seconds of one step of DASH's network and the baseline's."""
    return costs["dash_step"] + (costs["baseline_step"] if baseline else 0.0)


def _tune_epoch(costs: Mapping[str, float], baseline: bool) -> float:
    """Seconds of one validation pass of DASH's network and the baseline's."""
    return costs["dash_eval"] + (costs["baseline_eval"] if baseline else 0.0)


def _retrain_unit(costs: Mapping[str, float], baseline: bool, draws: int) -> Tuple[float, float, float]:
    """(seconds of one retraining step, of one retraining epoch's files, of one validation pass) of all the
    networks."""
    models = 2 if baseline else 1
    step_rt = _tune_step(costs, baseline) + draws * float(costs.get("random_step", costs["dash_step"]))
    writes = (models + draws) * epoch_writes(costs, "retrain")
    evals = _tune_epoch(costs, baseline) + draws * float(costs.get("random_eval", costs["dash_eval"]))
    return step_rt, writes, evals


def epoch_writes(costs: Mapping[str, float], stage: str) -> float:
    """Seconds of the files one epoch of ``stage`` ("search", or "retrain": per network) writes.

    `measure_costs` times them as the stage writes them (``search_writes``, ``retrain_writes``: the history and the
    checkpoint of the supernet, or of a retrained network with its optimiser's state). Costs without them (records
    made before, or made-up costs) count ``SEARCH_EPOCH_WRITES`` or ``RETRAIN_EPOCH_WRITES`` checkpoint-sized
    writes of the supernet (``checkpoint``): a retrained network's files are far smaller, and that count
    over-costed a retraining epoch's files about 4x on GunPoint (BENCHMARKS.md).
    """
    if stage not in ("search", "retrain"):
        raise ValueError(f"stage = {stage!r}: expected 'search' or 'retrain' (the stages that write every epoch)")
    key = f"{stage}_writes"
    if key in costs:
        return float(costs[key])
    return (SEARCH_EPOCH_WRITES if stage == "search" else RETRAIN_EPOCH_WRITES) * float(costs["checkpoint"])


# ------------------------------------------------------------------------------ a preset run's forecast
def forecast_seconds(costs: Mapping[str, float], cfg: "RunConfig", plan: Mapping[str, Mapping[str, Any]]
                     ) -> Dict[str, float]:
    """Seconds a run of ``plan`` (`run_plan`) will take at the measured ``costs`` (`plan_budget`'s cost model).

    Returns ``{"search": s, "tune": s, "retrain": s, "after": s, "total": s}``. The tuning is counted at every
    configuration of its grid, DASH's and the baseline's (the lr-block walk may stop earlier, so it is an upper
    bound); "retrain" counts DASH, the baseline and the random draws.
    """
    per_pass = {stage: plan[stage]["batches_per_pass"] for stage in _STAGES}
    tune = plan["tune"]
    intervals = {"tune": cfg.tune.val_interval, "retrain": cfg.retrain.val_interval}
    out = {
        "search": stage_seconds(costs, "search", plan["search"]["steps"], per_pass, cfg.baseline),
        "tune": (stage_seconds(costs, "tune", tune["steps"], per_pass, cfg.baseline, configs=tune["configs"],
                               folds=tune.get("folds", 1), intervals=intervals)
                 if tune.get("enabled", True) and not tune.get("skipped") else 0.0),
        "retrain": stage_seconds(costs, "retrain", plan["retrain"]["steps"], per_pass, cfg.baseline,
                                 draws=plan["retrain"].get("random_draws", 0), intervals=intervals),
        "after": float(costs["after"]),
    }
    out["total"] = sum(out.values())
    return out


SMALLER_STEPS = "a smaller search space (kernel_sizes, dilations) or shorter inputs"  # cheaper steps for any run


def cheaper_steps(cfg: "RunConfig", num_outputs: int) -> str:
    """The settings that make a run's steps cheaper, as a warning names them (`warn_if_long`, `warn_capped`).

    Always a smaller search space or shorter inputs (``SMALLER_STEPS``). Where the network's width follows DASH's
    class-count rule (``resnet1d`` with no ``width`` set: `ResNet1D.default_width`, 16 channels from 10 classes and
    64 from 20), a narrower one; where random architectures are drawn, fewer draws (each is retrained for the same
    steps as DASH, so two draws take half the retraining's time).
    """
    parts = []
    set_by_hand = any("width" in (kw or {}) for kw in (cfg.backbone_kwargs, cfg.search.backbone, cfg.retrain.backbone))
    if cfg.backbone == "resnet1d" and not set_by_hand:
        width = ResNet1D.default_width(num_outputs)
        if width > 4:
            parts.append(f"a narrower network (DASH's width rule gives {num_outputs} classes {width} channels; "
                         f"backbone_kwargs={{'width': 4}} is what it gives fewer than 10)")
    if cfg.random_draws:
        parts.append(f"fewer random-architecture draws (random_draws={cfg.random_draws}: each is retrained for "
                     f"DASH's steps; random_draws=0 leaves the retraining to DASH and the baseline)")
    parts.append(SMALLER_STEPS)
    return "; ".join(parts)


def warn_if_long(preset: str, forecast: Mapping[str, float], costs: Mapping[str, float], task_name: str,
                 stacklevel: int = 2, cheaper: str = SMALLER_STEPS) -> bool:
    """Warn (`LongRunWarning`) when a ``preset`` run's ``forecast`` (`forecast_seconds`) exceeds what the preset
    promises (`PRESET_SECONDS`) by more than ``LONG_RUN_FACTOR``; returns whether it warned. ``cheaper``: what
    makes each step cheaper (`cheaper_steps`)."""
    promise = PRESET_SECONDS.get(preset)
    if promise is None or forecast["total"] <= LONG_RUN_FACTOR * promise:
        return False
    warnings.warn(f"{_forecast_text(preset, forecast, costs, task_name, promise)}: the inputs are large or long for "
                  f"it. budget='{int(promise // 60)}m' (--budget {int(promise // 60)}m) fits the steps to that time; "
                  f"each step is cheaper with {cheaper}",
                  LongRunWarning, stacklevel=stacklevel)
    return True


def warn_capped(preset: str, forecast: Mapping[str, float], costs: Mapping[str, float], task_name: str,
                steps: Mapping[str, Tuple[int, int]], stacklevel: int = 2,
                cheaper: str = SMALLER_STEPS) -> None:
    """Warn (`LongRunWarning`) that a ``preset`` run's steps, forecast (`forecast_seconds`) over ``CAP_SLACK`` times
    the preset's promise (`PRESET_SECONDS`), are fit to the promise instead (``run(time_cap=True)``).

    ``steps``: for "search" and "retrain", (the steps the promise buys, the preset's steps). ``cheaper``: what
    makes each step cheaper (`cheaper_steps`)."""
    promise = PRESET_SECONDS[preset]
    minutes = f"{promise / 60:g}m"
    (search, search_preset), (retrain, retrain_preset) = steps["search"], steps["retrain"]
    warnings.warn(f"{_forecast_text(preset, forecast, costs, task_name, promise)}: the run is fit to those "
                  f"{_minutes(promise)} instead, as budget='{minutes}' fits it: {search} search steps of the preset's "
                  f"{search_preset} and {retrain} retraining steps of its {retrain_preset} (config.json's "
                  f"budget.time_cap records the forecast). Networks trained for a small part of the preset's steps "
                  f"can end far from what its steps reach: time_cap=False (--no-time-cap) keeps the preset's steps, "
                  f"and the five minutes buy more of them with {cheaper}",
                  LongRunWarning, stacklevel=stacklevel)


def _forecast_text(preset: str, forecast: Mapping[str, float], costs: Mapping[str, float], task_name: str,
                   promise: float) -> str:
    parts = ", ".join(f"{stage} {_minutes(forecast[stage])}" for stage in _STAGES if forecast[stage] > 0)
    return (f"{task_name}: the {preset} preset's steps are forecast to take about {_minutes(forecast['total'])} on "
            f"this machine ({parts}; one search step {costs['search_step']:.2f} s, one retraining step of DASH's "
            f"network {costs['dash_step']:.2f} s, measured), where the preset is meant to take about "
            f"{_minutes(promise)} on 2 CPU cores")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"
