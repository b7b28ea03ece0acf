"""The course: the teacher's edition of the notebooks (as committed) and the student edition built from it.

Every notebook in ``notebooks/`` is one lesson of the course, written to one shape that `check_lesson` enforces:

- the first cell is markdown, starts ``# NN · Title`` and has a paragraph starting ``**What you will learn.**``;
- the last cell is markdown, starts ``## What you learned`` and has a paragraph starting ``**What to try next.**``;
- at least two exercises. An exercise is a markdown cell whose first line starts ``### Exercise N:`` (N = 1, 2, ...,
  in order), then a code cell tagged ``exercise`` that the student edits and that runs as it is, then one or more
  code cells tagged ``solution`` that compute the answer and ``assert`` it.

The **student edition** is the same notebook without the cells tagged ``solution`` (and without outputs). Nothing
after a solution may depend on a name only the solution defines, so both editions execute from top to bottom; the
test suite runs both with papermill.

Build the student edition of the whole course (or of some lessons) from a shell::

    python -m dashkit.course student student_notebooks/            # every notebook in notebooks/
    python -m dashkit.course student out/ 02_mixed_weights 04_fourier_convolution --notebooks notebooks/
    python -m dashkit.course check                                  # every lesson has the course's shape

Run the whole course headless (papermill), one notebook after another, with the same parameters for every notebook
that declares them, and collect each notebook's recorded results and wall time into one JSON file::

    python -m dashkit.course run runs/course -p seed 1                # -> runs/course/course.json
    python -m dashkit.course run runs/course --student -p smoke True  # the student edition, in seconds

Notebooks are handled as plain JSON (nbformat 4), so this module needs neither nbformat nor Jupyter.
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

__all__ = ["SOLUTION_TAG", "EXERCISE_TAG", "Exercise", "tags", "source", "exercises", "check_lesson",
           "student_edition", "write_student_edition", "lessons", "run_course", "main"]

SOLUTION_TAG = "solution"
EXERCISE_TAG = "exercise"
OPENING = "**What you will learn.**"
CLOSING_HEADING = "## What you learned"
CLOSING_NEXT = "**What to try next.**"
_EXERCISE_HEADING = re.compile(r"^###\s+Exercise\s+(\d+)\s*:")
_TITLE = re.compile(r"^#\s+\w+\s+·\s+\S")


@dataclass(frozen=True)
class Exercise:
    """One exercise of a lesson: where its statement, the student's cell and the solution cells are.

    Attributes:
        number: N of ``### Exercise N:``.
        title: the heading's first line.
        statement: index of the markdown cell that states it.
        exercise: index of the cell tagged ``exercise`` (None when missing).
        solutions: indices of the cells tagged ``solution`` that follow it.
    """

    number: int
    title: str
    statement: int
    exercise: Optional[int]
    solutions: List[int]


def _cells(notebook: Any, where: str = "notebook") -> List[Dict[str, Any]]:
    if not isinstance(notebook, dict) or not isinstance(notebook.get("cells"), list):
        raise TypeError(f"{where}: expected a notebook as a dict with a 'cells' list (nbformat 4 JSON), "
                        f"got {type(notebook).__name__}")
    return notebook["cells"]


def tags(cell: Dict[str, Any]) -> List[str]:
    """The cell's tags (``metadata.tags``), [] when it has none."""
    return list(cell.get("metadata", {}).get("tags", []) or [])


def source(cell: Dict[str, Any]) -> str:
    """The cell's source as one string (nbformat keeps it as a string or a list of lines)."""
    text = cell.get("source", "")
    return "".join(text) if isinstance(text, list) else str(text)


def exercises(notebook: Dict[str, Any]) -> List[Exercise]:
    """The exercises of a lesson, in order: each ``### Exercise N:`` heading with its cells.

    The cells of an exercise are those after its heading and before the next markdown heading of any level.
    """
    cells = _cells(notebook)
    found: List[Exercise] = []
    for i, cell in enumerate(cells):
        if cell.get("cell_type") != "markdown":
            continue
        first = source(cell).lstrip().split("\n", 1)[0]
        m = _EXERCISE_HEADING.match(first)
        if not m:
            continue
        exercise, solutions = None, []
        for j in range(i + 1, len(cells)):
            c = cells[j]
            if c.get("cell_type") == "markdown" and source(c).lstrip().startswith("#"):
                break
            if EXERCISE_TAG in tags(c) and exercise is None:
                exercise = j
            if SOLUTION_TAG in tags(c):
                solutions.append(j)
        found.append(Exercise(int(m.group(1)), first, i, exercise, solutions))
    return found


def check_lesson(notebook: Dict[str, Any], min_exercises: int = 2) -> List[str]:
    """What keeps a notebook from the course's shape (see the module docstring); [] when it has it.

    Args:
        notebook: the notebook as JSON (``json.load`` of the .ipynb).
        min_exercises: the least number of exercises.
    """
    cells = _cells(notebook)
    problems: List[str] = []
    if not cells:
        return ["the notebook has no cells"]
    first, last = cells[0], cells[-1]
    if first.get("cell_type") != "markdown" or not _TITLE.match(source(first).lstrip()):
        problems.append("the first cell must be markdown starting '# NN · Title'")
    elif OPENING not in source(first):
        problems.append(f"the first cell has no paragraph starting {OPENING!r}")
    if last.get("cell_type") != "markdown" or not source(last).lstrip().startswith(CLOSING_HEADING):
        problems.append(f"the last cell must be markdown starting {CLOSING_HEADING!r}")
    elif CLOSING_NEXT not in source(last):
        problems.append(f"the last cell has no paragraph starting {CLOSING_NEXT!r}")
    found = exercises(notebook)
    if len(found) < min_exercises:
        problems.append(f"{len(found)} exercise(s) ('### Exercise N:' headings); the course asks for at least "
                        f"{min_exercises}")
    for n, ex in enumerate(found, start=1):
        if ex.number != n:
            problems.append(f"{ex.title!r}: exercises must be numbered 1, 2, ... in order (expected {n})")
        if ex.exercise is None:
            problems.append(f"{ex.title!r}: no code cell tagged {EXERCISE_TAG!r} for the student")
        elif cells[ex.exercise].get("cell_type") != "code":
            problems.append(f"{ex.title!r}: the cell tagged {EXERCISE_TAG!r} must be a code cell")
        if not ex.solutions:
            problems.append(f"{ex.title!r}: no cell tagged {SOLUTION_TAG!r}")
        elif not any(cells[j].get("cell_type") == "code" and re.search(r"\bassert\b", source(cells[j]))
                     for j in ex.solutions):
            problems.append(f"{ex.title!r}: its solution asserts nothing (a code cell tagged {SOLUTION_TAG!r} with "
                            f"an assert)")
    tagged = {i for i, c in enumerate(cells) if SOLUTION_TAG in tags(c)}
    owned = {j for ex in found for j in ex.solutions}
    for i in sorted(tagged - owned):
        problems.append(f"cell {i} is tagged {SOLUTION_TAG!r} but belongs to no '### Exercise N:' section")
    for i, c in enumerate(cells):
        if SOLUTION_TAG in tags(c) and "parameters" in tags(c):
            problems.append(f"cell {i} is tagged both 'parameters' and {SOLUTION_TAG!r}")
    return problems


def student_edition(notebook: Dict[str, Any]) -> Dict[str, Any]:
    """The student edition of a lesson: a copy without the cells tagged ``solution`` and without outputs.

    The input is not changed. Each exercise's statement gains a line saying that its solution is in the teacher's
    edition.

    Raises:
        TypeError: ``notebook`` is not a notebook's JSON.
        ValueError: a cell tagged ``solution`` is also the ``parameters`` cell (papermill needs it).
    """
    cells = _cells(notebook)
    for i, c in enumerate(cells):
        if SOLUTION_TAG in tags(c) and "parameters" in tags(c):
            raise ValueError(f"cell {i} is tagged both 'parameters' and {SOLUTION_TAG!r}: the student edition "
                             f"would lose the parameters cell")
    out = copy.deepcopy(notebook)
    statements = {ex.statement for ex in exercises(notebook) if ex.solutions}
    kept = []
    for i, cell in enumerate(out["cells"]):
        if SOLUTION_TAG in tags(cell):
            continue
        if cell.get("cell_type") == "code":
            cell["outputs"], cell["execution_count"] = [], None
        if i in statements:
            text = source(cell).rstrip("\n")
            cell["source"] = text + "\n\n*The solution is in the teacher's edition of this notebook.*"
        kept.append(cell)
    out["cells"] = kept
    return out


def lessons(folder: Any = "notebooks", names: Sequence[str] = ()) -> List[Path]:
    """The notebooks of the course in ``folder`` (sorted), or those named (with or without ``.ipynb``).

    Raises:
        FileNotFoundError: the folder, or a named notebook, does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"notebooks = {str(folder)!r}: no such folder")
    if not names:
        return sorted(folder.glob("*.ipynb"))
    paths = [folder / (n if n.endswith(".ipynb") else f"{n}.ipynb") for n in names]
    missing = [str(p.name) for p in paths if not p.is_file()]
    if missing:
        known = ", ".join(p.stem for p in sorted(folder.glob("*.ipynb")))
        raise FileNotFoundError(f"no notebook {missing} in {str(folder)!r}; it has: {known}")
    return paths


def write_student_edition(out_dir: Any, notebooks: Any = "notebooks", names: Sequence[str] = ()) -> List[Path]:
    """Write the student edition of each lesson to ``out_dir`` (same file names); returns the paths written.

    ``out_dir`` must not be the folder of the teacher's edition (that would overwrite the solutions).
    """
    sources = lessons(notebooks, names)
    out = Path(out_dir)
    if out.resolve() == Path(notebooks).resolve():
        raise ValueError(f"out_dir = {str(out_dir)!r} is the teacher's folder itself; write the student edition "
                         f"elsewhere")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sources:
        book = json.loads(path.read_text(encoding="utf-8"))
        target = out / path.name
        target.write_text(json.dumps(student_edition(book), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        written.append(target)
    return written


def _parameter(text: str) -> Any:
    """A command-line parameter value: JSON when it parses (``3``, ``true``, ``[1, 2]``), else the string."""
    lowered = {"True": True, "False": False, "None": None}
    if text in lowered:
        return lowered[text]
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def run_course(out_dir: Any, notebooks: Any = "notebooks", names: Sequence[str] = (), student: bool = False,
               parameters: Optional[Dict[str, Any]] = None, timeout: int = 1800) -> Dict[str, Any]:
    """Execute the lessons one after another with papermill; collect their results and wall times.

    Each notebook runs in ``out_dir/<name>/`` (its runs and results go there), its executed copy is
    ``out_dir/<name>.ipynb``, and ``out_dir/course.json`` gathers, per notebook, the seconds it took, the results it
    recorded (``dashkit.notebook.record``) and the error if it failed; a failing notebook does not stop the others.

    Args:
        out_dir: where everything goes.
        notebooks: the teacher's folder.
        names: the lessons to run (default: all, in order).
        student: run the student edition (solutions removed) instead of the teacher's.
        parameters: papermill parameters; each notebook gets those it declares (``results_path`` is set here).
        timeout: seconds one cell may take.

    Returns:
        The content of ``course.json``: ``{"notebooks": {name: {"seconds", "results", "error"}}, "seconds": total}``.
    """
    import time

    try:
        import papermill
    except ImportError as exc:  # pragma: no cover - papermill is in the notebooks and dev extras
        raise ImportError("running the course needs papermill: pip install -e '.[notebooks]'") from exc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sources = lessons(notebooks, names)
    if student:
        sources = write_student_edition(out / "student", notebooks, [p.stem for p in sources])
    report: Dict[str, Any] = {"student": student, "parameters": dict(parameters or {}), "notebooks": {}}
    total = 0.0
    for path in sources:
        name = path.stem
        workdir = out / name
        workdir.mkdir(parents=True, exist_ok=True)
        declared = papermill.inspect_notebook(str(path))
        given = {k: v for k, v in (parameters or {}).items() if k in declared}
        results = (workdir / "results" / f"{name}.json").resolve()
        given["results_path"] = str(results)
        start = time.perf_counter()
        error = None
        try:
            papermill.execute_notebook(str(path), str(out / f"{name}.ipynb"), parameters=given,
                                       kernel_name="python3", cwd=str(workdir), execution_timeout=timeout,
                                       progress_bar=False)
        except Exception as exc:  # a failing lesson is reported, and the course goes on
            error = f"{type(exc).__name__}: {str(exc)[:2000]}"
        seconds = time.perf_counter() - start
        total += seconds
        recorded = json.loads(results.read_text()) if results.is_file() else None
        report["notebooks"][name] = {"seconds": round(seconds, 1), "results": recorded, "error": error}
        print(f"{name}: {seconds:.1f} s" + (f"  FAILED {error.splitlines()[0]}" if error else ""), flush=True)
        (out / "course.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    report["seconds"] = round(total, 1)
    (out / "course.json").write_text(json.dumps(report, indent=1, default=str) + "\n")
    print(f"the course: {total / 60:.1f} min; results in {out / 'course.json'}")
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m dashkit.course student OUT [names...]``, ``check [names...]`` or ``run OUT [names...]``."""
    parser = argparse.ArgumentParser(prog="python -m dashkit.course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    student = sub.add_parser("student", help="write the student edition (solutions removed)")
    student.add_argument("out", help="folder for the student edition")
    check = sub.add_parser("check", help="check that every lesson has the course's shape")
    run = sub.add_parser("run", help="execute the lessons headless and collect their results and times")
    run.add_argument("out", help="folder for the executed notebooks, their runs and course.json")
    run.add_argument("--student", action="store_true", help="run the student edition")
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                     help="a papermill parameter for every notebook that declares it (VALUE as JSON, or a string)")
    for p in (student, check, run):
        p.add_argument("names", nargs="*", help="notebooks (default: all)")
        p.add_argument("--notebooks", default="notebooks", help="the teacher's folder (default: notebooks)")
    args = parser.parse_args(argv)
    if args.command == "run":
        report = run_course(args.out, args.notebooks, args.names, student=args.student,
                            parameters={k: _parameter(v) for k, v in args.parameter})
        return 1 if any(v["error"] for v in report["notebooks"].values()) else 0
    if args.command == "student":
        for path in write_student_edition(args.out, args.notebooks, args.names):
            print(path)
        return 0
    bad = 0
    for path in lessons(args.notebooks, args.names):
        problems = check_lesson(json.loads(path.read_text(encoding="utf-8")))
        bad += bool(problems)
        print(f"{path.name}: " + ("ok" if not problems else "; ".join(problems)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
