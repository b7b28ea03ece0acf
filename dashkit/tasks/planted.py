"""Planted-architecture tasks: data made by a teacher CNN whose kernel sizes and dilations are known.

These are the search's unit test. A *teacher* network with the layout of the task's default backbone
(:class:`dashkit.backbones.PlainCNN`: ``depth`` convolutions, each followed by tanh, then a 1x1 readout)
has, at every convolution, a known kernel size k and dilation d that differ by layer. The targets are the
teacher's output map on i.i.d. Gaussian inputs plus a little Gaussian noise: a dense regression with one
target per position, so every example carries many independent looks at the teacher's taps.
``task.info["planted"]`` maps each searched layer, named as ``dashkit.to_supernet`` names it on the default
backbone (``convs.0``, ``convs.1``, ...) and as the ArchCard lists it, to its planted ``[k, d]``.

    >>> task = dashkit.tasks.get("planted1d")
    >>> task.info["planted"]
    {'convs.0': [7, 2], 'convs.1': [7, 1], 'convs.2': [7, 4]}

Why the planted pair is the unique best one of the space
--------------------------------------------------------
A convolution (k, d) reads the taps ``{-d (k-1)/2, ..., -d, 0, d, ..., d (k-1)/2}``. A candidate (k', d')
whose taps include the planted ones can represent the teacher's layer exactly (set the extra taps to zero):
(3, 2)'s taps {-2, 0, 2} lie inside (5, 1)'s {-2, ..., 2}. (k', d') contains (k, d) iff d' divides d and
d' (k' - 1) / 2 >= d (k - 1) / 2. In a space K x D a pair (max K, d) is contained by no other pair: a
containing (k', d') needs d' | d and d' (k' - 1) >= d (max K - 1) >= d (k' - 1), hence d' >= d, so d' = d
and k' = max K. Every planted pair here is therefore (max K, d), with a different d at every layer; a
smaller k at some layer would be tied with (max K, d), which contains it. (So the planted k cannot differ
by layer in a product space K x D and stay the unique optimum.) Every other candidate lacks some tap that
the teacher uses with a full-size weight, and with tanh between the layers the other layers cannot in
general make up for it. That argument is not a proof; the table of :func:`candidate_losses` measures it:
training each candidate alone, the planted one has the lowest validation loss by a clear margin at every
layer (see RESULTS.md, "The planted-architecture task").

What the task tests, then. Every planted k is the space's largest, and a search has preferences of its own: the
same standard search on the training targets shuffled among the examples (`dashkit.tasks.shuffle_targets`,
where no candidate can be better for a reason in the data) chooses k = max K in 24 of 30 layers over ten seeds
(uniform: 10), the planted dilation in 7 of 30 (uniform: 10), the planted pair in 6 of 30 and all three in no
seed, with z median 3.3 (at most 11.7) and softmax(alpha) of its choice 0.17 on average (1/M = 0.11); on the real
targets, 30 of 30, z median 34.7, 0.71 (RESULTS.md, "What the search chooses when the targets are shuffled").
So a planted k found says little by itself; the dilations, different at every layer, and how far the search's
z and softmax(alpha) rise above that control are what it shows.

How the data are made
---------------------
From ``seed`` (``numpy.random.default_rng``): the teacher's weights, then each split's inputs and noise from
a stream of its own (train, val and test are independent draws of the same process).

1. Inputs x: i.i.d. N(0, 1), shape (N, C_in, L) or (N, C_in, S, S).
2. Teacher convolution i: weights i.i.d. N(0, 1) on the planted (k, d) kernel, no bias, zero "same"
   padding (as the student pads). Each tap's (C_out x C_in) slice is scaled to the same Frobenius norm, so
   the outermost taps, which tell (max K, d) from its neighbours, weigh as much as the centre. Then the
   whole layer is scaled so that its pre-activations have standard deviation ``_PREACT_STD`` (1.5: tanh is
   clearly nonlinear there but not saturated) on a reference batch of the generator's own.
3. tanh after every convolution, then a random 1x1 readout to one output channel.
4. The readout is scaled so that the clean target has unit variance on the reference batch; then noise
   N(0, ``noise`` ** 2) is added (the irreducible MSE is ``noise ** 2``, 0.01 by default).

The metric is the MSE over all positions (lower is better); the training loss is the MSE too.
"""
from __future__ import annotations

import contextlib
import itertools
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ._common import cached_arrays, check_float, check_int, check_seed
from .base import Task, TaskDefaults, register, tensor_dataset

__all__ = ["planted1d", "planted2d", "contains", "teacher_forward", "planted_card", "train_candidate",
           "candidate_losses", "format_table", "PLANTED_1D", "PLANTED_2D", "SPACE_1D", "SPACE_2D",
           "CANDIDATE_TRAINING", "PLANTED_SEARCH", "found_layers"]

_GENERATOR_VERSION = 1
_PREACT_STD = 1.5  # pre-activation std of every teacher layer: tanh is nonlinear there but not saturated
_TEACHER_WIDTH = 4  # channels of the teacher's convolutions
_REFERENCE_N = 256  # examples of the reference batch that fixes the teacher's scales

# Layer name -> planted (k, d), and the search space, per task. Every pair is (max K, d), uncontained.
PLANTED_1D: Dict[str, Tuple[int, int]] = {"convs.0": (7, 2), "convs.1": (7, 1), "convs.2": (7, 4)}
SPACE_1D = ((3, 5, 7), (1, 2, 4))
PLANTED_2D: Dict[str, Tuple[int, int]] = {"convs.0": (5, 3), "convs.1": (5, 1), "convs.2": (5, 2)}
SPACE_2D = ((3, 5), (1, 2, 3))

# The search settings of the planted tasks (TaskDefaults.search; chosen on these tasks, whose answers are known:
# RESULTS.md, "The search on the planted task, by setting"). The student has no normalisation layer, so from DASH's
# candidates at N(0, 0.01^2) its supernet does not start to learn (init_std 0.3 does); the teacher's convolutions mix
# channels, which a depthwise supernet cannot (full convolutions); softmax mixing keeps the mixed kernel the same from
# step to step (no Gumbel noise); and the weights at lr 0.3 learn fast enough in the standard preset's 500 warm-up
# steps that alpha follows a trained supernet (lr 0.1: 8 of 10 seeds in 1D, 10 of 10 at lr 0.3). planted2d searches
# batches of 32 (64: 9 of 10 seeds, at twice the time). What the other tasks take is DASH's own (their backbones
# normalise every convolution).
PLANTED_SEARCH: Dict[str, Dict[str, Any]] = {
    "planted1d": {"init_std": 0.3, "relaxation": "softmax", "depthwise": False, "lr": 0.3},
    "planted2d": {"init_std": 0.3, "relaxation": "softmax", "depthwise": False, "lr": 0.3, "batch_size": 32},
}

# The fixed training of each candidate in the candidate table (test and benchmark): long enough that the planted
# architecture gets well below every other candidate, short enough for CI (about 25 s per task on one core).
CANDIDATE_TRAINING: Dict[str, Dict[str, Any]] = {
    "planted1d": {"steps": 200, "batch_size": 64, "lr": 2e-2},
    "planted2d": {"steps": 150, "batch_size": 16, "lr": 2e-2},
}


# ----------------------------------------------------------------------------------------------------------
# Taps and the teacher


def contains(outer: Tuple[int, int], inner: Tuple[int, int]) -> bool:
    """Whether a convolution (k', d') = ``outer`` reads every tap that (k, d) = ``inner`` reads.

    For k, k' > 1: true iff d' divides d and d' (k' - 1) / 2 >= d (k - 1) / 2 (a 1-tap kernel reads only the
    centre). Then ``outer`` can represent ``inner`` exactly.

    Example:
        >>> contains((5, 1), (3, 2)), contains((7, 1), (5, 2))
        (True, False)
    """
    (ko, do), (ki, di) = outer, inner
    if ki == 1 or ko == 1:  # a 1-tap kernel reads only the centre, whatever its dilation
        return ki == 1
    return di % do == 0 and do * (ko - 1) >= di * (ki - 1)


def _conv(x: torch.Tensor, w: torch.Tensor, d: int) -> torch.Tensor:
    """Zero-padded "same" convolution with dilation d. x: (N, C_in, *spatial), w: (C_out, C_in, *k)."""
    fn = F.conv1d if x.dim() == 3 else F.conv2d
    return fn(x, w, padding=d * (w.shape[-1] - 1) // 2, dilation=d)


def teacher_forward(x: torch.Tensor, weights: Sequence[torch.Tensor], dilations: Sequence[int],
                    readout: torch.Tensor) -> torch.Tensor:
    """The teacher's clean output.

    Args:
        x: (N, C_in, L) or (N, C_in, H, W).
        weights: per layer, (C_out, C_in, k) or (C_out, C_in, k, k).
        dilations: per layer.
        readout: (1, C_last) 1x1 readout.

    Returns:
        (N, 1, *spatial).
    """
    h = x
    for w, d in zip(weights, dilations):
        h = torch.tanh(_conv(h, w, d))
    return torch.einsum("oc,nc...->no...", readout, h)


def _make_teacher(rng: np.random.Generator, planted: Mapping[str, Tuple[int, int]], in_channels: int, dims: int,
                  reference: torch.Tensor) -> Tuple[List[torch.Tensor], List[int], torch.Tensor]:
    """Teacher weights (see the module docstring, steps 2-4), scaled on ``reference`` (N, C_in, *spatial)."""
    weights, dilations = [], []
    h, c_in = reference, in_channels
    for k, d in planted.values():
        w = torch.from_numpy(rng.standard_normal((_TEACHER_WIDTH, c_in) + (k,) * dims)).double()
        # The same Frobenius norm for every tap's (C_out x C_in) slice: the outer taps matter as much as the centre.
        w = w / w.flatten(0, 1).norm(dim=0).reshape((1, 1) + (k,) * dims)
        pre = _conv(h, w, d)
        w = w * (_PREACT_STD / pre.std())
        weights.append(w)
        dilations.append(d)
        h = torch.tanh(_conv(h, w, d))
        c_in = _TEACHER_WIDTH
    readout = torch.from_numpy(rng.standard_normal((1, _TEACHER_WIDTH))).double()
    readout = readout / torch.einsum("oc,nc...->no...", readout, h).std()
    return weights, dilations, readout


def _generate(planted: Mapping[str, Tuple[int, int]], in_channels: int, spatial: Tuple[int, ...],
              sizes: Mapping[str, int], noise: float, seed: int) -> Dict[str, np.ndarray]:
    dims = len(spatial)
    rng = np.random.default_rng([seed, 0])
    reference = torch.from_numpy(rng.standard_normal((_REFERENCE_N, in_channels) + spatial))
    weights, dilations, readout = _make_teacher(rng, planted, in_channels, dims, reference)
    out: Dict[str, np.ndarray] = {}
    for i, (split, n) in enumerate(sizes.items(), start=1):
        split_rng = np.random.default_rng([seed, i])
        x = torch.from_numpy(split_rng.standard_normal((n, in_channels) + spatial))
        with torch.no_grad():
            y = teacher_forward(x, weights, dilations, readout)
        y = y + noise * torch.from_numpy(split_rng.standard_normal(tuple(y.shape)))
        out[f"x_{split}"] = x.numpy().astype(np.float32)
        out[f"y_{split}"] = y.numpy().astype(np.float32)
    return out


def _planted_task(name: str, planted: Mapping[str, Tuple[int, int]], space: Tuple[Tuple[int, ...], Tuple[int, ...]],
                  in_channels: int, spatial: Tuple[int, ...], width: int, n_train: int, n_val: int, n_test: int,
                  noise: float, seed: int, search: Dict[str, Any]) -> Task:
    """The task of a teacher with ``planted`` pairs on inputs (in_channels, *spatial); the parameters checked here."""
    sizes = {"train": check_int("n_train", n_train, 1), "val": check_int("n_val", n_val, 1),
             "test": check_int("n_test", n_test, 1)}
    noise, width, seed = check_float("noise", noise, 0.0), check_int("width", width, 1), check_seed(seed)
    params = {"version": _GENERATOR_VERSION, "planted": {k: list(v) for k, v in planted.items()},
              "in_channels": in_channels, "spatial": list(spatial), "sizes": sizes, "noise": noise, "seed": seed,
              "teacher_width": _TEACHER_WIDTH, "preact_std": _PREACT_STD, "reference_n": _REFERENCE_N}
    data = cached_arrays(name, params, lambda: _generate(planted, in_channels, spatial, sizes, noise, seed))
    splits = {s: tensor_dataset(torch.from_numpy(data[f"x_{s}"]), torch.from_numpy(data[f"y_{s}"])) for s in sizes}
    dims = len(spatial)
    return Task(
        name=name, kind="dense", **splits,
        in_shape=(in_channels,) + spatial, num_outputs=1, metric_name="mse",
        defaults=TaskDefaults(backbone="plain",
                              backbone_kwargs={"dims": dims, "dense": True, "depth": len(planted), "width": width,
                                               "activation": "tanh"},
                              kernel_sizes=space[0], dilations=space[1], search=search),
        info={
            "source": "generated by dashkit: a tanh teacher CNN with planted kernel sizes and dilations on i.i.d. "
                      "N(0, 1) inputs, plus N(0, noise^2) target noise (see dashkit.tasks.planted)",
            "licence": "generated by dashkit",
            "sizes": dict(sizes),
            "planted": {k: list(v) for k, v in planted.items()},
            "space": {"kernel_sizes": list(space[0]), "dilations": list(space[1])},
            "noise": noise,
            "reference": f"irreducible MSE noise^2 = {noise ** 2:.4g}; predicting 0 gives about {1 + noise ** 2:.4g}",
        },
    )


@register("planted1d")
def planted1d(length: int = 128, n_train: int = 2000, n_val: int = 500, n_test: int = 500, noise: float = 0.1,
              width: int = 8, seed: int = 0) -> Task:
    """1D planted-architecture task: a 3-layer tanh teacher with (k, d) = (7, 2), (7, 1), (7, 4).

    The search space is K = (3, 5, 7) x D = (1, 2, 4) (9 candidates); each planted pair is (7, d), which no
    other candidate contains, so it is the unique candidate that can represent its layer exactly. See the
    module docstring for how the data are made and why. The task's search settings are ``PLANTED_SEARCH``
    (candidates at init std 0.3, softmax mixing, full convolutions, weights' lr 0.3): with them the standard
    search finds every planted layer in 10 of 10 seeds (RESULTS.md).

    Args:
        length: L, the sequence length.
        n_train, n_val, n_test: split sizes (independent draws).
        noise: standard deviation of the target noise (the clean target has unit variance).
        width: channels of the default student backbone (``plain``; the teacher has 4).
        seed: seeds the teacher and the data.

    Returns:
        A dense Task: x (2, L) float32, y (1, L) float32, metric "mse"; ``info["planted"]`` maps "convs.i"
        to [k, d].
    """
    length = check_int("length", length, 8, 4096)
    return _planted_task("planted1d", PLANTED_1D, SPACE_1D, 2, (length,), width, n_train, n_val, n_test, noise,
                         seed, search=dict(PLANTED_SEARCH["planted1d"]))


@register("planted2d")
def planted2d(size: int = 24, n_train: int = 1000, n_val: int = 250, n_test: int = 250, noise: float = 0.1,
              width: int = 8, seed: int = 0) -> Task:
    """2D planted-architecture task: a 3-layer tanh teacher with (k, d) = (5, 3), (5, 1), (5, 2) on S x S maps.

    The search space is K = (3, 5) x D = (1, 2, 3) (6 candidates); each planted pair is (5, d), which no other
    candidate contains. See the module docstring for how the data are made and why. The task's search settings
    are ``PLANTED_SEARCH`` (planted1d's, with batches of 32): with them the standard search finds every planted
    layer in 10 of 10 seeds (RESULTS.md).

    Args:
        size: S, the side of the square maps.
        n_train, n_val, n_test: split sizes (independent draws).
        noise: standard deviation of the target noise (the clean target has unit variance).
        width: channels of the default student backbone (``plain``; the teacher has 4).
        seed: seeds the teacher and the data.

    Returns:
        A dense Task: x (1, S, S) float32, y (1, S, S) float32, metric "mse"; ``info["planted"]`` maps
        "convs.i" to [k, d].
    """
    size = check_int("size", size, 8, 256)
    return _planted_task("planted2d", PLANTED_2D, SPACE_2D, 1, (size, size), width, n_train, n_val, n_test, noise,
                         seed, search=dict(PLANTED_SEARCH["planted2d"]))


# ----------------------------------------------------------------------------------------------------------
# Training each candidate alone


def found_layers(card: "Any", planted: Mapping[str, Sequence[int]]) -> Dict[str, bool]:
    """Per searched layer of ``card`` (an ArchCard), whether it chose its planted (k, d): the search's score.

    Args:
        card: the search's ArchCard.
        planted: layer name -> planted [k, d] (``task.info["planted"]``).

    Returns:
        {layer name: chosen (k, d) == planted (k, d)}, in the card's order.
    """
    return {layer.name: [layer.k, layer.d] == list(planted[layer.name]) for layer in card.layers}


def planted_card(task: Task, overrides: Optional[Mapping[str, Tuple[int, int]]] = None) -> "Any":
    """An ArchCard of the task's planted architecture, with some layers' pairs replaced by ``overrides``."""
    from ..space import SearchSpace
    from ..supernet import ArchCard, LayerChoice

    d = task.defaults
    space = SearchSpace(d.kernel_sizes, d.dilations, dims=task.dims)
    pairs = {name: tuple(kd) for name, kd in task.info["planted"].items()}
    for name, kd in (overrides or {}).items():
        if name not in pairs:
            raise ValueError(f"overrides names layer {name!r}; accepted: the planted layers {sorted(pairs)}")
        pairs[name] = tuple(kd)
    layers = []
    for name, (k, dil) in pairs.items():
        space.index(k, dil)  # raises for a pair outside the space
        layers.append(LayerChoice(name=name, k=int(k), d=int(dil), alpha=[], in_channels=0, out_channels=0))
    return ArchCard(space=space, layers=layers, backbone=d.backbone)


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """Seed torch's global generator inside the block and restore its state after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def train_candidate(task: Task, layer: Optional[str] = None, pair: Optional[Tuple[int, int]] = None, seed: int = 0,
                    steps: int = 300, batch_size: int = 64, lr: float = 1e-2) -> float:
    """Validation loss of the default backbone trained alone with ``layer`` set to ``pair``, the rest planted.

    Adam with a cosine decay of ``lr`` over ``steps`` steps of ``batch_size`` examples drawn (seeded) from the
    training split; the backbone's initial weights come from ``seed`` too. ``layer=None`` trains the planted
    architecture itself.

    Returns:
        The task's metric (MSE) on the validation split.
    """
    from ..backbones import get as get_backbone

    steps = check_int("steps", steps, 1)
    batch_size = check_int("batch_size", batch_size, 1)
    lr = check_float("lr", lr, 0.0, low_open=True)
    seed = check_seed(seed)
    if (layer is None) != (pair is None):
        raise ValueError(f"layer={layer!r} and pair={pair!r}; accepted: both None (the planted architecture) or a "
                         f"planted layer's name and a (k, d) of the task's space")
    card = planted_card(task, None if layer is None else {layer: pair})
    x, y = task.train.tensors
    xv, yv = task.val.tensors
    with _seeded(seed):
        d = task.defaults
        model = card.apply(get_backbone(d.backbone, in_channels=task.in_shape[0], num_classes=task.num_outputs,
                                        **d.backbone_kwargs))
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(steps):
            idx = torch.randint(len(x), (min(batch_size, len(x)),), generator=gen)
            loss = task.loss(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            y_hat = torch.cat([model(xv[i:i + 256]) for i in range(0, len(xv), 256)])
    return task.metric(y_hat, yv)


def candidate_losses(task: Task, layers: Optional[Sequence[str]] = None, seeds: Sequence[int] = (0,),
                     **train_kwargs: Any) -> Dict[str, Dict[Tuple[int, int], float]]:
    """Per layer and candidate, the mean over ``seeds`` of :func:`train_candidate`'s validation loss.

    Each layer in turn takes every (k, d) of the task's space while the other layers keep their planted pairs;
    the planted architecture itself is trained once per seed and shared by all layers' rows.

    Returns:
        ``{layer: {(k, d): mean validation MSE}}``, layers in the order of ``task.info["planted"]``.
    """
    d = task.defaults
    names = list(task.info["planted"]) if layers is None else list(layers)
    cands = list(itertools.product(d.kernel_sizes, d.dilations))
    planted_loss = np.mean([train_candidate(task, None, None, s, **train_kwargs) for s in seeds])
    table: Dict[str, Dict[Tuple[int, int], float]] = {}
    for name in names:
        row = {}
        for kd in cands:
            if list(kd) == list(task.info["planted"][name]):
                row[kd] = float(planted_loss)
            else:
                row[kd] = float(np.mean([train_candidate(task, name, kd, s, **train_kwargs) for s in seeds]))
        table[name] = row
    return table


def format_table(task: Task, table: Mapping[str, Mapping[Tuple[int, int], float]]) -> str:
    """The table as text: a row per layer, a column per (k, d); the planted pair is starred, the last column is
    the runner-up's loss over the planted one's."""
    cands = list(next(iter(table.values())))
    head = f"{'layer':<9}" + "".join(f"{f'({k},{d})':>9}" for k, d in cands) + f"{'margin':>9}"
    rows = [head]
    for name, row in table.items():
        planted = tuple(task.info["planted"][name])
        cells = "".join(f"{row[kd]:>8.4f}{'*' if kd == planted else ' '}" for kd in cands)
        runner_up = min(v for kd, v in row.items() if kd != planted)
        rows.append(f"{name:<9}{cells}{runner_up / row[planted]:>8.2f}x")
    return "\n".join(rows)
