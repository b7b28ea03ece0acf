"""Turning a plain CNN into a DASH supernet, and a searched supernet back into a plain CNN.

    >>> space = dashkit.SearchSpace((3, 5, 7, 9), (1, 3, 7, 15), dims=1)
    >>> net = dashkit.to_supernet(dashkit.backbones.resnet1d(1, 10), space)   # every searchable conv -> DashConv
    >>> ...search...
    >>> plain, card = dashkit.discretize(net)                                  # argmax of alpha per layer
    >>> card.save("arch.json"); card.apply(dashkit.backbones.resnet1d(1, 10)) # same architecture, fresh weights

Which convolutions are searchable is stated once, in `dashkit.backbones` ("The contract for a searchable
convolution"); plain convolutions are built by `dashkit.layers.plain_conv`.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .checks import check_bool, check_float
from .dashconv import DECISION_Z, UNDECIDED_LAYERS, DashConv
from .layers import CausalConv1d, is_same_padding, plain_conv, search_mark
from .space import SearchSpace

__all__ = ["to_supernet", "discretize", "ArchCard", "LayerChoice", "dash_layers", "arch_parameters",
           "weight_parameters", "postprocess_arch_grads", "alpha_probs", "default_filter", "ARCHCARD_VERSION",
           "SearchUndecidedWarning", "warn_if_undecided", "DECISION_Z", "SearchMemorisingWarning",
           "warn_if_memorising", "MEMORISING_PASSES"]

ARCHCARD_VERSION = 1


def _convs(model: nn.Module, dims: Optional[int] = None) -> List[Tuple[str, nn.Module]]:
    """The (name, conv) pairs of ``model``: every ``nn.Conv1d`` / ``nn.Conv2d``, subclasses included."""
    kinds = (nn.Conv1d, nn.Conv2d) if dims is None else (nn.Conv1d if dims == 1 else nn.Conv2d,)
    return [(n, m) for n, m in model.named_modules() if isinstance(m, kinds)]


def default_filter(name: str, module: nn.Module) -> bool:
    """The default rule of `to_supernet`: the conv's mark (`dashkit.layers.searchable`) if it has one, else
    whether its kernel is larger than 1 (DASH's rule: 1x1 convolutions, e.g. shortcuts, are not searched).

    A custom ``filter`` may call it and add its own conditions.
    """
    mark = search_mark(module)
    return mark if mark is not None else max(module.kernel_size) > 1


def _check_names(model: nn.Module, space: SearchSpace, arg: str, names: Optional[Sequence[str]]) -> frozenset:
    if names is None:
        return frozenset()
    if isinstance(names, str) or not isinstance(names, (list, tuple, set, frozenset)) \
            or not all(isinstance(n, str) for n in names):
        raise TypeError(f"{arg}={names!r} is not a list of names; accepted: a list of convolution names, e.g. "
                        f"['blocks.0.conv1']")
    known = [n for n, _ in _convs(model, space.dims)]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"{arg}={sorted(unknown)!r} names no {space.dims}D convolution of {type(model).__name__}; "
                         f"accepted: the names of its {space.dims}D convolutions: {known}")
    return frozenset(names)


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def to_supernet(model: nn.Module, space: SearchSpace, *, backend: str = "auto", depthwise: bool = True,
                relaxation: str = "gumbel", tau: float = 1.0, grad_scale: float = 100.0, rf_penalty: float = 1e-5,
                init_std: float = 0.01, causal_search: bool = True,
                filter: Optional[Callable[[str, nn.Module], bool]] = None,
                include: Optional[Sequence[str]] = None, exclude: Optional[Sequence[str]] = None) -> nn.Module:
    """Replace the searchable convolutions of ``model`` by `DashConv` (in place) and return the model.

    Which convolutions are searched is the contract stated once in `dashkit.backbones` ("The contract for a
    searchable convolution"): every ``nn.Conv1d`` / ``nn.Conv2d`` of ``space.dims`` dimensions (subclasses
    included) with a kernel larger than 1, zero "same" padding and one stride, unless marked out with
    ``dashkit.layers.searchable(conv, False)``; ``include`` / ``exclude`` / ``filter`` decide per call.

    Args:
        model: any ``nn.Module``.
        space: the kernel sizes and dilations to search.
        backend: "auto" | "fft" | "direct" | "mixed_results", see `DashConv`.
        depthwise: search layers with in_channels == out_channels (and groups 1) depthwise, as DASH does; they
            are retrained as full convolutions. False searches every layer with full convolutions.
        relaxation, tau, grad_scale, rf_penalty, init_std: see `DashConv` (DASH's defaults).
        causal_search: causal convs (`CausalConv1d`) are searched causally (True) or centred, as DASH's TCN
            search does (False); either way they are retrained causal (`DashConv`'s ``retrain_causal``).
        filter: ``filter(name, conv) -> bool`` picks the convs to search in place of `default_filter` (the
            mark, else kernel > 1).
        include: names of convs to search whatever the filter and marks say.
        exclude: names of convs never to search.

    A conv picked by ``include``, a ``filter``, or a True mark must keep the input size; otherwise a
    ``ValueError`` says so. One that the default rule picks but does not keep the size is left alone.

    Returns:
        The same model; ``model.dash_replaced`` lists the names of the replaced layers.

    Example:
        >>> net = to_supernet(backbones.resnet1d(1, 10), SearchSpace((3, 5), (1, 2), dims=1),
        ...                   exclude=["blocks.0.conv1"])
        >>> len(net.dash_replaced)
        8
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model={type(model).__name__} is not a module; accepted: a torch.nn.Module")
    if not isinstance(space, SearchSpace):
        raise TypeError(f"space={space!r} has type {type(space).__name__}; accepted: a dashkit.SearchSpace")
    check_bool("depthwise", depthwise)
    check_bool("causal_search", causal_search)
    if any(isinstance(m, DashConv) for m in model.modules()):
        raise ValueError("model already contains DashConv layers: it is a supernet already")
    inc = _check_names(model, space, "include", include)
    exc = _check_names(model, space, "exclude", exclude)
    if inc & exc:
        raise ValueError(f"include and exclude both name {sorted(inc & exc)!r}; accepted: each name in at most one")
    pick = filter or default_filter
    targets: List[Tuple[str, nn.Module]] = []
    for name, m in _convs(model, space.dims):
        if name in exc or not (name in inc or pick(name, m)):
            continue
        if not is_same_padding(m):
            by = ("include" if name in inc else "the filter" if filter is not None
                  else "its searchable mark" if search_mark(m) else None)
            if by is not None:
                raise ValueError(f"conv {name!r} was selected by {by} but does not use zero 'same' padding "
                                 f"(padding={m.padding!r}, padding_mode={m.padding_mode!r}); DashConv keeps the "
                                 f"input size, so only such convs can be searched")
            continue
        if len(set(m.stride)) != 1:
            raise ValueError(f"conv {name!r} has unequal strides {m.stride!r}; DashConv needs one stride")
        targets.append((name, m))
    if not targets:
        convs = [n for n, _ in _convs(model)]
        raise ValueError(f"found no convolution to search for a {space.dims}D space in "
                         f"{type(model).__name__}; its convs: {convs or 'none'}")
    for name, m in targets:
        same_io = m.in_channels == m.out_channels and m.groups == 1
        groups = m.in_channels if (depthwise and same_io) else m.groups
        causal = isinstance(m, CausalConv1d)
        new = DashConv(m.in_channels, m.out_channels, space, stride=m.stride[0], groups=groups,
                       bias=m.bias is not None, causal=causal and causal_search, backend=backend,
                       relaxation=relaxation, tau=tau, grad_scale=grad_scale, rf_penalty=rf_penalty,
                       init_std=init_std, retrain_groups=m.groups, retrain_causal=causal)
        ref = m.weight
        new.to(device=ref.device, dtype=ref.dtype)
        _set_module(model, name, new)
    model.dash_replaced = tuple(n for n, _ in targets)  # type: ignore[attr-defined]
    model.dash_space = space  # type: ignore[attr-defined]
    return model


def dash_layers(model: nn.Module) -> List[Tuple[str, DashConv]]:
    """The (name, DashConv) pairs of a supernet, in module order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, DashConv)]


def arch_parameters(model: nn.Module) -> List[nn.Parameter]:
    """The architecture parameters (one alpha per searched layer), for their own optimiser."""
    return [m.alpha for _, m in dash_layers(model)]


def weight_parameters(model: nn.Module) -> List[nn.Parameter]:
    """Every parameter that is not an architecture parameter."""
    arch = {id(p) for p in arch_parameters(model)}
    return [p for p in model.parameters() if id(p) not in arch]


def alpha_probs(alpha: Union[torch.Tensor, Sequence[float]]) -> List[float]:
    """softmax(alpha): a layer's architecture weights as probabilities over its M candidates (float32, in order).

    The one place dashkit turns alpha into probabilities: the search's history, the ArchCard's summary and the
    explorer all read them from here.

    Args:
        alpha: (M,) a layer's alpha (a parameter, a tensor or a list of floats).

    Returns:
        M floats that sum to 1.
    """
    a = alpha.detach() if isinstance(alpha, torch.Tensor) else torch.tensor(list(alpha))
    return torch.softmax(a.float().cpu(), 0).tolist()


def postprocess_arch_grads(model: nn.Module) -> None:
    """DASH's arch-gradient normalisation and receptive-field penalty on every layer (after backward)."""
    for _, m in dash_layers(model):
        m.postprocess_alpha_grad()


@dataclass
class LayerChoice:
    """The choice for one searched layer.

    ``z``, ``decided``, ``runner_up`` and ``steps`` are the search's decision record (`DashConv.decision`): how
    many gradient-noise units the choice leads its closest rival ``runner_up`` ([k, d]) by, after ``steps``
    alpha steps, and whether that reached the threshold (``ArchCard.meta["decision_z"]``). They are None in
    cards written before dashkit recorded them.
    """

    name: str
    k: int
    d: int
    alpha: List[float]
    in_channels: int
    out_channels: int
    stride: int = 1
    groups: int = 1
    causal: bool = False
    z: Optional[float] = None
    decided: Optional[bool] = None
    runner_up: Optional[List[int]] = None
    steps: Optional[int] = None

    @property
    def receptive_field(self) -> int:
        return self.d * (self.k - 1) + 1


class SearchUndecidedWarning(UserWarning):
    """Most searched layers did not decide: their kernel size and dilation are about what gradient noise gives."""


class SearchMemorisingWarning(UserWarning):
    """A single-level search went through a small training split so often that its supernet can memorise it."""


# A single-level search that goes through its training split this many times or more is warned about
# (`warn_if_memorising`). Measured with shuffled training targets (RESULTS.md, "What the search chooses when the
# targets are shuffled"): at 13-65 passes (ecg_synth, mnist1d, planted1d) the choices on the real targets differed
# from the shuffled-target control; at 1000 and 2000 passes (OSULeaf, ArrowHead) they were the control's.
MEMORISING_PASSES = 500.0


@dataclass
class ArchCard:
    """A searched architecture: the space and, per layer, the chosen kernel size and dilation.

    Saved as versioned JSON; `apply` builds the architecture on a fresh backbone (possibly wider, e.g. search on
    WRN-16-1 and retrain on WRN-16-4: layers are matched by name).
    """

    space: SearchSpace
    layers: List[LayerChoice]
    backbone: Optional[str] = None
    meta: Dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, Any]:
        return {"format": "dashkit.archcard", "version": ARCHCARD_VERSION, "space": self.space.to_dict(),
                "backbone": self.backbone, "layers": [asdict(layer) for layer in self.layers], "meta": self.meta}

    @classmethod
    def from_dict(cls, d: Dict[str, Any]) -> "ArchCard":
        if not isinstance(d, dict) or d.get("format") != "dashkit.archcard":
            raise ValueError("not a dashkit ArchCard: the JSON must have \"format\": \"dashkit.archcard\"")
        if d.get("version") != ARCHCARD_VERSION:
            raise ValueError(f"ArchCard version {d.get('version')!r} is not supported (this dashkit reads "
                             f"version {ARCHCARD_VERSION})")
        try:
            space = SearchSpace.from_dict(d["space"])
            layers = [LayerChoice(**layer) for layer in d["layers"]]
        except (KeyError, TypeError) as e:
            raise ValueError(f"ArchCard is missing or has malformed fields: {e}") from e
        for layer in layers:
            space.index(layer.k, layer.d)  # raises if the choice is outside the space
        return cls(space=space, layers=layers, backbone=d.get("backbone"), meta=d.get("meta") or {})

    def save(self, path: Union[str, os.PathLike]) -> Path:
        """Write the card as JSON, atomically (a temporary file renamed into place)."""
        from .rundir import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Union[str, os.PathLike]) -> "ArchCard":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no ArchCard at {str(path)!r}")
        try:
            d = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"ArchCard file {str(path)!r} is not valid JSON: {e}") from e
        return cls.from_dict(d)

    @property
    def undecided(self) -> str:
        """What a network built from this card has in a layer that did not decide: "searched" (the search's
        choice, DASH) or "default_kernels" (the backbone's own convolution). ``meta["undecided"]``, which the search
        stage writes from ``search_undecided``; "searched" for a card without it."""
        value = self.meta.get("undecided", "searched")
        if value not in UNDECIDED_LAYERS:
            raise ValueError(f"ArchCard meta['undecided'] = {value!r}: expected one of {', '.join(UNDECIDED_LAYERS)}")
        return value

    def applied_layers(self, undecided: Optional[str] = None) -> List[LayerChoice]:
        """The layers `apply` sets: every layer, or with ``undecided="default_kernels"`` (None: the card's own
        `undecided`) only those that decided or carry no decision record (``decided`` is not False)."""
        undecided = self.undecided if undecided is None else undecided
        if undecided not in UNDECIDED_LAYERS:
            raise ValueError(f"undecided = {undecided!r}: expected None (the card's own, {self.undecided!r}) or one "
                             f"of {', '.join(UNDECIDED_LAYERS)}")
        if undecided == "searched":
            return list(self.layers)
        return [layer for layer in self.layers if layer.decided is not False]

    def kept_layers(self) -> List[str]:
        """The names of the layers a network built from this card keeps at the backbone's default kernel: the
        layers `applied_layers` leaves out (none unless the card's `undecided` is "default_kernels")."""
        applied = {layer.name for layer in self.applied_layers()}
        return [layer.name for layer in self.layers if layer.name not in applied]

    def apply(self, backbone: nn.Module, undecided: Optional[str] = None) -> nn.Module:
        """Give a fresh backbone the card's kernel sizes and dilations (in place); returns it.

        Each named layer must be a conv of the space's dimension in ``backbone``; channels may differ (a wider
        retrain network), everything else of the conv (stride, groups, bias, causality) is kept.

        Args:
            undecided: "searched" sets every layer's choice; "default_kernels" leaves a layer that did not pass
                the decision test (``decided`` False) as the backbone built it, its default kernel. None (the
                default): the card's own `undecided`, so a run's card rebuilds the network the run trained.
        """
        if any(isinstance(m, DashConv) for m in backbone.modules()):
            raise ValueError("apply() needs a plain backbone, not a supernet; use discretize() for a supernet")
        convs = dict(_convs(backbone))
        missing = [layer.name for layer in self.layers if layer.name not in convs]
        if missing:
            raise ValueError(f"this ArchCard (backbone {self.backbone!r}) does not fit {type(backbone).__name__}: "
                             f"no conv named {missing[:5]!r}{' ...' if len(missing) > 5 else ''}")
        for layer in self.applied_layers(undecided):
            m = convs[layer.name]
            if m.weight.dim() - 2 != self.space.dims:
                raise ValueError(f"layer {layer.name!r} is a {m.weight.dim() - 2}D conv, the ArchCard is "
                                 f"{self.space.dims}D")
            _set_module(backbone, layer.name, plain_conv(m.in_channels, m.out_channels, layer.k, layer.d,
                                                         m.stride[0], m.groups, m.bias is not None,
                                                         isinstance(m, CausalConv1d), self.space.dims,
                                                         m.weight.device, m.weight.dtype))
        return backbone

    @property
    def decision_z(self) -> float:
        """The z a layer needed to count as decided (``meta["decision_z"]``, else `DECISION_Z`)."""
        return float(self.meta.get("decision_z", DECISION_Z))

    def decided_count(self) -> Optional[Tuple[int, int]]:
        """(decided layers, layers with a decision record), or None when no layer has one (an older card)."""
        known = [layer.decided for layer in self.layers if layer.decided is not None]
        return (sum(known), len(known)) if known else None

    def decided_fraction(self) -> Optional[float]:
        """The share of searched layers whose choice the search decided (`DashConv.decision`), in [0, 1].

        Counts the layers that have a decision record; None when none has (a card written before dashkit recorded
        it).
        """
        counts = self.decided_count()
        return None if counts is None else counts[0] / counts[1]

    def summary(self) -> str:
        """A header line with how many layers decided, then one row per layer: its name, k, d, receptive field,
        p(choice) (softmax(alpha) of the chosen pair), z and whether it decided. A layer the network keeps at the
        backbone's default kernel (the card's `undecided` is "default_kernels" and the layer did not decide) is
        marked "trained: default kernel", and the header counts them.

        z is the chosen pair's lead over its closest rival in units of the gradient noise of the search's alpha
        steps (`DashConv.decision`); a layer decided when z >= 3 (the card's ``decision_z``). A short search
        leaves p(choice) near 1/M, the level of no preference (DASH's normalised arch gradient moves alpha by
        small fixed steps), so p(choice) alone does not say whether the argmax means something; z does. Cards
        without the record show "–".
        """
        counts = self.decided_count()
        thr = f"z >= {self.decision_z:g}"
        if counts is None:
            head = f"– of {len(self.layers)} layers decided ({thr}; this card has no decision record)"
        else:
            missing = len(self.layers) - counts[1]
            head = f"{counts[0]} of {counts[1]} layers decided ({thr})" + \
                (f"; {missing} without a record" if missing else "")
        kept = self.kept_layers()
        if kept:
            head += f"; the {len(kept)} undecided trained at the backbone's default kernels"
        rows = [head, f"{'layer':<32} {'k':>3} {'d':>3} {'field':>6} {'p(choice)':>9} {'z':>6} {'decided':>7}   "
                      f"(1/M = {1 / len(self.space):.3f}: no preference)"]
        for layer in self.layers:
            p = max(alpha_probs(layer.alpha))
            z = "–" if layer.z is None else f"{layer.z:.1f}"
            decided = "–" if layer.decided is None else ("yes" if layer.decided else "no")
            rows.append(f"{layer.name:<32} {layer.k:>3} {layer.d:>3} {layer.receptive_field:>6} {p:>9.3f} "
                        f"{z:>6} {decided:>7}" + ("   trained: default kernel" if layer.name in kept else ""))
        return "\n".join(rows)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ArchCard):
            return NotImplemented
        return self.space == other.space and [(l.name, l.k, l.d) for l in self.layers] == \
            [(l.name, l.k, l.d) for l in other.layers]


def discretize(supernet: nn.Module, keep_search_groups: bool = False, decision_z: float = DECISION_Z
               ) -> Tuple[nn.Module, ArchCard]:
    """The plain network and the ArchCard of a searched supernet: argmax of alpha per layer.

    Args:
        supernet: a model made by `to_supernet` (it is not changed).
        keep_search_groups: keep a depthwise-searched layer depthwise (with its searched weights) instead of
            turning it into a full convolution as DASH's retraining does.
        decision_z: the z a layer needs to count as decided (`DashConv.decision`); kept in ``card.meta``.

    Returns:
        (model, card): a deep copy with every DashConv replaced by a plain conv of the chosen (k, d), with the
        chosen candidate's weights where the groups and the causality match (see `DashConv.to_conv`); and the
        ArchCard, whose layers carry the search's decision record (``z``, ``decided``, ``runner_up``,
        ``steps``).
    """
    layers = dash_layers(supernet)
    if not layers:
        raise ValueError("discretize() needs a supernet (a model with DashConv layers); use to_supernet() first")
    decision_z = check_float("decision_z", decision_z)
    plain = copy.deepcopy(supernet)
    choices = []
    for name, m in dash_layers(plain):
        groups = m.groups if keep_search_groups else m.retrain_groups
        k, d = m.chosen()
        rec = m.decision(decision_z)
        _set_module(plain, name, m.to_conv(groups=groups))
        choices.append(LayerChoice(name=name, k=k, d=d, alpha=[float(a) for a in m.alpha.detach().cpu()],
                                   in_channels=m.in_channels, out_channels=m.out_channels, stride=m.stride,
                                   groups=groups, causal=m.retrain_causal, z=rec["z"], decided=rec["decided"],
                                   runner_up=None if rec["runner_up"] is None else list(rec["runner_up"]),
                                   steps=rec["steps"]))
    for attr in ("dash_replaced", "dash_space"):
        if attr in plain.__dict__:
            delattr(plain, attr)
    space = layers[0][1].space
    meta = {"created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "decision_z": decision_z}
    return plain, ArchCard(space=space, layers=choices, backbone=type(supernet).__name__, meta=meta)


def warn_if_memorising(card: ArchCard, stacklevel: int = 2) -> bool:
    """Warn (`SearchMemorisingWarning`) when a single-level search went through its training split at least
    `MEMORISING_PASSES` times (``card.meta["passes"]``, which `dashkit.stages.search` records).

    A supernet trained that long on a small split can fit its labels whatever they are, and DASH's single-level
    search steps alpha on that same training loss, so it rewards the candidates that fit fastest, often the
    widest. On two small UCR datasets (OSULeaf, 1000 passes; ArrowHead, 2000) the search chose the same pairs with
    the labels shuffled as with the real ones, and passed the decision test as often (RESULTS.md, "What the search
    chooses when the targets are shuffled"). The message gives the passes and what to do instead. A bilevel search,
    a card without ``passes`` and a search with fewer passes never warn.

    Args:
        card: an ArchCard from `dashkit.stages.search`.
        stacklevel: as in ``warnings.warn``: 2 names the caller's line.

    Returns:
        Whether it warned.
    """
    if not isinstance(card, ArchCard):
        raise TypeError(f"card={card!r} has type {type(card).__name__}; accepted: a dashkit.ArchCard")
    if isinstance(stacklevel, bool) or not isinstance(stacklevel, int) or stacklevel < 1:
        raise ValueError(f"stacklevel={stacklevel!r} is not valid; accepted: an int >= 1")
    passes = card.meta.get("passes")
    if passes is None or card.meta.get("scheme", "single_level") != "single_level" or passes < MEMORISING_PASSES:
        return False
    examples = card.meta.get("train_examples")
    split = f"its training split ({examples} examples)" if examples else "its training split"
    warnings.warn(f"The search went through {split} {passes:g} times: its supernet can memorise those labels, and "
                  f"a single-level search then rewards the candidates that memorise fastest, often the widest, "
                  f"whatever the labels say (on OSULeaf and ArrowHead, at 1000 and 2000 passes, it chose the same "
                  f"pairs with the labels shuffled, and decided as often: RESULTS.md, \"What the search chooses "
                  f"when the targets are shuffled\"). Its choices and decisions here may be the method's, not the "
                  f"data's. Compare them with the same search on shuffled labels "
                  f"(dashkit.pipeline.shuffled_control(run_dir) or `python -m dashkit shuffled-control RUN_DIR`, "
                  f"once the run's search has finished); search alpha on held-out examples "
                  f"(search_scheme='bilevel', search_arch_holdout=0.5), or push it towards small fields as DASH "
                  f"does (search_rf_penalty=1e-5; RESULTS.md, \"DASH's push against the memorising preference\"), "
                  f"or cut the search to fewer passes (search_max_passes=100; RESULTS.md, \"A search of at most "
                  f"100 passes\"); and compare DASH with the baseline on validation (which='best').",
                  SearchMemorisingWarning, stacklevel=stacklevel)
    return True


def _cut_text(card: ArchCard) -> str:
    """What the undecided warning adds for a search cut to its passes (``search_max_passes``), else ""."""
    asked, cap = card.meta.get("steps_asked"), card.meta.get("max_passes")
    if asked is None or cap is None:
        return ""
    return (f" This search was cut from {asked} to {card.meta.get('steps')} steps by search_max_passes={cap:g}: "
            f"raising it searches longer, at the price of more passes over a small training split, through which "
            f"the supernet memorises the labels and the choices become the method's (SearchMemorisingWarning).")


def _kept_text(card: ArchCard) -> str:
    """What the undecided warning says of the network that will be trained: where the undecided layers keep the
    backbone's default kernels (the card's `undecided`), that; else how to get it."""
    if card.undecided == "default_kernels":
        return (" The network trained from this search keeps the backbone's default kernels in the undecided "
                "layers (search_undecided='default_kernels').")
    return (" To retrain the undecided layers at the backbone's default kernels instead of these choices, set "
            "search_undecided='default_kernels'.")


def warn_if_undecided(card: ArchCard, stacklevel: int = 2) -> Optional[float]:
    """Warn (`SearchUndecidedWarning`) when more than half of a card's searched layers did not decide.

    An undecided layer's kernel size and dilation are about what the gradient noise alone would have picked
    (`DashConv.decision`): another seed would likely pick another. The message says how many and what to change.

    Args:
        card: an ArchCard from `discretize` (a card without a decision record never warns).
        stacklevel: as in ``warnings.warn``: 2 names the caller's line.

    Returns:
        The decided fraction (`ArchCard.decided_fraction`), or None for a card without a decision record.
    """
    if not isinstance(card, ArchCard):
        raise TypeError(f"card={card!r} has type {type(card).__name__}; accepted: a dashkit.ArchCard")
    if isinstance(stacklevel, bool) or not isinstance(stacklevel, int) or stacklevel < 1:
        raise ValueError(f"stacklevel={stacklevel!r} is not valid; accepted: an int >= 1")
    counts = card.decided_count()
    if counts is None:
        return None
    decided, total = counts
    if total - decided > total / 2:
        steps = sorted({layer.steps for layer in card.layers if layer.steps is not None})
        took = f" after {steps[-1]} alpha steps" if len(steps) == 1 else ""
        warnings.warn(f"{total - decided} of {total} searched layers did not decide{took}: their choice leads its "
                      f"closest rival by less than z = {card.decision_z:g} units of gradient noise, so their kernel "
                      f"size and dilation are about what noise alone would pick (another seed would likely pick "
                      f"others). Search longer: more search steps (a larger preset or budget, more search_epochs "
                      f"or search_max_batches). Less noise in alpha's gradients helps too: "
                      f"search_relaxation=softmax (no Gumbel noise) or a larger search_batch_size. A larger "
                      f"search_arch_lr moves alpha farther, but the test asks whether its steps agree, which "
                      f"the step size does not change.{_cut_text(card)}{_kept_text(card)}",
                      SearchUndecidedWarning, stacklevel=stacklevel)
    return card.decided_fraction()
