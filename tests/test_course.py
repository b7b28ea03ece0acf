"""The course: every lesson's shape (opening, closing, exercises with asserted solutions), the student edition, and
the student edition of every notebook executed headless by papermill (the teacher's edition, with its solutions, is
executed by tests/test_notebooks.py and tests/test_notebooks_pipeline.py)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Dict

import pytest
from nbharness import deadline, kernel_environment

from dashkit import course

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "artifacts" / "student"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
# notebooks whose own test file runs their student edition (and compares it with the teacher's)
STUDENT_RUN_ELSEWHERE = {"04b_the_search": "test_notebook_04b.py"}


# ------------------------------------------------------------------------------------------- a tiny lesson
def _md(text: str, tags=()) -> Dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {"tags": list(tags)} if tags else {}, "source": text}


def _code(text: str, tags=()) -> Dict[str, Any]:
    return {"cell_type": "code", "metadata": {"tags": list(tags)} if tags else {}, "source": text,
            "outputs": [{"output_type": "stream", "name": "stdout", "text": "x\n"}], "execution_count": 3}


def lesson() -> Dict[str, Any]:
    book = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        _md("# 02 · Mixed weights\n\n**What you will learn.** Why one convolution is enough."),
        _code("smoke: bool = False\nresults_path: str = \"\"", tags=["parameters"]),
        _md("### Exercise 1: predict the ratio\n\nPredict it."),
        _code("my_ratio = None  # your prediction", tags=["exercise"]),
        _code("ratio = 4\nassert ratio == 2 * 2", tags=["solution"]),
        _md("### Exercise 2: derive N\n\nDerive it."),
        _code("my_n = None", tags=["exercise"]),
        _code("n = 7", tags=["solution"]),
        _code("assert n == 7", tags=["solution"]),
        _md("## What you learned\n\n- one thing\n\n**What to try next.** Another."),
    ]}
    for i, cell in enumerate(book["cells"]):
        cell["id"] = f"cell-{i}"
    return book


def test_a_lesson_of_the_right_shape_passes():
    assert course.check_lesson(lesson()) == []
    found = course.exercises(lesson())
    assert [(e.number, e.statement, e.exercise, e.solutions) for e in found] == [(1, 2, 3, [4]), (2, 5, 6, [7, 8])]


@pytest.mark.parametrize("change, problem", [
    (lambda c: c[0].update(source="# 02 · Mixed weights\n\nNo promise."), "What you will learn"),
    (lambda c: c[0].update(source="Mixed weights\n\n**What you will learn.** x"), "'# NN · Title'"),
    (lambda c: c.pop(), "the last cell must be markdown starting '## What you learned'"),
    (lambda c: c[-1].update(source="## What you learned\n\n- one thing"), "What to try next"),
    (lambda c: c[4].update(source="ratio = 4"), "its solution asserts nothing"),
    (lambda c: c[3]["metadata"].update(tags=[]), "no code cell tagged 'exercise'"),
    (lambda c: c[4]["metadata"].update(tags=[]), "Exercise 1: predict the ratio'"),
    (lambda c: c[5].update(source="### Exercise 3: derive N"), "numbered 1, 2, ... in order (expected 2)"),
    (lambda c: c[5].update(source="### Not an exercise"), "1 exercise(s)"),
    (lambda c: c.insert(1, _code("x = 1", tags=["solution"])), "belongs to no '### Exercise N:' section"),
    (lambda c: c[1]["metadata"]["tags"].append("solution"), "tagged both 'parameters' and 'solution'"),
])
def test_each_broken_rule_is_named(change, problem):
    book = lesson()
    change(book["cells"])
    problems = course.check_lesson(book)
    assert any(problem in p for p in problems), problems


def test_student_edition_drops_the_solutions_only():
    book = lesson()
    before = copy.deepcopy(book)
    student = course.student_edition(book)
    assert book == before  # the teacher's edition is untouched
    assert [course.source(c) for c in student["cells"] if c["cell_type"] == "code"] == [
        course.source(c) for c in book["cells"] if c["cell_type"] == "code" and "solution" not in course.tags(c)]
    assert not any("solution" in course.tags(c) for c in student["cells"])
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in student["cells"] if c["cell_type"] == "code")
    statements = [course.source(c) for c in student["cells"] if course.source(c).startswith("### Exercise")]
    assert len(statements) == 2 and all(s.endswith("*The solution is in the teacher's edition of this notebook.*")
                                        for s in statements)
    assert len(student["cells"]) == len(book["cells"]) - 3


def test_student_edition_refuses_what_is_not_a_lesson():
    with pytest.raises(TypeError, match="expected a notebook as a dict with a 'cells' list"):
        course.student_edition({"cells": "x"})
    book = lesson()
    book["cells"][1]["metadata"]["tags"].append("solution")
    with pytest.raises(ValueError, match="would lose the parameters cell"):
        course.student_edition(book)


def test_write_student_edition_and_the_command(tmp_path, capsys):
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "02_mixed.ipynb").write_text(json.dumps(lesson()))
    bad = lesson()
    bad["cells"].pop()
    (teacher / "03_bad.ipynb").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="is the teacher's folder itself"):
        course.write_student_edition(teacher, teacher)
    with pytest.raises(FileNotFoundError, match=r"no notebook \['04_none.ipynb'\].*it has: 02_mixed, 03_bad"):
        course.lessons(teacher, ["04_none"])
    assert course.main(["student", str(tmp_path / "student"), "02_mixed", "--notebooks", str(teacher)]) == 0
    written = json.loads((tmp_path / "student" / "02_mixed.ipynb").read_text())
    assert written == course.student_edition(lesson())
    assert course.main(["check", "--notebooks", str(teacher)]) == 1
    printed = capsys.readouterr().out
    assert "02_mixed.ipynb: ok" in printed and "03_bad.ipynb: the last cell must be markdown" in printed


# ------------------------------------------------------------------------------------- the real notebooks
@pytest.mark.parametrize("name", NAMES)
def test_every_notebook_is_a_lesson(name):
    book = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text(encoding="utf-8"))
    assert course.check_lesson(book) == []


def _student_parameters(name: str, tmp_path: Path) -> Dict[str, Any]:
    """The smoke parameters each notebook's own test gives it (the student edition runs on the same)."""
    from test_notebooks import CASES
    from test_notebooks_pipeline import LEARNS

    pipeline = {
        "00_quickstart": dict(task="mnist1d", preset="smoke", overrides=LEARNS),
        "05_search_tune_retrain": dict(task="mnist1d", preset="smoke", overrides=LEARNS),
        "06_bring_your_own_data": dict(preset="smoke", overrides=LEARNS),
        "07_results_explorer": dict(demo_root=str(tmp_path / "demo_runs")),
        "09_nas_bench_360": {},
    }
    if name in pipeline:
        return pipeline[name]
    return dict(CASES[name].params) if name in CASES else {}


@pytest.mark.notebook
@pytest.mark.parametrize("name", [n for n in NAMES if n not in STUDENT_RUN_ELSEWHERE])
def test_student_edition_runs(name, tmp_path, monkeypatch):
    papermill = pytest.importorskip("papermill", reason="the notebook tests need papermill (pip install -e .[dev])")
    (path,) = course.write_student_edition(tmp_path / "student", NOTEBOOKS, [name])
    declared = papermill.inspect_notebook(str(path))
    params = {"smoke": True, "results_path": str(tmp_path / f"{name}.json"), **_student_parameters(name, tmp_path)}
    if "seed" in declared:
        params["seed"] = 0
    unknown = sorted(set(params) - set(declared))
    assert not unknown, f"{name}: parameters {unknown} are not declared; declared: {sorted(declared)}"
    kernel_environment(monkeypatch)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    out = ARTIFACTS / path.name
    with deadline(600, f"{name} (student edition, smoke)"):
        papermill.execute_notebook(str(path), str(out), parameters=params, kernel_name="python3", cwd=str(tmp_path),
                                   execution_timeout=300, progress_bar=False, log_output=False)
    executed = json.loads(out.read_text(encoding="utf-8"))
    assert not any("solution" in course.tags(c) for c in executed["cells"])
    assert not [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert json.loads(Path(params["results_path"]).read_text()), f"{name}: the student edition recorded nothing"


@pytest.mark.notebook
def test_run_course_collects_results_and_times_and_reports_a_failure(tmp_path, monkeypatch, capsys):
    pytest.importorskip("papermill", reason="running the course needs papermill (pip install -e .[dev])")
    kernel_environment(monkeypatch)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    book = lesson()
    book["metadata"] = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                        "language_info": {"name": "python"}}
    for cell in book["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    book["cells"].insert(-1, dict(id="record", **_code("from dashkit import notebook as nb\nnb.record(results_path, smoke=smoke, n=n if "
                                   "'n' in dir() else None)")))
    for cell in book["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
    (teacher / "02_good.ipynb").write_text(json.dumps(book))
    broken = copy.deepcopy(book)
    broken["cells"][3]["source"] = "raise RuntimeError('the student broke it')"
    (teacher / "03_broken.ipynb").write_text(json.dumps(broken))
    assert course.main(["run", str(tmp_path / "out"), "--notebooks", str(teacher), "-p", "smoke", "True",
                        "-p", "not_declared", "1"]) == 1
    report = json.loads((tmp_path / "out" / "course.json").read_text())
    good, bad = report["notebooks"]["02_good"], report["notebooks"]["03_broken"]
    assert good["error"] is None and good["results"] == {"smoke": True, "n": 7} and good["seconds"] > 0
    assert "the student broke it" in bad["error"] and bad["results"] is None
    assert report["seconds"] == pytest.approx(good["seconds"] + bad["seconds"], abs=0.11)
    # the student edition has no solution, so n is never defined
    student = course.run_course(tmp_path / "student_out", teacher, ["02_good"], student=True)
    assert student["notebooks"]["02_good"]["results"] == {"smoke": False, "n": None}
