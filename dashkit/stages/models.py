"""The networks the stages train: the backbone (searched as a supernet), and the discrete network or baseline.

``build_backbone(task, cfg, "search")`` is what the search turns into a supernet; ``build_model(task, cfg, card)``
is the network that is tuned and retrained (``card=None``: the baseline, default kernels).
"""
from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

import torch
from torch import nn

from .. import distributed
from ..config import RunConfig
from ..layers import auto_convs
from ..rundir import RunDir
from .common import seed_everything, stage_seed

if TYPE_CHECKING:
    from ..supernet import ArchCard
    from ..tasks.base import Task

__all__ = ["net_spec", "build_backbone", "build_model", "initial_state"]


def net_spec(task: "Task", cfg: RunConfig) -> Tuple[str, Dict[str, Any], Tuple[int, ...], Tuple[int, ...]]:
    """(backbone name, backbone kwargs, kernel sizes, dilations): the config's, else the task's defaults."""
    d = task.defaults
    return (cfg.backbone or d.backbone, dict(cfg.backbone_kwargs if cfg.backbone_kwargs is not None
                                             else d.backbone_kwargs),
            tuple(cfg.kernel_sizes or d.kernel_sizes), tuple(cfg.dilations or d.dilations))


def build_backbone(task: "Task", cfg: RunConfig, stage: str = "retrain", dropout: Optional[float] = None
                   ) -> nn.Module:
    """The task's backbone with the stage's overrides (``search_backbone`` / ``retrain_backbone``).

    ``in_channels``, ``num_classes``, ``dims`` and ``dense`` come from the task where the constructor takes them.
    """
    from ..backbones import BACKBONES

    if stage not in ("search", "retrain"):
        raise ValueError(f"stage = {stage!r}: expected 'search' or 'retrain'")
    name, kwargs, _, _ = net_spec(task, cfg)
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


def build_supernet(task: "Task", cfg: RunConfig) -> nn.Module:
    """The search backbone made a supernet over the task's space with the ``search_*`` settings (on the CPU).

    Its ``dash_space`` attribute is the `SearchSpace`. The search stage and the time budget's cost measurement
    build the same network this way.
    """
    from .. import supernet
    from ..space import SearchSpace

    sc = cfg.search
    _, _, ks, ds = net_spec(task, cfg)
    return supernet.to_supernet(build_backbone(task, cfg, "search"), SearchSpace(ks, ds, dims=task.dims),
                                backend=sc.backend, depthwise=sc.depthwise, relaxation=sc.relaxation, tau=sc.tau,
                                grad_scale=sc.grad_scale, rf_penalty=sc.rf_penalty, init_std=sc.init_std)


def build_model(task: "Task", cfg: RunConfig, card: Optional["ArchCard"] = None, dropout: Optional[float] = None
                ) -> nn.Module:
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


def initial_state(task: "Task", cfg: RunConfig, rd: RunDir, card: Optional["ArchCard"], name: str
                  ) -> Dict[str, torch.Tensor]:
    """The initial weights every tuning trial and the retraining start from (saved once, then reused).

    Args:
        name: "dash" or "baseline": the file is ``init_<name>.safetensors``.
    """
    fname = f"init_{name}.safetensors"
    if not distributed.main_decides(rd.exists(fname)):
        if distributed.is_main():
            seed_everything(stage_seed(cfg.seed, f"init_{name}"))
            rd.save_weights(fname, build_model(task, cfg, card).state_dict())
        distributed.barrier()  # the other ranks read what rank 0 wrote
    return rd.load_weights(fname)
