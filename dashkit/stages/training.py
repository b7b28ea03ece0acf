"""Training pieces the stages share: loaders, SGD and its schedule, the loss, one training step, evaluation.

`train_step` is the plain supervised step of tuning and retraining, with the shape of the search's
`dashkit.stages.search.search_step`::

    for x, y in loader:
        loss = train_step(model, task, x, y, opt, grad_clip=1.0)
"""
from __future__ import annotations

import contextlib
import itertools
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Iterator, List, Optional, Tuple, Union

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .. import distributed
from ..augment import collate_for
from ..config import RunConfig
from ..rundir import RunDir
from .common import StageContext

if TYPE_CHECKING:
    from ..tasks.base import Task

__all__ = ["NonFiniteLossError", "lr_factor", "set_lr", "sgd", "autocast", "train_loader", "cycle", "epoch_batches",
           "to_device", "batch_loss", "check_finite", "mean_over_ranks", "evaluate", "train_step", "train_epoch"]


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the stage stopped, its last good checkpoint kept."""


# --------------------------------------------------------------------------------------- SGD and its schedule
def lr_factor(epoch: int, epochs: int, milestones: Tuple[float, ...], gamma: float) -> float:
    """Step decay: gamma ** (milestones passed), milestones given as fractions of the epochs.

    A pure function of the epoch, so a checkpoint's epoch is the whole state of the schedule.
    """
    return gamma ** sum(epoch >= round(m * epochs) for m in milestones)


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    """Set the learning rate of every parameter group of `opt`."""
    for group in opt.param_groups:
        group["lr"] = lr


def sgd(params: Iterable[nn.Parameter], lr: float, momentum: float, nesterov: bool, weight_decay: float
        ) -> torch.optim.SGD:
    """SGD as DASH configures it; Nesterov only with momentum > 0 (torch refuses it otherwise)."""
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0,
                           weight_decay=weight_decay)


def autocast(device: torch.device) -> ContextManager[Any]:
    """bf16 autocast on CUDA, nothing elsewhere (DashConv keeps its FFTs in float32 itself)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------------------------------------- data
def train_loader(ds: Dataset, batch_size: int, cfg: RunConfig, device: torch.device, seed: int) -> DataLoader:
    """A shuffled loader whose order depends only on `seed` (one seed per epoch makes resumes exact).

    Under torchrun each rank loads ``batch_size / world_size`` examples per step from its own shard, so a step
    sees ``batch_size`` examples over all ranks. Batches go through ``cfg.augment`` (`dashkit.augment`), with
    random draws seeded by `seed` (and the rank).
    """
    if distributed.is_distributed():
        per_rank = distributed.per_rank_batch(batch_size)
        sampler = distributed.train_sampler(ds, seed)
        m = len(sampler)
        return DataLoader(ds, batch_size=min(per_rank, m), sampler=sampler, drop_last=m > per_rank,
                          num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                          collate_fn=collate_for(cfg.augment, seed, distributed.rank()))
    g = torch.Generator()
    g.manual_seed(seed)
    n = len(ds)  # type: ignore[arg-type]
    # drop the last partial batch (BatchNorm cannot train on a single example) unless it is the only one
    return DataLoader(ds, batch_size=min(batch_size, n), shuffle=True, generator=g, drop_last=n > batch_size,
                      num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
                      collate_fn=collate_for(cfg.augment, seed))


def cycle(ds: Dataset, batch_size: int, cfg: RunConfig, device: torch.device, seed: int
          ) -> Iterator[List[torch.Tensor]]:
    """Shuffled batches of `ds` without end; the order depends only on `seed`."""
    for i in itertools.count():
        yield from train_loader(ds, batch_size, cfg, device, seed + 104729 * i)


def epoch_batches(ds: Dataset, batch_size: int, cfg: RunConfig, device: torch.device, seed: int, n: int
                  ) -> Iterator[List[torch.Tensor]]:
    """The `n` batches of one epoch: shuffled passes over `ds` one after another (the first from `seed`), cut at `n`.

    An epoch of at most one pass is the first `n` batches of ``train_loader(..., seed)``; a longer one (a small
    dataset, see `dashkit.budget`) goes on with freshly shuffled passes.
    """
    return itertools.islice(cycle(ds, batch_size, cfg, device, seed), n)


def to_device(device: torch.device, *tensors: torch.Tensor) -> List[torch.Tensor]:
    """`tensors` on `device` (without waiting, from pinned memory)."""
    return [t.to(device, non_blocking=True) for t in tensors]


# ---------------------------------------------------------------------------------------------------- loss
def batch_loss(model: nn.Module, task: "Task", x: torch.Tensor, y: torch.Tensor, device: torch.device
               ) -> torch.Tensor:
    """The task's loss of `model` on one batch: x (B, *task.in_shape), y (B, ...) the task's targets; a 0-dim tensor."""
    x, y = to_device(device, x, y)
    with autocast(device):
        y_hat = model(x)
    return task.loss(y_hat.float(), y)


def check_finite(loss: torch.Tensor, stage: str, epoch: int, step: int, rd: RunDir, hint: str) -> None:
    """Raise NonFiniteLossError when `loss` is NaN or infinite (on any rank), naming the checkpoint kept."""
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


def mean_over_ranks(total: float, n: int) -> float:
    """The mean training loss of an epoch: `total` over `n` steps on each rank, averaged over the ranks."""
    return distributed.all_reduce_sum([total])[0] / (n * distributed.world_size())


# ------------------------------------------------------------------------------------------------ training
def train_step(model: nn.Module, task: "Task", x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer, *,
               grad_clip: float = 0.0, net: Optional[nn.Module] = None, device: Optional[torch.device] = None,
               check: Optional[Callable[[torch.Tensor], None]] = None) -> torch.Tensor:
    """One plain supervised SGD step: forward, loss, backward, gradient clipping, the optimiser's step.

    Args:
        model: the network; x (B, *task.in_shape) -> outputs.
        task: gives ``loss``.
        x: (B, *task.in_shape) inputs; y: (B, ...) the task's targets.
        opt: the optimiser of ``model``'s parameters.
        grad_clip: max norm of the gradient of all parameters; 0 turns clipping off.
        net: what runs forward and backward (a DistributedDataParallel wrapper of ``model``); default ``model``.
        device: where x and y go; default that of ``model``'s first parameter.
        check: called with the loss before backward (e.g. to stop on NaN).

    Returns:
        The loss of the batch before the step (0-dim, detached).

    Example:
        >>> loss = train_step(model, task, x, y, opt, grad_clip=1.0)
    """
    net = model if net is None else net
    device = next(model.parameters()).device if device is None else device
    opt.zero_grad(set_to_none=True)
    loss = batch_loss(net, task, x, y, device)
    if check is not None:
        check(loss)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss.detach()


def train_epoch(ctx: StageContext, model: nn.Module, net: nn.Module, opt: torch.optim.Optimizer, epoch: int,
                lr: float, bar: Any = None) -> float:
    """One epoch of `train_step`s on the training split, on the plan of ``ctx``'s stage (tune or retrain).

    The learning rate follows the retrain schedule (``retrain_milestones``, ``retrain_gamma``) over the stage's
    epochs; the epoch's steps and batch size are ``ctx.plan``'s (`dashkit.budget.stage_plan`); the batches depend
    only on the stage's seed and the epoch. Returns the mean training loss.
    """
    plan, rc = ctx.plan, ctx.cfg.retrain
    set_lr(opt, lr * lr_factor(epoch, plan.epochs, rc.milestones, rc.gamma))
    net.train()
    n = plan.steps_in_epoch(epoch)
    batches = epoch_batches(ctx.task.train, plan.batch_size, ctx.cfg, ctx.device, ctx.seed + 1 + epoch, n)
    hint = f"Try a smaller learning rate ({ctx.stage.split('_')[-1]}_lr)."
    total = 0.0
    for step, (x, y) in enumerate(batches):
        loss = train_step(model, ctx.task, x, y, opt, grad_clip=rc.grad_clip, net=net, device=ctx.device,
                          check=lambda value: check_finite(value, ctx.stage, epoch, step, ctx.rd, hint))
        total += loss.item()
        if bar is not None:
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=loss.item())
    return mean_over_ranks(total, n)


# ---------------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, task: "Task", device: Union[torch.device, str] = "cpu",
             batch_size: int = 256, num_workers: int = 0) -> Tuple[float, float]:
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
        (x,) = to_device(device, x)
        with autocast(device):
            outs.append(model(x).float().cpu())
        ys.append(y)
    y_hat, y = torch.cat(outs), torch.cat(ys)
    if distributed.is_distributed():
        y_hat, y = distributed.all_gather_cat(y_hat, n), distributed.all_gather_cat(y, n)
    return task.metric(y_hat, y), float(task.loss(y_hat, y))
