"""Tests of dashkit.widgets: the results explorer's tables, diagram and callbacks, in-process on real tiny runs.

Two runs of two tiny synthetic tasks are made once with ``dashkit.run`` (a few seconds), one of them without the
baseline, and a third folder holds only a run's config.json (a run stopped before its search ended). The widgets
are driven as the notebook and a person drive them: setting ``.value`` and ``Button.click()``.
"""
from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from matplotlib.figure import Figure
from torch.utils.data import TensorDataset

import dashkit
from dashkit import widgets
from dashkit.rundir import RunDir
from dashkit.supernet import ArchCard
from dashkit.tasks.base import Task, TaskDefaults


def pulses(n: int, seed: int, gaps: tuple) -> TensorDataset:
    """Two pulses in noise; the class is which gap separates them. Shapes: x (n, 1, 32), y (n,)."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.randn(n, 1, 32, generator=g)
    y = torch.randint(0, len(gaps), (n,), generator=g)
    start = torch.randint(2, 32 - max(gaps) - 1, (n,), generator=g)
    rows = torch.arange(n)
    x[rows, 0, start] += 3.0
    x[rows, 0, start + torch.tensor(gaps)[y]] += 3.0
    return TensorDataset(x, y)


def tiny_task(name: str, gaps: tuple) -> Task:
    return Task(name=name, kind="classification", train=pulses(64, 0, gaps), val=pulses(32, 1, gaps),
                test=pulses(32, 2, gaps), in_shape=(1, 32), num_outputs=len(gaps), metric_name="error_pct",
                defaults=TaskDefaults(backbone="resnet1d", backbone_kwargs={"width": 2}, kernel_sizes=(3, 5),
                                      dilations=(1, 2)))


TINY = dict(search_backend="fft", retrain_conv_backend="direct", search_epochs=2, search_batch_size=32,
            search_batches_per_epoch=1.0, search_max_batches=None, tune_enabled=False, retrain_epochs=2,
            retrain_batch_size=32, retrain_max_batches=None)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """runs/: a/ (task pulses_a, with baseline), group/b/ (task pulses_b, no baseline), stopped/ (config only),
    notes/ (not a run)."""
    root = tmp_path_factory.mktemp("runs")
    dashkit.run(tiny_task("pulses_a", (4, 9)), preset="smoke", out=root / "a", figures=False, verbose=False, **TINY)
    dashkit.run(tiny_task("pulses_b", (3, 6, 12)), preset="smoke", out=root / "group" / "b", figures=False,
                verbose=False, baseline=False, **TINY)
    (root / "stopped").mkdir()
    shutil.copy(root / "a" / "config.json", root / "stopped" / "config.json")
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run")
    return root


def card_of(path) -> ArchCard:
    return ArchCard.load(path / "archcard.json")


def metrics_of(path) -> dict:
    return json.loads((path / "metrics.json").read_text())


# ------------------------------------------------------------------------------------------- find and read
def test_find_runs(root):
    assert widgets.find_runs(root) == [root / "a", root / "group" / "b", root / "stopped"]
    assert widgets.find_runs(root, max_depth=1) == [root / "a", root / "stopped"]
    assert widgets.find_runs(root, max_depth=0) == []
    assert widgets.find_runs(root / "a") == [root / "a"]


def test_find_runs_rejects_bad_input(root):
    with pytest.raises(FileNotFoundError, match=r"root = '.*nowhere': no such folder"):
        widgets.find_runs(root / "nowhere")
    with pytest.raises(TypeError, match=r"root = 3: expected a folder path"):
        widgets.find_runs(3)
    with pytest.raises(ValueError, match=r"max_depth = -1: expected an int >= 0"):
        widgets.find_runs(root, max_depth=-1)


def test_run_info_reads_the_run_files(root):
    info = widgets.run_info(root / "a")
    m = metrics_of(root / "a")
    assert (info["task"], info["preset"], info["seed"], info["metric"]) == ("pulses_a", "smoke", 0, "error_pct")
    assert info["dash"] == m["dash"]["test"] and info["baseline"] == m["baseline"]["test"]
    assert info["dash_val"] == m["dash"]["val"] and info["baseline_val"] == m["baseline"]["val"]
    assert info["layers"] == len(card_of(root / "a").layers) == 9
    assert info["stages"] == ["baseline_retrain", "retrain", "search"]
    assert info["seconds"] > 0
    no_base = widgets.run_info(root / "group" / "b")
    assert no_base["baseline"] is None and no_base["dash"] == metrics_of(root / "group" / "b")["dash"]["test"]
    stopped = widgets.run_info(root / "stopped")
    assert (stopped["dash"], stopped["layers"], stopped["stages"], stopped["seconds"]) == (None, None, [], 0.0)


def test_run_info_rejects_a_folder_that_is_not_a_run(root):
    with pytest.raises(FileNotFoundError, match=r"run_dir = '.*notes' is not a dashkit run directory"):
        widgets.run_info(root / "notes")
    with pytest.raises(TypeError, match=r"run_dir = 1\.5: expected a run directory path"):
        widgets.run_info(1.5)


# ------------------------------------------------------------------------------------------------ tables
def test_metrics_rows_gain_is_baseline_minus_dash(root):
    rows = widgets.metrics_rows({"A": root / "a", "B": root / "group" / "b", "S": root / "stopped"})
    m = metrics_of(root / "a")
    assert [r["run"] for r in rows] == ["A", "B", "S"]
    assert rows[0]["gain"] == pytest.approx(m["baseline"]["test"] - m["dash"]["test"], abs=1e-12)
    assert rows[1]["gain"] is None and rows[1]["baseline"] is None and rows[2]["dash"] is None


def test_architecture_rows_match_the_card(root):
    card = card_of(root / "a")
    rows = widgets.architecture_rows(card, run="A")
    assert [(r["layer"], r["k"], r["d"]) for r in rows] == [(l.name, l.k, l.d) for l in card.layers]
    for row, layer in zip(rows, card.layers):
        assert row["field"] == layer.d * (layer.k - 1) + 1
        # supernet.alpha_probs computes in float32, as the search does: equal to float64 to float32's precision
        assert row["p_choice"] == pytest.approx(torch.softmax(torch.tensor(layer.alpha, dtype=torch.float64),
                                                              0).max().item(), rel=1e-6)
        assert row["uniform"] == 0.25 and row["run"] == "A"
        # the search's decision record: a run's card has one per layer (two smoke epochs: z is a float)
        assert isinstance(layer.z, float) and row["z"] == layer.z and row["decided"] is layer.decided


def test_alpha_rows_chosen_is_the_argmax_that_discretize_took(root):
    card = card_of(root / "a")
    rows = widgets.alpha_rows(card)
    for row, layer in zip(rows, card.layers):
        assert row["chosen"] == f"k{layer.k} d{layer.d}"  # discretize's argmax, read independently
        assert row["runner_up"] != row["chosen"]
        # the margin is alpha's lead, which is log(p_chosen / p_runner_up)
        lead = sorted(layer.alpha)[-1] - sorted(layer.alpha)[-2]
        assert row["margin"] == pytest.approx(lead, rel=1e-12) and row["margin"] >= 0
        assert row["margin"] == pytest.approx(math.log(row["p_chosen"] / row["p_runner_up"]), abs=1e-6)
    p = torch.softmax(torch.tensor(card.layers[0].alpha, dtype=torch.float64), 0).sort(descending=True).values
    assert rows[0]["p_runner_up"] == pytest.approx(p[1].item(), rel=1e-6)
    for row, layer in zip(rows, card.layers):
        assert row["z"] == layer.z and row["decided"] is layer.decided is (layer.z >= 3)
        assert row["z_rival"] == "k{} d{}".format(*layer.runner_up) != row["chosen"]


def test_a_card_without_a_decision_record_shows_dashes(root, tmp_path):
    raw = json.loads((root / "a" / "archcard.json").read_text())
    for layer in raw["layers"]:
        for key in ("z", "decided", "runner_up", "steps"):
            layer.pop(key)
    (tmp_path / "old.json").write_text(json.dumps(raw))
    old = ArchCard.load(tmp_path / "old.json")
    for rows in (widgets.alpha_rows(old), widgets.architecture_rows(old)):
        assert all(r["z"] is None and r["decided"] is None for r in rows)
        html = widgets.table_html(rows, columns=["layer", "z", "decided"])
        assert html.count("<td>&ndash;</td>") == 2 * len(old.layers)
    assert all(r["z_rival"] is None for r in widgets.alpha_rows(old))


def test_curve_rows_read_the_histories(root):
    rows = widgets.curve_rows(root / "a", run="A")
    history = RunDir(root / "a").read_history("retrain")
    assert [r["model"] for r in rows] == ["dash", "baseline"]
    assert rows[0]["epochs"] == len(history) == 2
    assert rows[0]["best_val"] == min(r["val_metric"] for r in history)
    assert rows[0]["last_train_loss"] == history[-1]["train_loss"]
    assert [r["model"] for r in widgets.curve_rows(root / "group" / "b")] == ["dash"]
    assert widgets.curve_rows(root / "stopped") == []


def test_table_html_escapes_formats_and_orders():
    html = widgets.table_html([{"name": "<b>", "x": 1 / 3}, {"x": None, "extra": math.nan}], caption="t & u")
    assert widgets.table_html([{"decided": True}, {"decided": False}]).count("<td>yes</td><") == 1
    assert "<td>no</td>" in widgets.table_html([{"decided": False}])
    assert html.index("<th>name</th>") < html.index("<th>x</th>") < html.index("<th>extra</th>")
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert "<td>0.3333</td>" in html and "<td>&ndash;</td>" in html and "<td>nan</td>" in html
    assert "t &amp; u" in html
    only = widgets.table_html([{"a": 1, "b": 2}], columns=["b"])
    assert "<th>b</th>" in only and "<th>a</th>" not in only


# ----------------------------------------------------------------------------------------------- diagram
def test_architecture_diagram_draws_each_layers_taps(root):
    card = card_of(root / "a")
    fig = widgets.architecture_diagram(card)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    taps = [c.get_offsets() for c in ax.collections]  # one scatter per layer, in layer order
    assert len(taps) == len(card.layers)
    for points, layer in zip(taps, card.layers):
        expected = [layer.d * (i - (layer.k - 1) / 2) for i in range(layer.k)]
        assert list(points[:, 0]) == pytest.approx(expected)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [layer.name for layer in card.layers]


def test_architecture_diagram_needs_layers(root):
    card = card_of(root / "a")
    card.layers = []
    with pytest.raises(ValueError, match="card has no searched layers"):
        widgets.architecture_diagram(card)


# ----------------------------------------------------------------------------------------------- explorer
@pytest.fixture
def explorer(root):
    return widgets.Explorer(root, dpi=30)


def test_explorer_lists_runs_and_tasks(explorer, root):
    assert list(explorer.run_dirs) == ["a", "group/b", "stopped"]
    assert explorer.tasks == {"a": "pulses_a", "group/b": "pulses_b", "stopped": "pulses_a"}
    assert explorer.task.options == (widgets.ALL_TASKS, "pulses_a", "pulses_b")
    assert explorer.runs.options == ("a", "group/b", "stopped")
    assert "3 run(s)" in explorer.status.value


def test_choosing_a_task_filters_the_runs_and_keeps_the_selection(explorer):
    explorer.runs.value = ("a", "group/b")
    explorer.task.value = "pulses_a"
    assert explorer.runs.options == ("a", "stopped")
    assert explorer.runs.value == ("a",)
    explorer.task.value = "pulses_b"
    assert explorer.runs.options == ("group/b",) and explorer.runs.value == ()


def test_show_metrics_by_clicking(explorer, root):
    explorer.runs.value = ("a", "group/b")
    explorer.view.value = "metrics"
    explorer.show_button.click()
    shown = explorer.shown
    assert shown["view"] == "metrics" and shown["runs"] == ["a", "group/b"]
    assert [r["dash"] for r in shown["rows"]] == [metrics_of(root / "a")["dash"]["test"],
                                                  metrics_of(root / "group" / "b")["dash"]["test"]]
    assert shown["figures"] == ["a: test metric", "group/b: test metric"]
    assert len(explorer.figures.children) == 2
    image = explorer.figures.children[0].children[1]
    assert image.format == "png" and image.value[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<th>gain</th>" in explorer.table.value and "pulses_b" in explorer.table.value


def test_show_architecture_of_one_run(explorer, root):
    explorer.select(task="pulses_a", runs=["a"], view="architecture")
    explorer.show_button.click()
    card = card_of(root / "a")
    assert [(r["layer"], r["k"], r["d"]) for r in explorer.shown["rows"]] == [(l.name, l.k, l.d) for l in card.layers]
    assert explorer.shown["figures"] == ["a: architecture"]
    for layer in card.layers:
        assert f"<td>{layer.name}</td><td>{layer.k}</td><td>{layer.d}</td>" in explorer.table.value


def test_show_alpha_and_curves(explorer, root):
    explorer.select(runs=["a", "group/b"], view="alpha").show()
    assert explorer.shown["figures"] == ["a: final alpha", "a: alpha during the search", "group/b: final alpha",
                                         "group/b: alpha during the search"]
    assert len(explorer.shown["rows"]) == 18
    assert {"z", "decided", "z_rival"} <= set(explorer.shown["columns"])
    assert "<th>z</th>" in explorer.table.value and "<th>decided</th>" in explorer.table.value
    card = card_of(root / "a")
    for row, layer in zip(explorer.shown["rows"], card.layers):
        assert (row["z"], row["decided"]) == (layer.z, layer.decided)
    explorer.view.value = "curves"
    explorer.show_button.click()
    assert [(r["run"], r["model"]) for r in explorer.shown["rows"]] == [("a", "dash"), ("a", "baseline"),
                                                                       ("group/b", "dash")]
    assert explorer.shown["figures"] == ["learning curves"]
    assert len(explorer.figures.children) == 1  # the four alpha images were replaced


def test_show_notes_what_a_stopped_run_lacks(explorer):
    explorer.select(runs=["stopped"], view="architecture").show()
    assert explorer.shown["rows"] == [] and explorer.shown["figures"] == []
    assert "the search has not finished" in explorer.shown["message"]
    assert "the search has not finished" in explorer.status.value
    explorer.select(view="metrics").show()
    assert explorer.shown["rows"][0]["dash"] is None and "no model tested yet" in explorer.shown["message"]


def test_show_without_a_run_asks_for_one(explorer):
    explorer.runs.value = ()
    explorer.show_button.click()
    assert explorer.shown["runs"] == [] and "choose at least one run" in explorer.status.value


def test_refresh_finds_new_runs_and_keeps_the_choice(explorer, root, tmp_path):
    explorer.select(task="pulses_a", runs=["a"])
    shutil.copytree(root / "a", root / "a_copy")
    try:
        explorer.refresh_button.click()
        assert list(explorer.run_dirs) == ["a", "a_copy", "group/b", "stopped"]
        assert explorer.task.value == "pulses_a" and explorer.runs.value == ("a",)
        assert explorer.runs.options == ("a", "a_copy", "stopped")
    finally:
        shutil.rmtree(root / "a_copy")


def test_select_rejects_unknown_choices(explorer):
    with pytest.raises(ValueError, match=r"task = 'nope': no run of that task under"):
        explorer.select(task="nope")
    with pytest.raises(ValueError, match=r"\['zz'\] not offered for task"):
        explorer.select(runs=["a", "zz"])
    with pytest.raises(ValueError, match=r"view = 'table': expected one of metrics, architecture, alpha, curves"):
        explorer.select(view="table")


def test_explorer_rejects_bad_arguments(root):
    with pytest.raises(TypeError, match=r"root = None: expected a folder path"):
        widgets.Explorer(None)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        widgets.Explorer(root / "nowhere")
    with pytest.raises(ValueError, match=r"view = 'x': expected one of metrics"):
        widgets.Explorer(root, view="x")
    with pytest.raises(ValueError, match=r"dpi = 0: expected an int >= 10"):
        widgets.Explorer(root, dpi=0)


def test_explorer_on_an_empty_folder(tmp_path):
    explorer = widgets.Explorer(tmp_path)
    assert explorer.run_dirs == {} and explorer.runs.options == ()
    assert "no run directories" in explorer.status.value
    assert explorer.show()["runs"] == []


def test_explorer_displays_as_its_widget(explorer):
    bundle = explorer._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert data["application/vnd.jupyter.widget-view+json"]["model_id"] == explorer.widget.model_id


# ------------------------------------------------------------------------------ the metrics bar chart's axis
def test_metrics_bars_start_at_zero(explorer, root, monkeypatch):
    """The bar chart that "show" draws for the metrics view (viz.comparison) has its value axis from zero: bars
    cut off above zero would exaggerate the differences between DASH and the baseline."""
    from dashkit import viz

    drawn = []

    def recording(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    real = viz.comparison
    monkeypatch.setattr(viz, "comparison", recording)
    explorer.select(runs=["a", "group/b"], view="metrics").show()
    assert len(drawn) == 2  # one chart per run, as "show" displays them
    for fig, run in zip(drawn, ("a", "group/b")):
        m = metrics_of(root / run)
        low, high = fig.axes[0].get_ylim()
        assert low == 0.0 and high >= max(v["test"] for k, v in m.items() if k != "metric")

    # close values (where a zoomed axis would make a small gap look large), the reference runs' shape, all-zero
    # errors (matplotlib's autoscale centres those on 0) and a metric below zero (the axis then ends at zero)
    cases = [({"metric": "error_pct", "dash": {"test": 76.4, "val": 78.5}, "baseline": {"test": 69.6, "val": 70.0}},
              (0.0, 78.5)),
             ({"dash": 0.1228, "baseline": 0.1591}, (0.0, 0.1591)),
             ({"dash": {"test": 0.0, "val": 0.0}, "baseline": {"test": 0.0, "val": 0.0}}, (0.0, 1.0)),
             ({"dash": -2.5, "baseline": -1.5}, (-2.5, 0.0))]
    for metrics, (lowest, highest) in cases:
        low, high = real(metrics).axes[0].get_ylim()
        if lowest >= 0:
            assert low == 0.0 and high >= highest, (metrics, low, high)
        else:
            assert high == 0.0 and low <= lowest, (metrics, low, high)


def test_comparison_draws_the_random_control_as_one_bar_with_its_spread():
    from dashkit import viz

    metrics = {"metric": "error_pct", "dash": {"test": 2.0, "val": 1.5}, "baseline": {"test": 3.0, "val": 2.5},
               "random_0": {"test": 4.0, "val": 3.0}, "random_1": {"test": 6.0, "val": 5.0},
               "random": {"test": 5.0, "test_sd": 1.4142, "val": 4.0, "draws": 2}}
    fig = viz.comparison(metrics)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == ["dash", "baseline", "random\n(mean of 2)"]  # the single draws are not drawn
    from matplotlib.container import BarContainer

    test_bars = [c for c in ax.containers if isinstance(c, BarContainer)][0]
    assert [round(b.get_height(), 6) for b in test_bars] == [2.0, 3.0, 5.0]
    assert test_bars.errorbar is not None  # the draws' sd on the random bar
    low, high = ax.get_ylim()
    assert low == 0 and high >= 5.0 + 1.4142  # the error bar fits on the axis


def test_metrics_rows_carry_the_random_mean(tmp_path):
    import json

    from dashkit import widgets
    from dashkit.rundir import RunDir

    rd = RunDir(tmp_path / "r")
    rd.path.mkdir(parents=True, exist_ok=True)
    (rd.path / RunDir.CONFIG).write_text(json.dumps({"task": "mnist1d", "preset": "standard", "config": {"seed": 1}}))
    (rd.path / "metrics.json").write_text(json.dumps({
        "metric": "error_pct", "dash": {"test": 2.0, "val": 1.0}, "baseline": {"test": 3.0, "val": 2.0},
        "random": {"test": 4.5, "test_sd": 0.7, "val": 3.5, "draws": 2}}))
    (row,) = widgets.metrics_rows({"r": rd.path})
    assert (row["dash"], row["baseline"], row["random"], row["gain"]) == (2.0, 3.0, 4.5, 1.0)
    assert widgets.run_info(rd.path)["random_val"] == 3.5
