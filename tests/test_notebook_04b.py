"""Notebook 04b (the search): executed with papermill under ``smoke=True``, and what it recorded checked.

Both editions run: the notebook as committed (with the exercises' solutions, whose assertions must hold) and the
student edition (every cell tagged ``solution`` removed), which must run as well, since no later cell may depend on
a name only a solution defines. The executed copies are kept in ``artifacts/notebooks/``. The checks tie the
notebook's visible search loop to the pipeline (the same alpha, bit for bit), recompute the per-step bound from the
recorded settings, and check the properties the notebook's text reads off its numbers.

    pytest tests/test_notebook_04b.py -m notebook
"""
from __future__ import annotations

import json

import math
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Tuple

import pytest
from nbharness import deadline, kernel_environment

from dashkit import notebook as nb

ROOT = Path(__file__).resolve().parents[1]
NAME = "04b_the_search"
NOTEBOOK = ROOT / "notebooks" / f"{NAME}.ipynb"
ARTIFACTS = ROOT / "artifacts" / "notebooks"
CELL_TIMEOUT = 300  # seconds per cell; the longest smoke cell takes a few seconds on 2 busy cores
TOTAL_TIMEOUT = 300  # seconds per run, which also catches a kernel that hangs after its last cell
FIGURES = 3  # Gumbel-softmax draws, softmax(alpha) over the steps, the steps against their bound


def _student_edition(source: Path, target: Path) -> None:
    """The notebook's student edition (``dashkit.course.student_edition``: its ``solution`` cells removed)."""
    from dashkit import course

    book = json.loads(source.read_text(encoding="utf-8"))
    target.write_text(json.dumps(course.student_edition(book), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _execute(source: Path, tag: str, workdir: Path) -> Tuple[Any, Dict[str, Any]]:
    """Run ``source`` under smoke=True in ``workdir``; returns (the executed notebook, its recorded results)."""
    papermill = pytest.importorskip("papermill", reason="the notebook tests need papermill (pip install -e .[dev])")
    import nbformat
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.fail("no Jupyter kernel named 'python3' in this environment: pip install ipykernel")
    params = {"smoke": True, "seed": 0, "results_path": str(workdir / f"{NAME}.json")}
    declared = papermill.inspect_notebook(str(source))
    assert not set(params) - set(declared), f"{NAME} does not declare {sorted(set(params) - set(declared))}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / f"{NAME}{'-' + tag if tag else ''}.ipynb"
    with pytest.MonkeyPatch.context() as mp:
        kernel_environment(mp)
        with deadline(TOTAL_TIMEOUT, f"{source.name} (smoke, {tag or 'full'} edition)"):
            papermill.execute_notebook(str(source), str(out), parameters=params, kernel_name="python3",
                                       cwd=str(workdir), execution_timeout=CELL_TIMEOUT, progress_bar=False,
                                       log_output=False)
    return nbformat.read(str(out), as_version=4), nb.load_results(params["results_path"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The committed notebook executed once under smoke=True: (executed notebook, recorded results)."""
    return _execute(NOTEBOOK, "", tmp_path_factory.mktemp("nb04b"))


def _tags(cell: Any) -> list:
    return cell.get("metadata", {}).get("tags", [])


# ------------------------------------------------------------------------------------------- the source
def test_opening_closing_and_exercises():
    import nbformat

    book = nbformat.read(str(NOTEBOOK), as_version=4)
    first, last = book.cells[0], book.cells[-1]
    assert first.cell_type == "markdown" and first.source.startswith("# 04b · ")
    assert "\n**What you will learn.**" in first.source and "**Time:**" in first.source
    assert last.cell_type == "markdown" and last.source.startswith("## What you learned")
    assert "\n- " in last.source and "\n**What to try next.**" in last.source
    numbers = []
    for i, cell in enumerate(book.cells):
        if cell.cell_type == "markdown" and cell.source.startswith("### Exercise "):
            numbers.append(int(cell.source.split()[2].rstrip(":")))
            following = book.cells[i + 1]
            assert following.cell_type == "code" and _tags(following) == ["exercise"], f"cell {i + 1}"
            assert "solution" in _tags(book.cells[i + 2]) and "assert " in book.cells[i + 2].source, f"cell {i + 2}"
    assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 2, numbers


# --------------------------------------------------------------------------------------------- the runs
@pytest.mark.notebook
def test_the_loop_is_the_pipelines_search(run):
    """The notebook's loop of stages.search_step ends on the alpha of dashkit's search stage, bit for bit."""
    import dashkit
    from dashkit import pipeline
    from dashkit.config import make_config
    from dashkit.supernet import SearchUndecidedWarning

    _, r = run
    task = dashkit.tasks.get("planted1d")
    settings = r["settings"]
    cfg = make_config(settings["preset"], task.defaults, seed=r["seed"], search_steps=r["steps"],
                      **settings["measured"], **settings["fixed"])
    with tempfile.TemporaryDirectory() as out, warnings.catch_warnings():
        warnings.simplefilter("ignore", SearchUndecidedWarning)  # 60 steps decide little; not what is checked
        card = pipeline.search(task, cfg, pipeline.open_run_dir(out, task, cfg, preset=settings["preset"]))
    loop = r["loop"]
    assert [layer.name for layer in card.layers] == loop["layers"] == ["convs.0", "convs.1", "convs.2"]
    assert [layer.alpha for layer in card.layers] == loop["alpha_end"]
    assert {layer.name: [layer.k, layer.d] for layer in card.layers} == loop["chosen"]
    assert [layer.z for layer in card.layers] == loop["z"]


@pytest.mark.notebook
def test_history_is_softmax_of_alpha(run):
    import torch

    _, r = run
    loop = r["loop"]
    history = torch.tensor(loop["history"], dtype=torch.float64)  # (records, layers, M)
    assert loop["history_steps"] == list(range(0, r["steps"] + 1, max(1, r["steps"] // 200)))
    assert history.shape == (len(loop["history_steps"]), 3, len(r["candidates"])) == (61, 3, 9)
    assert (history >= 0).all() and torch.allclose(history.sum(-1), torch.ones(history.shape[:2],
                                                                               dtype=torch.float64), atol=1e-6)
    start = torch.softmax(torch.tensor(loop["alpha_start"], dtype=torch.float64), -1)
    end = torch.softmax(torch.tensor(loop["alpha_end"], dtype=torch.float64), -1)
    assert torch.allclose(history[0], start, atol=1e-6) and torch.allclose(history[-1], end, atol=1e-6)
    assert (start - 1 / 9).abs().max() < 0.01  # alpha starts at 1e-3 * randn: no preference


@pytest.mark.notebook
def test_steps_respect_the_bound(run):
    _, r = run
    b = r["bound"]
    assert (b["arch_lr"], b["grad_scale"], b["momentum"], b["rf_penalty"], b["arch_weight_decay"]) == \
        (0.05, 100.0, 0.9, 1e-5, 5e-4)  # DASH's (the notebook keeps its field push), which its text quotes
    fields = [d * (k - 1) + 1 for k, d in r["candidates"]]
    rf_norm = math.sqrt(sum(f * f for f in fields))
    assert b["rf_norm"] == pytest.approx(rf_norm, rel=1e-12)
    expected = b["arch_lr"] * (1 / b["grad_scale"] + b["rf_penalty"] * rf_norm) / (1 - b["momentum"])
    assert b["start"] == pytest.approx(expected, rel=1e-12)
    loop, contrast = r["loop"], r["contrast"]
    # every measured step of every layer under its B_t (float32 alpha: a little rounding)
    assert 0 < loop["largest_step_over_bound"] <= 1 + 1e-5
    assert 0 < contrast["dash_largest_step_over_bound"] <= 1 + 1e-5
    # momentum at work: the largest step is several times eta / lambda, the step without momentum
    assert max(loop["largest_step"]) > 3 * b["arch_lr"] / b["grad_scale"]
    # the travel bound is the sum of the per-step bounds: at least steps x B at the start (||alpha|| only grows it),
    # at most steps x B at the largest ||alpha|| seen
    for travel in loop["travel_bound"]:
        assert r["steps"] * b["start"] * 0.2 ** 2 <= travel <= r["steps"] * b["start"] * 1.5
    rows = contrast["rows"]
    assert contrast["steps"] == r["contrast_steps"] == 30
    for row in rows.values():
        assert 1 / 9 < row["largest softmax(alpha)"] < 0.2  # 30 steps of at most B each: near 1/M
        assert row["travel |alpha_n - alpha_0| (mean)"] <= row["path sum_t |step| (mean)"] + 1e-6
        assert row["path sum_t |step| (mean)"] <= contrast["steps"] * b["start"] * 1.05


@pytest.mark.notebook
def test_gumbel_table(run):
    _, r = run
    rows = r["gumbel"]
    assert [row["tau"] for row in rows] == [0.1, 0.5, 1.0, 2.0, 10.0]
    shares = [row["share of draws with largest p > 0.9"] for row in rows]
    largest = [row["mean largest p"] for row in rows]
    # the same Gumbel noise at every tau: draw by draw the largest coefficient falls as tau grows
    assert shares == sorted(shares, reverse=True) and largest == sorted(largest, reverse=True)
    assert shares[0] > 0.5 and largest[-1] < 0.2
    assert all(row["largest |mean p_c - 1/M|"] < 0.05 for row in rows)  # unbiased on average (500 draws)


@pytest.mark.notebook
def test_choices_and_planted_task(run):
    _, r = run
    planted = {"convs.0": [7, 2], "convs.1": [7, 1], "convs.2": [7, 4]}
    assert r["planted"] == planted and len(r["candidates"]) == 9
    loop = r["loop"]
    assert loop["found"] == {name: loop["chosen"][name] == planted[name] for name in planted}
    assert loop["all_found"] == all(loop["found"].values())
    assert all((loop["locked_at"][name] is None) == (not loop["found"][name]) for name in planted)
    assert all(0 <= at <= r["steps"] for at in loop["locked_at"].values() if at is not None)
    assert loop["decided"] == [z >= 3 for z in loop["z"]]
    assert loop["loss_last20"] < loop["loss_first20"]  # the measured setting's supernet learns from the start
    check = r["candidate_check"]
    losses = {tuple(row["pair"]): row["loss"] for row in check["losses"]}
    assert check["layer"] == "convs.2" and list(losses) == [(7, 4), (5, 4), (7, 1)]
    assert tuple(check["best"]) == min(losses, key=losses.get) and all(v > 0 for v in losses.values())
    contrast = r["contrast"]
    assert set(contrast["dash_decided_wrong"]) <= set(contrast["dash_decided"]) <= set(planted)
    assert all(contrast["dash_chosen"][name] != planted[name] for name in contrast["dash_decided_wrong"])


@pytest.mark.notebook
def test_the_shuffled_target_control_is_the_same_search_without_the_data(run):
    book, r = run
    planted = r["planted"]
    control = r["control"]
    chosen = {name: tuple(kd) for name, kd in control["chosen"].items()}
    assert set(chosen) == set(planted)
    assert control["max_k"] == sum(k == 7 for k, _ in chosen.values())  # planted1d: K = (3, 5, 7)
    assert control["planted_d"] == sum(chosen[n][1] == planted[n][1] for n in planted)
    assert control["planted_pair"] == sum(list(chosen[n]) == planted[n] for n in planted)
    assert control["decided"] == sum(z >= 3 for z in control["z"]) and len(control["p_choice"]) == len(planted)
    assert all(1 / 9 <= p <= 1 for p in control["p_choice"])
    # another search than section 5's: its loss is measured on other targets (no link to learn)
    assert control["loss_first20"] > 0 and control["loss_last20"] > 0
    text = next("".join(o.get("data", {}).get("text/markdown", "")) for c in book.cells if c.cell_type == "code"
                for o in c.get("outputs", []) if "On shuffled targets" in "".join(o.get("data", {}).get(
                    "text/markdown", "")))
    assert f"in {control['max_k']} of 3 layers" in text and f"planted pair in {control['planted_pair']} of 3" in text
    assert f"{control['decided']} of 3 layers pass the decision test here" in text
    assert f"p(choice) at most {max(control['p_choice']):.3f}" in text


@pytest.mark.notebook
def test_discretisation_gap(run):
    _, r = run
    gap = r["gap"]
    assert gap["same_function_error"] < 1e-10  # the one-hot supernet and the plain network, in float64
    assert gap["discretized"] == pytest.approx(gap["argmax"], rel=1e-5)  # the same network in float32
    assert gap["searched_is_planted"] == r["loop"]["all_found"]
    losses = {tuple(row["pair"]): row["loss"] for row in r["candidate_check"]["losses"]}
    assert gap["planted_alone"] == losses[(7, 4)]
    assert gap["mixture"] == r["depthwise"]["networks"][1]["validation MSE"]  # the section 5 supernet, both times


@pytest.mark.notebook
def test_depthwise_search_against_full_retraining(run):
    _, r = run
    layers = {row["layer"]: row for row in r["depthwise"]["layers"]}
    assert (layers["convs.0"]["search groups"], layers["convs.0"]["retrain groups"]) == (1, 1)
    assert layers["convs.0"]["searched weights kept"] is True  # searched as retrained: its weights are copied
    for name in ("convs.1", "convs.2"):  # 8 -> 8 channels: searched depthwise, retrained full, weights not kept
        row = layers[name]
        assert (row["search groups"], row["retrain groups"], row["searched weights kept"]) == (8, 1, False)
        assert row["retrained weights"] == 8 * row["searched weights"]
    nets = {row["network"].split(" (")[0]: row for row in r["depthwise"]["networks"]}
    assert nets["supernet, depthwise search"]["parameters"] < nets["supernet, full search"]["parameters"]
    assert nets["discretised, depthwise kept"]["parameters"] < nets["discretised, full"]["parameters"]


@pytest.mark.notebook
def test_figures_and_solutions_ran(run):
    book, _ = run
    images = sum("image/png" in out.get("data", {}) for cell in book.cells if cell.cell_type == "code"
                 for out in cell.get("outputs", []))
    assert images >= FIGURES, f"{images} figures shown, expected {FIGURES}"
    solutions = [c for c in book.cells if "solution" in _tags(c)]
    assert len(solutions) >= 2 and all(c.get("outputs") for c in solutions)  # each prints what it checked


@pytest.mark.notebook
def test_student_edition_runs(run, tmp_path):
    student = tmp_path / f"{NAME}-student.ipynb"
    _student_edition(NOTEBOOK, student)
    book, r = _execute(student, "student", tmp_path)
    assert not any("solution" in _tags(c) for c in book.cells)
    assert set(r) == set(run[1])  # the same results recorded without the solutions
    assert r["loop"]["alpha_end"] == run[1]["loop"]["alpha_end"]
