"""The DASH pipeline: search -> tune -> retrain -> test once, beside the backbone with its default kernels.

DASH (Shen, Khodak, Talwalkar et al., "Efficient Architecture Search for Diverse Tasks", NeurIPS 2022)::

    card = search(task, cfg, run_dir)        # supernet: weights and alpha trained together -> ArchCard
    hp = tune(task, cfg, run_dir, card)      # hyper-parameter grid on the discrete net, validation split only
    res = retrain(task, cfg, run_dir, card)  # from scratch with hp; best epoch on validation; test once
    base = baseline(task, cfg, run_dir)      # the same backbone, default kernels, same tune + retrain budget
    ctrl = random_control(task, cfg, run_dir, card)  # random architectures of the space, DASH's hp and steps

or all of it, resumable, in one call::

    result = dashkit.run("mnist1d")                   # the standard preset: optimiser steps per stage
    result = dashkit.run("mnist1d", budget="5min")    # a time budget, measured and shared among the stages
    labels = result.predict(x)                        # predictions in the task's own labels

The random-architecture control (`dashkit.stages.control`; ``random_draws``, 2 by default, 0 at the smoke
preset and to turn it off) retrains architectures drawn uniformly from DASH's own search space with the
hyper-parameters DASH's tuning chose, for DASH's retraining steps: ``result.metrics["random"]`` is their mean test
metric, ``result.random`` the per-draw detail.

A preset counts optimiser steps per stage, whatever the size of the data; the epochs, batch sizes and, with a
time budget, the steps themselves are derived once (`dashkit.budget`) and recorded in config.json as the run's
plan, which a resumed run keeps. A timed run re-plans after the search and after the tunings when the machine
has slowed down (`dashkit.budget.replan`: fewer tuning and retraining steps), or gives the retraining more steps
when it is well ahead of its plan; the re-planned steps are recorded too, and a resumed run keeps them. A slowdown
that starts during the retraining drops the random draws that would end the run late (`dashkit.budget.trim_draws`).
(For calling the stages one by one: ``time_plan`` plans, ``replan_stages`` re-plans after a stage.)

Each stage writes its files to the run directory (see `dashkit.rundir`) and is skipped when its done marker
and files exist; a stage that was stopped resumes from its last epoch checkpoint. Every stage seeds itself from
the run's seed, so a resumed run gives the same result as an uninterrupted one (on CPU, with a fixed conv
backend).

The stages live in `dashkit.stages` (``stages.search``, ``stages.tune``, ``stages.retrain``; one DASH step is
`dashkit.stages.search_step`); this module conducts them and re-exports them under the names above.

Scaling out (see `dashkit.distributed`; `dashkit.launch` starts torchrun from Python): launched by
``torchrun --nproc_per_node N -m dashkit run ...`` every stage trains data-parallel with DistributedDataParallel,
rank 0 alone writes the files, and metrics are computed over the whole split gathered from all ranks. With
``tune_parallel=True`` and a shared ``tune_storage`` the tuning grid becomes an Optuna queue that
``python -m dashkit tune-worker RUN_DIR`` processes help to empty.
"""
from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from . import distributed, progress
from .budget import CAP_SLACK, PRESET_SECONDS, BudgetTooSmallError, cheaper_steps, forecast_seconds, format_plan, \
    parse_budget, plan_budget, replan, run_plan, stage_plan, tuning_factor, tuning_folds, tuning_runs, \
    trim_draws, warn_capped, warn_if_long
from .config import RunConfig, make_config
from .rundir import PathLike, RunDir, environment_info
from .stages import costs as stage_costs
from .stages.common import caller_stacklevel, open_run_dir, read_run, resolve_task, stage_device, \
    stage_done
from .stages.control import random_card, random_control, random_line
from .stages.models import build_backbone, build_model, net_spec
from .stages.queue import tune_worker
from .stages.retrain import baseline, retrain, retrain_done
from .stages.search import search
from .stages.shuffled import ShuffledControl, shuffled_search
from .stages.training import NonFiniteLossError, evaluate
from .stages.tune import UNDECIDED_MARGIN, SmallValidationWarning, TuningUndecidedWarning, tune, tuning_decided
from .tasks.base import split_digest

if TYPE_CHECKING:
    from .supernet import ArchCard
    from .tasks.base import Task

__all__ = ["run", "RunResult", "search", "tune", "retrain", "baseline", "evaluate", "build_backbone",
           "build_model", "resolve_task", "open_run_dir", "load_result", "load_model", "predict", "time_plan",
           "replan_stages",
           "tune_worker", "random_control", "random_card", "best_network", "shuffled_control", "ShuffledControl",
           "NonFiniteLossError", "TuningUndecidedWarning", "SmallValidationWarning", "tuning_decided",
           "UNDECIDED_MARGIN"]


# ---------------------------------------------------------------------------------------------- the result
@dataclass
class RunResult:
    """What `run` returns (and `load_result` reads back from a run directory).

    Attributes:
        task: the task's name.
        metric: the metric's name (lower is better).
        metrics: test metric per model, ``{"dash": ..., "baseline": ..., "random": ...}``, each computed once over
            the split; "random" (present when the run trained the random-architecture control) is the mean over
            the random architectures.
        val_metrics: the best validation metric per model (the epoch it picked; "random": the mean over the draws).
        card: the searched architecture.
        hparams: the tuned (or configured) hyper-parameters per model ("random": DASH's, which the draws used).
        times: wall seconds per stage (``random_<i>_retrain`` per random draw).
        paths: where the files are (run_dir, config, archcard, metrics, weights, figures).
        config: the full configuration.
        plan: per stage the steps, epochs, steps per epoch and batch size it had on this task (config.json's plan).
        budget: the time budget's record (budget, measured costs, shares, planned seconds), or None.
        classes: a classification task's labels in class-index order (config.json's task_info), or None.
        random: the random-architecture control as metrics.json records it (``"test"``, ``"test_sd"``, ``"val"``,
            ``"draws"``, ``"per_draw"``, ...; `dashkit.stages.control.summarise`), or None when it was not run.
        best: the network to use, chosen on validation: "dash" or "baseline", whichever has the lower best
            validation metric ("dash" on a tie), as `best_network`; "dash" when no baseline was trained.
            ``which="best"`` in `predict` and `load_model` loads it.
    """

    task: str
    metric: str
    metrics: Dict[str, float]
    val_metrics: Dict[str, float]
    card: Optional["ArchCard"]
    hparams: Dict[str, Dict[str, float]]
    times: Dict[str, float]
    paths: Dict[str, Path]
    config: RunConfig = field(repr=False)
    plan: Dict[str, Dict[str, Any]] = field(default_factory=dict, repr=False)
    budget: Optional[Dict[str, Any]] = field(default=None, repr=False)
    classes: Optional[list] = field(default=None, repr=False)
    random: Optional[Dict[str, Any]] = field(default=None, repr=False)

    @property
    def best(self) -> str:
        return best_network(self.val_metrics)

    def predict(self, x: Any, which: str = "dash", task: Union["Task", str, None] = None,
                device: Union[torch.device, str] = "cpu") -> np.ndarray:
        """Predictions of the run's trained network for inputs ``x`` (N, *in_shape): see `predict`."""
        return predict(self.paths["run_dir"], x, which=which, task=task, device=device)

    def summary(self) -> str:
        """A few lines: metrics, the architecture, the plan of each stage and the time per stage."""
        lines = [f"task {self.task}: test {self.metric} (lower is better)"]
        for name, value in self.metrics.items():
            val = self.val_metrics.get(name, float("nan"))
            line = f"  {name:<9} {value:10.4f}   (best validation {val:.4f})"
            if name == "random" and self.random:
                line += "   " + random_line(self.random)
            lines.append(line)
        if "baseline" in self.val_metrics and "dash" in self.val_metrics:
            lines.append(f"  chosen on validation: {'DASH' if self.best == 'dash' else 'the baseline'} "
                         f"(validation {self.val_metrics['dash']:.4g} DASH, {self.val_metrics['baseline']:.4g} "
                         f"baseline; which='best' loads it)")
        lines.append("architecture (kernel size k, dilation d per searched layer):")
        lines += ["  " + row for row in self.card.summary().splitlines()]
        if self.plan:
            lines.append("plan (optimiser steps per stage on this task's data):")
            lines.append(format_plan(self.plan, self.budget))
        lines.append("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in self.times.items()))
        lines.append(f"outputs in {self.paths['run_dir']}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- run
def run(task: Union["Task", str], preset: str = "standard", out: Optional[PathLike] = None, seed: int = 0,
        device: str = "auto", resume: bool = True, overwrite: bool = False, figures: bool = True, verbose: bool = True,
        budget: Union[str, float, None] = None, time_cap: bool = True, **overrides: Any) -> RunResult:
    """Search, tune, retrain and test DASH on a task, beside the default-kernel baseline.

    Args:
        task: a registered task name (``dashkit.tasks.names()``) or a ``dashkit.tasks.Task``.
        preset: "standard" (about 5 minutes on a laptop CPU for the offline 1D tasks and small datasets: a result),
            "smoke" (seconds: a check that everything runs, not a result) or "paper" (DASH's published epochs).
            smoke and standard give each stage a number of optimiser steps; see `dashkit.budget`.
        out: the run directory; default ``runs/<task>-<preset>-seed<seed>`` (``...-<budget>-seed<seed>`` with a
            budget).
        seed: the one seed of the run.
        device: "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps".
        resume: continue a run already in `out` (made with the same config); finished stages are skipped.
        overwrite: delete a run already in `out` and start afresh.
        figures: save PNG figures in ``out/figures``.
        verbose: print a line as each stage finishes.
        budget: a wall-time budget for the whole call: seconds, or text such as "90s", "5m", "5min", "1h". The
            step cost of each network is measured and the time shared among the stages (`dashkit.budget`); the
            preset still gives batch sizes, learning rates and the tuning grid. After the search and after the
            tunings the stages left are re-planned to the speed the machine showed, when they would otherwise
            overrun, and the retraining gets more steps when the run would leave over 10% of the budget unused
            (`dashkit.budget.replan`; config.json's ``budget.replans``). The retraining's steps are fixed once
            DASH's network starts them; before each random draw the run projects its end at the speed the
            retrainings ran; where that is past 1.15 times the budget, the draws that would end it after the
            budget are dropped with a warning (`dashkit.budget.trim_draws`; ``budget.draws_dropped``). A resumed
            run keeps its plan, re-planned steps and the draws kept included.
        time_cap: keep the ``standard`` preset to its promise (about 5 minutes a run on 2 CPU cores,
            `dashkit.budget.PRESET_SECONDS`). A fresh run without a budget measures its step costs (a few seconds)
            and forecasts the preset's steps; where they would take more than ``CAP_SLACK`` (1.15) times the
            promise here (long series, large inputs, a slow machine), the run is fit to the promise as
            ``budget="5m"`` would fit it, with no stage above the preset's steps (the time a stage held there
            leaves goes to the others; the record's ``ceilings``): fewer steps; a `LongRunWarning` gives the
            forecast, and config.json's ``budget.time_cap`` records it; a resumed run keeps that plan. A run
            forecast within the slack keeps the preset's steps unless, after the search (its network costed as
            searched, not as the typical architecture the forecast assumed) or after the tunings, the stages left
            at the speed seen would end past ``CAP_SLACK`` times the promise: then the stages left are fit to the
            promise as a capped run's are (``budget.time_cap.fit_after`` says after which stage). False keeps
            the preset's steps whatever they take (the warning then comes above twice the promise). Steps set in
            ``overrides`` (``search_steps=...``) are kept as given: no cap.
        **overrides: flat settings such as ``search_steps=500`` (see ``dashkit.config.setting_names()``).
            ``random_draws=N`` sets the random-architecture control: N architectures drawn uniformly from the search
            space, retrained after DASH and the baseline with DASH's tuned hyper-parameters and its retraining
            steps (default 2; 0 at the smoke preset; 0 turns it off). With a time budget the retraining share is
            split among DASH, the baseline and the draws (the same steps each), and draws the time cannot pay for
            are dropped with a warning (`dashkit.budget.plan_budget`).

    Returns:
        A RunResult.

    Example:
        >>> result = dashkit.run("mnist1d", preset="smoke", out="runs/mnist1d")
        >>> result.metrics
        {'dash': ..., 'baseline': ...}
        >>> dashkit.run("mnist1d").metrics      # the standard preset: with the random-architecture control
        {'dash': ..., 'baseline': ..., 'random': ...}
    """
    t_call = time.monotonic()
    seconds = parse_budget(budget) if budget is not None else None
    counted = sorted(k for k in overrides if k.split("_", 1)[-1] in ("steps", "epochs", "batches_per_epoch",
                                                                      "max_batches", "n_trials"))
    if seconds is not None and counted:
        raise ValueError(f"budget = {budget!r} decides the steps of every stage, so {', '.join(counted)} cannot be "
                         f"set with it; drop {'them' if len(counted) > 1 else 'it'} or the budget")
    task = resolve_task(task)
    cfg = make_config(preset, task.defaults, seed=seed, device=device, **overrides)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out = {out!r}: expected None or a folder path (str or pathlib.Path)")
    # every check that can fail on the input runs before the run directory is touched
    dev = stage_device(cfg)  # fails now, not after the search, when the device is missing; joins torchrun's group
    _preflight(task, cfg)
    name = f"{task.name}-{preset}" + (f"-{seconds:g}s" if seconds is not None else "")
    out = Path(out) if out is not None else Path("runs") / f"{name}-seed{seed}"
    record, planned, watch = None, None, None
    if not isinstance(time_cap, bool):
        raise TypeError(f"time_cap = {time_cap!r}: expected True (fit a preset run to the preset's promised time "
                        f"where its steps would take longer) or False (keep the preset's steps)")
    if seconds is None and preset in PRESET_SECONDS:
        if distributed.main_decides(resume and not overwrite and (out / RunDir.CONFIG).exists()):
            seconds = _stored_cap(out)  # a resumed run that was fit to its preset's time keeps that plan
        else:
            seconds, planned, watch = _forecast(task, cfg, preset, dev, figures, t_call,
                                                may_cap=time_cap and not counted)
    if seconds is not None:
        text = budget if isinstance(budget, str) else f"{seconds:g}s"  # a capped run's record has its own
        cfg, record, fresh = _plan_time(task, cfg, out, seconds, text, dev, t_call, figures, resume and not overwrite,
                                        planned=planned)
        _preflight(task, cfg)
        progress.set_deadline(t_call + seconds)
    try:
        return _run(task, cfg, preset, out, dev, resume, overwrite, figures, verbose, record,
                    t_call if seconds is not None or watch is not None else None,
                    grow=seconds is not None and fresh, watch=watch)
    finally:
        progress.set_deadline(None)


def _run(task: "Task", cfg: RunConfig, preset: str, out: Path, dev: torch.device, resume: bool, overwrite: bool,
         figures: bool, verbose: bool, record: Optional[Dict[str, Any]], t_call: Optional[float] = None,
         grow: bool = False, watch: Optional[Dict[str, Any]] = None) -> RunResult:
    """`run` once its configuration (and time plan) is fixed: the stages, the files, the result.

    With a time budget (``record``; its clock started at ``t_call``) the stages left are re-planned after the
    search and after the tunings (`_replan`); DASH's and the baseline's tunings therefore both run before the
    retrainings (each stage seeds itself, so the order changes no result). ``grow``: the plan was made in this
    call, so a run ahead of it may raise its retraining steps (`dashkit.budget.replan`). ``watch``: a preset run
    forecast within its promised time (`_forecast`; ``{}`` on the ranks other than 0), watched the same way: fit
    to the promise only where a stage's speed or the searched network's cost project it past ``CAP_SLACK`` times
    the promise (`_replan`).
    """
    rd = open_run_dir(out, task, cfg, resume=resume, overwrite=overwrite, preset=preset, budget=record)
    env = {**environment_info(dev), "world_size": distributed.world_size()}
    if not rd.exists("environment.json"):  # a failed resume leaves the previous session's record alone
        rd.write_json("environment.json", env)
    say = print if verbose and distributed.is_main() else (lambda *a, **k: None)
    ranks = f" x {distributed.world_size()} processes" if distributed.is_distributed() else ""
    say(f"dashkit: {task.summary()}; preset {preset}, device {dev}{ranks}, run directory {rd.path}")
    say("plan (optimiser steps per stage on this task's data):\n" + format_plan(run_plan(task, cfg), record))
    watched = record is None and watch is not None
    if watched:
        record = watch  # not config.json's budget unless the watch fits the run to its promise (`_replan`)
    timed = record is not None and t_call is not None  # every rank alike (the record is rank 0's)
    ran, t0 = not stage_done(rd, "search", ("archcard.json",)), time.monotonic()
    card = search(task, cfg, rd)
    kept = len(card.kept_layers())
    say("search: done; " + ", ".join(f"{layer.name} k={layer.k} d={layer.d}" for layer in card.layers)
        + (f"; the {kept} undecided layers are trained at the backbone's default kernels" if kept else ""))
    if timed:
        cfg = _replan(task, cfg, rd, preset, record, "search", ran, time.monotonic() - t0, t_call, say, grow, card,
                      watch=watched)
        watched = watched and not (record or {}).get("replans")  # once fit, a capped run's re-plans
        tunings = ("tune", "baseline_tune") if cfg.baseline else ("tune",)
        ran, t0 = any([not stage_done(rd, stage, (f"{stage}.json",)) for stage in tunings]), time.monotonic()
        tune(task, cfg, rd, card)
        if cfg.baseline:
            tune(task, cfg, rd, None)
        cfg = _replan(task, cfg, rd, preset, record, "tune", ran, time.monotonic() - t0, t_call, say, grow,
                      watch=watched)
    retrained: Dict[str, float] = {}  # wall seconds of each retraining that ran in this call (`_keep_draws`)
    ran, t0 = not retrain_done(rd, card), time.monotonic()
    res = retrain(task, cfg, rd, card)
    if ran:
        retrained["dash"] = time.monotonic() - t0
    say(f"dash: test {task.metric_name} {res['test']:.4f} (validation {res['val']:.4f}, {res['hparams']})")
    if cfg.baseline:
        ran, t0 = not retrain_done(rd, None), time.monotonic()
        base = baseline(task, cfg, rd)
        if ran:
            retrained["baseline"] = time.monotonic() - t0
        say(f"baseline: test {task.metric_name} {base['test']:.4f} (validation {base['val']:.4f}, "
            f"{base['hparams']})")
    if cfg.random_draws:
        watching = watched and not (record or {}).get("replans")  # once fit, the record is a capped run's
        keep = _keep_draws(task, cfg, rd, record, retrained, t_call, say, watch=watching) if timed else None
        ctrl = random_control(task, cfg, rd, card, keep=keep)
        if ctrl is not None:
            say(f"random: test {task.metric_name} {ctrl['test']:.4f} (validation {ctrl['val']:.4f}), "
                + random_line(ctrl))
    rd.write_json("environment.json", env)  # the session that finished the run
    if figures and rd.writable:
        from .viz import save_run_figures

        save_run_figures(rd)
    distributed.barrier()  # every file is rank 0's
    result = load_result(rd)
    say(f"outputs in {rd.path}")
    return result


def _replan(task: "Task", cfg: RunConfig, rd: RunDir, preset: str, record: Optional[Dict[str, Any]], stage: str,
            ran: bool, spent: float, t_call: Optional[float], say: Any, grow: bool = False,
            card: Optional["ArchCard"] = None, watch: bool = False) -> RunConfig:
    """The config with the stages after ``stage`` re-planned to the speed it ran at (`dashkit.budget.replan`).

    ``spent``: the wall seconds of ``stage`` in this call (the tunings: DASH's and the baseline's together), on
    the clock the budget's ``t_call`` was read from.

    Only a stage that ran (wholly or partly) in this call is followed by a re-plan, and only once: a resumed run
    whose record already holds a re-plan after ``stage`` (or whose ``stage`` finished in an earlier call) keeps the
    steps config.json holds. A stage resumed from a checkpoint is timed from the resume: it looks faster than it
    was, so it may miss a re-plan, never cause a wrong shrink. A re-plan is appended to the record's ``replans``
    and written, with the new steps, to config.json (rank 0 decides and writes; every rank gets the steps). The
    progress bars' time left then counts down to the re-planned end. ``grow``: the plan was made in this call
    (every stage before the re-plan was timed whole), so a run ahead of it may raise its retraining steps.

    After the search, ``card`` (its choice) is costed first: the plan costed DASH's network at a typical
    architecture of the space, and the searched one is timed against it (`dashkit.stages.costs.measure_chosen`);
    the record's ``dash_step`` and ``dash_eval`` are multiplied by the ratios (the random draws keep their costs,
    ``random_step`` and ``random_eval``: measured as drawn at the start, or the typical architecture's in a record
    without them), which the record keeps as ``chosen_costs`` (with the typical costs as ``typical``), before the
    re-plan.

    ``watch``: ``record`` is a preset run's forecast within its promise (`_forecast`), not a budget: nothing
    changes, and nothing is written, unless the stages left, at the speed seen, would end after ``CAP_SLACK``
    times the promise (a searched network dearer than the forecast's typical one, a machine that got busier).
    Then the run is fit to the promise as a capped run is (the same `dashkit.budget.replan`, to the promise's
    seconds; never grown), the record's ``time_cap`` says after which stage (``fit_after``) and where the run was
    heading (``projected_seconds``), and config.json keeps the record as a capped run's, so that a resumed run
    keeps the fitted steps.
    """
    keys = ("changed", "tune_steps", "tune_n_trials", "retrain_steps", "end", "tune_dropped")
    unchanged = [0.0] * len(keys)

    def decide() -> list:
        done = [r.get("after") for r in (record or {}).get("replans", [])]
        if not ran or not record or stage in done or t_call is None:
            return unchanged
        tuned = tuning_runs(task, cfg)
        steps = {"search_steps": cfg.search.steps or 0, "tune_steps": (cfg.tune.steps or 0) if tuned else 0,
                 "tune_configs": cfg.tune.n_configs() if tuned else 0, "retrain_steps": cfg.retrain.steps or 0}
        if not steps["retrain_steps"] or not steps["search_steps"]:
            return unchanged  # the epochs path: not a budget's plan
        if stage == "search" and card is not None and "chosen_costs" not in record:
            _cost_the_choice(task, cfg, rd, record, card, say, write=not watch)
        per_pass = {s: stage_plan(task, cfg, s).batches_per_pass for s in ("search", "tune", "retrain")}
        factor = None
        if stage == "tune":  # speed from the finished trials: the walk and the pruner leave others unrun or short
            trials = {net: rd.read_json(f"{name}.json").get("trials", [])
                      for net, name in (("dash", "tune"), ("baseline", "baseline_tune"))
                      if rd.exists(f"{name}.json") and (net == "dash" or cfg.baseline)}
            factor = tuning_factor(record, trials, steps["tune_steps"], per_pass) if steps["tune_steps"] else None
            if factor is None:  # no trial finished (all pruned or diverged): no speed seen; the search's stands in
                seen = [r["factor"] for r in record.get("replans", []) if r.get("after") == "search"]
                factor = max([1.0] + seen)
        now = time.monotonic() - t_call
        if watch:  # within the slack the preset's steps stand; past it, the run is fit to the promise
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the fit below warns where even the minimums overrun
                past = replan({**record, "seconds": CAP_SLACK * record["seconds"]}, steps, stage, spent, now,
                              per_pass, baseline=cfg.baseline, factor=factor)
            if past is None:
                return unchanged
            record["time_cap"].update(fit_after=stage, projected_seconds=round(past["projected_before"], 1))
        entry = replan(record, steps, stage, spent, now, per_pass, baseline=cfg.baseline,
                       grow=grow and not watch, factor=factor)
        if entry is None:
            return unchanged
        record.setdefault("replans", []).append(entry)
        new = entry["new"]
        if tuned and new["tune_configs"] == 0:  # dropped: the retraining keeps more of its steps without it
            return [1.0, -1, cfg.tune.n_trials if cfg.tune.n_trials is not None else -1, new["retrain_steps"],
                    entry["projected_end"], 1.0]
        n_trials = new["tune_configs"] if tuned and new["tune_configs"] < cfg.tune.n_configs() else \
            (cfg.tune.n_trials if cfg.tune.n_trials is not None else -1)
        return [1.0, new["tune_steps"] if tuned else -1, n_trials, new["retrain_steps"], entry["projected_end"], 0.0]

    got = distributed.broadcast_floats(distributed.on_main(decide), len(keys))
    if not got[0]:
        return cfg
    changes: Dict[str, Any] = {"retrain_steps": int(got[3]), "tune_n_trials": None if got[2] < 0 else int(got[2])}
    if got[1] >= 1:
        changes["tune_steps"] = int(got[1])
    if got[5]:
        changes["tune_enabled"] = False
    new_cfg = cfg.override(**changes)
    if distributed.is_main() and record:
        meta = rd.read_json(RunDir.CONFIG)
        # the re-planned keys alone (run_config_dict would also hash the data and count the classes again)
        meta.update({"config": new_cfg.to_dict(), "plan": run_plan(task, new_cfg), "budget": record})
        rd.write_json(RunDir.CONFIG, meta)
        entry = record["replans"][-1]
        old, new = entry["old"], entry["new"]
        if watch:
            cap = record["time_cap"]
            say(f"the {cap['preset']} preset's steps, forecast at {cap['forecast_seconds']:.0f} s, are now projected "
                f"to end at {cap['projected_seconds']:.0f} s, over {CAP_SLACK:g}x its {cap['promise_seconds']:.0f} s: "
                f"the run is fit to them (time_cap=False keeps the steps)")
        say(f"re-plan after the {stage}: it ran {entry['factor']:.2f}x its planned time; "
            + (f"tuning {old['tune_configs']} x {old['tune_steps']} -> "
               + (f"{new['tune_configs']} x {new['tune_steps']} steps, " if new["tune_configs"] else "dropped, ")
               if stage == "search" and old["tune_configs"] else "")
            + f"retraining {old['retrain_steps']} -> {new['retrain_steps']} steps"
            + (f" (DASH, the baseline{' and the random draws' if cfg.random_draws else ''} alike)" if cfg.baseline
               else "")
            + f"; projected end {entry['projected_end']:.0f} s of {record['seconds']:.0f} s"
            + (f" ({entry['note']})" if entry["note"] else ""))
    if t_call is not None:
        progress.set_deadline(t_call + got[4])
    return new_cfg


def _keep_draws(task: "Task", cfg: RunConfig, rd: RunDir, record: Optional[Dict[str, Any]],
                retrained: Dict[str, float], t_call: float, say: Any, watch: bool = False
                ) -> Callable[[int], bool]:
    """`random_control`'s ``keep`` for a timed run: before each draw not yet done, whether it still fits the time.

    The draw before it (run in this call) is timed into ``retrained`` (DASH's and the baseline's retrainings are
    there already), and `dashkit.budget.trim_draws` projects the run's end at the speed they ran. Only when the run
    would end after ``CAP_SLACK`` times its budget are draws dropped (never one already done), and then down to the
    most that end by the budget: rank 0 decides, appends the entry to the record's ``draws_dropped`` and writes
    config.json with the kept ``random_draws``, so that a resumed run keeps the count; a `UserWarning` and a line
    say so, and the progress bars count down to the new projected end. Every rank gets the count. ``watch``:
    ``record`` is a preset run's forecast within its promise (`_replan`'s watch), and config.json then keeps the
    record as a capped run's (``time_cap.fit_after`` "retraining").
    """
    state: Dict[str, Any] = {"kept": cfg.random_draws, "draw": None, "t": 0.0}
    per_pass = stage_plan(task, cfg, "retrain").batches_per_pass
    steps = cfg.retrain.steps or 0

    def decide(i: int) -> list:  # [draws kept, projected end (0: unchanged)]
        unchanged = [float(state["kept"]), 0.0]
        if not record or not steps:
            return unchanged
        now = time.monotonic() - t_call
        entry = trim_draws(record, steps, per_pass, dict(retrained), now, i, state["kept"])
        if entry is None:
            return unchanged
        record.setdefault("draws_dropped", []).append(entry)
        record["random_draws"] = entry["new"]
        if watch:
            record["time_cap"].update(fit_after="retraining", projected_seconds=round(entry["projected_before"], 1))
        new_cfg = cfg.override(random_draws=entry["new"])
        meta = rd.read_json(RunDir.CONFIG)
        meta.update({"config": new_cfg.to_dict(), "plan": run_plan(task, new_cfg), "budget": record})
        rd.write_json(RunDir.CONFIG, meta)
        text = (f"budget = {record.get('text', record['seconds'])!r}: {entry['note']}; the retraining's steps stay "
                f"as DASH's were, and the draws left are dropped (projected end {entry['projected_end']:.0f} s)")
        warnings.warn(text, stacklevel=2)
        say(f"random draws: {entry['note']} (projected end {entry['projected_end']:.0f} s)")
        return [float(entry["new"]), entry["projected_end"]]

    def keep(i: int) -> bool:
        if state["draw"] is not None:
            retrained[f"random_{state['draw']}"] = time.monotonic() - state["t"]
        if i >= state["kept"]:
            return False
        got = distributed.broadcast_floats(distributed.on_main(lambda: decide(i)), 2)
        if int(got[0]) < state["kept"]:
            state["kept"] = int(got[0])
            progress.set_deadline(t_call + got[1])
        state.update(draw=i, t=time.monotonic())
        return i < state["kept"]

    return keep


def _cost_the_choice(task: "Task", cfg: RunConfig, rd: RunDir, record: Dict[str, Any], card: "ArchCard",
                     say: Any, write: bool = True) -> None:
    """Rank 0, after the search: the budget record's DASH costs become the searched network's
    (`dashkit.stages.costs.measure_chosen`), the ratios recorded as ``chosen_costs``; config.json is rewritten
    (``write``; a preset run's watch, `_replan`, writes its record only when it fits the run)."""
    ratios = stage_costs.measure_chosen(task, cfg, card, stage_device(cfg))
    c = record["costs"]
    record["costs"] = {**c, "random_step": c.get("random_step", c["dash_step"]),
                       "random_eval": c.get("random_eval", c["dash_eval"]),
                       "dash_step": c["dash_step"] * ratios["step"], "dash_eval": c["dash_eval"] * ratios["eval"]}
    record["chosen_costs"] = {"after": "search", "step_ratio": round(ratios["step"], 4),
                              "eval_ratio": round(ratios["eval"], 4),
                              "typical": {"dash_step": c["dash_step"], "dash_eval": c["dash_eval"]}}
    if write:
        meta = rd.read_json(RunDir.CONFIG)
        meta["budget"] = record
        rd.write_json(RunDir.CONFIG, meta)
    say(f"costed the searched network: one step {ratios['step']:.2f}x, one validation pass {ratios['eval']:.2f}x "
        f"those of the typical architecture the plan assumed")


def time_plan(task: Union["Task", str], cfg: RunConfig, budget: Union[str, float], out: Optional[PathLike] = None,
              figures: bool = True) -> Tuple[RunConfig, Dict[str, Any]]:
    """A time budget's steps for running the stages one by one: ``(cfg with the steps, the budget's record)``.

    What `run` does with ``budget=``, for a notebook or script that calls ``search``, ``tune``, ``retrain`` and
    ``baseline`` itself: pass the record to ``open_run_dir(..., budget=record)`` so that config.json keeps it. The
    clock starts at this call. A run already in ``out`` with the same budget keeps its plan.

    Example:
        >>> cfg, record = pipeline.time_plan(task, cfg, "2m", out="runs/m")
        >>> rd = pipeline.open_run_dir("runs/m", task, cfg, budget=record)
    """
    t_call = time.monotonic()
    seconds = parse_budget(budget)
    task = resolve_task(task)
    text = budget if isinstance(budget, str) else f"{seconds:g}s"
    cfg, record, _ = _plan_time(task, cfg, Path(out) if out is not None else Path("."), seconds, text,
                                stage_device(cfg), t_call, figures, resume=out is not None)
    _CLOCKS[id(record)] = t_call
    return cfg, record


_CLOCKS: Dict[int, float] = {}  # time_plan's records (by identity) -> the monotonic second their clock started


def replan_stages(stage: str, task: Union["Task", str], cfg: RunConfig, run_dir: Union[RunDir, PathLike],
                  record: Dict[str, Any], seconds: float, card: Optional["ArchCard"] = None,
                  verbose: bool = True) -> RunConfig:
    """After ``stage`` of a budget planned by `time_plan`, the config with the stages left re-planned, as `run`
    re-plans its own (`dashkit.budget.replan`; it never grows the retraining here).

    Args:
        stage: "search", or "tune" once DASH's and the baseline's tunings have both run (the plan costs them
            together).
        record: the record `time_plan` returned in this process (its clock started there); updated in place and
            written to config.json with the new steps.
        seconds: the wall seconds ``stage`` took in this call (both tunings for "tune"); 0 for a stage read back
            from the run directory, which is not re-planned after.
        card: after the search, its ArchCard: the searched network is timed against the typical architecture the
            plan costed (`dashkit.stages.costs.measure_chosen`) before the re-plan.

    Returns:
        ``cfg`` with the new ``tune_steps``, ``tune_n_trials`` and ``retrain_steps`` (``cfg`` itself when nothing
        changed).

    Example:
        >>> t0 = time.monotonic(); card = pipeline.search(task, cfg, rd)
        >>> cfg = pipeline.replan_stages("search", task, cfg, rd, record, time.monotonic() - t0, card)
    """
    if stage not in ("search", "tune"):
        raise ValueError(f"stage = {stage!r}: expected 'search' or 'tune' (the stages followed by a re-plan)")
    t_call = _CLOCKS.get(id(record))
    if t_call is None:
        raise ValueError("record: not a record that time_plan returned in this process (its clock started there); "
                         "pass the record time_plan returned")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
        raise ValueError(f"seconds = {seconds!r}: expected the stage's wall seconds, a number >= 0")
    task = resolve_task(task)
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    preset = rd.read_json(RunDir.CONFIG).get("preset") if rd.exists(RunDir.CONFIG) else None
    say = print if verbose and distributed.is_main() else (lambda *a, **k: None)
    return _replan(task, cfg, rd, preset, record, stage, seconds > 0, float(seconds), t_call, say, False, card)


def _plan_time(task: "Task", cfg: RunConfig, out: Path, seconds: float, text: str, device: torch.device,
               t_call: float, figures: bool, resume: bool,
               planned: Optional[Tuple[Dict[str, Any], Dict[str, Any]]] = None
               ) -> Tuple[RunConfig, Dict[str, Any], bool]:
    """The config with a time budget's steps, the budget's record (`dashkit.budget.plan_budget`), and whether
    the plan was made in this call (False: read back from a resumed run's config.json; on every rank alike).

    A run resumed in ``out`` with the same budget keeps the plan in its config.json (nothing is measured again).
    Under torchrun rank 0 measures and decides, and every rank gets the steps. ``planned``: rank 0's plan made
    already (`_budget_plan`'s overrides and record: a preset run fit to its time by `_forecast`), used as it is.
    """
    keys = ("search_steps", "tune_steps", "tune_n_trials", "tune_enabled", "retrain_steps", "random_draws",
            "tune_val_interval", "retrain_val_interval")

    def decide() -> Tuple[Dict[str, Any], Dict[str, Any]]:
        stored = _stored_budget(out, seconds) if resume else None
        if stored is not None:
            old, record = stored
            return ({"search_steps": old.search.steps, "tune_steps": old.tune.steps, "tune_n_trials": old.tune.n_trials,
                     "tune_enabled": old.tune.enabled, "retrain_steps": old.retrain.steps,
                     "random_draws": old.random_draws, "tune_val_interval": old.tune.val_interval,
                     "retrain_val_interval": old.retrain.val_interval}, record, False)
        if planned is not None:
            overrides, record = planned
        else:
            costs = stage_costs.measure_costs(task, cfg, device, figures=figures)
            overrides, record = _budget_plan(task, cfg, seconds, costs, time.monotonic() - t_call, text)
        full = {"tune_steps": cfg.tune.steps, "tune_n_trials": cfg.tune.n_trials, "random_draws": cfg.random_draws,
                "tune_val_interval": cfg.tune.val_interval, "retrain_val_interval": cfg.retrain.val_interval,
                **overrides}
        return full, record, True

    decided = distributed.on_main(decide)
    values = None
    if decided is not None:
        values = [-1.0 if decided[0][k] is None else float(decided[0][k]) for k in keys] + [float(decided[2])]
    got = distributed.broadcast_floats(values, len(keys) + 1)
    fresh = bool(got[-1])
    got = got[:-1]
    overrides = {k: (None if v < 0 else bool(v) if k == "tune_enabled" else int(v)) for k, v in zip(keys, got)}
    if overrides["tune_steps"] is None:  # tuning off, or counted as the preset counts it
        del overrides["tune_steps"]
    return cfg.override(**overrides), (decided[1] if decided is not None else {}), fresh


def _budget_plan(task: "Task", cfg: RunConfig, seconds: float, costs: Mapping[str, float], spent: float,
                 text: str, ceilings: Optional[Mapping[str, int]] = None) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """`dashkit.budget.plan_budget` for this task: (step overrides, the budget's record).

    A tuning that will be skipped (a validation split too small to rank configurations) gets no share: its time goes
    to the retraining; the stage still runs, to record why it chose the retrain defaults. ``ceilings``: the most
    steps of each stage (a preset run fit to its time: the preset's steps).
    """
    per_pass = {stage: stage_plan(task, cfg, stage).batches_per_pass for stage in ("search", "tune", "retrain")}
    skipped = cfg.tune.enabled and not tuning_runs(task, cfg)
    overrides, record = plan_budget(seconds, costs, cfg.override(tune_enabled=False) if skipped else cfg, per_pass,
                                    spent=spent, text=text, folds=tuning_folds(task, cfg), ceilings=ceilings)
    if skipped:
        overrides["tune_enabled"] = True
        record["note"] = "; ".join(n for n in (record["note"], "tuning skipped (the validation split is too small to "
                                                              "rank configurations): its share goes to the retraining")
                                   if n)
    return overrides, record


def _forecast(task: "Task", cfg: RunConfig, preset: str, device: torch.device, figures: bool, t_call: float,
              may_cap: bool) -> Tuple[Optional[float], Optional[Tuple[Dict[str, Any], Dict[str, Any]]],
                                      Optional[Dict[str, Any]]]:
    """Forecast a fresh preset run's steps here; fit it to the preset's promised time when they would overrun it.

    Measures the step costs as a time budget does (a few seconds; `dashkit.stages.costs.measure_costs`) and
    forecasts the run with the budget's cost model (`dashkit.budget.forecast_seconds`). With ``may_cap``, a
    forecast over ``CAP_SLACK`` times the promise (`dashkit.budget.PRESET_SECONDS`) caps the run: the budget of
    the promise is planned (`_budget_plan`; its record keeps ``time_cap``: preset, forecast and promise) and a
    `LongRunWarning` gives the plan's steps. A promise too short for one step of every stage leaves the preset's
    steps. Without a cap, a forecast over twice the promise is warned about.

    A forecast within the slack keeps the preset's steps, but the forecast costs DASH's network as a typical
    architecture of the space and the machine as it was in the measuring seconds; so, with ``may_cap``, such a run
    is watched: the third value is a record of the promise's budget at these costs, with the preset's steps
    (`_watch_record`), which `_run` re-plans against after the search and after the tunings (`_replan`).

    Returns:
        (None, None, watch) when the preset's steps are kept (watch None without ``may_cap`` or when even the
        promise is too short for one step of every stage; ``{}`` on the ranks other than 0); else (the promise's
        seconds, the plan, None) on rank 0 and (the promise's seconds, None, None) on the other ranks under
        torchrun (rank 0 alone measures and decides; the plan reaches them through `_plan_time`).
    """
    promise = PRESET_SECONDS[preset]
    planned, watch = None, None
    if distributed.is_main():
        costs = stage_costs.measure_costs(task, cfg, device, figures=figures)
        forecast = forecast_seconds(costs, cfg, run_plan(task, cfg))
        level = caller_stacklevel() + 1  # + 1: the warnings are raised a frame deeper
        cheaper = cheaper_steps(cfg, task.num_outputs)  # what either warning names as making the steps cheaper
        text = f"{promise / 60:g}m (the {preset} preset's time)"
        if may_cap and forecast["total"] > CAP_SLACK * promise:
            try:
                planned = _budget_plan(task, cfg, promise, costs, time.monotonic() - t_call, text,
                                       ceilings=_ceilings(cfg))
            except BudgetTooSmallError:
                pass  # not one step of every stage fits the promise here: the preset's steps, with the warning
        elif may_cap and _ceilings(cfg) is not None:
            watch = _watch_record(task, cfg, preset, promise, costs, forecast, time.monotonic() - t_call, text)
        if planned is not None:
            overrides, record = planned
            record["time_cap"] = {"preset": preset, "forecast_seconds": round(forecast["total"], 1),
                                  "promise_seconds": promise}
            steps = {stage: (overrides[f"{stage}_steps"], getattr(cfg, stage).steps) for stage in ("search", "retrain")}
            warn_capped(preset, forecast, costs, task.name, steps, stacklevel=level, cheaper=cheaper)
        else:
            warn_if_long(preset, forecast, costs, task.name, stacklevel=level, cheaper=cheaper)
    capped = distributed.main_decides(planned is not None)
    watched = distributed.main_decides(watch is not None)
    if capped:
        return promise, planned, None
    return None, None, ((watch if distributed.is_main() else {}) if watched else None)


def _watch_record(task: "Task", cfg: RunConfig, preset: str, promise: float, costs: Mapping[str, float],
                  forecast: Mapping[str, float], spent: float, text: str) -> Dict[str, Any]:
    """A preset run's record for `_replan`'s watch: a budget record of the promise (`_budget_plan`: costs, tuning
    folds, random draws kept, ceilings) whose planned seconds are the forecast of the preset's own steps, and whose
    ``time_cap`` holds the forecast. Kept in memory; config.json gets it only if the run is fit to its promise."""
    try:
        _, record = _budget_plan(task, cfg, promise, costs, spent, text, ceilings=_ceilings(cfg))
    except BudgetTooSmallError:  # the forecast is within the promise, so this cannot happen; nothing to watch
        return None  # type: ignore[return-value]
    stages = {s: round(forecast[s], 2) for s in ("search", "tune", "retrain")}
    record.update(planned=stages, planned_seconds=round(spent + forecast["after"] + sum(stages.values()), 2),
                  random_draws=cfg.random_draws, note="",
                  val_interval={"tune": cfg.tune.val_interval, "retrain": cfg.retrain.val_interval},
                  time_cap={"preset": preset, "forecast_seconds": round(forecast["total"], 1),
                            "promise_seconds": promise, "watched": True})
    return record


def _ceilings(cfg: RunConfig) -> Optional[Dict[str, int]]:
    """The preset's steps of each stage, which a run fit to the preset's time never exceeds (None where a stage is
    not counted in steps)."""
    steps = {"search": cfg.search.steps, "tune": cfg.tune.steps, "retrain": cfg.retrain.steps}
    return steps if all(isinstance(v, int) and v >= 1 for v in steps.values()) else None


def _stored_cap(out: Path) -> Optional[float]:
    """The budget seconds of a run in ``out`` that its preset's time cap fit to its promise (config.json's
    ``budget.time_cap``), or None; rank 0 reads, every rank gets it."""
    seconds = None
    if distributed.is_main():
        stored = _stored_record(out)
        if stored is not None and stored[1].get("time_cap"):
            seconds = float(stored[1]["seconds"])
    got = distributed.broadcast_floats([seconds if seconds is not None else -1.0] if distributed.is_main() else None,
                                       1)[0]
    return got if got >= 0 else None


def _stored_budget(out: Path, seconds: float) -> Optional[Tuple[RunConfig, Dict[str, Any]]]:
    """The config and budget record of a run in ``out`` made with the same time budget, or None."""
    stored = _stored_record(out)
    if stored is None or stored[1]["seconds"] != seconds:
        return None
    return stored


def _stored_record(out: Path) -> Optional[Tuple[RunConfig, Dict[str, Any]]]:
    """The config and time-budget record in ``out``'s config.json (the record's ``seconds`` a float), or None
    when there is none (no run, a run without a budget, a foreign or corrupt file: RunDir.create says what is
    wrong with the last two)."""
    rd = RunDir(out, writable=False)
    if not rd.exists(RunDir.CONFIG):
        return None
    try:
        meta = rd.read_json(RunDir.CONFIG)
        record = meta.get("budget") if isinstance(meta, dict) else None
        if not isinstance(record, dict):
            return None
        return RunConfig.from_dict(meta["config"]), {**record, "seconds": float(record["seconds"])}
    except (ValueError, TypeError, KeyError):
        return None


def _preflight(task: "Task", cfg: RunConfig) -> None:
    """Raise on a config that cannot run with this task, before any file is written or any epoch trained.

    Builds the search space and both backbones (cheap: no supernet, no data) and checks that every batch can be
    split over the torchrun processes.
    """
    from .augment import check_augment
    from .space import SearchSpace

    check_augment(cfg.augment, task)
    _, _, ks, ds = net_spec(task, cfg)
    SearchSpace(ks, ds, dims=task.dims)
    build_backbone(task, cfg, "search")
    dropouts = cfg.tune.dropouts if cfg.tune.enabled else (cfg.retrain.dropout,)
    build_backbone(task, cfg, "retrain", dropout=max(dropouts))
    for stage in ("search", "tune", "retrain"):
        distributed.per_rank_batch(getattr(cfg, stage).batch_size, f"{stage}_batch_size")


def best_network(val_metrics: Mapping[str, float]) -> str:
    """The network a run's validation split chooses: "baseline" when its best validation metric is lower than
    DASH's, else "dash" (a tie keeps the searched network; "dash" too when no baseline was trained).

    The choice is made on the split that also picked each network's epoch, so the chosen network's validation
    value is optimistic; its test metric, computed once, is the number to quote. With a validation split of a
    few examples (`dashkit.tasks.SmallSplitWarning`) the choice is close to a coin toss when the two are near.

    Example:
        >>> best_network({"dash": 10.0, "baseline": 0.0})
        'baseline'
    """
    dash, base = val_metrics.get("dash"), val_metrics.get("baseline")
    if dash is None:
        raise ValueError(f"val_metrics = {dict(val_metrics)!r}: expected a 'dash' entry (and 'baseline')")
    return "baseline" if base is not None and float(base) < float(dash) else "dash"


def shuffled_control(run_dir: Union[RunDir, PathLike], task: Union["Task", str, None] = None,
                     device: Optional[str] = None) -> ShuffledControl:
    """A run's search beside the same search on shuffled training targets: which choices are the data's.

    The control (`dashkit.stages.shuffled`) repeats the run's search (its config, plan, seed and inputs) with the
    training targets shuffled among the examples (`dashkit.tasks.shuffle_targets`), in
    ``<run_dir>/shuffled_control``, and compares the two layer by layer. Where the run's choices agree with the
    control's far more than chance (``report.prior_made_it``), they are the method's preference on this training
    split rather than the data's; `SearchMemorisingWarning` names the runs where that is likely. It costs one more
    search; a stopped control resumes, and a finished one is read back.

    Args:
        run_dir: a run directory whose search finished.
        task: the Task or its registered name; default the name in config.json. A task made with ``from_arrays``
            must be given, built as the run's was (the same arrays and ``seed``, hence the same training split).
        device: where the control searches; default the run's device setting.

    Returns:
        A `ShuffledControl` (``.summary()``, ``.verdict()``, ``.same``, ``.p_value``); also written to
        ``<run_dir>/shuffled_control.json``, which `dashkit show` prints.

    Example:
        >>> report = dashkit.pipeline.shuffled_control("runs/osuleaf", task=task)
        >>> print(report.summary())
    """
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    meta, cfg, the_task = read_run(rd, task)
    if meta.get("task_summary") and the_task.summary() != meta["task_summary"]:
        raise ValueError(f"task = {the_task.summary()!r} is not the run's task ({meta['task_summary']!r}): build it "
                         f"as the run was built (the same data, and from_arrays' seed)")
    digest = split_digest(the_task) if meta.get("task_digest") else None
    if digest is not None and digest != meta["task_digest"]:
        raise ValueError(f"task = {the_task.summary()!r} has the run's summary but other data (data digest {digest}, "
                         f"the run's {meta['task_digest']}): other examples in a split, e.g. a from_arrays task split "
                         f"with another seed; build it as the run was built (the same arrays, and from_arrays' seed)")
    if not stage_done(rd, "search", ("archcard.json",)):
        raise FileNotFoundError(f"the run in {str(rd.path)!r} has not finished its search (no archcard.json with "
                                f"its done marker): finish the run, or its search, first")
    if device is not None:
        cfg = cfg.override(device=device)
    return shuffled_search(the_task, cfg, rd, preset=meta.get("preset"))[1]


def load_model(run_dir: Union[RunDir, PathLike], which: str = "dash", task: Union["Task", str, None] = None,
               device: Union[torch.device, str] = "cpu") -> nn.Module:
    """The trained network of a run, with its saved weights (best validation epoch), in eval mode.

    Args:
        run_dir: a run directory whose retraining finished.
        which: "dash" (the searched architecture), "baseline" (default kernels), "best" (whichever of the two
            validates better: `best_network`) or "random_<i>" (draw i of the random-architecture control).
        task: the Task or its registered name; default the name in config.json.
        device: where to put the model.

    Returns:
        The model; ``model(x)`` maps x (B, *task.in_shape) to outputs.
    """
    from .supernet import ArchCard

    draw = which[len("random_"):] if isinstance(which, str) and which.startswith("random_") else None
    if which not in ("dash", "baseline", "best") and not (draw is not None and draw.isdigit()):
        raise ValueError(f"which = {which!r}: expected 'dash', 'baseline' or 'best', or 'random_<i>' for draw "
                         f"i = 0, 1, ... of the random-architecture control")
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if which == "best":
        if not rd.exists("metrics.json"):
            raise FileNotFoundError(f"which = 'best' chooses on the run's validation metrics, and "
                                    f"{str(rd.file('metrics.json'))!r} does not exist yet: finish the run first")
        which = best_network({m: v["val"] for m, v in rd.read_json("metrics.json").items()
                              if m in ("dash", "baseline") and isinstance(v, dict)})
    _, cfg, task = read_run(rd, task)
    card_file = "archcard.json" if which == "dash" else f"{which}_archcard.json" if draw is not None else None
    card = ArchCard.load(rd.file(card_file)) if card_file is not None else None
    model = build_model(task, cfg, card)
    state = rd.load_weights(f"{which}.safetensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"weights file {str(rd.file(which + '.safetensors'))!r} does not fit the {which} model of "
                         f"this run's config ({str(e).splitlines()[0]}); was it copied from another run?") from e
    return model.to(torch.device(device)).eval()


def predict(run_dir: Union[RunDir, PathLike], x: Any, which: str = "dash", task: Union["Task", str, None] = None,
            device: Union[torch.device, str] = "cpu", batch_size: int = 256) -> np.ndarray:
    """A finished run's predictions for new inputs, in the task's own labels (classification) or as outputs.

    Args:
        run_dir: a run directory whose retraining finished.
        x: inputs (N, *task.in_shape) as a numpy array, torch tensor or pandas DataFrame (anything with
            ``to_numpy``/``__array__``), prepared as the task's inputs were (for a
            ``from_arrays`` task: the same length policy and mask channel, `dashkit.tasks.byod.pad_series`), in their
            own units: a ``from_arrays`` task's input standardisation (``task.info["input_scaling"]``) is applied
            here; (N, L) is read as one channel.
        which: "dash", "baseline", "best" (whichever of the two validates better: `best_network`) or
            "random_<i>".
        task: the Task or its registered name; default the name in config.json (a ``from_arrays`` task is not
            registered: pass it).
        device: where the model runs.
        batch_size: inputs per forward pass.

    Returns:
        Classification: (N,) labels as the run recorded them (config.json's ``task_info.classes``: the labels
        given to ``from_arrays``, e.g. strings), as ``Task.to_labels`` gives them. Other kinds: the outputs
        (N, ...) as a float32 numpy array, in the targets' units: through ``Task.decode`` when the task trains on
        transformed targets (a ``from_arrays`` regression's standardised ones, darcy's normalised fields).
    """
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    meta, _, the_task = read_run(rd, task)
    model = load_model(rd, which=which, task=the_task, device=device)
    from .tasks.byod import InputScaler, from_array_like

    x = from_array_like(x)  # a pandas DataFrame (or xarray, polars) as its numpy array
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x = {type(x).__name__}: expected a numpy array, torch tensor or pandas DataFrame of "
                        f"shape (N, {', '.join(map(str, the_task.in_shape))})")
    x = x.float()
    if x.dim() == len(the_task.in_shape) and the_task.in_shape[0] == 1:
        x = x.unsqueeze(1)  # (N, L) -> (N, 1, L): one channel
    if tuple(x.shape[1:]) != tuple(the_task.in_shape):
        raise ValueError(f"x has shape {tuple(x.shape)}; expected (N, {', '.join(map(str, the_task.in_shape))}), "
                         f"the task's inputs")
    scaling = the_task.info.get("input_scaling") or (meta.get("task_info") or {}).get("input_scaling")
    if scaling and scaling.get("policy") == "standardize":
        x = torch.from_numpy(InputScaler.from_info(scaling).encode(x.numpy()))
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(model(x[i:i + batch_size].to(torch.device(device))).float().cpu())
    y_hat = torch.cat(outs) if outs else torch.zeros(0, the_task.num_outputs)
    if the_task.kind != "classification":
        return (the_task.decode(y_hat) if the_task.decode is not None else y_hat).float().numpy()
    classes = (meta.get("task_info") or {}).get("classes")
    if classes is None:
        return the_task.to_labels(y_hat)
    return np.asarray(classes)[y_hat.argmax(dim=1).numpy()]


def load_result(run_dir: Union[RunDir, PathLike]) -> RunResult:
    """Read a finished (or partly finished) run back from its directory."""
    from .supernet import ArchCard

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    meta, cfg, _ = read_run(rd, resolve=False)  # a run of an unregistered task reads back too
    metrics = rd.read_json("metrics.json") if rd.exists("metrics.json") else {}
    card = ArchCard.load(rd.file("archcard.json")) if rd.exists("archcard.json") else None
    models = [m for m in ("dash", "baseline", "random") if isinstance(metrics, dict) and m in metrics]
    done = rd.done_stages()
    draws = sorted((s for s in done if s.startswith("random_") and s.endswith("_retrain")),
                   key=lambda s: int(s.split("_")[1]) if s.split("_")[1].isdigit() else -1)
    times = {stage: float(rd.done_info(stage).get("seconds", float("nan"))) for stage in
             ("search", "tune", "retrain", "baseline_tune", "baseline_retrain", *draws) if stage in done}
    paths = {"run_dir": rd.path, "config": rd.file(RunDir.CONFIG), "archcard": rd.file("archcard.json"),
             "metrics": rd.file("metrics.json"), "figures": rd.path / "figures"}
    paths.update({f"weights_{m}": rd.file(f"{m}.safetensors") for m in models if m != "random"})
    try:
        return RunResult(task=meta["task"], metric=metrics.get("metric", ""),
                         metrics={m: float(metrics[m]["test"]) for m in models},
                         val_metrics={m: float(metrics[m]["val"]) for m in models}, card=card,
                         hparams={m: dict(metrics[m]["hparams"]) for m in models}, times=times, paths=paths,
                         config=cfg, plan=dict(meta.get("plan") or {}), budget=meta.get("budget"),
                         classes=(meta.get("task_info") or {}).get("classes"),
                         random=dict(metrics["random"]) if "random" in models else None)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{str(rd.file('metrics.json'))!r} is not a dashkit metrics file ({type(e).__name__}: "
                         f"{e}); delete it and resume the run to recompute it") from e

