"""What one step of each network of a run costs, measured: the input of a time budget's plan (`dashkit.budget`).

Rank 0 of a torchrun launch measures alone (no collectives here), on its own device, with whole batches.
"""
from __future__ import annotations

import tempfile
import time
from typing import TYPE_CHECKING, Any, Dict, List, Tuple

import torch

from .. import supernet
from ..budget import EPOCHS_MAX, FIGURES_SECONDS, SETUP_SECONDS, effective_batch
from ..config import RunConfig
from ..timing import best_time, timed_rounds
from .models import build_model, build_supernet
from .search import arch_split, search_step
from .training import autocast, sgd, to_device, train_step

if TYPE_CHECKING:
    from ..supernet import ArchCard
    from ..tasks.base import Task

__all__ = ["measure_costs", "measure_chosen", "typical_card"]


def measure_costs(task: "Task", cfg: RunConfig, device: torch.device, figures: bool = True,
                  rounds: int = 3) -> Dict[str, float]:
    """Seconds of one step of each network a run trains, one validation pass, and the files an epoch writes.

    The search step is the configured scheme's: a bilevel step (``search_scheme="bilevel"``) includes alpha's
    pass on a batch of its data (`dashkit.stages.search.arch_split`). DASH's discrete network is measured at the
    space's middle candidate (by receptive field) in every layer, as a typical choice of the search, with the
    retrain conv backend (whose ``auto`` choice times the convolutions
    itself; a first untimed call lets it choose). The random-architecture control's draws (``cfg.random_draws``)
    are timed as they will be drawn (`dashkit.stages.control.random_card`: the run's seed fixes them before the
    search): ``random_step`` and ``random_eval`` are the means over the draws. A draw is costlier than the space's
    middle candidate on average (its kernels are drawn uniformly; the cost grows with k): costed as the typical
    architecture, the draws of the UCR 5-minute runs ran a median 1.17x (up to 1.91x) the baseline's time over its
    plan (BENCHMARKS.md). Steps are
    timed round-robin (`dashkit.timing.timed_rounds`) on throwaway copies; the median round counts.

    The files an epoch writes are timed as the stages write them (``search_writes``: the supernet's checkpoint
    and history; ``retrain_writes``: a retrained network's, DASH's typical one, with its optimiser's state): a
    retraining epoch's files cost far less than the four supernet-sized writes the plan once counted for them.

    Returns:
        Seconds of ``search_step``, ``dash_step``, ``baseline_step`` (one optimiser step), ``dash_eval``,
        ``baseline_eval`` (one validation pass), ``search_writes`` and ``retrain_writes`` (one epoch's files;
        `dashkit.budget.epoch_writes`) and
        ``after`` (the test passes, figures and set-up after the stages); with random draws, ``random_step``
        and ``random_eval`` too.
    """
    from .control import random_card  # control imports the stages that import this module

    sc = cfg.search
    sup = build_supernet(task, cfg).to(device)
    card = typical_card(sup)
    dash = build_model(task, cfg, card).to(device)
    base = build_model(task, cfg, None).to(device)
    draws = [build_model(task, cfg, random_card(card, cfg.seed, i)).to(device) for i in range(cfg.random_draws)]
    n = len(task.train)  # type: ignore[arg-type]

    xs, ys = _batch(task.train, effective_batch(sc.batch_size, n))
    xr, yr = _batch(task.train, effective_batch(cfg.retrain.batch_size, n))
    val_batch = None  # the bilevel scheme's alpha batch: its step is two forward and backward passes
    if sc.scheme == "bilevel":
        arch_data = arch_split(task, cfg)[1]
        val_batch = _batch(arch_data, effective_batch(sc.batch_size, len(arch_data)))
    w_opt = sgd(supernet.weight_parameters(sup), sc.lr, sc.momentum, sc.nesterov, sc.weight_decay)
    a_opt = sgd(supernet.arch_parameters(sup), sc.arch_lr, sc.momentum, sc.nesterov, sc.arch_weight_decay)
    nets = {"dash": dash, "baseline": base, **{f"random_{i}": m for i, m in enumerate(draws)}}
    opts = {name: sgd(model.parameters(), 1e-4, 0.9, True, 0.0) for name, model in nets.items()}
    sup.train()
    for model in nets.values():
        model.train()
    steps = {"search_step": lambda: search_step(sup, task, xs, ys, w_opt, a_opt, grad_clip=sc.grad_clip,
                                                val_batch=val_batch),
             **{f"{name}_step": (lambda m=model, o=opts[name]: train_step(m, task, xr, yr, o, grad_clip=1.0))
                for name, model in nets.items()}}
    timed = timed_rounds(steps, device=device, rounds=rounds, warmup=1, progress=False)
    costs = {name: _median(values) for name, values in timed.items()}
    eval_batch = 2 * cfg.retrain.batch_size
    for name, model in nets.items():
        # the untimed warm-up call makes the measured conv choice of the new batch shape
        costs[f"{name}_eval"] = best_time(lambda m=model: _forward_pass(m, task, device, eval_batch), device,
                                          repeats=1, warmup=1)
    if draws:  # the draws' mean: the plan costs every draw alike
        for kind in ("step", "eval"):
            costs[f"random_{kind}"] = sum(costs.pop(f"random_{i}_{kind}") for i in range(len(draws))) / len(draws)
    # the median of a few epochs' writes: one write can stall (a disk flush), and every epoch's cost carries it
    costs.update(_epoch_writes(sup, {"weights": w_opt, "arch": a_opt}, dash, opts["dash"], max(3, rounds)))
    n_val, n_test = len(task.val), len(task.test)  # type: ignore[arg-type]
    test_passes = (costs["dash_eval"] + costs["baseline_eval"]) * n_test / max(n_val, 1)
    costs["after"] = test_passes + (FIGURES_SECONDS if figures else 0.0) + SETUP_SECONDS
    return costs


def _epoch_writes(sup: torch.nn.Module, sup_opts: Dict[str, torch.optim.Optimizer], net: torch.nn.Module,
                  net_opt: torch.optim.Optimizer, repeats: int) -> Dict[str, float]:
    """``search_writes`` and ``retrain_writes``: seconds of the files one search epoch writes (the history and the
    supernet's checkpoint, alpha's history in its JSON) and one network's retraining epoch (the history and the
    network's checkpoint with its optimiser's state), written as the stages write them (`RunDir`) into a throwaway
    folder, half of ``EPOCHS_MAX`` epochs into the stage (the histories grow with the epochs); the median of
    ``repeats``. The best weights a retraining epoch writes when its validation improves are not counted."""
    from ..rundir import RunDir

    epochs = max(1, EPOCHS_MAX // 2)
    layers = [name for name, _ in supernet.dash_layers(sup)]
    m = len(sup.dash_space.candidates)
    search_rows = [{"epoch": e + 1, "lr": 0.1, "arch_lr": 0.05, "train_loss": 1.0, "arch_entropy": 1.0,
                    "seconds": 1.0} for e in range(epochs)]
    alphas = [{name: [1.0 / m] * m for name in layers} for _ in range(epochs)]
    retrain_rows = [{"epoch": e + 1, "lr": 0.1, "train_loss": 1.0, "val_loss": 1.0, "val_metric": 1.0,
                     "seconds": 1.0} for e in range(epochs)]
    out: Dict[str, List[float]] = {"search_writes": [], "retrain_writes": []}
    with tempfile.TemporaryDirectory() as tmp:
        rd = RunDir(tmp)
        for i in range(repeats):
            t0 = time.perf_counter()
            rd.write_history("search", search_rows)
            rd.save_checkpoint("search", epochs + i, sup, sup_opts,
                               extra={"history": search_rows, "alphas": alphas, "seconds": 1.0})
            out["search_writes"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            rd.write_history("retrain", retrain_rows)
            rd.save_checkpoint("retrain", epochs + i, net, {"sgd": net_opt},
                               extra={"history": retrain_rows, "best_val": 1.0, "best_epoch": 0, "seconds": 1.0})
            out["retrain_writes"].append(time.perf_counter() - t0)
    return {key: _median(values) for key, values in out.items()}


def typical_card(sup: torch.nn.Module) -> "ArchCard":
    """The ArchCard of a typical architecture of the supernet ``sup``'s space, at which `measure_costs` costs DASH's
    network before the search has chosen: the middle candidate by receptive field, in every layer."""
    space = sup.dash_space
    field = lambda i: ((space.candidates[i][0] - 1) * space.candidates[i][1], space.candidates[i])  # noqa: E731
    by_field = sorted(range(len(space.candidates)), key=field)
    middle = by_field[len(by_field) // 2]
    with torch.no_grad():
        for _, m in supernet.dash_layers(sup):
            m.alpha.zero_()
            m.alpha[middle] = 1.0
    return supernet.discretize(sup)[1]


def measure_chosen(task: "Task", cfg: RunConfig, card: "ArchCard", device: torch.device, rounds: int = 3
                   ) -> Dict[str, float]:
    """How much more (or less) DASH's searched network costs than the typical architecture `measure_costs` costed
    it at (`typical_card`), measured side by side now: ``{"step": r, "eval": r}``, the ratios of one retraining
    step and of one validation pass (chosen / typical).

    A time budget plans the tuning and the retraining before the search has chosen; the search often chooses wide
    kernels, which cost more than the space's middle one (a 1.3-2.2x step on UCR datasets, BENCHMARKS.md). After the
    search the re-plan multiplies DASH's costs by these ratios (`dashkit.pipeline.run`). Ratios of two networks
    timed round-robin in the same seconds depend little on how busy the machine is now; the random draws stay
    costed at the typical architecture. A few steps of each network: well under a second on the 1D tasks.
    """
    chosen = build_model(task, cfg, card).to(device)
    typical = build_model(task, cfg, typical_card(build_supernet(task, cfg))).to(device)
    xr, yr = _batch(task.train, effective_batch(cfg.retrain.batch_size, len(task.train)))  # type: ignore[arg-type]
    opts = {name: sgd(model.parameters(), 1e-4, 0.9, True, 0.0) for name, model in (("chosen", chosen),
                                                                                   ("typical", typical))}
    chosen.train(), typical.train()
    timed = timed_rounds({name: (lambda m=model, o=opts[name]: train_step(m, task, xr, yr, o, grad_clip=1.0))
                          for name, model in (("chosen", chosen), ("typical", typical))},
                         device=device, rounds=rounds, warmup=1, progress=False)
    step = {name: _median(values) for name, values in timed.items()}
    passes = {name: best_time(lambda m=model: _forward_pass(m, task, device, 2 * cfg.retrain.batch_size), device,
                              repeats=2, warmup=1) for name, model in (("chosen", chosen), ("typical", typical))}
    return {"step": step["chosen"] / max(step["typical"], 1e-12),
            "eval": passes["chosen"] / max(passes["typical"], 1e-12)}


def _median(values: List[float]) -> float:
    """The middle of a few timings (the upper middle of an even count): one stalled call does not move it."""
    return sorted(values)[len(values) // 2]


def _batch(data: Any, size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` examples of ``data`` (all of them when fewer) as one batch (x, y)."""
    xs, ys = zip(*(data[i] for i in range(min(size, len(data)))))
    return torch.stack([torch.as_tensor(x) for x in xs]), torch.stack([torch.as_tensor(y) for y in ys])


@torch.no_grad()
def _forward_pass(model: torch.nn.Module, task: "Task", device: torch.device, batch_size: int) -> None:
    """One pass of `model` over the validation split, as ``evaluate`` makes it, without its collectives (rank 0
    measures alone under torchrun)."""
    from torch.utils.data import DataLoader

    model.eval()
    outs, ys = [], []
    for x, y in DataLoader(task.val, batch_size=batch_size, shuffle=False):
        (x,) = to_device(device, x)
        with autocast(device):
            outs.append(model(x).float().cpu())
        ys.append(y)
    task.metric(torch.cat(outs), torch.cat(ys))
    model.train()
