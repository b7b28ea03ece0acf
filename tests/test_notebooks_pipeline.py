"""Papermill runs of the pipeline notebooks (00, 05, 06, 07, 09) with smoke parameters.

Each notebook runs headless in a fresh temporary working folder, writes its key results with
``dashkit.notebook.record`` to a JSON file that the test reads back, and its executed copy is kept under
``artifacts/notebooks/`` for a person to look at. Parameter names are checked against
``papermill.inspect_notebook`` first, since papermill itself only warns about an unknown name and runs on the
defaults.
"""
from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path
from typing import Any, Dict, Tuple

import nbformat
import pytest
from nbharness import deadline, kernel_environment

from dashkit.rundir import RunDir
from dashkit.widgets import VIEWS

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "artifacts" / "notebooks"
PIPELINE_NOTEBOOKS = ("00_quickstart", "05_search_tune_retrain", "06_bring_your_own_data", "07_results_explorer",
                      "09_nas_bench_360")
# The notebooks run on the smoke preset (seconds: it checks that every stage runs), plus the few retraining steps
# that make the checks below, "learns something", meaningful.
LEARNS = {"tune_enabled": False, "retrain_steps": 60, "retrain_batch_size": 64, "retrain_lr": 0.05}
CELL_TIMEOUT = 240  # seconds per cell: the longest cell (a tiny run) takes about 20 s on 2 busy cores
TOTAL_TIMEOUT = 480  # seconds per notebook, which also catches a kernel that hangs after its last cell


def execute(name: str, workdir: Path, monkeypatch: pytest.MonkeyPatch, tag: str = "", **parameters: Any
            ) -> Tuple[nbformat.NotebookNode, Dict[str, Any]]:
    """Run notebook ``name`` with ``parameters`` (plus smoke=True) in ``workdir``; returns (executed, results).

    The executed copy is ``artifacts/notebooks/<name>[-<tag>].ipynb``: a tag keeps two runs of one notebook apart.

    Raises:
        ValueError: a parameter the notebook does not declare (papermill would only warn and run the defaults).
    """
    import papermill

    source = NOTEBOOKS / f"{name}.ipynb"
    declared = papermill.inspect_notebook(str(source))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(f"parameters {unknown!r} are not parameters of {name}; it declares {sorted(declared)}")
    results = workdir / "results" / f"{name}.json"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    executed = ARTIFACTS / f"{name}{'-' + tag if tag else ''}.ipynb"
    kernel_environment(monkeypatch)  # measured without it: a training step 30x slower with two kernels at once
    with deadline(TOTAL_TIMEOUT, f"{name} (smoke)"):
        papermill.execute_notebook(str(source), str(executed), parameters={"smoke": True, **parameters,
                                                                           "results_path": str(results)},
                                   kernel_name="python3", cwd=str(workdir), progress_bar=False, log_output=False,
                                   execution_timeout=CELL_TIMEOUT)
    return nbformat.read(executed, as_version=4), json.loads(results.read_text())


def images(nb: nbformat.NotebookNode) -> int:
    """How many PNG images the executed notebook's cells show."""
    return sum("image/png" in out.get("data", {}) for cell in nb.cells if cell.cell_type == "code"
               for out in cell.get("outputs", []))


def widget_states(nb: nbformat.NotebookNode) -> Dict[str, Dict[str, Any]]:
    """The widget models saved in an executed notebook, by model id."""
    return nb.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]


def markdown_outputs(nb: nbformat.NotebookNode) -> str:
    """The Markdown the executed notebook's code cells displayed (readings computed from the run), joined."""
    return "\n".join(out["data"]["text/markdown"] for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []) if "text/markdown" in out.get("data", {}))


def card_record(run_dir: Path) -> Tuple[Any, list]:
    """(decided count [decided, layers], p(choice) per layer in float64) read from a run's archcard.json."""
    import numpy as np

    layers = json.loads((run_dir / "archcard.json").read_text())["layers"]
    p_choice = []
    for layer in layers:
        alpha = np.asarray(layer["alpha"], dtype=np.float64)
        p_choice.append(float(np.exp(alpha - alpha.max()).max() / np.exp(alpha - alpha.max()).sum()))
    return [sum(bool(layer["decided"]) for layer in layers), len(layers)], p_choice


# ----------------------------------------------------------------------------------------- the sources
@pytest.mark.parametrize("name", PIPELINE_NOTEBOOKS)
def test_committed_notebook_is_clean_and_parameterised(name):
    import papermill

    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code), "commit notebooks without outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    declared = papermill.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    assert declared["smoke"]["default"] == "False" and declared["results_path"]["default"] == '""'
    assert all(p["inferred_type_name"] != "None" and p["help"] for p in declared.values()), declared
    assert "widgets" not in nb.metadata
    first = nb.cells[0].source
    assert first.startswith(f"# {name[:2]} ") and "**Time:**" in first and "CPU" in first


def test_unknown_parameter_is_refused_before_running(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"\['taks'\] are not parameters of 00_quickstart"):
        execute("00_quickstart", tmp_path, monkeypatch, taks="digits")


# ------------------------------------------------------------------------------------------ the runs
@pytest.mark.notebook
def test_00_quickstart(tmp_path, monkeypatch):
    nb, res = execute("00_quickstart", tmp_path, monkeypatch, task="mnist1d", preset="smoke",
                      overrides={**LEARNS, "search_warmup": 0.25})  # the standard preset's warm-up: 2 of 8 steps
    run_dir = tmp_path / res["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # 10 balanced classes: guessing errs on ~90% of the test set; 30 points below that is no accident
    assert res["chance"] > 85
    assert res["dash"] < res["chance"] - 30 and res["baseline"] < res["chance"] - 30
    assert (res["dash"], res["baseline"]) == (metrics["dash"]["test"], metrics["baseline"]["test"])
    card = json.loads((run_dir / "archcard.json").read_text())
    assert res["layers"] == [[l["name"], l["k"], l["d"]] for l in card["layers"]] and len(res["layers"]) == 9
    figures = sorted(p.name for p in (run_dir / "figures").glob("*.png"))
    assert figures == ["alpha_evolution.png", "alpha_final.png", "choices.png", "comparison.png",
                       "learning_curves.png"]
    assert images(nb) >= 2 + len(figures)  # the diagram, the comparison, then every saved figure
    plan = json.loads((run_dir / "config.json").read_text())["plan"]
    assert res["plan"] == plan and res["preset"] == "smoke" and res["budget"] == ""
    assert plan["search"]["steps"] == 8 and plan["retrain"]["steps"] == 60 and plan["retrain"]["batch_size"] == 64
    # the recorded reading of the card: the steps taken, the decision test, p(choice) against 1/M
    decided, p_choice = card_record(run_dir)
    assert res["search_steps"] == 8 and res["candidates"] == len(card["space"]["kernel_sizes"]) * len(
        card["space"]["dilations"]) == 16
    assert res["decided"] == decided and res["p_choice"] == pytest.approx(p_choice, rel=1e-6)
    readings = markdown_outputs(nb)
    assert (f"took **8 steps** (the first 2 trained the weights alone; alpha moved in the other 6), and "
            f"**{decided[0]} of {decided[1]} layers** passed the decision test") in readings
    assert f"p(choice) lies between {min(res['p_choice']):.4f} and {max(res['p_choice']):.4f}" in readings
    gap = res["baseline"] - res["dash"]
    if gap:
        assert f"{'DASH' if gap > 0 else 'the baseline'} has the lower test error_pct" in readings
        assert f"a difference of {abs(gap):.3g} points" in readings
    # Exercise 1's bound held (its solution asserts it) and was printed from this run's numbers
    assert "(a) In its 6 steps alpha can travel at most" in readings
    # the planted task's run first (smoke preset too): its record is its own run directory's card and metrics, and
    # the reading printed from it
    demo = res["planted"]
    demo_dir = tmp_path / demo["run_dir"]
    demo_card = json.loads((demo_dir / "archcard.json").read_text())
    assert demo["planted"] == {"convs.0": [7, 2], "convs.1": [7, 1], "convs.2": [7, 4]} and demo["layers"] == 3
    assert demo["chosen"] == {l["name"]: [l["k"], l["d"]] for l in demo_card["layers"]}
    assert demo["found"] == sum(demo["chosen"][n] == kd for n, kd in demo["planted"].items())
    assert demo["decided"] == sum(bool(l["decided"]) for l in demo_card["layers"])
    assert demo["search_steps"] == 8 and demo["ln_M"] == pytest.approx(math.log(9))
    assert 0 < demo["entropy"] <= demo["ln_M"] + 1e-6
    assert demo["entropy"] == RunDir(demo_dir).read_history("search")[-1]["arch_entropy"]  # the run's own record
    demo_metrics = json.loads((demo_dir / "metrics.json").read_text())
    assert demo["metrics"] == {m: demo_metrics[m]["test"] for m in ("dash", "baseline")}
    assert (f"In 8 search steps the search chose the planted pair in **{demo['found']} of 3 layers**, and "
            f"**{demo['decided']} of 3** passed the decision test") in readings
    assert demo["z"] == [None if l["z"] is None else round(l["z"], 1) for l in demo_card["layers"]]
    zs = [z for z in demo["z"] if z is not None]
    assert zs and f"this run's z is {min(zs):.1f} to {max(zs):.1f}." in readings  # beside the control's, sourced


@pytest.mark.notebook
def test_05_search_tune_retrain(tmp_path, monkeypatch):
    nb, res = execute("05_search_tune_retrain", tmp_path, monkeypatch, task="mnist1d", preset="smoke",
                      overrides={"search_epochs": 3, "tune_lrs": [0.05, 0.01], "tune_batch_size": 64, "tune_steps": 20,
                                 "retrain_steps": 60, "retrain_batch_size": 64})
    run_dir = tmp_path / res["run_dir"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert res["dash"] < res["chance"] - 30 and res["baseline"] < res["chance"] - 30
    assert (res["dash"], res["baseline"]) == (metrics["dash"]["test"], metrics["baseline"]["test"])
    config = json.loads((run_dir / "config.json").read_text())["config"]
    assert res["search_epochs"] == config["search"]["epochs"] == 3  # the overrides parameter won over the budget
    assert config["search"]["steps"] is None and res["plan"]["search"]["counted_in"] == "epochs"  # epochs given
    assert res["plan"]["retrain"]["steps"] == 60 and res["plan"]["tune"]["configs"] == 2
    tune = json.loads((run_dir / "tune.json").read_text())
    assert res["tune_trials"] == len(tune["trials"]) == 2 and res["tuned"] == tune["best"]
    assert res["tuned"]["lr"] in (0.05, 0.01)
    alphas = json.loads((run_dir / "alphas.json").read_text())
    assert len(alphas["epochs"]) == 3 and len(alphas["layers"]) == len(res["layers"])
    assert images(nb) == 5  # alpha evolution, final alpha, diagram, learning curves, comparison
    # the cell that calls stages.search_step in a loop of its own
    (step_cell,) = [c for c in nb.cells if c.cell_type == "code" and "stages.search_step(" in c.source]
    printed = "".join(out.get("text", "") for out in step_cell.outputs)
    assert [line.split(":")[0] for line in printed.splitlines()[:5]] == [f"step {i}" for i in range(1, 6)]
    assert "largest change of a layer's softmax(alpha) after 5 steps" in printed
    decided, p_choice = card_record(run_dir)
    assert res["decided"] == decided and res["p_choice"] == pytest.approx(p_choice, rel=1e-6)
    assert res["search_steps"] == res["plan"]["search"]["steps"] == 12  # 3 epochs of 4 batches (the smoke cap)
    # Exercise 2: three seeds on the same plan, and a verdict that follows from their numbers
    seeds = res["seeds"]
    assert seeds["seeds"] == [0, 1, 2] and len(seeds["run_dirs"]) == 3
    plans = []
    for i, folder in enumerate(seeds["run_dirs"]):
        m = json.loads((tmp_path / folder / "metrics.json").read_text())
        assert (seeds["dash"][i], seeds["baseline"][i]) == (m["dash"]["test"], m["baseline"]["test"])
        config = json.loads((tmp_path / folder / "config.json").read_text())
        assert config["config"]["seed"] == i
        plans.append(config["plan"])
    assert plans[0] == plans[1] == plans[2] == seeds["plan"]
    import numpy as np
    import scipy.stats

    diffs = np.array(seeds["baseline"], dtype=np.float64) - np.array(seeds["dash"], dtype=np.float64)
    assert seeds["mean"] == pytest.approx(diffs.mean(), abs=1e-12)
    assert seeds["spread"] == pytest.approx(diffs.std(ddof=1), abs=1e-12)
    crit = scipy.stats.t.ppf(0.975, df=2)
    if seeds["spread"] > 0:
        t = scipy.stats.ttest_1samp(diffs, 0.0).statistic
        assert seeds["t"] == pytest.approx(t, rel=1e-9)
        assert seeds["verdict"] == ("helped" if t > crit else "hurt" if t < -crit else "cannot tell")
    assert f"**{seeds['verdict']}**" in markdown_outputs(nb)


@pytest.mark.notebook
def test_06_bring_your_own_data(tmp_path, monkeypatch):
    nb, res = execute("06_bring_your_own_data", tmp_path, monkeypatch, preset="smoke", overrides=LEARNS)
    assert res["data"] == "synthetic" and res["samples"] == 1500
    assert re.search(r"train/val/test 1200/150/150", res["task"])
    caught = res["caught"]
    assert caught["a NaN in the inputs"].startswith("ValueError: x_train holds 1 NaN or infinite value(s); expected "
                                                    "finite numbers only")
    assert "(sample, channel, position) (0, 0, 5)" in caught["a NaN in the inputs"]  # where it is: bad_x.flat[5]
    assert "y_train has 1499 samples but its inputs have 1500" in caught["one label too few"]
    assert caught["an unknown kind"].startswith("ValueError: kind='segmentation' is not one of")
    # three balanced classes: chance errs on ~2/3; the distance between two pulses is learnable in seconds
    assert 55 < res["chance"] < 75
    assert res["dash"] < res["chance"] - 25 and res["baseline"] < res["chance"] - 15
    assert res["classes"] == [0, 1, 2] and res["plan"]["retrain"]["steps"] == 60
    printed = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs)
    assert "predicted labels of the first test examples: [" in printed
    run_dir = tmp_path / res["run_dir"]
    decided, _ = card_record(run_dir)
    assert res["decided"] == decided and res["search_steps"] == res["plan"]["search"]["steps"]
    readings = markdown_outputs(nb)
    assert f"After {res['search_steps']} search steps {decided[0]} of {decided[1]} layers passed" in readings
    # the exercises' cells ran (their solutions assert the label numbering and the padding)
    assert "first labels: ['" in printed and "1500 series of 1 channel(s), lengths" in printed


@pytest.mark.notebook
def test_06_reads_npy_files(tmp_path, monkeypatch):
    import numpy as np

    data = tmp_path / "mine"
    data.mkdir()
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 800)
    x = rng.standard_normal((800, 2, 24)).astype(np.float32)
    x[:, 0] += 1.5 * y[:, None]  # class 1 shifts the first channel: easy for any network
    np.save(data / "x.npy", x)
    np.save(data / "y.npy", y)
    _, res = execute("06_bring_your_own_data", tmp_path, monkeypatch, tag="npy", data_path=str(data), preset="smoke",
                     overrides=LEARNS)
    assert res["data"] == str(data) and res["samples"] == 800
    assert "in (2, 24), outputs 2, train/val/test 640/80/80" in res["task"]
    assert 40 < res["chance"] < 60
    assert res["dash"] < res["chance"] - 30 and res["baseline"] < res["chance"] - 30
    assert res["decided"] == card_record(tmp_path / res["run_dir"])[0] and res["budget"] == ""


@pytest.mark.notebook
def test_07_results_explorer_saves_the_driven_widgets(tmp_path, monkeypatch):
    demo = tmp_path / "demo_runs"
    nb, res = execute("07_results_explorer", tmp_path, monkeypatch, demo_root=str(demo), drive_view="architecture")
    assert res["demo"] is True and res["root"] == str(demo)
    assert res["runs"] == ["digits-tiny", "mnist1d-tiny"]
    assert res["tasks"] == {"digits-tiny": "digits", "mnist1d-tiny": "mnist1d"}
    metrics_step, arch_step = res["shown"]
    assert metrics_step["view"] == "metrics" and metrics_step["runs"] == res["runs"]
    for row in metrics_step["rows"]:
        m = json.loads((demo / row["run"] / "metrics.json").read_text())
        assert (row["dash"], row["baseline"]) == (m["dash"]["test"], m["baseline"]["test"])
    # the gains the notebook read and recorded are baseline - DASH of each run's own metrics.json
    assert sorted(res["gains"]) == res["runs"]
    for run, gain in res["gains"].items():
        m = json.loads((demo / run / "metrics.json").read_text())
        assert gain == pytest.approx(m["baseline"]["test"] - m["dash"]["test"], abs=1e-12)
    card = json.loads((demo / "digits-tiny" / "archcard.json").read_text())
    assert arch_step["runs"] == ["digits-tiny"]
    assert [[r["layer"], r["k"], r["d"]] for r in arch_step["rows"]] == [[l["name"], l["k"], l["d"]]
                                                                         for l in card["layers"]]
    # the executed notebook holds the widgets as they were left: digits chosen, one run, the architecture view
    states = {}
    for model in widget_states(nb).values():
        states.setdefault(model["model_name"], []).append(model["state"])
    (dropdown,), (select,), (toggles,) = states["DropdownModel"], states["SelectMultipleModel"], \
        states["ToggleButtonsModel"]
    assert dropdown["_options_labels"][dropdown["index"]] == "digits"
    assert [select["_options_labels"][i] for i in select["index"]] == ["digits-tiny"]
    assert toggles["index"] == VIEWS.index("architecture")
    table = next(s["value"] for s in states["HTMLModel"] if "dashkit-table" in s["value"])
    for layer in card["layers"]:
        assert f"<td>{layer['name']}</td><td>{layer['k']}</td><td>{layer['d']}</td>" in table
    # the dashboard's last box holds the figures now shown: the one diagram of the architecture view
    saved = widget_states(nb)
    ref = lambda r: saved[r.removeprefix("IPY_MODEL_")]  # noqa: E731
    (dashboard,) = [m for m in saved.values() if m["model_name"] == "VBoxModel" and len(m["state"]["children"]) == 7]
    (shown,) = ref(dashboard["state"]["children"][-1])["state"]["children"]
    title, image = (ref(c) for c in ref(shown)["state"]["children"])
    assert title["state"]["value"] == "<b>digits-tiny: architecture</b>" and image["model_name"] == "ImageModel"


@pytest.mark.notebook
def test_09_nas_bench_360(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from nb360_fixtures import write_ninapro
    finally:
        sys.path.pop(0)
    data_root = tmp_path / "nb360"
    (data_root / "ninapro").mkdir(parents=True)
    write_ninapro(data_root / "ninapro", sizes=(40, 12, 14))
    _, res = execute("09_nas_bench_360", tmp_path, monkeypatch, data_root=str(data_root), run_task="nb360_ninapro",
                     out=str(tmp_path / "run"))
    assert list(res["found"]) == ["nb360_ninapro"]
    assert "train/val/test 40/12/14" in res["found"]["nb360_ninapro"]
    # every other loader says which files it expects, in the folder it was pointed at
    files = {"nb360_cifar100": "cifar-100-python.tar.gz", "nb360_spherical": "s2_cifar100.gz",
             "nb360_fsd50k": "lbl_map.json", "nb360_darcy": "piececonst_r421_N1024_smooth1.mat",
             "nb360_psicov": "deepcov.lst", "nb360_cosmic": "train_dirs.npy", "nb360_ecg": "challenge2017.pkl",
             "nb360_satellite": "satellite_train.npy", "nb360_deepsea": "deepsea_filtered.npz"}
    assert sorted(res["expected"]) == sorted(files) and res["problems"] == {}
    for name, expected_file in files.items():
        folder = str(data_root / name.removeprefix("nb360_"))
        assert folder in res["expected"][name] and expected_file in res["expected"][name], res["expected"][name]
    assert res["paper"] == {"search_epochs": 100, "tune_configs": 24, "retrain_epochs": 200}
    run = res["run"]
    assert run["task"] == "nb360_ninapro" and run["comparable"] is False and set(run["metrics"]) == {"dash",
                                                                                                    "baseline"}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["dash"]["test"] == run["metrics"]["dash"]
    # the published numbers are NAS-Bench-360's own (sourced); no unverified row is quoted
    assert {m for row in res["published"].values() for m in row} == {"WRN default", "DARTS (GAEA)"}
    assert res["published"]["nb360_ninapro"] == {"WRN default": 6.78, "DARTS (GAEA)": 17.67}
    assert res["published"]["nb360_cosmic"] == {}  # published as FNR %, dashkit reports 1 - AUROC


@pytest.mark.notebook
def test_09_without_data_lists_what_each_loader_expects(tmp_path, monkeypatch):
    _, res = execute("09_nas_bench_360", tmp_path, monkeypatch, tag="no-data")
    assert res["found"] == {} and res["run"] is None and len(res["expected"]) == 10
    assert "ninapro_train.npy, label_train.npy" in res["expected"]["nb360_ninapro"]
    assert all("'<data_root>/" in message for message in res["expected"].values())
    assert sorted(res["published"]) == sorted(res["expected"])  # a published row (maybe empty) for every loader

