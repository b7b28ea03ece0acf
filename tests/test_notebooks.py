"""The teaching notebooks: static checks of every committed notebook, papermill runs, and dashkit.notebook.

Every notebook in ``notebooks/`` is checked for what is committed (no outputs, no execution counts, kernel
``python3``, exactly one typed and commented ``parameters`` cell that declares ``smoke`` and ``results_path``) and
executed headlessly with ``smoke=True`` (marker ``notebook``). The executed copies are kept in
``artifacts/notebooks/`` for inspection; the results each notebook records through ``dashkit.notebook.record`` are
read back and checked.

Adding a notebook means adding one `NotebookCase` to ``CASES``: its smoke parameters and a function that asserts
on what it recorded. A notebook without an entry still runs, with a check only that it recorded something; one
whose entry names another test file (``covered_by``) is run there instead.

    pytest tests/test_notebooks.py -m notebook -k 02_mixed     # run one notebook
"""
from __future__ import annotations

import ast
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping

import pytest
from nbharness import deadline as _deadline
from nbharness import kernel_environment

from dashkit import notebook as nb

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "artifacts" / "notebooks"
REQUIRED_PARAMETERS = ("smoke", "results_path")  # what the harness passes to every notebook


# ------------------------------------------------------------------------------------- checks per notebook

def _check_01(r: Dict[str, Any]) -> None:
    assert (r["candidates_1d"], r["max_field_1d"]) == (20, 271)  # 5 x 4 candidates, 15 * 18 + 1
    assert (r["candidates_2d"], r["max_field_2d"]) == (16, 121)
    assert r["index_k11_d7"] == 10 and r["pair_9"] == [11, 3]  # k-major: 2 * 4 + 2
    assert r["searched_layers_resnet1d"] == 9 and r["searched_layers_wrn"] == 13
    assert r["skipped_resnet1d"] == ["blocks.0.shortcut.0", "blocks.1.shortcut.0"]
    assert r["architectures_resnet1d"] == 20 ** 9 and r["architectures_wrn"] == 16 ** 13
    assert r["supernet_params_resnet1d"] > 4 * r["plain_params_resnet1d"]
    assert r["supernet_params_wrn"] > 10 * r["plain_params_wrn"]
    assert r["chosen"] == r["preferred"] == {"blocks.0.conv1": [11, 7], "blocks.2.conv3": [3, 15]}
    assert r["supernet_output_shape"] == r["discretized_output_shape"] == [4, 10]
    # the discretised network's extra parameters are all in the searched layers' kernels
    assert r["extra_params"] == r["extra_params_from_layers"] == r["discretized_params"] - r["plain_params_resnet1d"]
    assert r["shared_fields_1d"] == {"7": [[3, 3], [7, 1]], "15": [[3, 7], [15, 1]], "19": [[7, 3], [19, 1]],
                                     "31": [[3, 15], [11, 3]], "43": [[7, 7], [15, 3]]}


def _check_02(r: Dict[str, Any]) -> None:
    for key in ("max_abs_error_1d", "max_abs_error_2d", "dashconv_error_1d", "dashconv_error_2d",
                "notebook_vs_ops_1d", "notebook_vs_ops_2d"):
        assert r[key] < 1e-10, key  # the notebook's aggregation == ops.aggregate_kernel == DashConv, in float64
    assert r["output_scale_1d"] > 1 and r["float32_error_1d"] < 1e-5 * r["output_scale_1d"]
    assert (r["kernel_size_1d"], r["kernel_size_2d"]) == (271, 121)
    # candidates in order of receptive field: S grows with M
    assert [(row["candidates"], row["S"], row["taps"]) for row in r["cost"]] == [(1, 3, 3), (4, 11, 24),
                                                                                 (12, 43, 104), (20, 271, 220)]
    assert all(row[k] > 0 for row in r["cost"] for k in ("mixed_results_ms", "aggregate_direct_ms"))
    assert "aggregate_fft_ms" not in r["cost"][0]  # the FFT comes in notebook 04
    assert r["taps_ratio"] == pytest.approx(271 / 220)
    # 20 convolutions against 1, and a kernel of 271 taps against 3: both grow
    assert r["growth_mixed_results"] > 3 and r["growth_aggregate_direct"] > 3
    assert r["aggregate_direct_over_mixed_results"] > 0


def _check_03(r: Dict[str, Any]) -> None:
    # the notebook's Kronecker dilation copies the same numbers as ops.dilate's two methods
    assert r["kron_vs_scatter_1d"] == 0 and r["kron_vs_scatter_2d"] == 0 and r["notebook_vs_ops_kron"] == 0
    assert r["conv_error_1d"] < 1e-10 and r["conv_error_2d"] < 1e-10 and r["output_scale_2d"] > 1
    assert r["cases"] == 5 * 4 + 4 * 4
    assert r["example"] == [1, 0, 2, 0, 3]
    assert [(row["d"], row["field"]) for row in r["cost"]] == [(1, 9), (3, 25), (7, 57), (15, 121)]
    assert all(row["kron_intermediate"] >= row["output"] for row in r["cost"])
    assert all(row["conv_ms"] > 0 for row in r["cost"])  # the convolution timed beside the building
    assert r["build_over_conv_scatter"] > 0 and r["build_over_conv_kron"] > 0


def _check_04(r: Dict[str, Any]) -> None:
    assert r["wrap_error_no_pad"] > 1e-3 and r["wrap_wrong_outputs_no_pad"] == 14  # 7 wrapped outputs per end
    assert r["exact_from_pad"] == 7  # (K - 1) / 2 for K = 15
    assert [row["fast_length"] for row in r["fast_lengths"]] == [100, 1000, 1080, 1125, 2160]
    crop = r["crop"]
    assert (crop["kernel_cropped"], crop["fft_size_cropped"], crop["fft_size_full"]) == (15, 15, 72)
    assert crop["crop_error"] < 1e-10 and crop["fft_error"] < 1e-10
    assert r["fft_max_error"] < 1e-10 and r["fft_errors"]["output_scale"] > 1
    assert [row["kernel_size"] for row in r["crossover_rows"]] == [3, 15, 63, 127]
    assert r["crossover"] is None or r["crossover"] in (3, 15, 63, 127)
    assert r["growth_direct"] > r["growth_fft"]  # direct convolution grows with K, the FFT hardly
    assert [row["size"] for row in r["auto"]] == [32, 16, 8]
    assert {row["choice"] for row in r["auto"]} <= {"fft", "direct"}
    # the notebook's textbook FFT convolution and DFT-table tap spectrum equal dashkit's fast ones in float64
    for key in ("textbook_vs_circular", "textbook_vs_fft_conv", "textbook_vs_direct", "tap_spectrum_vs_rfft",
                "tap_spectrum_vs_spectral"):
        assert r[key] < 1e-10, key
    assert (r["tap_offsets"], r["tap_kernel_size"]) == (61, 271)  # the 1D space's W: 61 non-zero taps of 271
    assert r["kernel_transform_share"] == pytest.approx(0.5)  # C^2 / (2 B C + C^2) with B = 4, C = 8
    assert [(row["n"], row["offsets per axis"]) for row in r["tables_cheaper"]] == [(1000, 61), (32, 27), (16, 21),
                                                                                   (8, 13)]
    assert (r["payoff"]["candidates"], r["payoff"]["S"]) == (20, 271)
    assert all(r["payoff"][k] > 0 for k in ("mixed_results_ms", "aggregate_direct_ms", "aggregate_fft_ms"))


def _check_08(r: Dict[str, Any]) -> None:
    assert r["sections"] == ["1d"] and r["rounds"] == 1 and r["batch"] == 4
    for key in ("1d_plain_ms", "1d_depthwise_fft_over_plain", "1d_full_fft_over_plain",
                "1d_depthwise_auto_over_plain", "1d_full_auto_over_plain", "1d_full_mixed_results_over_plain"):
        assert r[key] > 0, key
    # mixed results run one convolution per candidate (16): far slower than one FFT convolution
    assert r["1d_full_mixed_results_over_fft"] > 1 and r["1d_depthwise_mixed_results_over_fft"] > 1
    assert r["targets_total"] >= 1 and 0 <= r["targets_met"] <= r["targets_total"]
    rows = {row["figure"]: row for row in r["comparison"]}
    assert rows["1D full supernet / plain"]["DASH code"] == 5.0
    assert rows["1D full supernet / plain"]["this machine"] == pytest.approx(r["1d_full_auto_over_plain"], abs=0.01)
    assert rows["2D supernet / plain"]["this machine"] is None  # not measured in smoke
    # exercise 1: one layer, mixed results (M convolutions) against one FFT convolution for M = 1, 4, 16
    assert sorted(r["mixing_ratio"], key=int) == ["1", "4", "16"] and all(v > 0 for v in r["mixing_ratio"].values())
    assert r["mixing_ratio"]["16"] > 2 * r["mixing_ratio"]["1"]  # mixed results fall behind as M grows
    # exercise 2: direct (kernel cropped to min(S, 2n - 1) taps) against FFT as the input grows, S = 121
    assert [(row["n"], row["taps kept"]) for row in r["crossing"]] == [(8, 15), (32, 63), (128, 121)]
    # whether the FFT's advantage grew while the kernel is cropped is read from the timings (noisy at these sizes),
    # and the notebook's statement must follow them
    assert r["cropped_advantage_grew"] == (r["crossing"][1]["direct / FFT"] > r["crossing"][0]["direct / FFT"])
    assert r["fft_faster_from"] in (None, 8, 32, 128)
    if r["fft_faster_from"] is not None:
        assert all(row["direct / FFT"] > 1 for row in r["crossing"] if row["n"] >= r["fft_faster_from"])


def _recorded_something(r: Dict[str, Any]) -> None:
    assert isinstance(r, dict) and r, "the notebook recorded no results"


def _check_10(r: Dict[str, Any]) -> None:
    # two CPU processes under torchrun ran one search + retrain; every rank's agreement is checked inside the run
    assert r["nproc"] == 2 and r["launched"]
    assert "torch.distributed.run" in r["command"] and "--nproc_per_node" in r["command"]
    assert len(r["architecture"]) == 9  # ResNet1D's nine searched convolutions, each with a (k, d)
    assert r["dash"] < r["chance"] - 5, (r["dash"], r["chance"])  # clearly better than guessing
    # exercise 1 read every rank's alpha (DASHKIT_RANK_DUMP): the same bits on both, for the one search epoch
    assert r["alpha_same_on_every_rank"] is True and r["search_epochs_dumped"] == 1


@dataclass(frozen=True)
class NotebookCase:
    """How one notebook is run in CI.

    Attributes:
        name: the notebook's file name without ``.ipynb``.
        check: asserts on the dict the notebook recorded.
        params: parameters beyond ``smoke=True``, ``results_path`` and ``seed=0`` (which every run gets).
        figures: the least number of figures the executed notebook must show.
        cell_timeout: seconds one cell may take.
        total_timeout: seconds the whole run may take (also catches a kernel that hangs after the last cell).
        covered_by: a test file (in ``tests/``) that runs and checks this notebook itself; while it exists the
            notebook is not run a second time here (its static checks still are).
    """

    name: str
    check: Callable[[Dict[str, Any]], None] = _recorded_something
    params: Mapping[str, Any] = field(default_factory=dict)
    figures: int = 0
    cell_timeout: int = 300
    total_timeout: int = 600
    covered_by: str = ""


CASES: Dict[str, NotebookCase] = {c.name: c for c in [
    NotebookCase("01_search_space", _check_01, figures=3),
    NotebookCase("02_mixed_weights", _check_02, figures=3),
    NotebookCase("03_kronecker_dilation", _check_03, figures=1),
    NotebookCase("04_fourier_convolution", _check_04, figures=3),
    NotebookCase("08_speed", _check_08, figures=1),
    NotebookCase("10_scale_out", _check_10),
    NotebookCase("04b_the_search", covered_by="test_notebook_04b.py"),
] + [NotebookCase(name, covered_by="test_notebooks_pipeline.py") for name in (
    "00_quickstart", "05_search_tune_retrain", "06_bring_your_own_data", "07_results_explorer", "09_nas_bench_360")]}


def _present() -> List[str]:
    return sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))


def _all_cases() -> List[NotebookCase]:
    names = sorted(set(_present()) | set(CASES))
    return [CASES.get(name, NotebookCase(name)) for name in names]


def _cases_to_run() -> List[NotebookCase]:
    here = Path(__file__).resolve().parent
    return [c for c in _all_cases() if not (c.covered_by and (here / c.covered_by).exists())]


def _read(name: str) -> Any:
    nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat (pip install nbformat)")
    return nbformat.read(str(NOTEBOOKS / f"{name}.ipynb"), as_version=4)


def _papermill() -> Any:
    return pytest.importorskip("papermill", reason="the notebook tests need papermill (pip install -e .[dev])")


# ------------------------------------------------------------------------------------------- static checks

def test_every_test_entry_has_its_notebook():
    missing = sorted(set(CASES) - set(_present()))
    assert not missing, f"CASES names notebooks that are not in notebooks/: {missing}"


@pytest.mark.parametrize("name", _present())
def test_committed_notebook_has_no_outputs(name):
    book = _read(name)
    dirty = [i for i, c in enumerate(book.cells)
             if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{name}.ipynb: code cells {dirty} hold outputs or execution counts; commit notebooks "
                       f"cleared (Kernel > Restart and Clear Outputs, or nbstripout)")
    assert "papermill" not in book.metadata, f"{name}.ipynb is an executed copy (papermill metadata); commit the source"


@pytest.mark.parametrize("name", _present())
def test_notebook_has_one_parameters_cell_and_kernel_python3(name):
    book = _read(name)
    assert book.metadata.get("kernelspec", {}).get("name") == "python3", \
        f"{name}.ipynb: kernelspec name must be 'python3', got {book.metadata.get('kernelspec')!r}"
    tagged = [i for i, c in enumerate(book.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}.ipynb: expected exactly one cell tagged 'parameters', found {len(tagged)}"
    code = [i for i, c in enumerate(book.cells) if c.cell_type == "code"]
    assert tagged[0] == code[0], f"{name}.ipynb: the parameters cell must be the first code cell"


@pytest.mark.parametrize("name", _present())
def test_parameters_are_typed_and_commented(name):
    declared = _papermill().inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    missing = [p for p in REQUIRED_PARAMETERS if p not in declared]
    assert not missing, f"{name}.ipynb must declare the parameters {missing} (the test harness passes them)"
    assert declared["smoke"]["inferred_type_name"] == "bool" and declared["smoke"]["default"] == "False"
    untyped = [p for p, v in declared.items() if v["inferred_type_name"] in ("None", "")]
    uncommented = [p for p, v in declared.items() if not v["help"].strip()]
    assert not untyped and not uncommented, (f"{name}.ipynb: parameters without a type {untyped} or without a "
                                             f"comment {uncommented}; write `name: type = default  # what it is`")
    # papermill skips a line it cannot parse (with only a log line), and then neither --help-notebook nor the
    # unknown-parameter check knows the name: every name the cell assigns must be one papermill read
    cell = next(c for c in _read(name).cells if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = [(node.target if isinstance(node, ast.AnnAssign) else node.targets[0]).id
                for node in ast.parse(cell.source).body if isinstance(node, (ast.AnnAssign, ast.Assign))]
    unread = [n for n in assigned if n not in declared]
    assert not unread, (f"{name}.ipynb: papermill cannot parse the parameters {unread} (a comment holding '=' or "
                        f"quotes confuses its line parser); rephrase their lines")


@pytest.mark.parametrize("name", _present())
def test_case_parameters_exist(name):
    # papermill injects an unknown name without complaint and the notebook runs on its defaults: check here
    case = CASES.get(name, NotebookCase(name))
    declared = _papermill().inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb"))
    unknown = sorted(set(case.params) - set(declared))
    assert not unknown, f"{name}: parameters {unknown} are not declared; declared: {sorted(declared)}"


# ----------------------------------------------------------------------------------------------- papermill

def _require_python3_kernel() -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("python3")
    except NoSuchKernel:
        pytest.fail("no Jupyter kernel named 'python3' in this environment: install ipykernel here "
                    "(pip install ipykernel), which registers it for the interpreter that runs the tests")


def _figures(book: Any) -> int:
    return sum(1 for c in book.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))


@pytest.mark.notebook
@pytest.mark.parametrize("case", _cases_to_run(), ids=lambda c: c.name)
def test_notebook_runs_and_records(case, tmp_path, monkeypatch):
    pm = _papermill()
    path = NOTEBOOKS / f"{case.name}.ipynb"
    if not path.exists():
        pytest.skip(f"{path.name} is not written yet")
    _require_python3_kernel()
    declared = pm.inspect_notebook(str(path))
    params: Dict[str, Any] = {"smoke": True, "results_path": str(tmp_path / f"{case.name}.json")}
    if "seed" in declared:
        params["seed"] = 0
    params.update(case.params)
    unknown = sorted(set(params) - set(declared))
    assert not unknown, f"{case.name}: parameters {unknown} are not declared; declared: {sorted(declared)}"
    kernel_environment(monkeypatch)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / path.name
    with _deadline(case.total_timeout, f"{path.name} (smoke)"):
        pm.execute_notebook(str(path), str(out), parameters=params, kernel_name="python3", cwd=str(tmp_path),
                            execution_timeout=case.cell_timeout, progress_bar=False, log_output=False)
    results = nb.load_results(params["results_path"])
    case.check(results)
    executed = _read_executed(out)
    assert _figures(executed) >= case.figures, \
        f"{case.name}: {_figures(executed)} figures shown, expected at least {case.figures} (see {out})"


def _read_executed(path: Path) -> Any:
    import nbformat

    return nbformat.read(str(path), as_version=4)


# ----------------------------------------------------------------------------------------- dashkit.notebook

def test_record_round_trip_with_numpy_and_torch_values(tmp_path):
    np = pytest.importorskip("numpy")
    torch = pytest.importorskip("torch")
    target = tmp_path / "sub" / "r.json"
    path = nb.record(target, a=np.float64(0.5), b=torch.tensor(3), c=np.arange(3), d=torch.tensor([[1.5, 2.0]]),
                     e={"x": (1, np.int64(2))}, f=None, g="text", h=True, i=2 ** 70)
    assert path == target
    assert nb.load_results(target) == {"a": 0.5, "b": 3, "c": [0, 1, 2], "d": [[1.5, 2.0]], "e": {"x": [1, 2]},
                                       "f": None, "g": "text", "h": True, "i": 2 ** 70}
    assert json.loads(target.read_text())["e"] == {"x": [1, 2]}  # plain JSON on disk
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]  # no temporary file left behind


def test_record_bare_name_goes_to_results_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = nb.record("02_mixed_weights", speedup=4.25)
    assert path == Path("results") / "02_mixed_weights.json"
    assert nb.load_results(tmp_path / "results" / "02_mixed_weights.json") == {"speedup": 4.25}
    assert nb.load_results("02_mixed_weights") == {"speedup": 4.25}


def test_record_replaces_unless_merge(tmp_path):
    target = tmp_path / "r.json"
    nb.record(target, a=1, b=2)
    nb.record(target, b=3)
    assert nb.load_results(target) == {"b": 3}
    nb.record(target, merge=True, c=4)
    assert nb.load_results(target) == {"b": 3, "c": 4}


@pytest.mark.parametrize("kw, exc, match", [
    ({"x": math.nan}, ValueError, r"x = nan: results must be finite numbers"),
    ({"x": [1.0, math.inf]}, ValueError, r"x\[1\] = inf: results must be finite numbers"),
    ({"x": object()}, TypeError, r"x = <object object .* of type object cannot be recorded; accepted: None"),
    ({"x": {1: 2}}, TypeError, r"x has non-str keys \[1\]; JSON objects need str keys"),
    ({"x": {"y": {1, 2}}}, TypeError, r"x\['y'\] = \{1, 2\} of type set cannot be recorded"),
])
def test_record_rejects_what_json_cannot_hold(tmp_path, kw, exc, match):
    target = tmp_path / "r.json"
    with pytest.raises(exc, match=match):
        nb.record(target, **kw)
    assert not target.exists() and not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("name, match", [
    ("", r"name_or_path must not be empty, got ''"),
    ("runs/out", r"name_or_path = 'runs/out': expected a bare notebook name .* or a path ending in '.json'"),
    ("out.txt", r"name_or_path = 'out.txt': expected a bare notebook name"),
])
def test_record_rejects_bad_names(name, match):
    with pytest.raises(ValueError, match=match):
        nb.record(name, a=1)


def test_record_needs_results_and_load_reports_missing(tmp_path):
    with pytest.raises(ValueError, match=r"record\(\) needs at least one result"):
        nb.record(tmp_path / "r.json")
    with pytest.raises(FileNotFoundError, match=r"no results file at .*nothing.json"):
        nb.load_results(tmp_path / "nothing.json")
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"must hold a JSON object, got list"):
        nb.load_results(tmp_path / "bad.json")
    with pytest.raises(TypeError, match=r"name_or_path must be a str or a path, got 3"):
        nb.results_file(3)


def test_table_rounds_and_selects_columns():
    df = nb.table([{"k": 3, "ms": 1.23456, "x": "a"}, {"k": 5, "ms": 2.0, "x": "b"}], columns=["ms", "k"], digits=2)
    assert list(df.columns) == ["ms", "k"] and df["ms"].tolist() == [1.23, 2.0]
    assert nb.table([{"err": 3.2e-15}], digits=None)["err"].tolist() == [3.2e-15]  # tiny errors kept
    assert nb.table([{"err": 3.2e-15}])["err"].tolist() == [0.0]
    with pytest.raises(ValueError, match=r"columns \['nope'\] are not in the rows; available: \['k', 'ms', 'x'\]"):
        nb.table([{"k": 3, "ms": 1.0, "x": "a"}], columns=["nope"])
    with pytest.raises(TypeError, match=r"rows must be a sequence of dicts, got dict"):
        nb.table({"k": 3})


def test_setup_seeds_every_generator():
    torch = pytest.importorskip("torch")
    import random

    import numpy as np

    info = nb.setup(seed=7)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    nb.setup(seed=7)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
    assert info["seed"] == 7 and info["threads"] >= 1 and info["torch"] == torch.__version__
    with pytest.raises(TypeError, match=r"seed must be an int, got '7'"):
        nb.setup(seed="7")
    with pytest.raises(ValueError, match=r"threads must be None or a positive int, got 0"):
        nb.setup(threads=0)


def test_show_outside_a_notebook_does_nothing():
    from matplotlib.figure import Figure

    nb.show(Figure())  # no kernel: nothing to draw into, no error
    with pytest.raises(TypeError, match=r"fig must be a matplotlib Figure, got str"):
        nb.show("figure")
