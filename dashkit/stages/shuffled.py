"""The shuffled-target control of a search: the run's own search again, its training targets shuffled.

The decision test (`DashConv.decision`) asks whether alpha's steps agreed; it cannot tell a choice the data made
from a preference of the method. On a small training split the supernet fits its labels whatever they are, and a
single-level search then rewards the candidates that fit fastest (RESULTS.md, "What the search chooses when the
targets are shuffled": on OSULeaf the search chose the same pair with shuffled labels as with the real ones in 23
of 27 layers, chance 1.4, and decided as often). The control separates the two: the same search (the run's
config, plan, seed and inputs) on `dashkit.tasks.shuffle_targets`, where no candidate can be better than another
for a reason in the data. A choice that the control makes too, and decides, is the method's; one that passed the
decision test and is not such a choice is the data's.

    report = dashkit.pipeline.shuffled_control("runs/osuleaf")   # a run whose search finished
    print(report.summary())

or ``python -m dashkit shuffled-control runs/osuleaf``. The control's search is a run directory of its own,
``<run>/shuffled_control/`` (resumable like any search); the comparison is written to
``<run>/shuffled_control.json`` and `dashkit show` prints it. It costs one more search, so it is not part of
every run.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from .. import supernet
from ..rundir import PathLike, RunDir
from .common import as_run_dir, check_cfg, open_run_dir, resolve_task
from .search import search

if TYPE_CHECKING:
    from ..config import RunConfig
    from ..supernet import ArchCard
    from ..tasks.base import Task

__all__ = ["ControlLayer", "ShuffledControl", "compare_with_control", "shuffled_search", "CONTROL_DIR",
           "REPORT_FILE", "PERMUTATION_SEED_OFFSET", "PRIOR_P"]

CONTROL_DIR = "shuffled_control"  # the control's run directory, inside the run's
REPORT_FILE = "shuffled_control.json"
# The permutation's seed is the run's seed plus this (benchmarks/null_search.py uses the same rule).
PERMUTATION_SEED_OFFSET = 10_000
# Below this binomial tail the real and the shuffled searches agree more than independent choices would: the
# choices are read as the method's preference.
PRIOR_P = 0.01


@dataclass
class ControlLayer:
    """One searched layer: the real search's choice and the control's (kernel size k, dilation d, decision z)."""

    name: str
    k: int
    d: int
    z: Optional[float]
    decided: Optional[bool]
    control_k: int
    control_d: int
    control_z: Optional[float]
    control_decided: Optional[bool]

    @property
    def same(self) -> bool:
        """Whether the control chose the same (k, d)."""
        return (self.k, self.d) == (self.control_k, self.control_d)

    @property
    def reading(self) -> str:
        """Whose choice this is. "method": the control chose the same pair and passed the decision test with it,
        so the method prefers it whatever the targets; "data": the run's choice passed the decision test and is
        not such a pair; "undecided": the run's choice did not pass the decision test."""
        if self.same and self.control_decided:
            return "method"
        return "data" if self.decided else "undecided"


@dataclass
class ShuffledControl:
    """A search beside its shuffled-target control (`compare_with_control`).

    Attributes:
        layers: per searched layer, the two choices.
        candidates: M, the candidates per layer; a choice independent of the control's matches it with
            probability 1/M when the control chooses uniformly, and at most max p(choice) otherwise.
        permutation_seed: the seed of the targets' permutation (`dashkit.tasks.shuffle_targets`).
        passes: how many times the search went through its training split (``card.meta["passes"]``), or None.
    """

    layers: List[ControlLayer]
    candidates: int
    permutation_seed: int
    passes: Optional[float] = None

    @property
    def same(self) -> int:
        """Layers where the control chose what the real search chose."""
        return sum(layer.same for layer in self.layers)

    @property
    def chance(self) -> float:
        """The layers expected to match if the two searches chose independently and uniformly: n / M."""
        return len(self.layers) / self.candidates

    @property
    def p_value(self) -> float:
        """P(at least `same` matches of n layers at 1/M each): how unlikely so much agreement is by chance."""
        return binomial_tail(self.same, len(self.layers), 1.0 / self.candidates)

    @property
    def data_decided(self) -> int:
        """Layers whose choice is the data's (`ControlLayer.reading` "data")."""
        return sum(layer.reading == "data" for layer in self.layers)

    @property
    def method_made(self) -> int:
        """Layers whose choice the control made too, and decided (`ControlLayer.reading` "method")."""
        return sum(layer.reading == "method" for layer in self.layers)

    @property
    def prior_made_it(self) -> bool:
        """Whether the run's choices are mostly the method's: they agree with the control's far more than chance
        (p < `PRIOR_P`), or more than half of the layers are the method's choice (`method_made`)."""
        return self.p_value < PRIOR_P or self.method_made > len(self.layers) / 2

    def verdict(self) -> str:
        """A few sentences: what the comparison says about the search's choices."""
        n = len(self.layers)
        text = (f"The search on shuffled targets chose the same kernel size and dilation in {self.same} of {n} "
                f"layers (chance {self.chance:.1f}; p = {self.p_value:.2g}). {self.data_decided} of {n} passed the "
                f"decision test with a choice the control did not also make decisively (the data's choices); "
                f"{self.method_made} of {n} chose what the control chose and decided (the method's preference).")
        if self.prior_made_it:
            return (f"{text} Most of these choices are the method's on this training split, not the data's, and the "
                    f"decision test cannot tell them apart. A bilevel search on a hold-out "
                    f"(search_scheme='bilevel', search_arch_holdout=0.5) steps alpha on examples the weights did "
                    f"not fit; which='best' keeps the network that validates better.")
        if not self.data_decided:
            return f"{text} The search has not shown that the data prefer any of its choices (search longer)."
        return text

    def summary(self) -> str:
        """The verdict, then one row per layer: the run's choice and z, the control's, whether they match, and
        whose choice it is (`ControlLayer.reading`)."""
        rows = [self.verdict(),
                f"{'layer':<32} {'k':>3} {'d':>3} {'z':>6}   {'control k':>9} {'d':>3} {'z':>6}   same  choice"]
        for layer in self.layers:
            rows.append(f"{layer.name:<32} {layer.k:>3} {layer.d:>3} {_z(layer.z):>6}   {layer.control_k:>9} "
                        f"{layer.control_d:>3} {_z(layer.control_z):>6}   {'yes' if layer.same else 'no ':<4}  "
                        f"{layer.reading}")
        return "\n".join(rows)

    def to_dict(self) -> Dict[str, Any]:
        return {"format": "dashkit.shuffled_control", "candidates": self.candidates,
                "permutation_seed": self.permutation_seed, "passes": self.passes,
                "layers": [asdict(layer) for layer in self.layers],
                "same": self.same, "chance": self.chance, "p_value": self.p_value,
                "data_decided": self.data_decided, "method_made": self.method_made,
                "prior_made_it": self.prior_made_it, "verdict": self.verdict()}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ShuffledControl":
        if not isinstance(d, dict) or d.get("format") != "dashkit.shuffled_control":
            raise ValueError("not a dashkit shuffled-control record: the JSON must have \"format\": "
                             "\"dashkit.shuffled_control\"")
        return cls(layers=[ControlLayer(**layer) for layer in d["layers"]], candidates=int(d["candidates"]),
                   permutation_seed=int(d["permutation_seed"]), passes=d.get("passes"))


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p = {p!r}: expected a probability in [0, 1]")
    if k <= 0:
        return 1.0
    return min(1.0, sum(math.comb(n, i) * p ** i * (1.0 - p) ** (n - i) for i in range(k, n + 1)))


def compare_with_control(card: "ArchCard", control: "ArchCard", permutation_seed: int) -> ShuffledControl:
    """The real search's card beside its control's, layer by layer (the two must search the same layers and space).

    Raises:
        ValueError: the cards' spaces or layers differ.
    """
    for name, c in (("card", card), ("control", control)):
        if not isinstance(c, supernet.ArchCard):
            raise TypeError(f"{name}={c!r} has type {type(c).__name__}; accepted: a dashkit.ArchCard")
    if card.space.to_dict() != control.space.to_dict():
        raise ValueError(f"the control searched another space ({control.space}) than the run ({card.space})")
    names, control_names = [layer.name for layer in card.layers], [layer.name for layer in control.layers]
    if names != control_names:
        raise ValueError(f"the control searched other layers ({control_names}) than the run ({names})")
    layers = [ControlLayer(name=a.name, k=a.k, d=a.d, z=a.z, decided=a.decided, control_k=b.k, control_d=b.d,
                           control_z=b.z, control_decided=b.decided) for a, b in zip(card.layers, control.layers)]
    return ShuffledControl(layers=layers, candidates=len(card.space), permutation_seed=int(permutation_seed),
                           passes=card.meta.get("passes"))


def shuffled_search(task: Union["Task", str], cfg: "RunConfig", run_dir: Union[RunDir, PathLike],
                    preset: Optional[str] = None) -> Tuple["ArchCard", ShuffledControl]:
    """The run's search (read back when it finished) and its shuffled-target control, compared.

    The control runs `dashkit.stages.search.search` with the run's config on
    ``shuffle_targets(task, cfg.seed + PERMUTATION_SEED_OFFSET)`` in ``<run_dir>/shuffled_control`` (resumed when
    stopped; read back when done); its own undecided and memorising warnings are not shown, since they describe the
    control. The comparison is written to ``<run_dir>/shuffled_control.json``.

    Args:
        task: the run's task (a Task or its registered name).
        cfg: the run's config; its search settings and plan are the control's.
        run_dir: the run directory.
        preset: the preset recorded in the control's config.json (the run's).

    Returns:
        (the run's ArchCard, the `ShuffledControl`).

    Raises:
        ValueError: a bilevel search without ``search_arch_holdout``: its alpha steps on the validation split,
            whose targets the control does not shuffle, so it would not be a control.
    """
    from ..tasks.base import shuffle_targets

    task, cfg = resolve_task(task), check_cfg(cfg)
    if cfg.search.scheme == "bilevel" and not cfg.search.arch_holdout:
        raise ValueError("search_scheme = 'bilevel' with search_arch_holdout = 0: alpha steps on the validation "
                         "split, whose targets the control does not shuffle, so a control search would still see "
                         "the real targets; the control applies to single-level searches and to bilevel ones "
                         "with search_arch_holdout > 0")
    rd = as_run_dir(run_dir, task, cfg)
    card = search(task, cfg, rd)
    seed = cfg.seed + PERMUTATION_SEED_OFFSET
    shuffled = shuffle_targets(task, seed)
    control_dir = open_run_dir(rd.path / CONTROL_DIR, shuffled, cfg, preset=preset)
    with warnings.catch_warnings():  # they would describe the control's search as if it were the run's
        warnings.simplefilter("ignore", supernet.SearchUndecidedWarning)
        warnings.simplefilter("ignore", supernet.SearchMemorisingWarning)
        control = search(shuffled, cfg, control_dir)
    report = compare_with_control(card, control, seed)
    rd.write_json(REPORT_FILE, report.to_dict())
    return card, report


def _z(z: Optional[float]) -> str:
    return "–" if z is None else f"{z:.1f}"
