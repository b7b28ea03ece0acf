"""Small helpers for the teaching notebooks: record key results to JSON, show tables, set a notebook up.

Every notebook ends with one `record` call, which writes its key numbers to ``results/<notebook>.json`` (or to
the path given by the notebook's ``results_path`` parameter), so that tests and readers can check them without
parsing the notebook:

    >>> from dashkit import notebook as nb
    >>> path = nb.record(results_path or "02_mixed_weights", max_abs_error=3e-15, speedup=4.2)
    >>> nb.load_results(path)["speedup"]
    4.2
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from .progress import _in_kernel

__all__ = ["record", "load_results", "results_file", "to_jsonable", "table", "show", "setup"]

PathLike = Union[str, "os.PathLike[str]"]

RESULTS_DIR = "results"


def results_file(name_or_path: PathLike) -> Path:
    """Where `record` writes: a bare name (no folder, no ``.json``) means ``results/<name>.json``.

    Args:
        name_or_path: a notebook's name such as ``"01_search_space"``, or a path ending in ``.json``.
    """
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"name_or_path must be a str or a path, got {name_or_path!r}")
    text = os.fspath(name_or_path)
    if not text.strip():
        raise ValueError(f"name_or_path must not be empty, got {name_or_path!r}; pass a notebook name such as "
                         f"'01_search_space' or a path ending in '.json'")
    p = Path(text)
    if p.suffix == ".json":
        return p
    if len(p.parts) > 1 or p.suffix:
        raise ValueError(f"name_or_path = {name_or_path!r}: expected a bare notebook name (written to "
                         f"{RESULTS_DIR}/<name>.json) or a path ending in '.json'")
    return Path(RESULTS_DIR) / f"{text}.json"


def to_jsonable(value: Any, where: str = "value") -> Any:
    """``value`` as plain JSON types: numpy and torch scalars (and small arrays) become Python numbers and lists.

    Accepted: None, bool, int, finite float, str, lists/tuples of these, dicts with str keys, numpy scalars and
    arrays, torch tensors. Anything else, and NaN or infinity, raises (naming ``where``).
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} = {value!r}: results must be finite numbers (JSON has no NaN or infinity)")
        return float(value)
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise TypeError(f"{where} has non-str keys {bad[:3]!r}; JSON objects need str keys")
        return {k: to_jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{where}[{i}]") for i, v in enumerate(value)]
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, (np.generic, np.ndarray)):
        return to_jsonable(value.tolist(), where)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor):
        return to_jsonable(value.detach().cpu().tolist(), where)
    raise TypeError(f"{where} = {value!r:.80} of type {type(value).__name__} cannot be recorded; accepted: None, "
                    f"bool, int, float, str, list, tuple, dict with str keys, numpy scalars/arrays, torch tensors")


def record(name_or_path: PathLike, merge: bool = False, **results: Any) -> Path:
    """Write a notebook's key results to a small JSON file, atomically (a temporary file renamed into place).

    Args:
        name_or_path: the notebook's name (written to ``results/<name>.json`` under the working folder) or a
            path ending in ``.json``.
        merge: keep the keys of an existing file that ``results`` does not set (default: replace the file).
        **results: the values, see `to_jsonable` for what is accepted.

    Returns:
        The path written.
    """
    if not results:
        raise ValueError("record() needs at least one result, e.g. record('01_search_space', layers=9)")
    path = results_file(name_or_path)
    data = {k: to_jsonable(v, k) for k, v in results.items()}
    if merge and path.is_file():
        data = {**load_results(path), **data}
    from .rundir import atomic_write_text

    return atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n")


def load_results(path: PathLike) -> Dict[str, Any]:
    """Read back what `record` wrote (a bare notebook name is looked up in ``results/``)."""
    p = results_file(path)
    if not p.is_file():
        raise FileNotFoundError(f"no results file at {str(p)!r}; did the notebook run to its record() cell?")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"results file {str(p)!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"results file {str(p)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def table(rows: Sequence[Mapping[str, Any]], columns: Optional[Sequence[str]] = None,
          digits: Optional[int] = 3) -> Any:
    """Rows (dicts) as a pandas DataFrame for display, floats rounded to ``digits`` decimals.

    Args:
        rows: one dict per row (the tables of `dashkit.explain`).
        columns: the columns to show, in order (default: every key, in the order first seen).
        digits: decimals kept for floats; None keeps them all (for tables of tiny errors).
    """
    import pandas as pd

    if isinstance(rows, Mapping) or not all(isinstance(r, Mapping) for r in rows):
        raise TypeError(f"rows must be a sequence of dicts, got {type(rows).__name__}")
    df = pd.DataFrame(list(rows))
    if columns is not None:
        missing = [c for c in columns if c not in df.columns]
        if missing:
            raise ValueError(f"columns {missing!r} are not in the rows; available: {list(df.columns)}")
        df = df[list(columns)]
    return df if digits is None else df.round(digits)


def show(fig: Any) -> None:
    """Show a matplotlib figure once, whether or not pyplot made it.

    In a notebook a figure made by pyplot is drawn at the end of the cell *and* when it is the cell's value,
    while one built without pyplot is drawn only as the value: this draws either exactly once. Outside a
    notebook it does nothing (scripts save figures instead).
    """
    from matplotlib.figure import Figure

    if not isinstance(fig, Figure):
        raise TypeError(f"fig must be a matplotlib Figure, got {type(fig).__name__}")
    if not _in_kernel():
        return
    from IPython.display import display

    display(fig)
    if "matplotlib.pyplot" in sys.modules:
        import matplotlib.pyplot as plt

        plt.close(fig)  # else the inline backend draws it a second time at the end of the cell


def setup(seed: int = 0, threads: Optional[int] = None) -> Dict[str, Any]:
    """Prepare a notebook: seed Python, numpy and torch, show figures inline, optionally set torch's threads.

    Args:
        seed: the seed of every random generator.
        threads: torch's intra-op threads (None: leave torch's choice).

    Returns:
        What the measurements of the notebook depend on: versions, threads, whether a GPU is there.
    """
    import numpy as np
    import torch

    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be None or a positive int, got {threads!r}")
        torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if _in_kernel():
        # dashkit figures are built without pyplot; IPython draws them only once the inline backend is on
        sys.modules["IPython"].get_ipython().run_line_magic("matplotlib", "inline")
    return {"torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads(),
            "cuda": torch.cuda.is_available(), "seed": seed}
