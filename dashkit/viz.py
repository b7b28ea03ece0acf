"""Figures of a DASH run: what the search chose, how alpha moved, how training went, what search bought.

Every function returns a ``matplotlib.figure.Figure`` built without pyplot, so a notebook shows it once (as the
cell's value) and a script can save it without a display or a leak of open figures; seaborn gives the style.

    >>> fig = viz.alpha_evolution(run_dir.read_json("alphas.json"))
    >>> fig.savefig("alphas.png")
"""
from __future__ import annotations

import contextlib
import math
import re
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

import numpy as np
from matplotlib.figure import Figure

__all__ = ["style", "alpha_evolution", "alpha_heatmap", "choices", "learning_curves", "comparison",
           "save_run_figures"]


@contextlib.contextmanager
def style(font_scale: float = 0.8, grid: bool = True) -> Iterator[None]:
    """The look of every dashkit figure: seaborn's "whitegrid" ("white" without ``grid``), notebook-sized text.

    Draw a figure inside it; the settings hold only there::

        >>> with viz.style():
        ...     fig = Figure(); ax = fig.subplots(); ax.plot([1, 2])

    Args:
        font_scale: text size relative to seaborn's "notebook" context (0.8 suits the small multiples here).
        grid: draw grid lines (off for diagrams where a grid would read as a scale).
    """
    import seaborn as sns

    # a context, not sns.set_theme(): a library must not change the user's global matplotlib settings
    with sns.axes_style("whitegrid" if grid else "white"), sns.plotting_context("notebook", font_scale=font_scale):
        yield


def _candidate_labels(candidates: Sequence[Sequence[int]]) -> List[str]:
    return [f"k{k} d{d}" for k, d in candidates]


def alpha_evolution(alphas: Mapping[str, Any], layers: Optional[Sequence[str]] = None, cols: int = 3) -> Figure:
    """Small multiples: per searched layer, softmax(alpha) - 1/M of every candidate over the search epochs.

    Args:
        alphas: the content of a run's ``alphas.json``: ``{"layers": [L names], "candidates": [[k, d], ...]
            (M), "epochs": E lists of L lists of M probabilities}``.
        layers: the layers to show (default: all).
        cols: panels per row.

    Returns:
        A figure with one heatmap (candidates x epochs) per layer.
    """
    import seaborn as sns

    _require(alphas, ("layers", "candidates", "epochs"), "alphas")
    names = list(alphas["layers"])
    show = list(layers) if layers is not None else names
    unknown = [n for n in show if n not in names]
    if unknown:
        raise ValueError(f"layers = {unknown!r} are not searched layers; searched layers: {names}")
    probs = np.asarray(alphas["epochs"], dtype=float)  # (E, L, M)
    if probs.ndim != 3 or probs.shape[0] == 0:
        raise ValueError(f"alphas['epochs'] must hold E >= 1 lists of {len(names)} layers x "
                         f"{len(alphas['candidates'])} candidates, got shape {probs.shape}")
    labels = _candidate_labels(alphas["candidates"])
    # change from the uniform 1/M, on one symmetric scale for all panels: DASH's normalised arch gradients move
    # alpha slowly, and a shared scale shows honestly how far each layer has moved
    uniform = 1.0 / probs.shape[2]
    limit = max(float(np.abs(probs - uniform).max()), 1e-6)
    step = max(1, math.ceil(probs.shape[0] / 8))  # at most about 8 epoch labels
    cols = max(1, min(cols, len(show)))
    rows = math.ceil(len(show) / cols)
    with style():
        fig = Figure(figsize=(4.2 * cols, 0.18 * len(labels) * rows + 1.2 * rows + 0.5), layout="constrained")
        axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
        for ax, name in zip(axes, show):
            data = probs[:, names.index(name), :].T - uniform  # (M, E)
            sns.heatmap(data, ax=ax, vmin=-limit, vmax=limit, center=0.0, cmap="vlag",
                        cbar=ax is axes[len(show) - 1], yticklabels=labels,
                        xticklabels=[str(e) if (e - 1) % step == 0 else "" for e in range(1, data.shape[1] + 1)])
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("epoch")
        for ax in axes[len(show):]:
            ax.set_visible(False)
        fig.suptitle("softmax(alpha) - 1/M per candidate after each search epoch (red: gaining, blue: losing)")
    return fig


def _decision_label(layer: Any) -> str:
    """A layer's z and verdict for a figure ("z 4.2", "z 1.3 undecided", "z –" without a record)."""
    z = getattr(layer, "z", None)
    decided = getattr(layer, "decided", None)
    text = "z –" if z is None else f"z {z:.1f}"
    return text + (" undecided" if decided is False else "")


def _kept_note(card: Any) -> str:
    """"; undecided layers trained at the default kernels" where the card's network keeps some layers so
    (`ArchCard.kept_layers`), else ""."""
    kept = hasattr(card, "kept_layers") and bool(card.kept_layers())
    return "; undecided layers trained at the backbone's default kernels" if kept else ""


def alpha_heatmap(card: Any) -> Figure:
    """Final softmax(alpha): searched layers (rows) x candidates (columns), the chosen pair framed.

    Each row's label carries the layer's z (`dashkit.DashConv.decision`); the frame of an undecided layer
    (z below the card's threshold: its argmax is about what gradient noise gives) is dashed and its label says
    "undecided". Cards without a decision record show "z –" and solid frames.

    Args:
        card: a ``dashkit.ArchCard`` (its layers carry alpha).
    """
    import seaborn as sns

    from .supernet import alpha_probs

    space = card.space
    labels = _candidate_labels(space.candidates)
    probs = np.asarray([alpha_probs(layer.alpha) for layer in card.layers], dtype=float)  # (L, M)
    rows = [f"{layer.name}  ({_decision_label(layer)})" for layer in card.layers]
    with style():
        fig = Figure(figsize=(0.45 * len(labels) + 4.5, 0.35 * len(card.layers) + 1.8), layout="constrained")
        ax = fig.subplots()
        sns.heatmap(probs, ax=ax, cmap="viridis", xticklabels=labels, yticklabels=rows,
                    cbar_kws={"label": "softmax(alpha)"})
        for row, layer in enumerate(card.layers):
            col = space.index(layer.k, layer.d)
            ax.add_patch(_frame(col, row, undecided=getattr(layer, "decided", None) is False))
        ax.set_xlabel("candidate (kernel size k, dilation d)")
        thr = float(getattr(card, "meta", {}).get("decision_z", 3.0))
        ax.set_title(f"architecture weights after the search (chosen candidate framed; dashed: undecided, "
                     f"z < {thr:g}){_kept_note(card)}", wrap=True)
    return fig


def _frame(col: int, row: int, undecided: bool = False) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((col, row), 1, 1, fill=False, edgecolor="red", linewidth=2,
                     linestyle="--" if undecided else "-")


def choices(card: Any, default_kernels: Optional[Mapping[str, int]] = None) -> Figure:
    """Chosen kernel size, dilation and receptive field d(k-1)+1 per searched layer.

    The bars of an undecided layer (`dashkit.DashConv.decision`: its choice is about what gradient noise gives)
    are hatched and pale, and the legend says so; the layer names carry z ("z –" for a card without a record).
    Where the card's network keeps its undecided layers at the backbone's default kernels (`ArchCard.undecided`),
    the title says so.

    Args:
        card: a ``dashkit.ArchCard``.
        default_kernels: optional ``{layer name: kernel size}`` of the backbone's default convs, drawn as the
            receptive field to compare with.
    """
    from matplotlib.patches import Patch

    names = [layer.name for layer in card.layers]
    undecided = [getattr(layer, "decided", None) is False for layer in card.layers]
    x = np.arange(len(names))
    thr = float(getattr(card, "meta", {}).get("decision_z", 3.0))

    def bars(ax: Any, heights: Sequence[float], color: str, **kw: Any) -> None:
        container = ax.bar(x, heights, color=color, **kw)
        for bar, faint in zip(container, undecided):
            if faint:
                bar.set_hatch("//")
                bar.set_alpha(0.45)

    with style():
        fig = Figure(figsize=(max(6.0, 0.55 * len(names) + 2), 6.5), layout="constrained")
        ax_k, ax_d, ax_rf = fig.subplots(3, 1, sharex=True)
        bars(ax_k, [layer.k for layer in card.layers], "#4c72b0")
        ax_k.set_ylabel("kernel size k")
        if any(undecided):
            ax_k.legend(handles=[Patch(facecolor="#4c72b0", alpha=0.45, hatch="//",
                                       label=f"undecided (z < {thr:g}): about what noise picks")],
                        loc="upper left", fontsize=8)
        bars(ax_d, [layer.d for layer in card.layers], "#55a868")
        ax_d.set_ylabel("dilation d")
        bars(ax_rf, [layer.receptive_field for layer in card.layers], "#c44e52", label="searched")
        if default_kernels:
            ax_rf.scatter(x, [default_kernels.get(n, np.nan) for n in names], color="black", marker="_", s=300,
                          label="default kernel", zorder=3)
            ax_rf.legend(loc="upper left")
        ax_rf.set_ylabel("receptive field")
        ax_rf.set_xticks(x, [f"{layer.name} ({_decision_label(layer)})" for layer in card.layers], rotation=60,
                         ha="right", fontsize=8)
        counts = card.decided_count() if hasattr(card, "decided_count") else None
        decided = "" if counts is None else f": {counts[0]} of {counts[1]} layers decided (z >= {thr:g})"
        fig.suptitle(f"the searched architecture{decided}{_kept_note(card)}")
    return fig


def learning_curves(histories: Mapping[str, Sequence[Mapping[str, Any]]], metric: str = "") -> Figure:
    """Training loss and validation metric per epoch, one line per model.

    Args:
        histories: ``{label: rows}``, rows as in a run's ``history_<stage>.csv`` (``epoch``, ``train_loss``
            and, where present, ``val_metric``: the epochs without one, which a retraining with spaced
            validation passes has, are left out of the validation panel).
        metric: the metric's name for the axis label.
    """
    if not histories:
        raise ValueError("histories = {}: expected at least one {label: rows} entry")
    with style():
        fig = Figure(figsize=(10, 3.8), layout="constrained")
        ax_loss, ax_val = fig.subplots(1, 2)
        for label, rows in histories.items():
            epochs = [r["epoch"] for r in rows]
            ax_loss.plot(epochs, [r["train_loss"] for r in rows], marker="o", ms=3, label=label)
            validated = [r for r in rows if isinstance(r.get("val_metric"), (int, float))]  # epochs validated
            if validated:
                ax_val.plot([r["epoch"] for r in validated], [r["val_metric"] for r in validated], marker="o", ms=3,
                            label=label)
        ax_loss.set(xlabel="epoch", ylabel="training loss", title="training loss")
        ax_val.set(xlabel="epoch", ylabel=f"validation {metric}".strip(),
                   title=f"validation {metric} (lower is better)".strip())
        ax_loss.legend()
        if ax_val.lines:
            ax_val.legend()
    return fig


def comparison(metrics: Mapping[str, Any], metric: str = "") -> Figure:
    """Bars of the test (and best validation) metric of DASH beside the baseline, on a value axis from zero.

    The random-architecture control (``"random"``: the mean over its draws) is drawn as one bar with the draws'
    standard deviation as an error bar; the single draws (``"random_<i>"``) are not drawn.

    Args:
        metrics: ``{model: {"test": x, "val": y}}`` (a run's metrics.json) or ``{model: x}``.
        metric: the metric's name (defaults to ``metrics["metric"]`` when present).
    """
    metric = metric or str(metrics.get("metric", ""))
    models = [m for m, v in metrics.items() if m != "metric" and not re.fullmatch(r"random_\d+", str(m))]
    if not models:
        raise ValueError(f"metrics = {dict(metrics)!r}: expected entries such as {{'dash': 1.2, 'baseline': 1.5}}")
    test = [float(metrics[m]["test"] if isinstance(metrics[m], Mapping) else metrics[m]) for m in models]
    val = [float(metrics[m]["val"]) if isinstance(metrics[m], Mapping) and metrics[m].get("val") is not None
           else np.nan for m in models]
    spread = [float(metrics[m]["test_sd"]) if isinstance(metrics[m], Mapping) and metrics[m].get("test_sd") is not None
              else 0.0 for m in models]
    labels = [f"random\n(mean of {metrics[m].get('draws')})" if m == "random" and isinstance(metrics[m], Mapping)
              and metrics[m].get("draws") else m for m in models]
    x = np.arange(len(models))
    with style():
        fig = Figure(figsize=(2.2 * len(models) + 2, 3.8), layout="constrained")
        ax = fig.subplots()
        bars = ax.bar(x - 0.2, test, width=0.4, label="test", color="#4c72b0",
                      yerr=spread if any(spread) else None, capsize=4)
        ax.bar(x + 0.2, val, width=0.4, label="validation (best epoch)", color="#b0c4de")
        ax.bar_label(bars, fmt="%.4g", fontsize=8)
        ax.set_xticks(x, labels)
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} (lower is better)".strip())
        ax.legend()
        # the value axis starts at zero (ends there for negative values), whatever the autoscaling: bars cut off
        # above zero exaggerate the differences they show
        values = np.asarray(test + val + [t + e for t, e in zip(test, spread)], dtype=float)
        values = values[np.isfinite(values)]
        low, high = (min(0.0, float(values.min())), max(0.0, float(values.max()))) if values.size else (0.0, 0.0)
        if low == high:  # all zero (or no value): an axis from 0 to 1 rather than one centred on 0
            high = 1.0
        pad = 0.08 * (high - low)  # room for the bar labels
        ax.set_ylim(low - pad if low < 0 else 0.0, high + pad if high > 0 else 0.0)
    return fig


def save_run_figures(run_dir: Union[str, Path, Any], dpi: int = 110) -> List[Path]:
    """Draw every figure a run's files allow and save them as PNG in ``<run_dir>/figures``."""
    from .rundir import RunDir
    from .supernet import ArchCard

    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    figs: Dict[str, Figure] = {}
    if rd.exists("alphas.json"):
        figs["alpha_evolution"] = alpha_evolution(rd.read_json("alphas.json"))
    if rd.exists("archcard.json"):
        card = ArchCard.load(rd.file("archcard.json"))
        figs["alpha_final"] = alpha_heatmap(card)
        figs["choices"] = choices(card)
    histories = {label: rd.read_history(stage) for label, stage in
                 (("dash", "retrain"), ("baseline", "baseline_retrain"))}
    histories = {k: v for k, v in histories.items() if v}
    metric = rd.read_json("metrics.json").get("metric", "") if rd.exists("metrics.json") else ""
    if histories:
        figs["learning_curves"] = learning_curves(histories, metric)
    if rd.exists("metrics.json") and len(rd.read_json("metrics.json")) > 1:
        figs["comparison"] = comparison(rd.read_json("metrics.json"))
    paths = []
    for name, fig in figs.items():
        path = rd.figures / f"{name}.png"
        tmp = path.with_name(f".{path.name}.tmp.png")
        fig.savefig(tmp, dpi=dpi)
        tmp.replace(path)  # atomic, like every file of a run
        paths.append(path)
    return paths


def _require(data: Mapping[str, Any], keys: Sequence[str], name: str) -> None:
    if not isinstance(data, Mapping) or any(k not in data for k in keys):
        raise ValueError(f"{name} must be a dict with keys {list(keys)}, got "
                         f"{list(data) if isinstance(data, Mapping) else type(data).__name__}")
