"""Measurements and figures that explain DASH, one idea at a time (used by the teaching notebooks 01-04).

Every function here works on its own, on small tensors, in seconds on a laptop CPU. The notebooks write each
trick's arithmetic out themselves (the aggregation, the Kronecker dilation, the textbook FFT convolution, the tap
spectrum) and assert it equal to the fast versions in `dashkit.ops` and `dashkit.spectral`; they call this module
for figures, tables and timings (the identities themselves are tested in float64 in tests/test_ops.py). Figures
are ``matplotlib.figure.Figure`` objects built without pyplot (a notebook shows one as a cell's value once
``%matplotlib inline`` is on); tables are lists of dicts (``dashkit.notebook.table``
turns them into a DataFrame).

Notation, as in the notebooks: K the candidate kernel sizes, k one kernel size, d a dilation, S the aggregated
kernel's size per axis, N the FFT length per axis, n the input size per axis, s the number of spatial axes.

The ideas, in the order of the notebooks:

1. The search space: `candidate_table`, `plot_field_grid`, `plot_candidate_taps`, `supernet_report`, `prefer`,
   `format_count`.
2. Mixed weights: `random_candidates`, `plot_aggregated_kernel`, `mixing_cost`,
   `plot_mixing_cost`.
3. Kronecker dilation: `plot_dilation`, `dilation_cost`.
4. Fourier convolution: `plot_wraparound`, `fft_length_table`, `fft_length_cost`,
   `crop_saving`, `fft_errors`, `fft_crossover`, `plot_crossover`, `auto_choice`. The textbook recipe they
   measure against is `dashkit.ops.circular_conv`.

Notebook 08's speed study lives in `dashkit.bench` (the benchmark, its ratios and the comparison with DASH's code).

Timings are the best of a few repeats (the least disturbed run on a shared machine), in milliseconds, taken by
`dashkit.timing.best_time`. DASH: Shen, Khodak, Talwalkar et al., "Efficient Architecture Search for Diverse
Tasks", NeurIPS 2022.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from . import conv_choice, ops
from .checks import check_bool, check_float, check_int, check_ints, check_seed
from .dashconv import DashConv
from .progress import progress as _progress
from .space import SearchSpace
from .supernet import dash_layers, to_supernet
from .timing import best_time
from .viz import style

__all__ = [
    "format_count",
    # 01 search space
    "candidate_table", "plot_field_grid", "plot_candidate_taps", "SupernetReport", "supernet_report", "prefer",
    # 02 mixed weights
    "Candidates", "random_candidates", "plot_aggregated_kernel", "mixing_cost",
    "plot_mixing_cost",
    # 03 Kronecker dilation
    "plot_dilation", "dilation_cost",
    # 04 Fourier convolution
    "plot_wraparound", "fft_length_table", "fft_length_cost", "crop_saving",
    "fft_errors", "Crossover", "fft_crossover", "plot_crossover", "auto_choice",
]

# explain's figures use slightly smaller text than seaborn's notebook size: its panels are many and small
_FONT_SCALE = 0.85


# ----------------------------------------------------------------------------------------------------------------
# shared helpers

def _check_space(space: Any) -> SearchSpace:
    if not isinstance(space, SearchSpace):
        raise TypeError(f"space must be a dashkit.SearchSpace, got {type(space).__name__}")
    return space


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(check_seed(seed))


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def format_count(n: int) -> str:
    """A large integer with thousands separators and in scientific notation: ``512,000,000,000 (5.1e+11)``."""
    n = check_int("n", n, 0)
    return f"{n:,}" if n < 10 ** 6 else f"{n:,} ({n:.1e})"


# ----------------------------------------------------------------------------------------------------------------
# 01: the search space

def candidate_table(space: SearchSpace) -> List[Dict[str, int]]:
    """One row per candidate (k, d), in the joint k-major order that DASH's one categorical per layer uses.

    Returns:
        rows with ``index`` (= ``i_k * |D| + i_d``), ``k``, ``d``, ``i_k``, ``i_d`` and ``field`` (the receptive
        field d (k - 1) + 1 per axis).
    """
    space = _check_space(space)
    nd = len(space.dilations)
    return [{"index": i, "k": k, "d": d, "i_k": i // nd, "i_d": i % nd, "field": space.field(k, d)}
            for i, (k, d) in enumerate(space.candidates)]


def plot_field_grid(space: SearchSpace) -> Figure:
    """Kernel sizes (rows) x dilations (columns): each cell shows the candidate's index and receptive field."""
    import seaborn as sns

    space = _check_space(space)
    fields = [[space.field(k, d) for d in space.dilations] for k in space.kernel_sizes]
    notes = [[f"#{space.index(k, d)}\nfield {space.field(k, d)}" for d in space.dilations] for k in space.kernel_sizes]
    with style(font_scale=_FONT_SCALE):
        fig = Figure(figsize=(1.3 * len(space.dilations) + 2.5, 0.75 * len(space.kernel_sizes) + 1.5),
                     layout="constrained")
        ax = fig.subplots()
        sns.heatmap(fields, annot=notes, fmt="", cmap="mako_r", ax=ax, cbar_kws={"label": "receptive field d(k-1)+1"},
                    xticklabels=[str(d) for d in space.dilations], yticklabels=[str(k) for k in space.kernel_sizes])
        ax.set_xlabel("dilation d")
        ax.set_ylabel("kernel size k")
        ax.set_title(f"{len(space)} candidates, k-major index #  (S = {space.max_field})")
    return fig


def plot_candidate_taps(space: SearchSpace, causal: bool = False) -> Figure:
    """Where each candidate's taps fall, relative to the output position (one row per candidate).

    Along every axis (2D kernels are the same pattern per axis), candidate (k, d) reads the inputs at offsets
    d (j - (k - 1) / 2), j = 0..k-1 (causal: d (j - (k - 1)), only the past).
    """
    space = _check_space(space)
    cands = space.candidates
    reach = max((space.field(k, d) - 1) if causal else (space.field(k, d) - 1) // 2 for k, d in cands)
    with style(font_scale=_FONT_SCALE):
        fig = Figure(figsize=(10, 0.28 * len(cands) + 1.4), layout="constrained")
        ax = fig.subplots()
        for row, (k, d) in enumerate(cands):
            shift = (k - 1) if causal else (k - 1) // 2
            offs = [d * (j - shift) for j in range(k)]
            ax.hlines(row, min(offs), max(offs), color="0.8", lw=1, zorder=1)
            ax.scatter(offs, [row] * k, s=14, color=f"C{space.kernel_sizes.index(k)}", zorder=2)
        ax.set_yticks(range(len(cands)), [f"#{i} k={k} d={d} (field {space.field(k, d)})"
                                          for i, (k, d) in enumerate(cands)], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(-reach - 2, (0 if causal else reach) + 2)
        ax.axvline(0, color="k", lw=0.8)
        ax.set_xlabel("tap offset from the output position" + (" (causal)" if causal else ""))
        ax.set_title(f"the taps of the {len(cands)} candidates (colour: kernel size)")
    return fig


@dataclass
class SupernetReport:
    """What `to_supernet` did to a backbone: which convolutions became searchable and what it costs.

    Attributes:
        backbone: the backbone's class name.
        space: the search space.
        layers: one dict per replaced conv: ``name``, ``in_channels``, ``out_channels``, ``kernel`` (the original
            kernel size), ``groups`` (original), ``search_groups`` (groups during search: C for depthwise search),
            ``weights`` (parameters of all its candidates together).
        skipped: convolutions left alone (kernel 1, or marked out: see the contract in `dashkit.backbones`).
        plain_params: parameters of the backbone as given.
        supernet_params: parameters of the supernet (candidate weights and the architecture parameters alpha).
        arch_params: parameters that are alpha (|K x D| per searched layer).
        supernet: the supernet itself (a deep copy; the given backbone is not changed).
    """

    backbone: str
    space: SearchSpace
    layers: List[Dict[str, Any]]
    skipped: List[str]
    plain_params: int
    supernet_params: int
    arch_params: int
    supernet: nn.Module = field(repr=False)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_architectures(self) -> int:
        """|K x D| ** (searched layers): the discrete networks the supernet holds."""
        return self.space.num_architectures(self.num_layers)

    def summary(self) -> str:
        m = len(self.space)
        return "\n".join([
            f"{self.backbone}: {self.num_layers} searched convolutions, {len(self.skipped)} left alone "
            f"({', '.join(self.skipped) or 'none'})",
            f"parameters: plain {self.plain_params:,} -> supernet {self.supernet_params:,} "
            f"({self.supernet_params / self.plain_params:.1f}x; {self.arch_params} of them are alpha)",
            f"architectures: |K x D|^layers = {m}^{self.num_layers} = {format_count(self.num_architectures)}",
        ])


def _param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def supernet_report(model: nn.Module, space: SearchSpace, **to_supernet_kwargs: Any) -> SupernetReport:
    """Turn a copy of ``model`` into a supernet and describe what changed.

    Args:
        model: a plain backbone (left unchanged).
        space: the candidates.
        **to_supernet_kwargs: passed to `dashkit.to_supernet` (``depthwise``, ``backend``, ...).

    Example:
        >>> rep = supernet_report(dashkit.backbones.resnet1d(1, 10), SearchSpace((3, 7, 11, 15, 19), (1, 3, 7, 15), 1))
        >>> rep.num_layers, rep.num_architectures == 20 ** 9
        (9, True)
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    space = _check_space(space)
    net = copy.deepcopy(model)
    conv_types = (nn.Conv1d, nn.Conv2d)
    original = {n: m for n, m in net.named_modules() if isinstance(m, conv_types)}
    plain_params = _param_count(net)
    net = to_supernet(net, space, **to_supernet_kwargs)
    replaced = set(net.dash_replaced)
    layers = []
    for name, dc in dash_layers(net):
        m = original[name]
        layers.append({"name": name, "in_channels": m.in_channels, "out_channels": m.out_channels,
                       "kernel": m.kernel_size[0] if len(set(m.kernel_size)) == 1 else tuple(m.kernel_size),
                       "groups": m.groups, "search_groups": dc.groups,
                       "weights": sum(w.numel() for w in dc.weights)})
    skipped = [n for n in original if n not in replaced]
    arch = sum(dc.alpha.numel() for _, dc in dash_layers(net))
    return SupernetReport(backbone=type(model).__name__, space=space, layers=layers, skipped=skipped,
                          plain_params=plain_params, supernet_params=_param_count(net), arch_params=arch,
                          supernet=net)


@torch.no_grad()
def prefer(supernet: nn.Module, choices: Mapping[str, Tuple[int, int]], strength: float = 5.0) -> None:
    """Set alpha by hand, as if a search had preferred the given (k, d) in the given layers (in place).

    Each named layer's alpha becomes ``strength`` at its (k, d) and 0 elsewhere, so that `dashkit.discretize`
    (argmax of alpha) picks it: a way to see discretisation at work without running a search.

    Args:
        supernet: a model made by `dashkit.to_supernet`.
        choices: ``{layer name: (k, d)}``.
        strength: the alpha of the preferred candidate (> 0).
    """
    layers = dict(dash_layers(supernet))
    if not layers:
        raise ValueError("supernet has no DashConv layers; build it with dashkit.to_supernet first")
    check_float("strength", strength, 0.0, low_open=True)
    unknown = [n for n in choices if n not in layers]
    if unknown:
        raise ValueError(f"choices names {unknown!r}, which are not searched layers; searched layers: "
                         f"{list(layers)}")
    for name, (k, d) in choices.items():
        dc = layers[name]
        i = dc.space.index(k, d)
        dc.alpha.zero_()
        dc.alpha[i] = strength


# ----------------------------------------------------------------------------------------------------------------
# 02: mixed weights

class Candidates(NamedTuple):
    """Random candidate kernels of a space: ``weights[i]`` is (C_out, C_in/groups, *[k_i]), ``coeffs`` (M,) sums
    to 1, ``dilations[i]`` = d_i."""

    weights: List[torch.Tensor]
    coeffs: torch.Tensor
    dilations: List[int]


def random_candidates(space: SearchSpace, in_channels: int = 4, out_channels: int = 4, groups: int = 1,
                      dtype: torch.dtype = torch.float64, seed: int = 0) -> Candidates:
    """One N(0, 1) kernel per candidate and mixing coefficients ``softmax(randn(M))``.

    Returns:
        `Candidates`; kernels of shape (out_channels, in_channels / groups, *[k_i]) with ``space.dims`` kernel
        axes.
    """
    space = _check_space(space)
    for name, v in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups)):
        check_int(name, v, 1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups!r} must divide in_channels ({in_channels}) and out_channels "
                         f"({out_channels})")
    g = _generator(seed)
    s = space.dims
    weights = [torch.randn((out_channels, in_channels // groups) + (k,) * s, generator=g, dtype=dtype)
               for k, _ in space.candidates]
    coeffs = torch.softmax(torch.randn(len(space), generator=g, dtype=dtype), 0)
    return Candidates(weights, coeffs, [d for _, d in space.candidates])


def _input(batch: int, channels: int, size: int, dims: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    return torch.randn((batch, channels) + (size,) * dims, generator=g, dtype=dtype)


def plot_aggregated_kernel(space: SearchSpace, seed: int = 0) -> Figure:
    """Each candidate, dilated, centred in S taps and scaled by its coefficient, and their sum W.

    1D spaces: one stem plot per candidate and one for W. 2D spaces: one heatmap per candidate and one for W
    (the space should be small, e.g. 4 candidates, for the picture to be readable).
    """
    space = _check_space(space)
    cand = random_candidates(space, 1, 1, seed=seed)
    S = space.max_field
    terms = [float(c) * ops.center_pad(ops.dilate(w, d), S)[0, 0]
             for w, c, d in zip(cand.weights, cand.coeffs, cand.dilations)]
    W = ops.aggregate_kernel(cand.weights, cand.coeffs, cand.dilations)[0, 0]
    labels = [f"c={float(c):.2f} x (k={k}, d={d})" for c, (k, d) in zip(cand.coeffs, space.candidates)]
    r = (S - 1) // 2
    with style(font_scale=_FONT_SCALE):
        if space.dims == 1:
            fig = Figure(figsize=(9, 1.0 * (len(terms) + 1) + 1.0), layout="constrained")
            axes = fig.subplots(len(terms) + 1, 1, sharex=True, sharey=True)
            pos = list(range(-r, r + 1))
            for ax, t, lab in zip(axes, terms + [W], labels + [f"W = sum of the {len(terms)} above"]):
                vals = t.tolist()
                ax.vlines(pos, 0, vals, color="C0" if ax is not axes[-1] else "C3", lw=1.5)
                ax.scatter([p for p, v in zip(pos, vals) if v != 0], [v for v in vals if v != 0], s=12,
                           color="C0" if ax is not axes[-1] else "C3", zorder=3)
                ax.axhline(0, color="k", lw=0.6)
                ax.set_ylabel(lab, rotation=0, ha="right", va="center", fontsize=8)
            if S <= 31:
                axes[-1].set_xticks(pos)
            axes[-1].set_xlabel(f"tap offset (S = {S} taps)")
            fig.suptitle("mixed weights: the candidates, dilated and centred, add up to one kernel")
        else:
            n = len(terms) + 1
            fig = Figure(figsize=(2.6 * n, 3.0), layout="constrained")
            axes = fig.subplots(1, n)
            lim = max(float(t.abs().max()) for t in terms + [W])
            for ax, t, lab in zip(axes, terms + [W], labels + ["W = sum"]):
                im = ax.imshow(t.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, extent=(-r - .5, r + .5, r + .5, -r - .5))
                ax.set_title(lab, fontsize=8)
                ax.grid(False)
            fig.colorbar(im, ax=axes[-1], shrink=0.8)
            fig.suptitle(f"mixed weights in 2D: {len(terms)} candidates -> one {S}x{S} kernel")
    return fig


def mixing_cost(space: SearchSpace, channels: int = 16, size: int = 1000, batch: int = 8,
                counts: Optional[Sequence[int]] = None, repeats: int = 3, include_direct: bool = True,
                seed: int = 0, progress: bool = True, include_fft: bool = True,
                order: str = "k-major") -> List[Dict[str, float]]:
    """Forward time of mixed results vs mixed weights as the number of candidates M grows.

    For each M, the first M candidates of ``space`` (in ``order``) are mixed up to three ways:
    ``mixed_results`` (M convolutions), ``aggregate_direct`` (build W, one direct convolution of size S) and
    ``aggregate_fft`` (build W, one FFT convolution), float32, no gradient.

    Args:
        space: the candidates (1D: inputs (batch, channels, size); 2D: (batch, channels, size, size)).
        channels: C_in = C_out (full convolutions).
        counts: the values of M to measure (default 1..len(space)).
        repeats: timed runs per point (the best is kept).
        include_direct: also time the aggregated kernel by direct convolution (slow when S is large).
        progress: print progress lines (or a bar in a live notebook).
        include_fft: also time the aggregated kernel by FFT convolution.
        order: "k-major" (the space's own order) or "field" (by receptive field, smallest first, so that S grows
            with M).

    Returns:
        One row per M: ``candidates``, ``S`` (aggregated kernel size), ``taps`` (sum of k_i^s over the M
        candidates: the multiply-adds per output of mixed results, against S^s for mixed weights),
        ``mixed_results_ms``, ``aggregate_direct_ms`` and ``aggregate_fft_ms`` (when measured).
    """
    space = _check_space(space)
    for name, v in (("channels", channels), ("size", size), ("batch", batch), ("repeats", repeats)):
        check_int(name, v, 1)
    counts = tuple(range(1, len(space) + 1)) if counts is None else check_ints("counts", counts, 1)
    if max(counts) > len(space):
        raise ValueError(f"counts must be at most len(space) = {len(space)}, got {counts!r}")
    if order not in ("k-major", "field"):
        raise ValueError(f"order must be 'k-major' or 'field', got {order!r}")
    check_bool("include_fft", include_fft)
    if not (include_direct or include_fft):
        raise ValueError("include_direct and include_fft are both False: nothing to compare mixed results with")
    cand = random_candidates(space, channels, channels, dtype=torch.float32, seed=seed)
    if order == "field":  # stable: candidates of equal field keep their k-major order
        perm = sorted(range(len(space)), key=lambda i: space.receptive_fields[i])
        cand = Candidates([cand.weights[i] for i in perm], cand.coeffs[perm], [cand.dilations[i] for i in perm])
    x = _input(batch, channels, size, space.dims, torch.float32, _generator(seed + 1))
    rows = []
    it = _progress(counts, desc="candidates") if progress else counts
    with torch.no_grad():
        for m in it:
            w, d = cand.weights[:m], cand.dilations[:m]
            c = cand.coeffs[:m] / cand.coeffs[:m].sum()
            row = {"candidates": m, "S": max(dd * (ww.shape[-1] - 1) + 1 for ww, dd in zip(w, d)),
                   "taps": sum(ww.shape[-1] ** space.dims for ww in w)}
            row["mixed_results_ms"] = 1e3 * best_time(lambda: ops.mixed_results(x, w, c, d), repeats=repeats)
            if include_direct:
                row["aggregate_direct_ms"] = 1e3 * best_time(
                    lambda: ops.direct_conv(x, ops.aggregate_kernel(w, c, d)), repeats=repeats)
            if include_fft:
                row["aggregate_fft_ms"] = 1e3 * best_time(
                    lambda: ops.fft_conv(x, ops.aggregate_kernel(w, c, d)), repeats=repeats)
            rows.append(row)
    return rows


def plot_mixing_cost(rows: Sequence[Mapping[str, float]]) -> Figure:
    """Milliseconds per forward pass against the aggregated size S, one line per method (from `mixing_cost`).

    S drives the cost of mixed weights with a direct convolution; each point is labelled with its number of
    candidates M, which drives the cost of mixed results.
    """
    if not rows or "candidates" not in rows[0] or "S" not in rows[0]:
        raise ValueError(f"rows must be the non-empty output of mixing_cost(), got {rows!r:.200}")
    names = {"mixed_results_ms": "mixed results (M convolutions)",
             "aggregate_direct_ms": "mixed weights + direct conv (size S)",
             "aggregate_fft_ms": "mixed weights + FFT conv"}
    with style(font_scale=_FONT_SCALE):
        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.subplots()
        S = [r["S"] for r in rows]
        for i, (key, label) in enumerate(names.items()):
            if key in rows[0]:
                ax.plot(S, [r[key] for r in rows], marker="o", ms=4, label=label, color=f"C{i}")
        top = max(r[key] for r in rows for key in names if key in r)
        for r in rows:  # M above each point of mixed results
            ax.annotate(f"{r['candidates']}", (r["S"], r["mixed_results_ms"]), xytext=(0, 5),
                        textcoords="offset points", ha="center", fontsize=7, color="C0")
        ax.set_yscale("log")
        ax.set_ylim(top=2 * top)
        ax.set_xlabel("aggregated kernel size S (taps; the numbers over mixed results are M, the candidates mixed)")
        ax.set_ylabel("ms per forward pass (log)")
        ax.set_title("cost as the candidates, and with them S, grow")
        ax.legend()
    return fig


# ----------------------------------------------------------------------------------------------------------------
# 03: Kronecker dilation

def plot_dilation(k: int = 3, d: int = 3, seed: int = 0) -> Figure:
    """A k-tap kernel dilated by d: a 1D stem plot, and in 2D the kernel, the one-hot block P and kron(w, P)."""
    check_int("k", k, 1)
    check_int("d", d, 1)
    g = _generator(seed)
    w1 = torch.randn(1, 1, k, generator=g)
    w2 = torch.randn(1, 1, k, k, generator=g)
    wd1 = ops.dilate(w1, d)[0, 0]
    P = torch.zeros(d, d)
    P[0, 0] = 1
    full = torch.kron(w2[0, 0], P)  # (k d, k d) before the crop
    wd2 = ops.dilate(w2, d, method="kron")[0, 0]
    with style(font_scale=_FONT_SCALE):
        fig = Figure(figsize=(15, 3.6), layout="constrained")
        ax1, ax2, ax3, ax4 = fig.subplots(1, 4, gridspec_kw={"width_ratios": [1.6, 1, 0.6, 1.4]})
        ax1.vlines(range(len(wd1)), 0, wd1.tolist(), color="0.7", lw=1)
        taps = list(range(0, len(wd1), d))
        ax1.vlines(taps, 0, w1[0, 0].tolist(), color="C0", lw=2.5)
        ax1.scatter(taps, w1[0, 0].tolist(), color="C0", zorder=3, label="the k taps of w")
        zeros = [i for i in range(len(wd1)) if i % d]
        ax1.scatter(zeros, [0] * len(zeros), color="C3", marker="x", zorder=3, label="inserted zeros")
        ax1.axhline(0, color="k", lw=0.6)
        ax1.set_title(f"1D: k={k}, d={d} -> field d(k-1)+1 = {len(wd1)}")
        ax1.legend(fontsize=7)
        lim = float(w2.abs().max())
        for ax, mat, title in ((ax2, w2[0, 0], f"w ({k}x{k})"), (ax3, P, f"P ({d}x{d}, one-hot)"),
                               (ax4, wd2, f"kron(w, P) cropped to {len(wd1)}x{len(wd1)}")):
            ax.imshow(mat.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim)
            if mat.shape[-1] <= 11:  # small enough to read every number: the same values, moved apart
                for i, row in enumerate(mat.tolist()):
                    for j, v in enumerate(row):
                        if v != 0:
                            ax.text(j, i, f"{v:.1f}", ha="center", va="center", fontsize=8,
                                    color="white" if abs(v) > 0.6 * lim else "black")
            ax.set_title(title, fontsize=10)
            ax.grid(False)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"Kronecker dilation: d-1 zeros after every tap, per axis (kron(w, P) is "
                     f"{full.shape[-1]}x{full.shape[-1]}; its last d-1 rows and columns are cropped)")
    return fig


def _torch_dilated_conv(x: torch.Tensor, w: torch.Tensor, d: int) -> torch.Tensor:
    conv = F.conv1d if w.dim() == 3 else F.conv2d
    return conv(x, w, padding=d * (w.shape[-1] - 1) // 2, dilation=d)


def dilation_cost(k: int = 9, dilations: Sequence[int] = (1, 3, 7, 15), channels: int = 16, dims: int = 2,
                  repeats: int = 5, seed: int = 0, conv_size: Optional[int] = None,
                  batch: int = 8) -> List[Dict[str, float]]:
    """Time to dilate a (channels, channels, k, k) kernel by Kronecker product vs strided scatter.

    Args:
        conv_size: when given, also time the convolution that uses the kernel: PyTorch's convolution with
            ``dilation=d`` of a (batch, channels, conv_size[, conv_size]) input (forward), for a comparison.
        batch: the batch of that convolution.

    Returns:
        One row per d: ``d``, ``field`` (d (k-1) + 1), ``kron_intermediate`` (elements of the k d-wide
        Kronecker product before the crop), ``output`` (elements of the dilated kernel), ``kron_ms``,
        ``scatter_ms``, and ``conv_ms`` when ``conv_size`` is given.
    """
    check_int("k", k, 1)
    ds = check_ints("dilations", dilations, 1)
    dims = check_int("dims", dims, 1, 2)
    check_int("channels", channels, 1)
    check_int("repeats", repeats, 1)
    check_int("batch", batch, 1)
    if conv_size is not None:
        check_int("conv_size", conv_size, 1)
    g = _generator(seed)
    w = torch.randn((channels, channels) + (k,) * dims, generator=g)
    x = None if conv_size is None else _input(batch, channels, conv_size, dims, torch.float32, g)
    rows = []
    with torch.no_grad():
        for d in ds:
            row = {"d": d, "field": d * (k - 1) + 1, "kron_intermediate": channels ** 2 * (k * d) ** dims,
                   "output": channels ** 2 * (d * (k - 1) + 1) ** dims,
                   "kron_ms": 1e3 * best_time(lambda: ops.dilate(w, d, method="kron"), repeats=repeats),
                   "scatter_ms": 1e3 * best_time(lambda: ops.dilate(w, d, method="scatter"), repeats=repeats)}
            if x is not None:
                row["conv_ms"] = 1e3 * best_time(lambda: _torch_dilated_conv(x, w, d), repeats=repeats)
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------------------------------
# 04: Fourier convolution

def plot_wraparound(length: int = 64, kernel_size: int = 15, pad: int = 0, seed: int = 0) -> Figure:
    """Direct vs circular (FFT of length ``length + pad``) convolution of a random signal, and their difference."""
    check_int("length", length, 1)
    check_int("pad", pad, 0)
    check_int("kernel_size", kernel_size, 1, odd=True)
    g = _generator(seed)
    x = torch.randn(1, 1, length, generator=g, dtype=torch.float64)
    w = torch.randn(1, 1, kernel_size, generator=g, dtype=torch.float64)
    ref = ops.direct_conv(x, w)[0, 0]
    circ = ops.circular_conv(x, w, length + pad)[0, 0]
    need = (kernel_size - 1) // 2
    with style(font_scale=_FONT_SCALE):
        fig = Figure(figsize=(10, 4.6), layout="constrained")
        ax1, ax2 = fig.subplots(2, 1, sharex=True)
        t = list(range(length))
        ax1.plot(t, ref.tolist(), lw=2, label="direct (linear) convolution")
        ax1.plot(t, circ.tolist(), lw=1.2, ls="--", label=f"FFT with N = n + {pad}")
        ax1.legend(fontsize=8)
        ax1.set_ylabel("output")
        ax2.bar(t, (circ - ref).abs().tolist(), color="C3")
        ax2.set_ylabel("|error|")
        ax2.set_xlabel("output position")
        state = "exact" if pad >= need else f"wrong near both ends: pad {pad} < (S-1)/2 = {need}"
        fig.suptitle(f"circular vs linear convolution, n={length}, S={kernel_size}: {state}")
    return fig


def _factor(n: int) -> str:
    parts, m, p = [], n, 2
    while p * p <= m:
        while m % p == 0:
            parts.append(p)
            m //= p
        p += 1
    if m > 1:
        parts.append(m)
    return " x ".join(str(q) for q in parts)


def fft_length_table(lengths: Sequence[int] = (97, 1000, 1031, 1125, 2053)) -> List[Dict[str, Any]]:
    """The smallest 5-smooth FFT length (2^a 3^b 5^c) >= n, with both factorisations."""
    ns = check_ints("lengths", lengths, 1)
    return [{"n": n, "factors": _factor(n), "fast_length": ops.fast_fft_len(n),
             "fast_factors": _factor(ops.fast_fft_len(n))} for n in ns]


def fft_length_cost(lengths: Sequence[int] = (1031, 2053, 4099), batch: int = 16, channels: int = 16,
                    repeats: int = 5, seed: int = 0) -> List[Dict[str, float]]:
    """Time of an rfft of length n vs of the (longer) 5-smooth length: the longer transform is often faster.

    Returns:
        One row per n: ``n``, ``fast_length``, ``n_ms``, ``fast_ms`` (an rfft of (batch, channels, length)).
    """
    ns = check_ints("lengths", lengths, 1)
    for name, v in (("batch", batch), ("channels", channels), ("repeats", repeats)):
        check_int(name, v, 1)
    g = _generator(seed)
    rows = []
    for n in ns:
        x = torch.randn(batch, channels, n, generator=g)
        m = ops.fast_fft_len(n)
        rows.append({"n": n, "fast_length": m,
                     "n_ms": 1e3 * best_time(lambda: torch.fft.rfft(x, n=n), repeats=repeats),
                     "fast_ms": 1e3 * best_time(lambda: torch.fft.rfft(x, n=m), repeats=repeats)})
    return rows


def crop_saving(size: int = 8, kernel_size: int = 121, channels: int = 8, batch: int = 8, repeats: int = 3,
                seed: int = 0) -> Dict[str, float]:
    """Cropping the aggregated kernel to 2n - 1 taps per axis on an n x n map: same output, much less work.

    A "same" convolution of an n-wide input only reaches offsets -(n-1)..(n-1): the other taps of a wider kernel
    always multiply the zero padding. With S = 121 (DASH's 2D space) on an 8x8 map, 15x15 taps do all the work.

    Returns:
        ``kernel_full`` / ``kernel_cropped`` (taps per axis), ``fft_size_full`` / ``fft_size_cropped`` (FFT
        length per axis), ``fft_full_ms``, ``fft_cropped_ms``, ``direct_full_ms``, ``direct_cropped_ms`` (float32,
        forward), and the float64 errors ``crop_error`` (cropped vs full kernel, both direct) and ``fft_error``
        (cropped FFT vs full direct).
    """
    for name, v in (("size", size), ("channels", channels), ("batch", batch), ("repeats", repeats)):
        check_int(name, v, 1)
    check_int("kernel_size", kernel_size, 1, odd=True)
    g = _generator(seed)
    x = _input(batch, channels, size, 2, torch.float64, g)
    W = torch.randn(channels, channels, kernel_size, kernel_size, generator=g, dtype=torch.float64)
    Wc = ops.crop_kernel(W, size)
    n_full = ops.fast_fft_len(size + (kernel_size - 1) // 2)
    n_crop = ops.fast_fft_len(size + (Wc.shape[-1] - 1) // 2)
    ref = ops.direct_conv(x, W)
    out = {"kernel_full": kernel_size, "kernel_cropped": int(Wc.shape[-1]), "fft_size_full": n_full,
           "fft_size_cropped": n_crop, "crop_error": _max_err(ops.direct_conv(x, Wc), ref),
           "fft_error": _max_err(ops.fft_conv(x, W), ref), "output_scale": float(ref.abs().max())}
    x32, W32, Wc32 = x.float(), W.float(), Wc.float()
    with torch.no_grad():
        out["fft_full_ms"] = 1e3 * best_time(lambda: ops.circular_conv(x32, W32, n_full), repeats=repeats)
        out["fft_cropped_ms"] = 1e3 * best_time(lambda: ops.circular_conv(x32, Wc32, n_crop), repeats=repeats)
        out["direct_full_ms"] = 1e3 * best_time(lambda: ops.direct_conv(x32, W32), repeats=repeats)
        out["direct_cropped_ms"] = 1e3 * best_time(lambda: ops.direct_conv(x32, Wc32), repeats=repeats)
    return out


def fft_errors(dtype: torch.dtype = torch.float64, seed: int = 0) -> Dict[str, float]:
    """Max |FFT convolution - direct convolution| over the cases DASH meets, plus the three DashConv backends.

    Cases: 1D and 2D; full, depthwise and strided; causal 1D; a non-square map; a kernel wider than the input;
    and a `DashConv` computed by FFT and by direct convolution against mixed results (DARTS), same weights.

    Returns:
        ``{case: max abs error}`` and ``output_scale`` (the largest |output| seen, for a relative reading).
    """
    g = _generator(seed)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=dtype)

    cases = {
        "1d full": (r(2, 4, 50), r(6, 4, 31), {}),
        "1d depthwise": (r(2, 4, 50), r(4, 1, 31), {"groups": 4}),
        "1d stride 2": (r(2, 4, 51), r(6, 4, 9), {"stride": 2}),
        "1d causal": (r(2, 4, 50), r(6, 4, 16), {"causal": True}),
        "1d kernel wider than input": (r(2, 3, 20), r(3, 3, 61), {}),
        "2d full": (r(2, 3, 16, 16), r(5, 3, 9, 9), {}),
        "2d depthwise": (r(2, 4, 16, 16), r(4, 1, 15, 15), {"groups": 4}),
        "2d stride 2": (r(2, 3, 15, 15), r(5, 3, 7, 7), {"stride": 2}),
        "2d non-square": (r(2, 3, 12, 20), r(4, 3, 9, 9), {}),
    }
    out: Dict[str, float] = {}
    scale = 0.0
    for name, (x, w, kw) in cases.items():
        ref = ops.direct_conv(x, w, **kw)
        out[name] = _max_err(ops.fft_conv(x, w, **kw), ref)
        scale = max(scale, float(ref.abs().max()))
    for dims, shape in ((1, (2, 4, 60)), (2, (2, 4, 20, 20))):
        space = SearchSpace((3, 5, 7), (1, 2, 4), dims=dims)
        with torch.random.fork_rng(devices=[]):  # seeded weights without touching the caller's random state
            torch.manual_seed(seed)
            conv = DashConv(4, 4, space, init_std=1.0).to(dtype).eval()  # eval: softmax(alpha), no noise
        x = r(*shape)
        ys = {}
        with torch.no_grad():
            for backend in ("fft", "direct", "mixed_results"):
                conv.backend = backend
                ys[backend] = conv(x)
        out[f"dashconv {dims}d fft vs mixed results"] = _max_err(ys["fft"], ys["mixed_results"])
        out[f"dashconv {dims}d direct vs mixed results"] = _max_err(ys["direct"], ys["mixed_results"])
        scale = max(scale, float(ys["mixed_results"].abs().max()))
    out["output_scale"] = scale
    return out


@dataclass
class Crossover:
    """Direct vs FFT convolution across kernel sizes (from `fft_crossover`).

    Attributes:
        rows: one dict per kernel size: ``kernel_size``, ``direct_ms``, ``fft_ms``, ``faster``.
        crossover: the smallest measured kernel size from which the FFT is faster at every larger one
            (None if the FFT never overtakes direct convolution in the measured range).
        setting: the input and layer that were timed.
    """

    rows: List[Dict[str, Any]]
    crossover: Optional[int]
    setting: Dict[str, Any]


def fft_crossover(kernel_sizes: Sequence[int] = (3, 5, 9, 15, 25, 41, 63), size: int = 1000, dims: int = 1,
                  channels: int = 16, batch: int = 8, depthwise: bool = False, backward: bool = False,
                  repeats: int = 3, seed: int = 0, progress: bool = True) -> Crossover:
    """Time direct and FFT convolution of one input across kernel sizes; find where the FFT overtakes.

    Direct convolution costs about S^s multiply-adds per output and input channel; the FFT's cost depends
    on the kernel only through the FFT length n + (S - 1) / 2. So the FFT wins from some S on: where depends on
    the machine, the input size and the channels.

    Args:
        kernel_sizes: odd kernel sizes to time, increasing.
        size: input length (1D) or side (2D).
        dims: 1 or 2.
        channels: C_in = C_out.
        batch: B.
        depthwise: one kernel per channel (groups = channels) instead of a full convolution.
        backward: time forward + backward (what a training step does) instead of forward only.
        repeats: timed runs per point (the best is kept).

    Returns:
        `Crossover`.
    """
    ks = check_ints("kernel_sizes", kernel_sizes, 1, odd=True)
    if list(ks) != sorted(set(ks)):
        raise ValueError(f"kernel_sizes must be increasing without repeats, got {kernel_sizes!r}")
    dims = check_int("dims", dims, 1, 2)
    for name, v in (("size", size), ("channels", channels), ("batch", batch), ("repeats", repeats)):
        check_int(name, v, 1)
    g = _generator(seed)
    groups = channels if depthwise else 1
    x = _input(batch, channels, size, dims, torch.float32, g).requires_grad_(backward)
    rows = []
    it = _progress(ks, desc="kernel sizes") if progress else ks
    for k in it:
        w = (torch.randn((channels, channels // groups) + (k,) * dims, generator=g) * 0.1).requires_grad_(backward)

        def run(fn: Callable[..., torch.Tensor]) -> Callable[[], None]:
            def go() -> None:
                with torch.set_grad_enabled(backward):
                    y = fn(x, w, groups=groups)
                    if backward:
                        torch.autograd.grad(y.sum(), (x, w))
            return go

        direct = 1e3 * best_time(run(ops.direct_conv), repeats=repeats)
        fft = 1e3 * best_time(run(ops.fft_conv), repeats=repeats)
        rows.append({"kernel_size": k, "direct_ms": direct, "fft_ms": fft,
                     "faster": "fft" if fft < direct else "direct"})
    setting = {"dims": dims, "size": size, "channels": channels, "batch": batch, "depthwise": depthwise,
               "backward": backward, "threads": torch.get_num_threads()}
    return Crossover(rows, _lasting_crossover(rows), setting)


def _lasting_crossover(rows: Sequence[Mapping[str, Any]]) -> Optional[int]:
    """The smallest kernel size from which the FFT is faster at every larger measured size (None: never)."""
    cross = None
    for row in reversed(rows):
        if row["fft_ms"] >= row["direct_ms"]:
            break
        cross = row["kernel_size"]
    return cross


def plot_crossover(result: Crossover) -> Figure:
    """Milliseconds of direct and FFT convolution against kernel size, with the crossover marked."""
    if not isinstance(result, Crossover):
        raise TypeError(f"result must be a Crossover from fft_crossover(), got {type(result).__name__}")
    s = result.setting
    ks = [r["kernel_size"] for r in result.rows]
    with style(font_scale=_FONT_SCALE):
        fig = Figure(figsize=(7.5, 4.2), layout="constrained")
        ax = fig.subplots()
        ax.plot(ks, [r["direct_ms"] for r in result.rows], marker="o", label="direct convolution")
        ax.plot(ks, [r["fft_ms"] for r in result.rows], marker="s", label="FFT convolution")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.minorticks_off()
        ax.set_xticks(ks, [str(k) for k in ks])
        if result.crossover is not None:
            at = next(r for r in result.rows if r["kernel_size"] == result.crossover)
            ax.axvline(result.crossover, color="k", ls="--", lw=1)
            ax.annotate(f"FFT faster from S = {result.crossover}", (result.crossover, at["fft_ms"]),
                        xytext=(-8, 12), textcoords="offset points", ha="right", fontsize=9)
        ax.set_xlabel("kernel size S (taps" + (", S x S)" if s["dims"] == 2 else ")"))
        ax.set_ylabel("ms (log)")
        shape = f"{s['size']}" if s["dims"] == 1 else f"{s['size']}x{s['size']}"
        mode = "depthwise" if s["depthwise"] else "full"
        ax.set_title(f"{s['dims']}D {mode}, B={s['batch']}, C={s['channels']}, n={shape}, "
                     f"{'forward+backward' if s['backward'] else 'forward'}, {s['threads']} thread(s)", fontsize=9)
        ax.legend()
    return fig


def auto_choice(space: Optional[SearchSpace] = None, sizes: Sequence[int] = (32, 16, 8), channels: int = 16,
                batch: int = 8, depthwise: bool = True, seed: int = 0) -> List[Dict[str, Any]]:
    """What ``DashConv(backend="auto")`` picks for a layer at several input sizes, and why.

    The choice is made once per layer shape: when an operation count predicts one method 8x cheaper it is
    taken at once, otherwise both are timed (forward + backward) on this machine and the faster wins. The
    measurement cache is cleared first so that every size is decided afresh.

    Args:
        space: the candidates (default: DASH's 2D space, K = {3, 5, 7, 9}, D = {1, 3, 7, 15}).
        sizes: input lengths (1D space) or sides (2D space).
        channels, batch: the layer's channels and the batch size.
        depthwise: search the layer depthwise (groups = channels), as DASH does when C_in = C_out.

    Returns:
        One row per size: ``size``, ``kernel`` (aggregated kernel per axis after cropping), ``choice``,
        ``decided_by`` ("operation count" or "timing"), ``fft_ms``, ``direct_ms`` (None when not timed).
    """
    space = SearchSpace(dims=2) if space is None else _check_space(space)
    ns = check_ints("sizes", sizes, 1)
    check_int("channels", channels, 1)
    check_int("batch", batch, 1)
    conv_choice.clear_backend_cache()
    rows = []
    with torch.random.fork_rng(devices=[]):  # seeded, and the caller's random state is left as it was
        torch.manual_seed(seed)
        for n in ns:
            conv = DashConv(channels, channels, space, groups=channels if depthwise else 1, backend="auto")
            x = torch.randn((batch, channels) + (n,) * space.dims)
            before = set(conv_choice.backend_cache())
            conv(x).sum().backward()  # the first forward decides (and caches) this layer's backend
            new = {k: v for k, v in conv_choice.backend_cache().items() if k not in before}
            choice, times = next(iter(new.values())) if new else (conv.last_backend, {})
            rows.append({"size": n, "kernel": min(space.max_field, 2 * n - 1), "choice": choice,
                         "decided_by": "timing" if times else "operation count",
                         "fft_ms": 1e3 * times["fft"] if "fft" in times else None,
                         "direct_ms": 1e3 * times["direct"] if "direct" in times else None})
    return rows
