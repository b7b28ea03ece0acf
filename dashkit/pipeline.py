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
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import itertools
import json
import math
import random
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .config import RunConfig, make_config, resolve_device
from .progress import progress
from .rundir import RunDir, environment_info

__all__ = ["run", "RunResult", "search", "tune", "retrain", "baseline", "evaluate", "build_backbone",
           "build_model", "resolve_task", "open_run_dir", "load_result", "NonFiniteLossError"]

PathLike = Union[str, Path]
# config keys that may change when a run is resumed: they do not change what is computed
_RESUMABLE_KEYS = ("preset", "config.device", "config.num_workers")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the stage stopped, its last good checkpoint kept."""


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
    card: Any
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


# ----------------------------------------------------------------------------------------------- helpers
def resolve_task(task: Any) -> Any:
    """A Task from a registered name or a Task object."""
    from .tasks import Task, TASKS

    if isinstance(task, Task):
        return task
    if isinstance(task, str):
        return TASKS.get(task)  # an unknown name lists the known ones
    raise TypeError(f"task = {task!r}: expected a registered task name (see dashkit.tasks.names()) or a "
                    f"dashkit.tasks.Task")


def _run_config_dict(task: Any, cfg: RunConfig, preset: Optional[str] = None) -> Dict[str, Any]:
    return {"task": task.name, "task_summary": task.summary(), "preset": preset, "config": cfg.to_dict()}


def open_run_dir(out: PathLike, task: Any, cfg: RunConfig, resume: bool = True, overwrite: bool = False,
                 preset: Optional[str] = None) -> RunDir:
    """Create or reopen the run directory for `task` and `cfg` (another config there is refused)."""
    return RunDir.create(out, _run_config_dict(task, cfg, preset), overwrite=overwrite, resume=resume,
                         ignore=_RESUMABLE_KEYS)


def _as_run_dir(run_dir: Union[RunDir, PathLike], task: Any, cfg: RunConfig) -> RunDir:
    if isinstance(run_dir, RunDir):
        return run_dir
    if isinstance(run_dir, (str, Path)):
        return open_run_dir(run_dir, task, cfg)
    raise TypeError(f"run_dir = {run_dir!r}: expected a folder path or a dashkit.rundir.RunDir")


def _check_cfg(cfg: Any) -> RunConfig:
    if not isinstance(cfg, RunConfig):
        raise TypeError(f"cfg = {cfg!r}: expected a dashkit.config.RunConfig (e.g. make_config('smoke'))")
    return cfg


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def _stage_seed(seed: int, stage: str) -> int:
    """A seed per (run seed, stage): stages draw independent streams, each reproducible on its own."""
    return zlib.crc32(f"{seed}/{stage}".encode())


def _lr_factor(epoch: int, epochs: int, milestones: Tuple[float, ...], gamma: float) -> float:
    """Step decay: gamma ** (milestones passed), milestones given as fractions of the epochs.

    A pure function of the epoch, so a checkpoint's epoch is the whole state of the schedule.
    """
    return gamma ** sum(epoch >= round(m * epochs) for m in milestones)


def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


def _sgd(params: Any, lr: float, momentum: float, nesterov: bool, weight_decay: float) -> torch.optim.SGD:
    # torch's Nesterov needs momentum > 0
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                           weight_decay=weight_decay)


def _autocast(device: torch.device) -> Any:
    # bf16 for the network on CUDA; DashConv keeps its FFTs in float32 itself
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _train_loader(ds: Dataset, batch_size: int, cfg: RunConfig, device: torch.device, seed: int) -> DataLoader:
    """A shuffled loader whose order depends only on `seed` (one seed per epoch makes resumes exact)."""
    g = torch.Generator()
    g.manual_seed(seed)
    n = len(ds)  # type: ignore[arg-type]
    # drop the last partial batch (BatchNorm cannot train on a single example) unless it is the only one
    return DataLoader(ds, batch_size=min(batch_size, n), shuffle=True, generator=g, drop_last=n > batch_size,
                      num_workers=cfg.num_workers, pin_memory=device.type == "cuda")


def _n_batches(loader: DataLoader, fraction: float, cap: Optional[int]) -> int:
    n = max(1, round(fraction * len(loader)))
    return n if cap is None else min(n, cap)


def _to(device: torch.device, *tensors: torch.Tensor) -> List[torch.Tensor]:
    return [t.to(device, non_blocking=True) for t in tensors]


def _loss(model: nn.Module, task: Any, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> torch.Tensor:
    x, y = _to(device, x, y)
    with _autocast(device):
        y_hat = model(x)
    return task.loss(y_hat.float(), y)


def _check_finite(loss: torch.Tensor, stage: str, epoch: int, step: int, rd: RunDir, hint: str) -> None:
    if not torch.isfinite(loss.detach()).all():
        kept = (f"its last good checkpoint {str(rd.checkpoint_path(stage))!r} is kept and a resumed run starts "
                f"from it" if rd.has_checkpoint(stage) else "no epoch had finished, so there is no checkpoint")
        raise NonFiniteLossError(f"{stage}: the training loss became {loss.item()} at epoch {epoch + 1}, step "
                                 f"{step + 1}; the stage stopped and {kept}. {hint}")


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, task: Any, device: Any = "cpu", batch_size: int = 256,
             num_workers: int = 0) -> Tuple[float, float]:
    """The task's metric and mean loss over a whole split, each computed once on all outputs.

    Args:
        model: maps x (B, *task.in_shape) to outputs.
        dataset: a split of the task.
        task: gives ``loss`` and ``metric``.
        device: where the model is.

    Returns:
        (metric, loss).
    """
    device = torch.device(device)
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    outs, ys = [], []
    for x, y in loader:
        (x,) = _to(device, x)
        with _autocast(device):
            outs.append(model(x).float().cpu())
        ys.append(y)
    y_hat, y = torch.cat(outs), torch.cat(ys)
    return task.metric(y_hat, y), float(task.loss(y_hat, y))


# ------------------------------------------------------------------------------------------------ networks
def _net(task: Any, cfg: RunConfig) -> Tuple[str, Dict[str, Any], Tuple[int, ...], Tuple[int, ...]]:
    d = task.defaults
    return (cfg.backbone or d.backbone, dict(cfg.backbone_kwargs if cfg.backbone_kwargs is not None
                                             else d.backbone_kwargs),
            tuple(cfg.kernel_sizes or d.kernel_sizes), tuple(cfg.dilations or d.dilations))


def build_backbone(task: Any, cfg: RunConfig, stage: str = "retrain", dropout: Optional[float] = None) -> nn.Module:
    """The task's backbone with the stage's overrides (``search_backbone`` / ``retrain_backbone``).

    ``in_channels``, ``num_classes``, ``dims`` and ``dense`` come from the task where the constructor takes them.
    """
    from .backbones import BACKBONES

    if stage not in ("search", "retrain"):
        raise ValueError(f"stage = {stage!r}: expected 'search' or 'retrain'")
    name, kwargs, _, _ = _net(task, cfg)
    kwargs.update(getattr(cfg, stage).backbone)
    constructor = BACKBONES.constructor(name)
    params = inspect.signature(constructor).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key, value in (("in_channels", task.in_shape[0]), ("num_classes", task.num_outputs), ("dims", task.dims),
                       ("dense", task.dense)):
        if key not in kwargs and (key in params or takes_any):
            kwargs[key] = value
    if dropout is not None:
        if "dropout" in params or takes_any:
            kwargs["dropout"] = dropout
        elif dropout > 0:
            raise ValueError(f"backbone {name!r} takes no dropout, so dropout = {dropout!r} cannot be used; set "
                             f"tune_dropouts=0 and retrain_dropout=0")
    model = constructor(**kwargs)
    dims = getattr(model, "dims", task.dims)
    if dims != task.dims:
        raise ValueError(f"backbone {name!r} is {dims}D but task {task.name!r} is {task.dims}D; choose another "
                         f"backbone (setting 'backbone')")
    return model


def build_model(task: Any, cfg: RunConfig, card: Any = None, dropout: Optional[float] = None) -> nn.Module:
    """The network that is tuned and retrained: the retrain backbone, with the card's kernels if a card is given.

    ``card=None`` is the baseline: the backbone with its default kernels.
    """
    model = build_backbone(task, cfg, "retrain", dropout=dropout)
    return card.apply(model) if card is not None else model


def _initial_state(task: Any, cfg: RunConfig, rd: RunDir, card: Any, name: str) -> Dict[str, torch.Tensor]:
    """The initial weights every tuning trial and the retraining start from (saved once, then reused)."""
    fname = f"init_{name}.safetensors"
    if rd.exists(fname):
        return rd.load_weights(fname)
    _seed_everything(_stage_seed(cfg.seed, f"init_{name}"))
    state = build_model(task, cfg, card).state_dict()
    rd.save_weights(fname, state)
    return rd.load_weights(fname)


# ------------------------------------------------------------------------------------------------- search
def search(task: Any, cfg: RunConfig, run_dir: Union[RunDir, PathLike]) -> Any:
    """DASH's search on a supernet of the task's backbone; returns the ArchCard (also saved as archcard.json).

    Single-level (DASH): weights and alpha take a step together on the same training batch. Bilevel (first-order
    DARTS): alpha takes its step on a validation batch before the weights step on the training batch. Records
    softmax(alpha) per layer after every epoch in alphas.json.
    """
    from .space import SearchSpace
    from .supernet import (arch_parameters, dash_layers, discretize, postprocess_arch_grads, to_supernet,
                           weight_parameters)
    from .supernet import ArchCard

    task, cfg = resolve_task(task), _check_cfg(cfg)
    rd = _as_run_dir(run_dir, task, cfg)
    if rd.is_done("search", ["archcard.json"]):
        return ArchCard.load(rd.file("archcard.json"))
    sc, device = cfg.search, resolve_device(cfg.device)
    t0 = time.perf_counter()
    seed = _stage_seed(cfg.seed, "search")
    _seed_everything(seed)
    name, _, ks, ds = _net(task, cfg)
    space = SearchSpace(ks, ds, dims=task.dims)
    model = to_supernet(build_backbone(task, cfg, "search"), space, backend=sc.backend, depthwise=sc.depthwise,
                        relaxation=sc.relaxation, tau=sc.tau, grad_scale=sc.grad_scale, rf_penalty=sc.rf_penalty)
    model.to(device)
    w_opt = _sgd(weight_parameters(model), sc.lr, sc.momentum, sc.nesterov, sc.weight_decay)
    a_opt = _sgd(arch_parameters(model), sc.arch_lr, sc.momentum, sc.nesterov, sc.arch_weight_decay)
    layer_names = [n for n, _ in dash_layers(model)]
    rows: List[Dict[str, Any]] = []
    alphas: List[Dict[str, List[float]]] = []
    start, seconds_before = 0, 0.0
    ck = rd.load_checkpoint("search", model, {"weights": w_opt, "arch": a_opt})
    if ck is not None:
        start, extra = ck[0] + 1, ck[1]
        rows, alphas, seconds_before = extra["history"], extra["alphas"], extra["seconds"]
    n = _n_batches(_train_loader(task.train, sc.batch_size, cfg, device, seed), sc.batches_per_epoch,
                   sc.max_batches)
    hint = "Try a smaller search_lr / search_arch_lr, or search_grad_clip > 0."
    bar = progress(total=sc.epochs * n, initial=start * n, desc="search")
    for epoch in range(start, sc.epochs):
        t_epoch = time.perf_counter()
        factor = _lr_factor(epoch, sc.epochs, sc.milestones, sc.gamma)
        _set_lr(w_opt, sc.lr * factor)
        _set_lr(a_opt, sc.arch_lr * factor)
        model.train()
        loader = _train_loader(task.train, sc.batch_size, cfg, device, seed + 1 + epoch)
        val_batches = (_cycle(task.val, sc.batch_size, cfg, device, _stage_seed(cfg.seed, f"search_val_{epoch}"))
                       if sc.scheme == "bilevel" else None)
        total = 0.0
        for step, (x, y) in enumerate(itertools.islice(loader, n)):
            if val_batches is not None:  # first-order DARTS: alpha follows the validation loss
                xv, yv = next(val_batches)
                a_opt.zero_grad(set_to_none=True)
                loss_val = _loss(model, task, xv, yv, device)
                _check_finite(loss_val, "search", epoch, step, rd, hint)
                loss_val.backward()
                postprocess_arch_grads(model)
                a_opt.step()
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            loss = _loss(model, task, x, y, device)
            _check_finite(loss, "search", epoch, step, rd, hint)
            loss.backward()
            if sc.grad_clip > 0:  # weights only: alpha's gradient is normalised by postprocess_arch_grads
                nn.utils.clip_grad_norm_(weight_parameters(model), sc.grad_clip)
            w_opt.step()
            if val_batches is None:  # single-level DASH: alpha steps on the same batch and loss
                postprocess_arch_grads(model)
                a_opt.step()
            total += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=loss.item())
        probs = {ln: torch.softmax(m.alpha.detach().float().cpu(), 0).tolist() for ln, m in dash_layers(model)}
        alphas.append(probs)
        rows.append({"epoch": epoch + 1, "lr": sc.lr * factor, "arch_lr": sc.arch_lr * factor,
                     "train_loss": total / n, "arch_entropy": _mean_entropy(probs),
                     "seconds": round(time.perf_counter() - t_epoch, 3)})
        rd.write_history("search", rows)
        rd.save_checkpoint("search", epoch, model, {"weights": w_opt, "arch": a_opt},
                           extra={"history": rows, "alphas": alphas,
                                  "seconds": seconds_before + time.perf_counter() - t0})
    bar.close()
    _, card = discretize(model)
    card.backbone = name
    card.meta.update({"task": task.name, "seed": cfg.seed, "scheme": sc.scheme, "epochs": sc.epochs})
    rd.write_json("alphas.json", {"layers": layer_names, "candidates": [list(c) for c in space.candidates],
                                  "epochs": [[a[ln] for ln in layer_names] for a in alphas]})
    card.save(rd.file("archcard.json"))
    rd.mark_done("search", {"seconds": seconds_before + time.perf_counter() - t0, "layers": len(layer_names)})
    return card


def _cycle(ds: Dataset, batch_size: int, cfg: RunConfig, device: torch.device, seed: int) -> Iterator[Any]:
    """Shuffled batches of `ds` without end; the order depends only on `seed`."""
    for i in itertools.count():
        yield from _train_loader(ds, batch_size, cfg, device, seed + 104729 * i)


def _mean_entropy(probs: Mapping[str, List[float]]) -> float:
    ent = [-sum(p * math.log(p) for p in ps if p > 0) for ps in probs.values()]
    return sum(ent) / max(len(ent), 1)


# --------------------------------------------------------------------------------------------------- tune
def _names(card: Any) -> Tuple[str, str, str]:
    """(model name, tune stage, retrain stage): DASH's network or the baseline."""
    if card is None:
        return "baseline", "baseline_tune", "baseline_retrain"
    return "dash", "tune", "retrain"


def _train_epochs(model: nn.Module, task: Any, opt: torch.optim.Optimizer, cfg: RunConfig, device: torch.device,
                  epoch: int, epochs: int, lr: float, milestones: Tuple[float, ...], gamma: float,
                  batch_size: int, fraction: float, cap: Optional[int], grad_clip: float, seed: int, stage: str,
                  rd: RunDir, bar: Any) -> float:
    """One epoch of plain supervised training; returns the mean training loss."""
    _set_lr(opt, lr * _lr_factor(epoch, epochs, milestones, gamma))
    model.train()
    loader = _train_loader(task.train, batch_size, cfg, device, seed + 1 + epoch)
    n = _n_batches(loader, fraction, cap)
    total = 0.0
    for step, (x, y) in enumerate(itertools.islice(loader, n)):
        opt.zero_grad(set_to_none=True)
        loss = _loss(model, task, x, y, device)
        _check_finite(loss, stage, epoch, step, rd, f"Try a smaller learning rate ({stage.split('_')[-1]}_lr).")
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        total += loss.item()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=loss.item())
    return total / n


def _retrain_hparams(cfg: RunConfig) -> Dict[str, float]:
    rc = cfg.retrain
    return {"lr": rc.lr, "dropout": rc.dropout, "weight_decay": rc.weight_decay, "momentum": rc.momentum}


def _storage(spec: Optional[str], rd: RunDir) -> Any:
    if spec is None:
        return None
    if "://" in spec:  # a database URL, e.g. sqlite:///tune.db
        return spec
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = Path(spec)
    if not path.is_absolute():
        path = rd.path / path
    path.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def tune(task: Any, cfg: RunConfig, run_dir: Union[RunDir, PathLike], card: Any = None) -> Dict[str, float]:
    """DASH's hyper-parameter grid on the discrete network, selected on the validation split only.

    Every configuration starts from the same saved initial weights and sees the same batches. Configurations
    are tried lr block by lr block (DASH's order); a block is left early when its first
    ``tune_lr_block_patience`` configurations do not beat the best of the earlier blocks. Trials run through an
    Optuna study (GridSampler over the grid, a MedianPruner on the per-epoch validation metric, storage from
    ``tune_storage``: with a journal file, a resumed tuning keeps its finished trials).

    Args:
        card: the ArchCard to tune; None tunes the baseline (default kernels).

    Returns:
        The chosen ``{"lr", "dropout", "weight_decay", "momentum"}``; also written to ``tune.json`` (or
        ``baseline_tune.json``) with every trial.
    """
    import optuna
    from optuna.trial import TrialState

    task, cfg = resolve_task(task), _check_cfg(cfg)
    rd = _as_run_dir(run_dir, task, cfg)
    tc = cfg.tune
    if not tc.enabled:
        return _retrain_hparams(cfg)
    name, stage, _ = _names(card)
    if rd.is_done(stage, [f"{stage}.json"]):
        return dict(rd.read_json(f"{stage}.json")["best"])
    device = resolve_device(cfg.device)
    t0 = time.perf_counter()
    init = _initial_state(task, cfg, rd, card, name)
    grid = tc.grid()
    space = {"lr": list(tc.lrs), "dropout": list(tc.dropouts), "weight_decay": list(tc.weight_decays),
             "momentum": list(tc.momentums)}
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, tc.epochs // 4))
              if tc.pruner == "median" else optuna.pruners.NopPruner())
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would drown the progress bar
    try:
        study = optuna.create_study(storage=_storage(tc.storage, rd), study_name=_study_name(task, cfg, stage),
                                    sampler=optuna.samplers.GridSampler(space, seed=cfg.seed), pruner=pruner,
                                    direction="minimize", load_if_exists=True)
        finished = {_key(t.params): t for t in study.trials
                    if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        bar = progress(total=len(grid) if tc.n_trials is None else min(tc.n_trials, len(grid)), desc=stage)

        def try_config(params: Dict[str, float]) -> Tuple[str, Optional[float]]:
            done = finished.get(_key(params))  # a trial finished before an interruption (journal storage)
            if done is not None:
                state, value = done.state, done.value
            else:
                state, value = _run_trial(study, params, space, task, cfg, rd, card, init, device, stage)
            bar.update(1)
            return state.name.lower(), (value if state == TrialState.COMPLETE else None)

        trials, best, best_value = _walk_lr_blocks(tc, try_config)
        bar.close()
    finally:
        optuna.logging.set_verbosity(verbosity)
    if best is None:
        raise NonFiniteLossError(f"{stage}: every configuration diverged or was pruned (the training loss became "
                                 f"NaN or infinite); try smaller learning rates (tune_lrs)")
    rd.write_history(stage, [{"trial": i, **t} for i, t in enumerate(trials)])
    rd.write_json(f"{stage}.json", {"best": best, "best_val": best_value, "metric": task.metric_name,
                                    "study": study.study_name, "trials": trials})
    rd.mark_done(stage, {"seconds": time.perf_counter() - t0, "best": best, "best_val": best_value})
    return dict(best)


def _walk_lr_blocks(tc: Any, try_config: Any) -> Tuple[List[Dict[str, Any]], Optional[Dict[str, float]], float]:
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
    trials: List[Dict[str, Any]] = []
    best, best_value, tried = None, math.inf, 0
    for lr in tc.lrs:
        before, improved, misses = best_value, False, 0
        for params in (p for p in grid if p["lr"] == lr):
            if tried >= budget:
                return trials, best, best_value
            if tc.lr_block_patience and math.isfinite(before) and not improved and misses >= tc.lr_block_patience:
                trials.append({**params, "value": None, "state": "skipped", "seconds": 0.0})
                continue
            t0 = time.perf_counter()
            state, value = try_config(params)
            tried += 1
            trials.append({**params, "value": value, "state": state, "seconds": round(time.perf_counter() - t0, 3)})
            if value is not None and value < best_value:
                best, best_value = params, value
            if value is not None and value < before:
                improved = True
            else:
                misses += 1
    return trials, best, best_value


def _study_name(task: Any, cfg: RunConfig, stage: str) -> str:
    """Unique per task, stage and config: a shared study database never mixes two different runs."""
    data = {k: v for k, v in cfg.to_dict().items() if k not in ("device", "num_workers")}
    digest = hashlib.sha1(json.dumps(data, sort_keys=True).encode()).hexdigest()[:10]
    return f"{task.name}-{stage}-seed{cfg.seed}-{digest}"


def _key(params: Mapping[str, Any]) -> Tuple[float, ...]:
    return tuple(float(params[k]) for k in ("lr", "dropout", "weight_decay", "momentum"))


def _run_trial(study: Any, params: Dict[str, float], space: Dict[str, list], task: Any, cfg: RunConfig,
               rd: RunDir, card: Any, init: Dict[str, torch.Tensor], device: torch.device, stage: str) -> Any:
    """Train one configuration for tune_epochs; returns (state, best validation metric)."""
    import optuna
    from optuna.trial import TrialState

    tc, rc = cfg.tune, cfg.retrain
    study.enqueue_trial(params)  # DASH's lr-block order, instead of the sampler's shuffled grid order
    trial = study.ask()
    hp = {k: trial.suggest_categorical(k, space[k]) for k in ("lr", "dropout", "weight_decay", "momentum")}
    seed = _stage_seed(cfg.seed, stage)
    _seed_everything(seed)  # the same batches and dropout draws for every configuration
    model = build_model(task, cfg, card, dropout=hp["dropout"])
    model.load_state_dict(init)
    model.to(device)
    opt = _sgd(model.parameters(), hp["lr"], hp["momentum"], rc.nesterov, hp["weight_decay"])
    best = math.inf
    try:
        for epoch in range(tc.epochs):
            _train_epochs(model, task, opt, cfg, device, epoch, tc.epochs, hp["lr"], rc.milestones, rc.gamma,
                          tc.batch_size, tc.batches_per_epoch, tc.max_batches, rc.grad_clip, seed, stage, rd, None)
            value, _ = evaluate(model, task.val, task, device, 2 * tc.batch_size, cfg.num_workers)
            best = min(best, value)
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED, None
    except FloatingPointError:  # a diverging configuration is a bad configuration, not a broken run
        study.tell(trial, state=TrialState.FAIL)
        return TrialState.FAIL, None
    study.tell(trial, best)
    return TrialState.COMPLETE, best


# ------------------------------------------------------------------------------------------------ retrain
def retrain(task: Any, cfg: RunConfig, run_dir: Union[RunDir, PathLike], card: Any = None) -> Dict[str, Any]:
    """Train the network from its saved initial weights with the tuned hyper-parameters, then test once.

    The best epoch is picked on the validation split; the test split is read once, at the end, with the
    weights of that epoch.

    Args:
        card: the ArchCard to retrain; None retrains the baseline (default kernels).

    Returns:
        ``{"metric", "test", "val", "best_epoch", "hparams", "seconds"}``; also in metrics.json.
    """
    task, cfg = resolve_task(task), _check_cfg(cfg)
    rd = _as_run_dir(run_dir, task, cfg)
    name, _, stage = _names(card)
    if rd.is_done(stage, [f"{name}.safetensors"]):
        return rd.done_info(stage)
    hp = tune(task, cfg, rd, card)
    rc, device = cfg.retrain, resolve_device(cfg.device)
    t0 = time.perf_counter()
    init = _initial_state(task, cfg, rd, card, name)
    seed = _stage_seed(cfg.seed, stage)
    _seed_everything(seed)
    model = build_model(task, cfg, card, dropout=hp["dropout"])
    model.load_state_dict(init)
    model.to(device)
    opt = _sgd(model.parameters(), hp["lr"], hp["momentum"], rc.nesterov, hp["weight_decay"])
    rows: List[Dict[str, Any]] = []
    start, best_val, best_epoch, seconds_before = 0, math.inf, -1, 0.0
    ck = rd.load_checkpoint(stage, model, {"sgd": opt})
    if ck is not None:
        start, extra = ck[0] + 1, ck[1]
        rows, best_val, best_epoch, seconds_before = (extra["history"], extra["best_val"], extra["best_epoch"],
                                                      extra["seconds"])
    n = _n_batches(_train_loader(task.train, rc.batch_size, cfg, device, seed), rc.batches_per_epoch,
                   rc.max_batches)
    bar = progress(total=rc.epochs * n, initial=start * n, desc=stage)
    for epoch in range(start, rc.epochs):
        t_epoch = time.perf_counter()
        train_loss = _train_epochs(model, task, opt, cfg, device, epoch, rc.epochs, hp["lr"], rc.milestones,
                                   rc.gamma, rc.batch_size, rc.batches_per_epoch, rc.max_batches, rc.grad_clip,
                                   seed, stage, rd, bar)
        val_metric, val_loss = evaluate(model, task.val, task, device, 2 * rc.batch_size, cfg.num_workers)
        if val_metric < best_val:
            best_val, best_epoch = val_metric, epoch
            rd.save_weights(f"{name}.safetensors", model.state_dict())
        rows.append({"epoch": epoch + 1, "lr": opt.param_groups[0]["lr"], "train_loss": train_loss,
                     "val_loss": val_loss, "val_metric": val_metric,
                     "seconds": round(time.perf_counter() - t_epoch, 3)})
        rd.write_history(stage, rows)
        rd.save_checkpoint(stage, epoch, model, {"sgd": opt},
                           extra={"history": rows, "best_val": best_val, "best_epoch": best_epoch,
                                  "seconds": seconds_before + time.perf_counter() - t0})
        bar.set_postfix(epoch=epoch + 1, val=val_metric)
    bar.close()
    # the one and only look at the test split: the weights of the best validation epoch
    model.load_state_dict(rd.load_weights(f"{name}.safetensors"))
    test_metric, test_loss = evaluate(model, task.test, task, device, 2 * rc.batch_size, cfg.num_workers)
    result = {"metric": task.metric_name, "test": test_metric, "test_loss": test_loss, "val": best_val,
              "best_epoch": best_epoch + 1, "hparams": hp, "seconds": seconds_before + time.perf_counter() - t0}
    metrics = rd.read_json("metrics.json") if rd.exists("metrics.json") else {"metric": task.metric_name}
    metrics[name] = {k: result[k] for k in ("test", "val", "best_epoch", "hparams")}
    rd.write_json("metrics.json", metrics)
    rd.mark_done(stage, result)
    return result


def baseline(task: Any, cfg: RunConfig, run_dir: Union[RunDir, PathLike]) -> Dict[str, Any]:
    """The backbone with its default kernels, tuned and retrained on DASH's budget, tested once."""
    task, cfg = resolve_task(task), _check_cfg(cfg)
    rd = _as_run_dir(run_dir, task, cfg)
    tune(task, cfg, rd, None)
    return retrain(task, cfg, rd, None)


# ---------------------------------------------------------------------------------------------------- run
def run(task: Any, preset: str = "smoke", out: Optional[PathLike] = None, seed: int = 0, device: str = "auto",
        resume: bool = True, overwrite: bool = False, figures: bool = True, verbose: bool = True,
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
    dev = resolve_device(cfg.device)  # fails now, not after the search, when the device is missing
    out = Path(out) if out is not None else Path("runs") / f"{task.name}-{preset}-seed{seed}"
    rd = open_run_dir(out, task, cfg, resume=resume, overwrite=overwrite, preset=preset)
    rd.write_json("environment.json", environment_info(dev))
    say = print if verbose else (lambda *a, **k: None)
    say(f"dashkit: {task.summary()}; preset {preset}, device {dev}, run directory {rd.path}")
    card = search(task, cfg, rd)
    say("search: done; " + ", ".join(f"{layer.name} k={layer.k} d={layer.d}" for layer in card.layers))
    res = retrain(task, cfg, rd, card)
    say(f"dash: test {task.metric_name} {res['test']:.4f} (validation {res['val']:.4f}, {res['hparams']})")
    if cfg.baseline:
        base = baseline(task, cfg, rd)
        say(f"baseline: test {task.metric_name} {base['test']:.4f} (validation {base['val']:.4f}, "
            f"{base['hparams']})")
    if figures:
        from .viz import save_run_figures

        save_run_figures(rd)
    result = load_result(rd)
    say(f"outputs in {rd.path}")
    return result


def load_result(run_dir: Union[RunDir, PathLike]) -> RunResult:
    """Read a finished (or partly finished) run back from its directory."""
    from .supernet import ArchCard

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not rd.exists(RunDir.CONFIG):
        raise FileNotFoundError(f"{str(rd.path)!r} is not a dashkit run directory (no {RunDir.CONFIG})")
    meta = rd.read_json(RunDir.CONFIG)
    cfg = RunConfig.from_dict(meta["config"])
    metrics = rd.read_json("metrics.json") if rd.exists("metrics.json") else {}
    card = ArchCard.load(rd.file("archcard.json")) if rd.exists("archcard.json") else None
    models = [m for m in ("dash", "baseline") if m in metrics]
    times = {stage: float(rd.done_info(stage).get("seconds", float("nan"))) for stage in
             ("search", "tune", "retrain", "baseline_tune", "baseline_retrain") if stage in rd.done_stages()}
    paths = {"run_dir": rd.path, "config": rd.file(RunDir.CONFIG), "archcard": rd.file("archcard.json"),
             "metrics": rd.file("metrics.json"), "figures": rd.path / "figures"}
    paths.update({f"weights_{m}": rd.file(f"{m}.safetensors") for m in models})
    return RunResult(task=meta["task"], metric=metrics.get("metric", ""),
                     metrics={m: float(metrics[m]["test"]) for m in models},
                     val_metrics={m: float(metrics[m]["val"]) for m in models}, card=card,
                     hparams={m: dict(metrics[m]["hparams"]) for m in models}, times=times, paths=paths, config=cfg)
