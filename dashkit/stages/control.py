"""The random-architecture control: architectures drawn uniformly from DASH's own search space, retrained as DASH's
network is, beside it. It is the standard sanity check of an architecture search (Li and Talwalkar, 2019, "Random
search and reproducibility for neural architecture search"; Yang et al., 2020, "NAS evaluation is frustratingly
hard"): a search that does not beat the architectures it could have drawn at random has not shown that it searched.

``run`` trains ``cfg.random_draws`` of them (2 at the standard and paper presets, 0 at smoke; ``random_draws=0``
turns the control off) after DASH and the baseline. Draw ``i`` (0-based):

- its card (`random_card`): every layer DASH searched gets a (k, d) pair drawn uniformly from the space's
  candidates, independently per layer, so the architecture is drawn uniformly from the space. The generator is
  numpy's ``default_rng`` seeded with ``random_seed(run seed, i)``: the same card for the same (seed, draw),
  another for another draw, and nothing taken from (or given to) torch's global random state.
- trained by DASH's retraining code (`dashkit.stages.retrain.train_and_test`) for the same retraining steps, from
  its own initial weights, with the hyper-parameters *DASH's* tuning chose (tune.json's "best"; the retrain_*
  settings when tuning is off, skipped or undecided). It is not tuned itself: the usual protocol gives the control
  DASH's training budget, not a tuning budget of its own.
- its files: ``random_<i>_archcard.json``, ``init_random_<i>.safetensors``, ``random_<i>.safetensors`` (best
  validation epoch), ``history_random_<i>_retrain.csv``, ``checkpoints/random_<i>_retrain.*``,
  ``done/random_<i>_retrain.json``, and ``metrics.json["random_<i>"]`` (the shape of ``metrics.json["dash"]``).

Once every draw is done, ``metrics.json["random"]`` summarises them (`summarise`): ``test`` and ``val``, the means
over the draws; ``test_sd``, the sample standard deviation of the draws' test metrics (None for one draw);
``draws``; ``per_draw``, each draw's test metric in order; ``hparams``, the hyper-parameters they were trained with.
A resumed run skips the draws whose done marker and weights exist, and resumes a stopped one from its checkpoint.
"""
from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Union

import numpy as np

from ..config import RunConfig
from ..rundir import PathLike, RunDir
from .common import as_run_dir, check_cfg, resolve_task, stage_done, stage_seed
from .retrain import train_and_test
from .search import search
from .tune import tune

if TYPE_CHECKING:
    from ..supernet import ArchCard
    from ..tasks.base import Task

__all__ = ["random_card", "random_seed", "random_names", "random_control", "random_draw", "draw_done", "summarise",
           "random_line"]


def random_seed(seed: int, draw: int) -> int:
    """The seed of draw ``draw``'s card: ``stage_seed(seed, f"random_{draw}")`` (a CRC32, so < 2**32)."""
    return stage_seed(seed, f"random_{draw}")


def random_names(draw: int) -> Dict[str, str]:
    """The names of draw ``draw``: model (weights, metrics.json key), stage (history, checkpoint, done marker) and
    the card's file."""
    if isinstance(draw, bool) or not isinstance(draw, int) or draw < 0:
        raise ValueError(f"draw = {draw!r}: expected an int >= 0")
    return {"model": f"random_{draw}", "stage": f"random_{draw}_retrain", "card": f"random_{draw}_archcard.json"}


def random_card(template: "ArchCard", seed: int, draw: int) -> "ArchCard":
    """An architecture drawn uniformly from ``template``'s space, on ``template``'s searched layers.

    Every layer's (k, d) is one of the space's candidates, each with probability 1 / M, independently of the other
    layers, from ``numpy.random.default_rng(random_seed(seed, draw))``. The layers keep the template's name,
    channels, stride, groups and causality (DASH's card: the layers the search searched); their ``alpha`` is
    uniform (zeros: no preference) and they carry no decision record. ``meta`` says what the card is.

    Args:
        template: DASH's ArchCard (or any card over the space and layers to draw for).
        seed: the run's seed.
        draw: the draw's index, 0, 1, ...

    Returns:
        A new ArchCard; the template is not changed.
    """
    from ..supernet import ArchCard, LayerChoice

    if not isinstance(template, ArchCard):
        raise TypeError(f"template = {template!r}: expected a dashkit.ArchCard (DASH's searched card)")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed = {seed!r}: expected an int")
    names = random_names(draw)
    space = template.space
    candidates = space.candidates
    rng = np.random.default_rng(random_seed(seed, draw))
    picks = rng.integers(0, len(candidates), size=len(template.layers))
    layers = []
    for layer, pick in zip(template.layers, picks):
        k, d = candidates[int(pick)]
        layers.append(LayerChoice(name=layer.name, k=k, d=d, alpha=[0.0] * len(candidates),
                                  in_channels=layer.in_channels, out_channels=layer.out_channels, stride=layer.stride,
                                  groups=layer.groups, causal=layer.causal))
    meta = {"control": "random", "draw": draw, "seed": seed, "rng_seed": random_seed(seed, draw),
            "model": names["model"], "sampler": "uniform over the space's candidates, independently per layer"}
    return ArchCard(space=space, layers=layers, backbone=template.backbone, meta=meta)


def draw_done(rd: RunDir, draw: int) -> bool:
    """Whether draw ``draw`` is done in ``rd``: its done marker, weights and card exist."""
    names = random_names(draw)
    return stage_done(rd, names["stage"], (f"{names['model']}.safetensors", names["card"]))


def random_draw(task: Union["Task", str], cfg: RunConfig, run_dir: Union[RunDir, PathLike], template: "ArchCard",
                draw: int, hparams: Dict[str, float]) -> Dict[str, Any]:
    """Draw ``draw``'s card, save it, retrain it with ``hparams`` for the retraining steps, and test it once.

    Skipped (its done marker read back) when its done marker, weights and card exist.

    Returns:
        As `dashkit.stages.retrain.retrain`; ``metrics.json["random_<draw>"]`` too.
    """
    task, cfg = resolve_task(task), check_cfg(cfg)
    rd = as_run_dir(run_dir, task, cfg)
    names = random_names(draw)
    if draw_done(rd, draw):
        return rd.done_info(names["stage"])
    card = random_card(template, cfg.seed, draw)
    if rd.writable:  # rank 0 of a torchrun launch; every rank draws the same card from the same seed
        card.save(rd.file(names["card"]))
    return train_and_test(task, cfg, rd, card, dict(hparams), names["model"], names["stage"])


def random_control(task: Union["Task", str], cfg: RunConfig, run_dir: Union[RunDir, PathLike],
                   card: Optional["ArchCard"] = None, keep: Optional[Callable[[int], bool]] = None
                   ) -> Optional[Dict[str, Any]]:
    """Retrain ``cfg.random_draws`` random architectures of DASH's space with DASH's hyper-parameters, test each.

    Args:
        card: DASH's searched card (its layers are the ones drawn for); default: the search's (run first if it has
            not been).
        keep: called with ``i`` before each draw ``i`` that is not done yet; False ends the control there, with
            the draws done so far (a timed run whose retrainings ran slow: `dashkit.budget.trim_draws`). Under
            torchrun it must answer alike on every rank.

    Returns:
        The summary also written to ``metrics.json["random"]`` (`summarise`), or None when ``random_draws`` is 0
        (or ``keep`` kept none). DASH's tuning runs first if it has not (its choice is what the draws are trained
        with).
    """
    task, cfg = resolve_task(task), check_cfg(cfg)
    rd = as_run_dir(run_dir, task, cfg)
    if cfg.random_draws == 0:
        return None
    if card is None:
        card = search(task, cfg, rd)
    hp = tune(task, cfg, rd, card)  # DASH's choice: read back when the tuning is done
    results = []
    for i in range(cfg.random_draws):
        if keep is not None and not draw_done(rd, i) and not keep(i):
            break
        results.append(random_draw(task, cfg, rd, card, i, hp))
    if not results:
        return None
    summary = summarise(results, hp)
    metrics = rd.read_json("metrics.json") if rd.exists("metrics.json") else {"metric": task.metric_name}
    metrics["random"] = summary
    rd.write_json("metrics.json", metrics)
    return summary


def summarise(results: List[Dict[str, Any]], hparams: Dict[str, float]) -> Dict[str, Any]:
    """``metrics.json["random"]``: the draws' mean test and validation metrics, the sample sd of the test metrics
    (None for one draw), the number of draws, each draw's test metric, and the hyper-parameters used.

    Args:
        results: the draws' results in order (each with "test" and "val").
        hparams: the hyper-parameters the draws were trained with (DASH's).
    """
    if not results:
        raise ValueError("results = []: expected the results of at least one draw")
    tests = [float(r["test"]) for r in results]
    vals = [float(r["val"]) for r in results]
    sd = statistics.stdev(tests) if len(tests) > 1 else None
    return {"test": math.fsum(tests) / len(tests), "test_sd": sd, "val": math.fsum(vals) / len(vals),
            "draws": len(tests), "per_draw": tests, "per_draw_val": vals, "hparams": dict(hparams)}


def random_line(summary: Dict[str, Any]) -> str:
    """The random-architecture control in words: mean and sd over how many draws, and each draw's test metric."""
    n = summary["draws"]
    sd = summary.get("test_sd")
    spread = f", sd {sd:.4f}" if sd is not None else ""
    each = ", ".join(f"{v:.4f}" for v in summary.get("per_draw", []))
    return (f"mean of {n} architecture{'s' if n != 1 else ''} drawn uniformly from the space{spread}; "
            f"per draw {each}; DASH's hyper-parameters, not tuned")
