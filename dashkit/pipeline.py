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

Scaling out (see `dashkit.distributed`): launched by ``torchrun --nproc_per_node N -m dashkit run ...`` every
stage trains data-parallel with DistributedDataParallel, rank 0 alone writes the files, and metrics are computed
over the whole split gathered from all ranks. With ``tune_parallel=True`` and a shared ``tune_storage`` the
tuning grid becomes an Optuna queue that ``python -m dashkit tune-worker RUN_DIR`` processes help to empty.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import itertools
import json
import math
import os
import random
import socket
import time
import uuid
import warnings
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from . import distributed
from .config import RunConfig, make_config, storage_spec
from .layers import auto_convs
from .progress import PlainProgress, progress
from .rundir import RunDir, environment_info

__all__ = ["run", "RunResult", "search", "tune", "retrain", "baseline", "evaluate", "build_backbone",
           "build_model", "resolve_task", "open_run_dir", "load_result", "load_model", "tune_worker",
           "NonFiniteLossError", "TuningUndecidedWarning"]

PathLike = Union[str, Path]
# config keys that may change when a run is resumed: they do not change what is computed
_RESUMABLE_KEYS = ("preset", "config.device", "config.num_workers")


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the stage stopped, its last good checkpoint kept."""


class TuningUndecidedWarning(UserWarning):
    """No tuning configuration beat the input-ignoring guess on validation: the choice among them was noise."""


# the best tuning trial must beat the input-ignoring guess by this share of it to count as a decision
UNDECIDED_MARGIN = 0.02


def tuning_decided(best_value: float, chance: Optional[float], margin: float = UNDECIDED_MARGIN) -> bool:
    """Whether a tuning's best validation metric (lower is better) beat the chance level by more than ``margin``.

    ``chance`` is the metric of the best input-ignoring guess (``Task.chance_metric("val")``); None (regression and
    dense tasks, which have no such level) counts as decided. When every configuration is still within
    ``margin * |chance|`` of it, none has learned anything measurable in the tuning budget, and their order is noise.
    """
    if chance is None or not math.isfinite(chance):
        return True
    return best_value < chance - margin * abs(chance)


def _caller_stacklevel() -> int:
    """The ``stacklevel`` for a warning raised here that names the first frame outside the dashkit package."""
    package = os.path.dirname(os.path.abspath(__file__))
    frame, level = inspect.currentframe(), 0
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return max(level, 1)  # this helper's frame is level 0 and the warn call's frame is level 1


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
    """Create or reopen the run directory for `task` and `cfg` (another config there is refused).

    Under torchrun rank 0 creates or checks it; the other ranks get a read-only view once rank 0 is done (or
    raise rank 0's error).
    """
    rd = distributed.on_main(RunDir.create, out, _run_config_dict(task, cfg, preset), overwrite=overwrite,
                             resume=resume, ignore=_RESUMABLE_KEYS)
    return rd if rd is not None else RunDir(out, writable=False)


def _as_run_dir(run_dir: Union[RunDir, PathLike], task: Any, cfg: RunConfig) -> RunDir:
    if isinstance(run_dir, RunDir):
        if not distributed.is_main() and run_dir.writable:  # rank 0 alone writes, whoever made this RunDir
            return RunDir(run_dir.path, writable=False)
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


def _device(cfg: RunConfig) -> torch.device:
    """This process's device; under torchrun it also joins the process group (once)."""
    return distributed.setup(cfg.device)


def _done(rd: RunDir, stage: str, files: Tuple[str, ...] = ()) -> bool:
    """Whether a stage is finished, as rank 0 sees it (rank 0 writes the markers, so every rank agrees)."""
    return distributed.main_decides(rd.is_done(stage, files))


def _progress(**kwargs: Any) -> Any:
    """A progress display on rank 0; a silent one on the other ranks (one set of lines per run)."""
    if distributed.is_main():
        return progress(**kwargs)
    return PlainProgress(total=kwargs.get("total"), initial=kwargs.get("initial", 0), silent=True)


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
    """A shuffled loader whose order depends only on `seed` (one seed per epoch makes resumes exact).

    Under torchrun each rank loads ``batch_size / world_size`` examples per step from its own shard, so a step
    sees ``batch_size`` examples over all ranks.
    """
    if distributed.is_distributed():
        per_rank = distributed.per_rank_batch(batch_size)
        sampler = distributed.train_sampler(ds, seed)
        m = len(sampler)
        return DataLoader(ds, batch_size=min(per_rank, m), sampler=sampler, drop_last=m > per_rank,
                          num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
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
    local_bad = not bool(torch.isfinite(loss.detach()).all())
    bad = local_bad
    if distributed.is_distributed():  # every rank must stop together, or the others would wait in backward
        bad = distributed.all_reduce_sum([float(local_bad)])[0] > 0
    if bad:
        kept = (f"its last good checkpoint {str(rd.checkpoint_path(stage))!r} is kept and a resumed run starts "
                f"from it" if rd.has_checkpoint(stage) else "no epoch had finished, so there is no checkpoint")
        value = loss.item() if local_bad else "NaN or infinite on another rank"
        raise NonFiniteLossError(f"{stage}: the training loss became {value} at epoch {epoch + 1}, step "
                                 f"{step + 1}; the stage stopped and {kept}. {hint}")


def _mean_over_ranks(total: float, n: int) -> float:
    """The mean training loss of an epoch: `total` over `n` steps on each rank, averaged over the ranks."""
    return distributed.all_reduce_sum([total])[0] / (n * distributed.world_size())


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, task: Any, device: Any = "cpu", batch_size: int = 256,
             num_workers: int = 0) -> Tuple[float, float]:
    """The task's metric and mean loss over a whole split, each computed once on all outputs.

    Under torchrun every rank evaluates a contiguous shard of the split with rank 0's BatchNorm statistics; the
    outputs (N, ...) and targets (N, ...) are all-gathered in order and every rank computes the same metric over
    all N of them.

    Args:
        model: maps x (B, *task.in_shape) to outputs (not the DDP wrapper).
        dataset: a split of the task.
        task: gives ``loss`` and ``metric``.
        device: where the model is.

    Returns:
        (metric, loss).
    """
    device = torch.device(device)
    model.eval()
    n = len(dataset)  # type: ignore[arg-type]
    part: Dataset = dataset
    if distributed.is_distributed():
        distributed.broadcast_buffers(model)
        lo, hi = distributed.shard_range(n)
        part = Subset(dataset, range(lo, hi))
    loader = DataLoader(part, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    outs, ys = [], []
    for x, y in loader:
        (x,) = _to(device, x)
        with _autocast(device):
            outs.append(model(x).float().cpu())
        ys.append(y)
    y_hat, y = torch.cat(outs), torch.cat(ys)
    if distributed.is_distributed():
        y_hat, y = distributed.all_gather_cat(y_hat, n), distributed.all_gather_cat(y, n)
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

    ``card=None`` is the baseline: the backbone with its default kernels. Both convolve as
    ``retrain_conv_backend`` says (see ``dashkit.layers.auto_convs``); the weights are those of ``nn.Conv``.
    """
    model = build_backbone(task, cfg, "retrain", dropout=dropout)
    if card is not None:
        model = card.apply(model)
    if cfg.retrain.conv_backend != "plain":
        auto_convs(model, cfg.retrain.conv_backend)
    return model


def _initial_state(task: Any, cfg: RunConfig, rd: RunDir, card: Any, name: str) -> Dict[str, torch.Tensor]:
    """The initial weights every tuning trial and the retraining start from (saved once, then reused)."""
    fname = f"init_{name}.safetensors"
    if not distributed.main_decides(rd.exists(fname)):
        if distributed.is_main():
            _seed_everything(_stage_seed(cfg.seed, f"init_{name}"))
            rd.save_weights(fname, build_model(task, cfg, card).state_dict())
        distributed.barrier()  # the other ranks read what rank 0 wrote
    return rd.load_weights(fname)


# ------------------------------------------------------------------------------------------------- search
def search(task: Any, cfg: RunConfig, run_dir: Union[RunDir, PathLike]) -> Any:
    """DASH's search on a supernet of the task's backbone; returns the ArchCard (also saved as archcard.json).

    Single-level (DASH): weights and alpha take a step together on the same training batch. Bilevel (first-order
    DARTS): alpha takes its step on a validation batch before the weights step on the training batch. Records
    softmax(alpha) per layer after every epoch in alphas.json.

    Under torchrun the supernet trains in DistributedDataParallel: alpha's gradient is averaged with the weights'
    during backward, DASH's post-processing runs on the averaged gradient, and alpha is checked to be the same
    bits on every rank after every epoch.
    """
    from .space import SearchSpace
    from .supernet import (arch_parameters, dash_layers, discretize, postprocess_arch_grads, to_supernet,
                           weight_parameters)
    from .supernet import ArchCard

    task, cfg = resolve_task(task), _check_cfg(cfg)
    rd = _as_run_dir(run_dir, task, cfg)
    if _done(rd, "search", ("archcard.json",)):
        return ArchCard.load(rd.file("archcard.json"))
    sc, device = cfg.search, _device(cfg)
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
    net = distributed.wrap(model, device)  # forward and backward through DDP; everything else uses `model`
    n = _n_batches(_train_loader(task.train, sc.batch_size, cfg, device, seed), sc.batches_per_epoch,
                   sc.max_batches)
    hint = "Try a smaller search_lr / search_arch_lr, or search_grad_clip > 0."
    bar = _progress(total=sc.epochs * n, initial=start * n, desc="search")
    check_every_step = distributed.is_distributed() and distributed.sync_check_every_step()
    alpha_bits: List[Dict[str, List[str]]] = []
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
                loss_val = _loss(net, task, xv, yv, device)
                _check_finite(loss_val, "search", epoch, step, rd, hint)
                loss_val.backward()
                postprocess_arch_grads(model)
                a_opt.step()
            w_opt.zero_grad(set_to_none=True)
            a_opt.zero_grad(set_to_none=True)
            loss = _loss(net, task, x, y, device)
            _check_finite(loss, "search", epoch, step, rd, hint)
            loss.backward()  # under DDP this returns with every gradient (alpha's too) averaged over the ranks
            if sc.grad_clip > 0:  # weights only: alpha's gradient is normalised by postprocess_arch_grads
                nn.utils.clip_grad_norm_(weight_parameters(model), sc.grad_clip)
            w_opt.step()
            if val_batches is None:  # single-level DASH: alpha steps on the same batch and loss
                postprocess_arch_grads(model)
                a_opt.step()
            if check_every_step:
                distributed.check_same(arch_parameters(model), f"alpha after search epoch {epoch + 1}, step "
                                                                f"{step + 1}")
            total += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=loss.item())
        if distributed.is_distributed():
            distributed.check_same(arch_parameters(model), f"alpha after search epoch {epoch + 1}")
            alpha_bits.append({ln: distributed.float_bits(m.alpha.detach().cpu().tolist())
                               for ln, m in dash_layers(model)})
            distributed.debug_dump("search_alpha", {"start_epoch": start, "epochs": alpha_bits})
        probs = {ln: torch.softmax(m.alpha.detach().float().cpu(), 0).tolist() for ln, m in dash_layers(model)}
        alphas.append(probs)
        rows.append({"epoch": epoch + 1, "lr": sc.lr * factor, "arch_lr": sc.arch_lr * factor,
                     "train_loss": _mean_over_ranks(total, n), "arch_entropy": _mean_entropy(probs),
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
    if rd.writable:
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
    return _mean_over_ranks(total, n)


def _retrain_hparams(cfg: RunConfig) -> Dict[str, float]:
    rc = cfg.retrain
    return {"lr": rc.lr, "dropout": rc.dropout, "weight_decay": rc.weight_decay, "momentum": rc.momentum}


def _storage(spec: Optional[str], rd: RunDir) -> Any:
    """The Optuna storage for a ``tune_storage`` value: None (in memory), a journal file or a database URL."""
    kind, target = storage_spec(spec)
    if kind == "memory":
        return None
    if kind == "url":  # a database URL, e.g. postgresql://...
        return target
    import optuna
    from optuna.storages.journal import JournalFileBackend

    path = _journal_path(target, rd)
    path.parent.mkdir(parents=True, exist_ok=True)
    _repair_journal(path)
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def _journal_path(target: str, rd: RunDir) -> Path:
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


def _space(tc: Any) -> Dict[str, list]:
    return {"lr": list(tc.lrs), "dropout": list(tc.dropouts), "weight_decay": list(tc.weight_decays),
            "momentum": list(tc.momentums)}


def _pruner(tc: Any) -> Any:
    import optuna

    return (optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=max(1, tc.epochs // 4))
            if tc.pruner == "median" else optuna.pruners.NopPruner())


def tune(task: Any, cfg: RunConfig, run_dir: Union[RunDir, PathLike], card: Any = None) -> Dict[str, float]:
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
        level ("chance_val"), whether the tuning decided ("decided") and every trial.
    """
    import optuna

    task, cfg = resolve_task(task), _check_cfg(cfg)
    rd = _as_run_dir(run_dir, task, cfg)
    tc = cfg.tune
    if not tc.enabled:
        return _retrain_hparams(cfg)
    name, stage, _ = _names(card)
    if _done(rd, stage, (f"{stage}.json",)):
        return dict(rd.read_json(f"{stage}.json")["best"])
    device = _device(cfg)
    t0 = time.perf_counter()
    init = _initial_state(task, cfg, rd, card, name)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one line per trial would drown the progress bar
    try:
        if tc.parallel:
            study = _open_queue(task, cfg, rd, stage) if distributed.is_main() else None
            _work_through_queue(study, task, cfg, rd, card, init, device, stage, wait_for_others=True)
            lookup = _queue_results(study, tc) if distributed.is_main() else {}
        else:
            study, lookup = _open_sequential_study(task, cfg, rd, stage)
        try_config, bar = _trier(study, lookup, task, cfg, rd, card, init, device, stage, sequential=not tc.parallel)
        trials, best, best_value = _walk_lr_blocks(tc, try_config)
        bar.close()
    finally:
        optuna.logging.set_verbosity(verbosity)
    if best is None:
        raise NonFiniteLossError(f"{stage}: every configuration diverged or was pruned (the training loss became "
                                 f"NaN or infinite); try smaller learning rates (tune_lrs)")
    chance = task.chance_metric("val")
    decided = tuning_decided(best_value, chance)
    chosen = best if decided or tc.undecided == "best" else _retrain_hparams(cfg)
    if not decided and distributed.is_main():
        then = ("kept anyway (tune_undecided='best')" if tc.undecided == "best" else
                f"not used: retraining with the retrain_* hyper-parameters {chosen} (tune_undecided="
                f"'retrain_defaults')")
        warnings.warn(f"{stage}: no configuration beat the input-ignoring guess on validation ({task.metric_name} "
                      f"{best_value:.4g} at best, chance level {chance:.4g}), so their order is noise; the best one, "
                      f"{best}, is {then}. Give every configuration more steps (tune_epochs, tune_max_batches) for a "
                      f"tuning that decides.", TuningUndecidedWarning, stacklevel=_caller_stacklevel())
    rd.write_history(stage, [{"trial": i, **t} for i, t in enumerate(trials)])
    rd.write_json(f"{stage}.json", {"best": chosen, "best_trial": best, "best_val": best_value,
                                    "metric": task.metric_name, "chance_val": chance, "decided": decided,
                                    "study": _study_name(task, cfg, stage), "trials": trials})
    rd.mark_done(stage, {"seconds": time.perf_counter() - t0, "best": chosen, "best_val": best_value})
    return dict(chosen)


def _queued_grid_sampler(space: Dict[str, list], seed: int) -> Any:
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


def _open_sequential_study(task: Any, cfg: RunConfig, rd: RunDir, stage: str) -> Tuple[Any, Dict[Tuple, Tuple]]:
    """The study (on rank 0) and the trials it finished before an interruption: {key: (state, value)}."""
    import optuna
    from optuna.trial import TrialState

    if not distributed.is_main():
        return None, {}
    tc = cfg.tune
    study = optuna.create_study(storage=_storage(tc.storage, rd), study_name=_study_name(task, cfg, stage),
                                sampler=_queued_grid_sampler(_space(tc), cfg.seed),
                                pruner=_pruner(tc), direction="minimize", load_if_exists=True)
    names = ("lr", "dropout", "weight_decay", "momentum")
    finished = {_key(t.params): (t.state, t.value) for t in study.trials  # not the abandoned ones (no params)
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL) and all(k in t.params
                                                                                                for k in names)}
    return study, finished


def _trier(study: Any, lookup: Dict[Tuple, Tuple], task: Any, cfg: RunConfig, rd: RunDir, card: Any,
           init: Dict[str, torch.Tensor], device: torch.device, stage: str, sequential: bool) -> Tuple[Any, Any]:
    """(``try_config`` for `_walk_lr_blocks`, its progress bar): a stored result (rank 0's, sent to every rank),
    or, in a sequential tuning, a new trial."""
    from optuna.trial import TrialState

    tc = cfg.tune
    total = len(tc.grid()) if tc.n_trials is None else min(tc.n_trials, len(tc.grid()))
    bar = _progress(total=total, desc=stage) if sequential else PlainProgress(total=total, silent=True)

    def try_config(params: Dict[str, float]) -> Tuple[str, Optional[float]]:
        found = lookup.get(_key(params)) if distributed.is_main() else None
        info = ([1.0, float(found[0].value), math.nan if found[1] is None else found[1]] if found is not None
                else [0.0, 0.0, math.nan]) if distributed.is_main() else None
        have, code, value = distributed.broadcast_floats(info, 3)
        if have:  # a trial finished before an interruption (journal storage), or by a tuning worker
            state, value = TrialState(int(code)), (None if math.isnan(value) else value)
        elif sequential:
            state, value = _run_trial(study, params, _space(tc), task, cfg, rd, card, init, device, stage)
        else:
            raise RuntimeError(f"{stage}: the tuning queue holds no result for {params}; please report this bug")
        bar.update(1)
        return state.name.lower(), (value if state == TrialState.COMPLETE else None)

    return try_config, bar


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
    """Train one configuration for tune_epochs; returns (state, best validation metric).

    `study` is None on the ranks > 0 of a torchrun launch: rank 0 alone talks to Optuna.
    """
    from optuna.trial import TrialState

    trial = None
    if study is not None:
        key = list(_key(params))
        study.enqueue_trial(params, user_attrs={"dashkit_key": key})  # DASH's lr-block order, not the sampler's
        trial = study.ask()
        while trial.user_attrs.get("dashkit_key") != key:  # a trial queued by a process killed before its ask
            study.tell(trial, state=TrialState.FAIL)
            trial = study.ask()
        params = {k: trial.suggest_categorical(k, space[k]) for k in ("lr", "dropout", "weight_decay", "momentum")}
    return _train_trial(study, trial, params, task, cfg, rd, card, init, device, stage)


def _train_trial(study: Any, trial: Any, hp: Dict[str, float], task: Any, cfg: RunConfig, rd: RunDir, card: Any,
                 init: Dict[str, torch.Tensor], device: torch.device, stage: str) -> Any:
    """Train ``hp`` from ``init`` for tune_epochs and tell the study; returns (state, best validation metric)."""
    import optuna
    from optuna.trial import TrialState

    tc, rc = cfg.tune, cfg.retrain
    seed = _stage_seed(cfg.seed, stage)
    _seed_everything(seed)  # the same batches and dropout draws for every configuration
    model = build_model(task, cfg, card, dropout=hp["dropout"])
    model.load_state_dict(init)
    model.to(device)
    net = distributed.wrap(model, device)
    opt = _sgd(model.parameters(), hp["lr"], hp["momentum"], rc.nesterov, hp["weight_decay"])
    best = math.inf

    def tell(state: TrialState, value: Optional[float], result: str) -> None:
        if trial is not None:
            trial.set_user_attr("dashkit_result", result)  # marks a result, as opposed to a trial abandoned
            study.tell(trial, value if state == TrialState.COMPLETE else None,
                       state=None if state == TrialState.COMPLETE else state)

    try:
        for epoch in range(tc.epochs):
            _train_epochs(net, task, opt, cfg, device, epoch, tc.epochs, hp["lr"], rc.milestones, rc.gamma,
                          tc.batch_size, tc.batches_per_epoch, tc.max_batches, rc.grad_clip, seed, stage, rd, None)
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


# --------------------------------------------------------------------------------------- the tuning queue
# With tune_parallel the grid is put in the shared study as WAITING trials (Optuna's enqueue_trial); every
# process takes one with study.ask(), which hands each waiting trial to exactly one process (the storage
# refuses a second RUNNING transition). A process records itself in the trial, so that the run can queue again
# the trial of a worker that was killed on this machine.
_QUEUE_ATTR, _GRID_ATTR, _WORKER_ATTR, _RESULT_ATTR = "dashkit_queue", "dashkit_grid", "dashkit_worker", \
    "dashkit_result"
_TOKEN = uuid.uuid4().hex[:12]  # tells this process from an earlier one that had the same pid


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def _worker_gone(worker: Optional[str]) -> bool:
    """Whether the process that holds a trial is known to be dead (only a process on this machine can be)."""
    if not worker:
        return False
    host, _, rest = worker.partition(":")
    pid_text, _, token = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return token != _TOKEN
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    try:  # a killed child that its parent has not reaped yet is a zombie: it runs nothing
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def _open_queue(task: Any, cfg: RunConfig, rd: RunDir, stage: str) -> Any:
    """The run's shared study, with every grid configuration queued once (rank 0 of the run only)."""
    import optuna

    tc = cfg.tune
    grid = tc.grid()
    study = optuna.create_study(storage=_storage(tc.storage, rd), study_name=_study_name(task, cfg, stage),
                                sampler=optuna.samplers.RandomSampler(seed=cfg.seed), pruner=_pruner(tc),
                                direction="minimize", load_if_exists=True)
    if study.user_attrs.get(_QUEUE_ATTR) != len(grid):  # queued before an interruption: do not queue twice
        queued = {t.user_attrs.get(_GRID_ATTR) for t in study.get_trials(deepcopy=False)}
        for i, params in enumerate(grid):
            if i not in queued:
                study.enqueue_trial(params, user_attrs={_GRID_ATTR: i})
        study.set_user_attr(_QUEUE_ATTR, len(grid))  # workers start once they see this
    return study


def _wait_for_queue(task: Any, cfg: RunConfig, rd: RunDir, stage: str, deadline: float, poll: float) -> Any:
    """A worker's view of the run's study once its queue is filled; None when the stage finished meanwhile."""
    import optuna

    tc = cfg.tune
    kind, target = storage_spec(tc.storage)
    name = _study_name(task, cfg, stage)
    storage = None
    while True:
        if rd.is_done(stage):
            return None
        if storage is None and (kind != "journal" or _journal_path(target, rd).is_file()):
            storage = _storage(tc.storage, rd)  # a worker never creates the run's journal: the run does
        try:
            if storage is not None:
                study = optuna.load_study(study_name=name, storage=storage,
                                          sampler=optuna.samplers.RandomSampler(), pruner=_pruner(tc))
                if study.user_attrs.get(_QUEUE_ATTR) == len(tc.grid()):
                    return study
        except KeyError:  # the run has not created the study yet
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"tune-worker: no tuning queue {name!r} appeared in {str(rd.path)!r} in time; is "
                               f"the run started (with tune_parallel=true)? Use --wait SECONDS to wait longer")
        time.sleep(poll)


def _pop(study: Any, grid: List[Dict[str, float]]) -> Tuple[Any, Optional[int]]:
    """The next queued trial and its grid index, or (None, None) when the queue is empty."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        return None, None
    trial = study.ask()
    index = trial.user_attrs.get(_GRID_ATTR)
    if index is None:  # another process took the last queued trial between the look and the ask
        study.tell(trial, state=TrialState.FAIL)
        return None, None
    trial.set_user_attr(_WORKER_ATTR, _worker_id())
    return trial, int(index)


def _work_through_queue(study: Any, task: Any, cfg: RunConfig, rd: RunDir, card: Any,
                        init: Dict[str, torch.Tensor], device: torch.device, stage: str,
                        wait_for_others: bool, poll: float = 0.5) -> int:
    """Evaluate queued configurations until the queue is empty; returns how many this process evaluated.

    With ``wait_for_others`` (the run itself) it then waits until every trial has finished, queueing again those
    whose worker died on this machine, and evaluates them too.
    """
    tc = cfg.tune
    grid, space = tc.grid(), _space(tc)
    bar = _progress(total=len(grid), desc=f"{stage} (queue)")
    count = 0
    while True:
        trial, info = None, None
        if distributed.is_main():
            trial, index = _pop(study, grid)
            info = [0.0, 0.0] if trial is None else [1.0, float(index)]
        have, index_f = distributed.broadcast_floats(info, 2)
        if have:
            params = grid[int(index_f)]
            if trial is not None:  # records the parameters in the study (they are fixed by the queue)
                params = {k: trial.suggest_categorical(k, space[k]) for k in params}
            _train_trial(study, trial, params, task, cfg, rd, card, init, device, stage)
            count += 1
            bar.update(1)
            continue
        more = _await_others(study, grid, poll) if wait_for_others and distributed.is_main() else False
        if not distributed.main_decides(more):
            bar.close()
            return count


def _await_others(study: Any, grid: List[Dict[str, float]], poll: float) -> bool:
    """Wait until no trial is running; True as soon as there is queued work again (a dead worker's trial)."""
    from optuna.trial import TrialState

    while True:
        if study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return True
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return False
        stale = [t for t in running if _worker_gone(t.user_attrs.get(_WORKER_ATTR))
                 or (_WORKER_ATTR not in t.user_attrs and t.datetime_start is not None
                     and time.time() - t.datetime_start.timestamp() > 60)]
        for t in stale:  # the trial stays FAIL without a result mark; a fresh copy goes back in the queue
            study.tell(t.number, state=TrialState.FAIL)
            index = t.user_attrs.get(_GRID_ATTR)
            if index is not None:
                study.enqueue_trial(grid[int(index)], user_attrs={_GRID_ATTR: int(index)})
        if stale:
            return True
        time.sleep(poll)


def _queue_results(study: Any, tc: Any) -> Dict[Tuple, Tuple]:
    """{key: (state, value)} of every configuration a process evaluated to the end."""
    grid = tc.grid()
    out: Dict[Tuple, Tuple] = {}
    for t in study.get_trials(deepcopy=False):
        index = t.user_attrs.get(_GRID_ATTR)
        if index is not None and _RESULT_ATTR in t.user_attrs and t.state.is_finished():
            out[_key(grid[int(index)])] = (t.state, t.value)
    return out


def tune_worker(run_dir: PathLike, task: Any = None, device: Optional[str] = None, wait: float = 3600.0,
                poll: float = 0.5) -> int:
    """Help a run empty its tuning queue: evaluate queued configurations of its shared Optuna study.

    The run must have ``tune_parallel=True`` and a ``tune_storage`` that this process can reach (a journal file
    on a shared file system, or a database URL). The worker waits for the run to queue its grid, evaluates
    configurations until the queue is empty (DASH's, then the baseline's), and writes nothing in the run
    directory: results go to the study, and the run makes the choice and writes the files.

    Args:
        run_dir: the run's directory (its config.json says what to train).
        task: the Task, or its registered name; default the name in config.json.
        device: overrides the run's device for this worker ("cpu", "cuda", ...).
        wait: seconds to wait for the run (its folder, then its queue) before giving up.
        poll: seconds between looks at the study while waiting.

    Returns:
        The number of configurations this worker evaluated.
    """
    from .supernet import ArchCard

    rd = RunDir(run_dir, writable=False)
    deadline = time.monotonic() + wait
    # a worker may start before its run: wait for the run's folder to appear (a folder of something else is an error)
    while not rd.exists(RunDir.CONFIG):
        foreign = rd.path.is_dir() and any(not p.name.startswith(".") for p in rd.path.iterdir())  # not a temp file
        if foreign or time.monotonic() > deadline:
            raise FileNotFoundError(f"run_dir = {str(rd.path)!r} is not a dashkit run directory (no "
                                    f"{RunDir.CONFIG}); start the run first, or give its folder")
        time.sleep(poll)
    meta = rd.read_json(RunDir.CONFIG)
    cfg = RunConfig.from_dict(meta["config"])
    task = resolve_task(meta["task"] if task is None else task)
    if task.name != meta["task"]:
        raise ValueError(f"task = {task.name!r}, but the run in {str(rd.path)!r} is for task {meta['task']!r}")
    if not (cfg.tune.enabled and cfg.tune.parallel):
        raise ValueError(f"the run in {str(rd.path)!r} has tune_enabled = {cfg.tune.enabled!r} and tune_parallel = "
                         f"{cfg.tune.parallel!r}: it has no tuning queue; start it with --set tune_parallel=true "
                         f"tune_storage=tune.journal")
    if device is not None:
        cfg = cfg.override(device=device)
    dev = _device(cfg)
    stages = [("dash", "tune")] + ([("baseline", "baseline_tune")] if cfg.baseline else [])
    count = 0
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        for name, stage in stages:
            study = _wait_for_queue(task, cfg, rd, stage, deadline, poll) if distributed.is_main() else None
            if not distributed.main_decides(study is not None):
                continue  # the run finished this stage without us
            card = ArchCard.load(rd.file("archcard.json")) if name == "dash" else None
            init = rd.load_weights(f"init_{name}.safetensors")  # written by the run before it filled the queue
            count += _work_through_queue(study, task, cfg, rd, card, init, dev, stage, wait_for_others=False,
                                         poll=poll)
    finally:
        optuna.logging.set_verbosity(verbosity)
    return count


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
    if _done(rd, stage, (f"{name}.safetensors",)):
        return rd.done_info(stage)
    hp = tune(task, cfg, rd, card)
    rc, device = cfg.retrain, _device(cfg)
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
    net = distributed.wrap(model, device)
    n = _n_batches(_train_loader(task.train, rc.batch_size, cfg, device, seed), rc.batches_per_epoch,
                   rc.max_batches)
    bar = _progress(total=rc.epochs * n, initial=start * n, desc=stage)
    for epoch in range(start, rc.epochs):
        t_epoch = time.perf_counter()
        train_loss = _train_epochs(net, task, opt, cfg, device, epoch, rc.epochs, hp["lr"], rc.milestones,
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
    distributed.barrier()  # the best weights are rank 0's file
    # the one and only look at the test split: the weights of the best validation epoch
    model.load_state_dict(rd.load_weights(f"{name}.safetensors"))
    test_metric, test_loss = evaluate(model, task.test, task, device, 2 * rc.batch_size, cfg.num_workers)
    result = {"metric": task.metric_name, "test": test_metric, "test_loss": test_loss, "val": best_val,
              "best_epoch": best_epoch + 1, "hparams": hp, "seconds": seconds_before + time.perf_counter() - t0}
    metrics = rd.read_json("metrics.json") if rd.exists("metrics.json") else {"metric": task.metric_name}
    metrics[name] = {k: result[k] for k in ("test", "val", "best_epoch", "hparams")}
    rd.write_json("metrics.json", metrics)
    rd.mark_done(stage, result)
    distributed.debug_dump(stage, {k: result[k] for k in ("test", "test_loss", "val", "best_epoch", "hparams")})
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
    if out is not None and not isinstance(out, (str, os.PathLike)):
        raise TypeError(f"out = {out!r}: expected None or a folder path (str or pathlib.Path)")
    # every check that can fail on the input runs before the run directory is touched
    dev = _device(cfg)  # fails now, not after the search, when the device is missing; joins torchrun's group
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


def _preflight(task: Any, cfg: RunConfig) -> None:
    """Raise on a config that cannot run with this task, before any file is written or any epoch trained.

    Builds the search space and both backbones (cheap: no supernet, no data) and checks that every batch can be
    split over the torchrun processes.
    """
    from .space import SearchSpace

    _, _, ks, ds = _net(task, cfg)
    SearchSpace(ks, ds, dims=task.dims)
    build_backbone(task, cfg, "search")
    dropouts = cfg.tune.dropouts if cfg.tune.enabled else (cfg.retrain.dropout,)
    build_backbone(task, cfg, "retrain", dropout=max(dropouts))
    for stage in ("search", "tune", "retrain"):
        distributed.per_rank_batch(getattr(cfg, stage).batch_size, f"{stage}_batch_size")


def load_model(run_dir: Union[RunDir, PathLike], which: str = "dash", task: Any = None,
               device: Any = "cpu") -> nn.Module:
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
    if not rd.exists(RunDir.CONFIG):
        raise FileNotFoundError(f"{str(rd.path)!r} is not a dashkit run directory (no {RunDir.CONFIG})")
    meta = rd.read_json(RunDir.CONFIG)
    cfg = RunConfig.from_dict(meta["config"])
    task = resolve_task(meta["task"] if task is None else task)
    if task.name != meta["task"]:
        raise ValueError(f"task = {task.name!r}, but the run in {str(rd.path)!r} is for task {meta['task']!r}")
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
    if not rd.exists(RunDir.CONFIG):
        raise FileNotFoundError(f"{str(rd.path)!r} is not a dashkit run directory (no {RunDir.CONFIG})")
    meta = rd.read_json(RunDir.CONFIG)
    if not isinstance(meta, dict) or "config" not in meta or "task" not in meta:
        raise ValueError(f"{str(rd.file(RunDir.CONFIG))!r} is not a dashkit run config (it needs 'task' and "
                         f"'config')")
    cfg = RunConfig.from_dict(meta["config"])
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
