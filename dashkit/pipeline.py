"""The DASH pipeline: search -> tune -> retrain -> test once, beside the backbone with its default kernels.

DASH (Shen, Khodak, Talwalkar et al., "Efficient Architecture Search for Diverse Tasks", NeurIPS 2022)::

    card = search(task, cfg, run_dir)        # supernet: weights and alpha trained together -> ArchCard
    hp = tune(task, cfg, run_dir, card)      # hyper-parameter grid on the discrete net, validation split only
    res = retrain(task, cfg, run_dir, card)  # from scratch with hp; best epoch on validation; test once
    base = baseline(task, cfg, run_dir)      # the same backbone, default kernels, same tune + retrain budget

or all of it, resumable, in one call::

    result = dashkit.run("mnist1d", preset="smoke")

Each stage writes its files to the run directory (see `dashkit.rundir`) and is skipped when its done marker
and files exist; a stage that was stopped resumes from its last epoch checkpoint. Every stage seeds itself from
the run's seed, so a resumed run gives the same result as an uninterrupted one (on CPU, with a fixed conv
backend).

The stages live in `dashkit.stages` (``stages.search``, ``stages.tune``, ``stages.retrain``; one DASH step is
`dashkit.stages.search_step`); this module conducts them and re-exports them under the names above.

Scaling out (see `dashkit.distributed`; `dashkit.launch` starts torchrun from Python): launched by
``torchrun --nproc_per_node N -m dashkit run ...`` every stage trains data-parallel with DistributedDataParallel,
rank 0 alone writes the files, and metrics are computed over the whole split gathered from all ranks. With ``tune_parallel=True`` and a shared ``tune_storage`` the
tuning grid becomes an Optuna queue that ``python -m dashkit tune-worker RUN_DIR`` processes help to empty.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Optional, Union

import torch
from torch import nn

from . import distributed
from .config import RunConfig, make_config
from .rundir import PathLike, RunDir, environment_info
from .stages.common import open_run_dir, read_run, resolve_task, stage_device
from .stages.models import build_backbone, build_model, net_spec
from .stages.queue import tune_worker
from .stages.retrain import baseline, retrain
from .stages.search import search
from .stages.training import NonFiniteLossError, evaluate
from .stages.tune import UNDECIDED_MARGIN, TuningUndecidedWarning, tune, tuning_decided

if TYPE_CHECKING:
    from .supernet import ArchCard
    from .tasks.base import Task

__all__ = ["run", "RunResult", "search", "tune", "retrain", "baseline", "evaluate", "build_backbone",
           "build_model", "resolve_task", "open_run_dir", "load_result", "load_model", "tune_worker",
           "NonFiniteLossError", "TuningUndecidedWarning", "tuning_decided", "UNDECIDED_MARGIN"]


# ---------------------------------------------------------------------------------------------- the result
@dataclass
class RunResult:
    """What `run` returns (and `load_result` reads back from a run directory).

    Attributes:
        task: the task's name.
        metric: the metric's name (lower is better).
        metrics: test metric per model, ``{"dash": ..., "baseline": ...}``, each computed once over the split.
        val_metrics: the best validation metric per model (the epoch it picked).
        card: the searched architecture.
        hparams: the tuned (or configured) hyper-parameters per model.
        times: wall seconds per stage.
        paths: where the files are (run_dir, config, archcard, metrics, weights, figures).
        config: the full configuration.
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

    def summary(self) -> str:
        """A few lines: metrics, the architecture and the time per stage."""
        lines = [f"task {self.task}: test {self.metric} (lower is better)"]
        for name, value in self.metrics.items():
            val = self.val_metrics.get(name, float("nan"))
            lines.append(f"  {name:<9} {value:10.4f}   (best validation {val:.4f})")
        lines.append("architecture (kernel size k, dilation d per searched layer):")
        lines += ["  " + row for row in self.card.summary().splitlines()]
        lines.append("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in self.times.items()))
        lines.append(f"outputs in {self.paths['run_dir']}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- run
def run(task: Union["Task", str], preset: str = "smoke", out: Optional[PathLike] = None, seed: int = 0,
        device: str = "auto", resume: bool = True, overwrite: bool = False, figures: bool = True, verbose: bool = True,
        **overrides: Any) -> RunResult:
    """Search, tune, retrain and test DASH on a task, beside the default-kernel baseline.

    Args:
        task: a registered task name (``dashkit.tasks.names()``) or a ``dashkit.tasks.Task``.
        preset: "smoke" (minutes on a laptop), "standard" or "paper" (DASH's published budgets).
        out: the run directory; default ``runs/<task>-<preset>-seed<seed>``.
        seed: the one seed of the run.
        device: "auto" (cuda, then mps, then cpu), "cpu", "cuda", "cuda:N" or "mps".
        resume: continue a run already in `out` (made with the same config); finished stages are skipped.
        overwrite: delete a run already in `out` and start afresh.
        figures: save PNG figures in ``out/figures``.
        verbose: print a line as each stage finishes.
        **overrides: flat settings such as ``search_epochs=3`` (see ``dashkit.config.setting_names()``).

    Returns:
        A RunResult.

    Example:
        >>> result = dashkit.run("mnist1d", preset="smoke", out="runs/mnist1d")
        >>> result.metrics
        {'dash': ..., 'baseline': ...}
    """
    task = resolve_task(task)
    cfg = make_config(preset, task.defaults, seed=seed, device=device, **overrides)
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out = {out!r}: expected None or a folder path (str or pathlib.Path)")
    # every check that can fail on the input runs before the run directory is touched
    dev = stage_device(cfg)  # fails now, not after the search, when the device is missing; joins torchrun's group
    _preflight(task, cfg)
    out = Path(out) if out is not None else Path("runs") / f"{task.name}-{preset}-seed{seed}"
    rd = open_run_dir(out, task, cfg, resume=resume, overwrite=overwrite, preset=preset)
    env = {**environment_info(dev), "world_size": distributed.world_size()}
    if not rd.exists("environment.json"):  # a failed resume leaves the previous session's record alone
        rd.write_json("environment.json", env)
    say = print if verbose and distributed.is_main() else (lambda *a, **k: None)
    ranks = f" x {distributed.world_size()} processes" if distributed.is_distributed() else ""
    say(f"dashkit: {task.summary()}; preset {preset}, device {dev}{ranks}, run directory {rd.path}")
    card = search(task, cfg, rd)
    say("search: done; " + ", ".join(f"{layer.name} k={layer.k} d={layer.d}" for layer in card.layers))
    res = retrain(task, cfg, rd, card)
    say(f"dash: test {task.metric_name} {res['test']:.4f} (validation {res['val']:.4f}, {res['hparams']})")
    if cfg.baseline:
        base = baseline(task, cfg, rd)
        say(f"baseline: test {task.metric_name} {base['test']:.4f} (validation {base['val']:.4f}, "
            f"{base['hparams']})")
    rd.write_json("environment.json", env)  # the session that finished the run
    if figures and rd.writable:
        from .viz import save_run_figures

        save_run_figures(rd)
    distributed.barrier()  # every file is rank 0's
    result = load_result(rd)
    say(f"outputs in {rd.path}")
    return result


def _preflight(task: "Task", cfg: RunConfig) -> None:
    """Raise on a config that cannot run with this task, before any file is written or any epoch trained.

    Builds the search space and both backbones (cheap: no supernet, no data) and checks that every batch can be
    split over the torchrun processes.
    """
    from .space import SearchSpace

    _, _, ks, ds = net_spec(task, cfg)
    SearchSpace(ks, ds, dims=task.dims)
    build_backbone(task, cfg, "search")
    dropouts = cfg.tune.dropouts if cfg.tune.enabled else (cfg.retrain.dropout,)
    build_backbone(task, cfg, "retrain", dropout=max(dropouts))
    for stage in ("search", "tune", "retrain"):
        distributed.per_rank_batch(getattr(cfg, stage).batch_size, f"{stage}_batch_size")


def load_model(run_dir: Union[RunDir, PathLike], which: str = "dash", task: Union["Task", str, None] = None,
               device: Union[torch.device, str] = "cpu") -> nn.Module:
    """The trained network of a run, with its saved weights (best validation epoch), in eval mode.

    Args:
        run_dir: a run directory whose retraining finished.
        which: "dash" (the searched architecture) or "baseline" (default kernels).
        task: the Task or its registered name; default the name in config.json.
        device: where to put the model.

    Returns:
        The model; ``model(x)`` maps x (B, *task.in_shape) to outputs.
    """
    from .supernet import ArchCard

    if which not in ("dash", "baseline"):
        raise ValueError(f"which = {which!r}: expected 'dash' or 'baseline'")
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    _, cfg, task = read_run(rd, task)
    card = ArchCard.load(rd.file("archcard.json")) if which == "dash" else None
    model = build_model(task, cfg, card)
    state = rd.load_weights(f"{which}.safetensors")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"weights file {str(rd.file(which + '.safetensors'))!r} does not fit the {which} model of "
                         f"this run's config ({str(e).splitlines()[0]}); was it copied from another run?") from e
    return model.to(torch.device(device)).eval()


def load_result(run_dir: Union[RunDir, PathLike]) -> RunResult:
    """Read a finished (or partly finished) run back from its directory."""
    from .supernet import ArchCard

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    meta, cfg, _ = read_run(rd, resolve=False)  # a run of an unregistered task reads back too
    metrics = rd.read_json("metrics.json") if rd.exists("metrics.json") else {}
    card = ArchCard.load(rd.file("archcard.json")) if rd.exists("archcard.json") else None
    models = [m for m in ("dash", "baseline") if isinstance(metrics, dict) and m in metrics]
    times = {stage: float(rd.done_info(stage).get("seconds", float("nan"))) for stage in
             ("search", "tune", "retrain", "baseline_tune", "baseline_retrain") if stage in rd.done_stages()}
    paths = {"run_dir": rd.path, "config": rd.file(RunDir.CONFIG), "archcard": rd.file("archcard.json"),
             "metrics": rd.file("metrics.json"), "figures": rd.path / "figures"}
    paths.update({f"weights_{m}": rd.file(f"{m}.safetensors") for m in models})
    try:
        return RunResult(task=meta["task"], metric=metrics.get("metric", ""),
                         metrics={m: float(metrics[m]["test"]) for m in models},
                         val_metrics={m: float(metrics[m]["val"]) for m in models}, card=card,
                         hparams={m: dict(metrics[m]["hparams"]) for m in models}, times=times, paths=paths,
                         config=cfg)
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{str(rd.file('metrics.json'))!r} is not a dashkit metrics file ({type(e).__name__}: "
                         f"{e}); delete it and resume the run to recompute it") from e
