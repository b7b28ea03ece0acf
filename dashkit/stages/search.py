"""The search stage: DASH's supernet trained with weights and alpha together, then discretised to an ArchCard.

DASH (Shen, Khodak, Talwalkar et al., NeurIPS 2022) takes one SGD step on the weights and one on alpha per
training batch; `search_step` is that step, and the `search` stage is a loop of it with resumable checkpoints,
records of alpha, and data parallelism around it. On a plain supernet, without a run directory::

    w_opt = torch.optim.SGD(supernet.weight_parameters(model), lr=0.1, momentum=0.9)
    a_opt = torch.optim.SGD(supernet.arch_parameters(model), lr=0.05, momentum=0.9)
    for x, y in loader:
        loss = search_step(model, task, x, y, w_opt, a_opt, grad_clip=1.0)
    _, card = supernet.discretize(model)
"""
from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from .. import distributed, supernet
from ..rundir import PathLike, RunDir
from ..budget import stage_plan
from .common import as_run_dir, caller_stacklevel, check_cfg, progress_bar, resolve_task, seed_everything, \
    stage_device, stage_done, stage_seed
from .models import build_supernet, net_spec
from .training import batch_loss, check_finite, cycle, epoch_batches, lr_factor, mean_over_ranks, set_lr, sgd

if TYPE_CHECKING:
    from torch.utils.data import Dataset

    from ..config import RunConfig
    from ..supernet import ArchCard
    from ..tasks.base import Task

__all__ = ["search_step", "search"]


def search_step(model: nn.Module, task: "Task", x: torch.Tensor, y: torch.Tensor, w_opt: torch.optim.Optimizer,
                a_opt: torch.optim.Optimizer, *, val_batch: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
                grad_clip: float = 0.0, joint_clip: bool = False, arch_step: bool = True,
                net: Optional[nn.Module] = None, device: Optional[torch.device] = None,
                check: Optional[Callable[[torch.Tensor], None]] = None) -> torch.Tensor:
    """One DASH search step on a supernet: forward, loss, backward, then a weight step and an alpha step.

    Single-level (DASH, the default): weights and alpha step on the same training batch and loss. Bilevel
    (first-order DARTS, ``val_batch`` given): alpha first steps on the validation batch's loss, then the weights
    on the training batch. Alpha's gradient goes through ``supernet.postprocess_arch_grads`` (normalisation and
    the receptive-field push) before its step; gradient clipping applies to the weights only, or with
    ``joint_clip`` (single-level only) to the weights and alpha's post-processed gradient under one norm.

    Args:
        model: a supernet (``supernet.to_supernet``); x (B, *task.in_shape) -> outputs.
        task: gives ``loss``.
        x: (B, *task.in_shape) a training batch; y: (B, ...) its targets.
        w_opt: the optimiser of ``supernet.weight_parameters(model)``.
        a_opt: the optimiser of ``supernet.arch_parameters(model)`` (alpha).
        val_batch: (x_val, y_val), a validation batch of the same shapes: the bilevel scheme.
        grad_clip: max norm of the weights' gradient; 0 turns clipping off.
        joint_clip: clip alpha's post-processed gradient together with the weights' (the reference code's order):
            while the weights' gradient norm exceeds ``grad_clip``, alpha's step shrinks by the same factor.
        arch_step: False: the weights step and alpha does not (a warm-up step): no post-processing, no decision
            record, no alpha momentum.
        net: what runs forward and backward (a DistributedDataParallel wrapper of ``model``); default ``model``.
        device: where the batches go; default that of ``model``'s first parameter.
        check: called with each loss before its backward (e.g. to stop on NaN).

    Returns:
        The training batch's loss before the step (0-dim, detached).
    """
    net = model if net is None else net
    device = next(model.parameters()).device if device is None else device
    if val_batch is not None and arch_step:  # first-order DARTS: alpha follows the validation loss
        a_opt.zero_grad(set_to_none=True)
        loss_val = batch_loss(net, task, val_batch[0], val_batch[1], device)
        if check is not None:
            check(loss_val)
        loss_val.backward()
        supernet.postprocess_arch_grads(model)
        a_opt.step()
    w_opt.zero_grad(set_to_none=True)
    a_opt.zero_grad(set_to_none=True)
    loss = batch_loss(net, task, x, y, device)
    if check is not None:
        check(loss)
    loss.backward()  # under DDP this returns with every gradient (alpha's too) averaged over the ranks
    alpha_here = arch_step and val_batch is None  # single-level DASH: alpha steps on the same batch and loss
    if alpha_here:
        supernet.postprocess_arch_grads(model)
    if grad_clip > 0:  # weights only (alpha's gradient is normalised by postprocess_arch_grads), or both
        params = list(supernet.weight_parameters(model))
        if joint_clip and alpha_here:
            params += list(supernet.arch_parameters(model))
        nn.utils.clip_grad_norm_(params, grad_clip)
    w_opt.step()
    if alpha_here:
        a_opt.step()
    return loss.detach()


def search(task: Union["Task", str], cfg: "RunConfig", run_dir: Union[RunDir, PathLike]) -> "ArchCard":
    """DASH's search on a supernet of the task's backbone; returns the ArchCard (also saved as archcard.json).

    Every training batch is one `search_step`: single-level (DASH), or bilevel (first-order DARTS) with
    ``search_scheme="bilevel"``, alpha then stepping on a validation batch first: from the validation split, or
    with ``search_arch_holdout`` > 0 from that fraction of the training split held out (`arch_split`), the weights
    training on the rest and the validation split left to the tuning and retraining. The first ``search_warmup`` of
    the steps train the weights alone (`SearchConfig.warmup_steps`; alpha's lr is set for the steps left, and the
    card's meta records ``warmup_steps``). Records softmax(alpha) per layer after every epoch in alphas.json.

    Under torchrun the supernet trains in DistributedDataParallel: alpha's gradient is averaged with the weights'
    during backward, DASH's post-processing runs on the averaged gradient, and alpha is checked to be the same
    bits on every rank after every epoch.
    """
    task, cfg = resolve_task(task), check_cfg(cfg)
    rd = as_run_dir(run_dir, task, cfg)
    if stage_done(rd, "search", ("archcard.json",)):
        return supernet.ArchCard.load(rd.file("archcard.json"))
    sc, device = cfg.search, stage_device(cfg)
    t0 = time.perf_counter()
    seed = stage_seed(cfg.seed, "search")
    seed_everything(seed)
    name = net_spec(task, cfg)[0]
    model = build_supernet(task, cfg)
    space = model.dash_space
    model.to(device)
    w_opt = sgd(supernet.weight_parameters(model), sc.lr, sc.momentum, sc.nesterov, sc.weight_decay)
    plan = stage_plan(task, cfg, "search")  # steps, epochs and batch size on this task's data
    warmup = sc.warmup_steps(plan.steps)  # the first steps train the weights only (search_warmup)
    arch_lr = sc.arch_lr_for(plan.steps - warmup)  # sc.arch_lr, scaled up for a short search (search_arch_lr_steps)
    a_opt = sgd(supernet.arch_parameters(model), arch_lr, sc.momentum, sc.nesterov, sc.arch_weight_decay)
    layer_names = [n for n, _ in supernet.dash_layers(model)]
    weight_data, arch_data = arch_split(task, cfg)
    rows: List[Dict[str, Any]] = []
    alphas: List[Dict[str, List[float]]] = []
    start, seconds_before = 0, 0.0
    ck = rd.load_checkpoint("search", model, {"weights": w_opt, "arch": a_opt})
    if ck is not None:
        start, extra = ck[0] + 1, ck[1]
        rows, alphas, seconds_before = extra["history"], extra["alphas"], extra["seconds"]
    net = distributed.wrap(model, device)  # forward and backward through DDP; everything else uses `model`
    hint = "Try a smaller search_lr / search_arch_lr, or search_grad_clip > 0."
    bar = progress_bar(total=plan.steps, initial=plan.steps_before(start), desc="search")
    check_every_step = distributed.is_distributed() and distributed.sync_check_every_step()
    alpha_bits: List[Dict[str, List[str]]] = []
    for epoch in range(start, plan.epochs):
        t_epoch = time.perf_counter()
        factor = lr_factor(epoch, plan.epochs, sc.milestones, sc.gamma)
        set_lr(w_opt, sc.lr * factor)
        set_lr(a_opt, arch_lr * factor)
        model.train()
        n = plan.steps_in_epoch(epoch)
        batches = epoch_batches(weight_data, plan.batch_size, cfg, device, seed + 1 + epoch, n)
        val_batches = (cycle(arch_data, sc.batch_size, cfg, device, stage_seed(cfg.seed, f"search_val_{epoch}"))
                       if sc.scheme == "bilevel" else None)
        total = 0.0
        first = plan.steps_before(epoch)
        for step, (x, y) in enumerate(batches):
            arch_step = first + step >= warmup
            loss = search_step(model, task, x, y, w_opt, a_opt, grad_clip=sc.grad_clip, net=net, device=device,
                               joint_clip=sc.joint_clip, arch_step=arch_step,
                               val_batch=next(val_batches) if val_batches is not None and arch_step else None,
                               check=lambda value: check_finite(value, "search", epoch, step, rd, hint))
            if check_every_step:
                distributed.check_same(supernet.arch_parameters(model), f"alpha after search epoch {epoch + 1}, "
                                                                         f"step {step + 1}")
            total += loss.item()
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=loss.item())
        if distributed.is_distributed():
            distributed.check_same(supernet.arch_parameters(model), f"alpha after search epoch {epoch + 1}")
            alpha_bits.append({ln: distributed.float_bits(m.alpha.detach().cpu().tolist())
                               for ln, m in supernet.dash_layers(model)})
            distributed.debug_dump("search_alpha", {"start_epoch": start, "epochs": alpha_bits})
        probs = {ln: supernet.alpha_probs(m.alpha) for ln, m in supernet.dash_layers(model)}
        alphas.append(probs)
        alpha_moved = plan.steps_before(epoch + 1) > warmup  # an epoch wholly in the warm-up: alpha's lr was 0
        rows.append({"epoch": epoch + 1, "lr": sc.lr * factor, "arch_lr": arch_lr * factor if alpha_moved else 0.0,
                     "train_loss": mean_over_ranks(total, n), "arch_entropy": _mean_entropy(probs),
                     "seconds": round(time.perf_counter() - t_epoch, 3)})
        rd.write_history("search", rows)
        rd.save_checkpoint("search", epoch, model, {"weights": w_opt, "arch": a_opt},
                           extra={"history": rows, "alphas": alphas,
                                  "seconds": seconds_before + time.perf_counter() - t0})
    bar.close()
    _, card = supernet.discretize(model)
    card.backbone = name
    card.meta.update({"task": task.name, "seed": cfg.seed, "scheme": sc.scheme, "epochs": plan.epochs,
                      "steps": plan.steps, "arch_lr": arch_lr, "warmup_steps": warmup,
                      "passes": round(plan.passes, 2), "train_examples": len(task.train),  # the plan's passes
                      "undecided": sc.undecided})  # what ArchCard.apply gives an undecided layer
    if plan.steps_asked is not None:  # cut to its passes (search_max_passes)
        card.meta.update(steps_asked=plan.steps_asked, max_passes=plan.max_passes)
    if arch_data is not task.val:
        card.meta["arch_holdout"] = len(arch_data)  # training examples alpha stepped on (the weights: the rest)
    rd.write_json("alphas.json", {"layers": layer_names, "candidates": [list(c) for c in space.candidates],
                                  "epochs": [[a[ln] for ln in layer_names] for a in alphas]})
    if rd.writable:
        card.save(rd.file("archcard.json"))
    if distributed.is_main():  # most layers' choices no larger than gradient noise: say so, and what to change
        supernet.warn_if_undecided(card, stacklevel=caller_stacklevel())
        supernet.warn_if_memorising(card, stacklevel=caller_stacklevel())
    rd.mark_done("search", {"seconds": seconds_before + time.perf_counter() - t0, "layers": len(layer_names)})
    return card


def arch_split(task: "Task", cfg: "RunConfig") -> Tuple["Dataset", "Dataset"]:
    """The search's data: (the weights' batches, alpha's batches in the bilevel scheme).

    ``(task.train, task.val)``, unless ``search_arch_holdout`` > 0: then the training split is split, stratified
    by class for classification (`dashkit.tasks.base.holdout_indices`, seeded by the run's seed alone, so a resumed
    run and every torchrun rank get the same split), into (the rest, the hold-out), two ``Subset`` datasets.
    """
    from torch.utils.data import Subset

    from ..tasks.base import holdout_indices, split_targets

    frac = cfg.search.arch_holdout
    if cfg.search.scheme != "bilevel" or not frac:
        return task.train, task.val
    n = len(task.train)  # type: ignore[arg-type]
    if n < 2:
        raise ValueError(f"search_arch_holdout = {frac!r}: the training split has {n} example(s), too few to hold "
                         f"any out; set search_arch_holdout=0 (alpha on the validation split)")
    labels = split_targets(task.train).long() if task.kind == "classification" else None
    held, rest = holdout_indices(n, frac, stage_seed(cfg.seed, "search_arch_holdout"), labels)
    return Subset(task.train, rest), Subset(task.train, held)


def _mean_entropy(probs: Mapping[str, List[float]]) -> float:
    ent = [-sum(p * math.log(p) for p in ps if p > 0) for ps in probs.values()]
    return sum(ent) / max(len(ent), 1)
