"""The results explorer: an ipywidgets dashboard over the run directories under one folder.

Choose a task and one or more runs, choose a view, press "show"::

    >>> explorer = dashkit.widgets.Explorer("runs")
    >>> explorer            # the dashboard, in a notebook
    >>> explorer.select(runs=["mnist1d-smoke-seed0"], view="metrics").show()["rows"]

Views: "metrics" (DASH beside the default-kernel baseline, per run), "architecture" (the chosen kernel size k
and dilation d per searched layer, as a table and a diagram of the kernel's taps), "alpha" (softmax(alpha)
after the search and during it) and "curves" (training loss and validation metric per epoch).

Every callback is a plain method that keeps what it showed in Python state (``explorer.shown``), beside the
widgets that display it: tests drive the dashboard with ``Button.click()`` and by setting ``.value``, and read
the state back, with no browser and no kernel.
"""
from __future__ import annotations

import html
import io
import math
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
from matplotlib.figure import Figure

from .rundir import RunDir

__all__ = ["VIEWS", "ALL_TASKS", "find_runs", "run_info", "metrics_rows", "architecture_rows", "alpha_rows",
           "curve_rows", "table_html", "architecture_diagram", "Explorer"]

PathLike = Union[str, "os.PathLike[str]"]

VIEWS = ("metrics", "architecture", "alpha", "curves")
ALL_TASKS = "(all tasks)"
# the per-epoch CSVs of the two trained models: (label, stage)
_MODEL_STAGES = (("dash", "retrain"), ("baseline", "baseline_retrain"))


# ------------------------------------------------------------------------------------------- run folders
def _folder(root: Any, name: str = "root") -> Path:
    if not isinstance(root, (str, os.PathLike)):
        raise TypeError(f"{name} = {root!r}: expected a folder path (str or os.PathLike)")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{name} = {str(root)!r}: no such folder; expected a folder that holds dashkit "
                                f"run directories (each with a {RunDir.CONFIG})")
    return path


def find_runs(root: PathLike, max_depth: int = 3) -> List[Path]:
    """The run directories (folders holding a ``config.json``) in ``root`` and below it, sorted by path.

    A run directory's own subfolders are not searched (a run holds no runs).

    Args:
        root: the folder to search.
        max_depth: how many folder levels below ``root`` to look (0: ``root`` itself only).

    Returns:
        The run directories' paths.
    """
    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
        raise ValueError(f"max_depth = {max_depth!r}: expected an int >= 0")
    found: List[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if (folder / RunDir.CONFIG).is_file():
            found.append(folder)
            return
        if depth < max_depth:
            for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
                walk(child, depth + 1)

    walk(_folder(root), 0)
    return found


def _run_dir(run_dir: Any) -> RunDir:
    if isinstance(run_dir, RunDir):
        return run_dir
    if not isinstance(run_dir, (str, os.PathLike)):
        raise TypeError(f"run_dir = {run_dir!r}: expected a run directory path or a dashkit.rundir.RunDir")
    rd = RunDir(run_dir)
    if not rd.exists(RunDir.CONFIG):
        raise FileNotFoundError(f"run_dir = {str(run_dir)!r} is not a dashkit run directory (no {RunDir.CONFIG})")
    return rd


def _card(rd: RunDir) -> Any:
    from .supernet import ArchCard

    return ArchCard.load(rd.file("archcard.json")) if rd.exists("archcard.json") else None


def run_info(run_dir: Union[RunDir, PathLike]) -> Dict[str, Any]:
    """What a run directory holds, read from its files; a partly finished run gives what it has.

    Returns:
        ``{"task", "preset", "seed", "metric", "dash", "baseline", "random", "dash_val", "baseline_val",
        "random_val", "layers", "stages", "seconds"}``: test and best-validation metrics per model (None where that
        model has not been tested; ``random`` is the mean over the random-architecture control's draws), the number
        of searched layers (None before the search ends), the finished stages and the seconds they took.
    """
    rd = _run_dir(run_dir)
    meta = rd.read_json(RunDir.CONFIG)
    metrics = rd.read_json("metrics.json") if rd.exists("metrics.json") else {}
    stages = rd.done_stages()
    card = _card(rd)
    info: Dict[str, Any] = {"task": meta.get("task"), "preset": meta.get("preset"),
                            "seed": (meta.get("config") or {}).get("seed"), "metric": metrics.get("metric")}
    for model in [m for m, _ in _MODEL_STAGES] + ["random"]:
        entry = metrics.get(model) or {}
        info[model] = float(entry["test"]) if "test" in entry else None
        info[f"{model}_val"] = float(entry["val"]) if entry.get("val") is not None else None
    info["layers"] = len(card.layers) if card is not None else None
    info["stages"] = stages
    info["seconds"] = round(sum(float(rd.done_info(s).get("seconds", 0.0)) for s in stages), 1)
    return info


# -------------------------------------------------------------------------------------------- the tables
def metrics_rows(runs: Mapping[str, Union[RunDir, PathLike]]) -> List[Dict[str, Any]]:
    """One row per run: task, metric, DASH's and the baseline's test and validation values, and the gain.

    Args:
        runs: ``{label: run directory}``.

    Returns:
        Rows with ``run, task, preset, seed, metric, dash, baseline, random, gain, dash_val, baseline_val,
        seconds``; ``random`` is the mean test metric of the random architectures (None without them); ``gain``
        is baseline - dash (positive: the search helped, since every metric is lower-is-better).
    """
    rows = []
    for label, path in runs.items():
        info = run_info(path)
        gain = (info["baseline"] - info["dash"]) if info["dash"] is not None and info["baseline"] is not None \
            else None
        rows.append({"run": label, "task": info["task"], "preset": info["preset"], "seed": info["seed"],
                     "metric": info["metric"], "dash": info["dash"], "baseline": info["baseline"],
                     "random": info["random"], "gain": gain,
                     "dash_val": info["dash_val"], "baseline_val": info["baseline_val"],
                     "seconds": info["seconds"]})
    return rows


def architecture_rows(card: Any, run: str = "") -> List[Dict[str, Any]]:
    """One row per searched layer of an ArchCard: the chosen k and d, the receptive field d(k-1)+1 and how
    sure the search was: softmax(alpha) of the choice, against 1/M for no preference at all, and the search's
    decision, ``z`` (the choice's lead over its closest rival in units of gradient noise, `DashConv.decision`)
    and ``decided`` (z reached the card's threshold, 3 by default). Both are None (shown "–") for a card
    without a decision record. ``trained`` says what the run's network has in the layer: "searched" (the choice)
    or "default kernel" (an undecided layer the card keeps at the backbone's own kernel, `ArchCard.undecided`).

    Args:
        card: a ``dashkit.ArchCard``.
        run: a label put in every row (to tell runs apart in one table).
    """
    from .supernet import alpha_probs

    kept = set(card.kept_layers())
    rows = []
    for layer in card.layers:
        p = alpha_probs(layer.alpha)
        rows.append({"run": run, "layer": layer.name, "k": layer.k, "d": layer.d,
                     "field": layer.receptive_field, "p_choice": max(p), "uniform": 1.0 / len(p),
                     "z": layer.z, "decided": layer.decided,
                     "trained": "default kernel" if layer.name in kept else "searched"})
    return rows


def alpha_rows(card: Any, run: str = "") -> List[Dict[str, Any]]:
    """One row per searched layer: the chosen candidate, the runner-up, their softmax(alpha) and the margin.

    ``margin`` is alpha of the chosen candidate minus alpha of the runner-up, which is log(p_chosen /
    p_runner_up): softmax turns a difference of alphas into a ratio of probabilities. 0 is no preference
    between the two (and the margin of a one-candidate space). Unlike p_chosen - p_runner_up it does not shrink
    as the number of candidates M grows, so margins of spaces of different sizes compare. DASH's normalised
    arch gradients move alpha slowly, so short searches make choices by small margins; alpha's random start
    (1e-3 * randn) alone gives margins of about 5e-4 for 9-20 candidates.

    Args:
        card: a ``dashkit.ArchCard``.
        run: a label put in every row.

    ``z`` and ``decided`` are the search's decision (`DashConv.decision`): the chosen candidate's lead over its
    closest rival ``z_rival`` in units of the gradient noise of the search's alpha steps, and whether it reached
    the card's threshold (3 by default). A margin says how far alpha moved; z says whether the steps agreed, which
    is what tells a choice from a random draw. ``z_rival`` is the rival in gradient terms, usually but not always
    ``runner_up``. All three are None (shown "–") for a card without a decision record.

    Returns:
        Rows with ``run, layer, chosen, p_chosen, runner_up, p_runner_up, margin, z, decided, z_rival``.
    """
    from .supernet import alpha_probs

    candidates = card.space.candidates
    rows = []
    for layer in card.layers:
        p = alpha_probs(layer.alpha)
        # ranked by alpha itself, not by p: float32 probabilities of near-equal alphas can tie where alphas do not
        order = np.argsort(-np.asarray(layer.alpha, dtype=float), kind="stable")
        first, second = (int(order[0]), int(order[1])) if len(p) > 1 else (0, 0)
        rows.append({"run": run, "layer": layer.name, "chosen": "k{} d{}".format(*candidates[first]),
                     "p_chosen": p[first], "runner_up": "k{} d{}".format(*candidates[second]),
                     "p_runner_up": p[second], "margin": float(layer.alpha[first] - layer.alpha[second]),
                     "z": layer.z, "decided": layer.decided,
                     "z_rival": None if layer.runner_up is None else "k{} d{}".format(*layer.runner_up)})
    return rows


def curve_rows(run_dir: Union[RunDir, PathLike], run: str = "") -> List[Dict[str, Any]]:
    """One row per trained model of a run: epochs trained, last training loss and best validation metric."""
    rd = _run_dir(run_dir)
    rows = []
    for model, stage in _MODEL_STAGES:
        history = rd.read_history(stage)
        if history:
            vals = [r["val_metric"] for r in history if isinstance(r.get("val_metric"), (int, float))]
            rows.append({"run": run, "model": model, "epochs": len(history),
                         "last_train_loss": history[-1].get("train_loss"),
                         "best_val": min(vals) if vals else None})
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return html.escape(", ".join(str(v) for v in value))
    return html.escape(str(value))


def table_html(rows: Sequence[Mapping[str, Any]], columns: Optional[Sequence[str]] = None, caption: str = "") -> str:
    """Rows of dicts as an HTML table (numbers to 4 significant digits, True/False as yes/no, missing values as a
    dash).

    Args:
        rows: the rows.
        columns: the columns, in order (default: the keys of every row, in the order first seen).
        caption: an optional caption above the table.
    """
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    cap = f"<caption style='caption-side:top'>{html.escape(caption)}</caption>" if caption else ""
    return f"<table class='dashkit-table'>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------------------------- diagram
def architecture_diagram(card: Any, title: str = "") -> Figure:
    """The searched network as a stack of kernels: per layer, where its k taps fall with dilation d.

    Layer by layer, from the input (top) to the output, each row marks the input offsets one output position
    reads, ``d * (i - (k - 1) / 2)`` for ``i = 0..k-1``, over a bar as wide as the receptive field
    ``d(k-1)+1``. A 2D layer's kernel is k x k with the same d on both axes; the row shows one axis. An undecided
    layer that the run's network keeps at the backbone's default kernel (`ArchCard.undecided`) is drawn pale, its
    label saying so.

    Args:
        card: a ``dashkit.ArchCard``.
        title: the figure's title (default: a description).

    Returns:
        A matplotlib figure.
    """
    layers = list(card.layers)
    if not layers:
        raise ValueError("card has no searched layers; expected an ArchCard made by dashkit.discretize()")
    import seaborn as sns

    from .viz import style

    kept_names = set(card.kept_layers())
    half = max(layer.receptive_field for layer in layers) / 2
    colours = sns.color_palette("crest", n_colors=max(len({layer.d for layer in layers}), 1))
    by_d = {d: colours[i] for i, d in enumerate(sorted({layer.d for layer in layers}))}
    with style(grid=False):  # no grid: the x axis counts taps, and grid lines would read as taps too
        fig = Figure(figsize=(9.0, 0.42 * len(layers) + 1.4), layout="constrained")
        ax = fig.subplots()
        for row, layer in enumerate(layers):
            y, kept = -row, layer.name in kept_names
            ax.barh(y, layer.receptive_field, left=-layer.receptive_field / 2, height=0.5, color=by_d[layer.d],
                    alpha=0.1 if kept else 0.25, linewidth=0)
            taps = layer.d * (np.arange(layer.k) - (layer.k - 1) / 2)
            ax.scatter(taps, np.full(layer.k, y), s=18, marker="s", color=by_d[layer.d], zorder=3,
                       alpha=0.35 if kept else 1.0)
            # x in axes coordinates: the labels sit right of the plot whatever the fields' widths
            ax.text(1.01, y, f"k={layer.k} d={layer.d}  field {layer.receptive_field}"
                    + ("  (undecided: trained at the default kernel)" if kept else ""), va="center", fontsize=8,
                    transform=ax.get_yaxis_transform())
        ax.set_yticks([-r for r in range(len(layers))], [layer.name for layer in layers], fontsize=8)
        ax.set_xlim(-half - 0.5, half + 0.5)
        ax.set_xlabel("input offset read by one output position (taps; bar: receptive field)")
        ax.axvline(0, color="grey", linewidth=0.6, zorder=0)
        sns.despine(ax=ax, left=True)
        ax.set_title(title or "the searched architecture: kernel taps per layer, input at the top")
    return fig


def _png(fig: Figure, dpi: int = 80) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- explorer
class Explorer:
    """A dashboard over the run directories under ``root``.

    Widgets (attributes, each usable on its own): ``task`` (Dropdown: a task, or all of them), ``runs``
    (SelectMultiple of the runs of that task), ``view`` (ToggleButtons: one of :data:`VIEWS`), ``show_button``,
    ``refresh_button``, ``status`` (HTML), ``table`` (HTML) and ``figures`` (a VBox of PNG images);
    ``widget`` lays them out, and a notebook displays the Explorer as that widget.

    State (plain Python, for code and tests): ``run_dirs`` ({run label: path}, the label being the path below
    ``root``), ``tasks`` ({run label: task name}), and ``shown``: what the last :meth:`show` displayed,
    ``{"view", "runs", "columns", "rows", "figures", "message"}``, where ``figures`` are the figures' titles.

    Args:
        root: the folder that holds run directories (searched ``max_depth`` levels down).
        view: the view selected at first.
        max_depth: see :func:`find_runs`.
        dpi: resolution of the figures' images.
    """

    def __init__(self, root: PathLike, view: str = "metrics", max_depth: int = 3, dpi: int = 80):
        import ipywidgets as w

        self.root = _folder(root)
        self.max_depth = max_depth
        if view not in VIEWS:
            raise ValueError(f"view = {view!r}: expected one of {', '.join(VIEWS)}")
        if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 10:
            raise ValueError(f"dpi = {dpi!r}: expected an int >= 10")
        self.dpi = dpi
        self.run_dirs: Dict[str, Path] = {}
        self.tasks: Dict[str, str] = {}
        self.shown: Dict[str, Any] = {}
        self.task = w.Dropdown(description="task")
        self.runs = w.SelectMultiple(description="runs", rows=6, layout=w.Layout(width="60%"))
        self.view = w.ToggleButtons(options=list(VIEWS), value=view, description="view")
        self.show_button = w.Button(description="show", button_style="primary", icon="eye")
        self.refresh_button = w.Button(description="refresh", icon="refresh")
        self.status = w.HTML()
        self.table = w.HTML()
        self.figures = w.VBox()
        self.widget = w.VBox([w.HBox([self.task, self.refresh_button]), self.runs, self.view, self.show_button,
                              self.status, self.table, self.figures])
        self.task.observe(self._on_task, names="value")
        self.show_button.on_click(lambda _: self.show())
        self.refresh_button.on_click(lambda _: self.refresh())
        self.refresh()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __repr__(self) -> str:
        return f"Explorer({str(self.root)!r}: {len(self.run_dirs)} runs)"

    # --- callbacks ---------------------------------------------------------------------------------------
    def refresh(self) -> List[str]:
        """Scan ``root`` again; keeps the chosen task and runs where they still exist. Returns the run labels."""
        self.run_dirs = {p.relative_to(self.root).as_posix() or ".": p
                         for p in find_runs(self.root, self.max_depth)}
        self.tasks = {}
        for label, path in self.run_dirs.items():
            try:
                self.tasks[label] = str(RunDir(path).read_json(RunDir.CONFIG).get("task"))
            except ValueError:  # a corrupt config.json: list the run under no task rather than fail the scan
                self.tasks[label] = "?"
        keep = self.task.value
        options = [ALL_TASKS] + sorted(set(self.tasks.values()))
        self.task.options = options
        self.task.value = keep if keep in options else ALL_TASKS
        self._on_task()
        self.status.value = (f"{len(self.run_dirs)} run(s) under {html.escape(str(self.root))}" if self.run_dirs
                             else f"no run directories under {html.escape(str(self.root))} yet: make one with "
                                  "dashkit.run(...)")
        return list(self.run_dirs)

    def _on_task(self, change: Any = None) -> None:
        """Offer the runs of the chosen task, keeping those chosen before that are still offered."""
        task = self.task.value
        labels = [r for r in self.run_dirs if task in (None, ALL_TASKS) or self.tasks[r] == task]
        chosen = [r for r in self.runs.value if r in labels]
        self.runs.options = labels
        self.runs.value = tuple(chosen)

    def select(self, runs: Optional[Sequence[str]] = None, task: Optional[str] = None,
               view: Optional[str] = None) -> "Explorer":
        """Set the widgets as a person would (task first, then runs, then view); returns self.

        Args:
            runs: run labels (see ``run_dirs``); None keeps the selection.
            task: a task name or :data:`ALL_TASKS`; None keeps it.
            view: one of :data:`VIEWS`; None keeps it.
        """
        if task is not None:
            if task not in self.task.options:
                raise ValueError(f"task = {task!r}: no run of that task under {str(self.root)!r}; tasks: "
                                 f"{', '.join(map(repr, self.task.options))}")
            self.task.value = task
        if runs is not None:
            if isinstance(runs, str):
                runs = [runs]
            unknown = [r for r in runs if r not in self.runs.options]
            if unknown:
                raise ValueError(f"runs = {list(runs)!r}: {unknown!r} not offered for task {self.task.value!r}; "
                                 f"offered: {list(self.runs.options)!r}")
            self.runs.value = tuple(runs)
        if view is not None:
            if view not in VIEWS:
                raise ValueError(f"view = {view!r}: expected one of {', '.join(VIEWS)}")
            self.view.value = view
        return self

    def show(self) -> Dict[str, Any]:
        """Display the chosen view of the chosen runs (the "show" button); returns ``shown``."""
        view, labels = self.view.value, list(self.runs.value)
        if not labels:
            self._display(view, labels, [], [], [], "choose at least one run, then press show")
            return self.shown
        runs = {label: self.run_dirs[label] for label in labels}
        rows, figures, notes = getattr(self, f"_view_{view}")(runs)
        self._display(view, labels, rows, figures, notes, "")
        return self.shown

    # --- the views: each returns (table rows, [(title, figure)], notes) ---------------------------------------
    def _view_metrics(self, runs: Dict[str, Path]) -> Tuple[List[Dict[str, Any]], List[Tuple[str, Figure]], List[str]]:
        from .viz import comparison

        rows = metrics_rows(runs)
        figures, notes = [], []
        for label, path in runs.items():
            rd = RunDir(path)
            metrics = rd.read_json("metrics.json") if rd.exists("metrics.json") else {}
            if any(m in metrics for m, _ in _MODEL_STAGES):
                figures.append((f"{label}: test metric", comparison(metrics)))
            else:
                notes.append(f"{label}: no model tested yet")
        return rows, figures, notes

    def _cards(self, runs: Dict[str, Path]) -> Tuple[Dict[str, Any], List[str]]:
        cards, notes = {}, []
        for label, path in runs.items():
            card = _card(RunDir(path))
            if card is None:
                notes.append(f"{label}: the search has not finished (no archcard.json)")
            else:
                cards[label] = card
        return cards, notes

    def _view_architecture(self, runs: Dict[str, Path]) -> Tuple[List[Dict[str, Any]], List[Tuple[str, Figure]],
                                                                 List[str]]:
        cards, notes = self._cards(runs)
        rows = [row for label, card in cards.items() for row in architecture_rows(card, label)]
        figures = [(f"{label}: architecture", architecture_diagram(card, title=f"{label}: kernel taps per layer"))
                   for label, card in cards.items()]
        return rows, figures, notes

    def _view_alpha(self, runs: Dict[str, Path]) -> Tuple[List[Dict[str, Any]], List[Tuple[str, Figure]], List[str]]:
        from .viz import alpha_evolution, alpha_heatmap

        cards, notes = self._cards(runs)
        rows = [row for label, card in cards.items() for row in alpha_rows(card, label)]
        figures = []
        for label, card in cards.items():
            figures.append((f"{label}: final alpha", alpha_heatmap(card)))
            rd = RunDir(runs[label])
            if rd.exists("alphas.json"):
                figures.append((f"{label}: alpha during the search", alpha_evolution(rd.read_json("alphas.json"))))
        return rows, figures, notes

    def _view_curves(self, runs: Dict[str, Path]) -> Tuple[List[Dict[str, Any]], List[Tuple[str, Figure]], List[str]]:
        from .viz import learning_curves

        rows, histories, metrics, notes = [], {}, set(), []
        for label, path in runs.items():
            rd = RunDir(path)
            rows += curve_rows(rd, label)
            for model, stage in _MODEL_STAGES:
                history = rd.read_history(stage)
                if history:
                    histories[f"{label}/{model}" if len(runs) > 1 else model] = history
            if rd.exists("metrics.json"):
                metrics.add(str(rd.read_json("metrics.json").get("metric", "")))
            if not any(rd.read_history(stage) for _, stage in _MODEL_STAGES):
                notes.append(f"{label}: no epoch trained yet")
        figures = [("learning curves", learning_curves(histories, metrics.pop() if len(metrics) == 1 else ""))] \
            if histories else []
        return rows, figures, notes

    # --- output --------------------------------------------------------------------------------------------
    def _display(self, view: str, labels: List[str], rows: List[Dict[str, Any]], figures: List[Tuple[str, Figure]],
                 notes: List[str], message: str) -> None:
        import ipywidgets as w

        columns: List[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        self.shown = {"view": view, "runs": labels, "columns": columns, "rows": rows,
                      "figures": [title for title, _ in figures], "message": message or "; ".join(notes)}
        self.table.value = table_html(rows, columns, caption=f"{view}: {', '.join(labels)}") if rows else ""
        for old in self.figures.children:  # closed, so the kernel (and a saved notebook) drops the old images
            for child in old.children:
                child.close()
            old.close()
        self.figures.children = [w.VBox([w.HTML(f"<b>{html.escape(title)}</b>"),
                                         w.Image(value=_png(fig, self.dpi), format="png")])
                                 for title, fig in figures]
        text = self.shown["message"] or f"{view} of {len(labels)} run(s)"
        self.status.value = html.escape(text)
