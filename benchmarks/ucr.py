"""DASH, its default-kernel baseline and MiniRocket on UCR/UEA datasets shipped inside aeon: test accuracy.

    python benchmarks/ucr.py --datasets ArrowHead,BasicMotions --seeds 0,1,2 --preset standard --out runs/ucr
    python benchmarks/ucr.py --preset smoke --seeds 0 --set search_epochs=3 tune_enabled=false

Needs aeon, which holds the data files and MiniRocket (``pip install -e '.[benchmarks]'`` or ``pip install aeon``).

For every dataset and seed, in one process and on the same train/test split (the archive's own):
- dashkit: one ``dashkit.run`` trains DASH and the default-kernel baseline. The task comes from
  ``dashkit.tasks.from_arrays`` (string labels as they are; variable-length series padded, ``lengths="pad"``),
  which carves a stratified validation split out of the archive's train split, seeded by the seed. Every choice
  (architecture, hyper-parameters, epoch) is made on that validation split; the test split is only reported.
- MiniRocket (``aeon``'s MiniRocketClassifier, ``random_state=seed``), trained on the whole archive train split as
  in its published protocol. It takes equal-length input only: variable-length series are padded for it as
  ``from_arrays`` pads them (zeros at the end to the longest training series, test series cut to that length, plus a
  0/1 channel that marks the real positions).

A capped standard run's steps follow the speed it measures at its start, so they depend on the cores it has: run
one benchmark process at a time for the standard preset's five minutes on the machine's cores (several processes
side by side, each with ``OMP_NUM_THREADS=1``, give each run one core and fewer steps on long series). Each row
records its torch threads and its plan (``threads``, ``steps``, ``plan``), and the table shows them.

Runs already finished are read back, not repeated: the rows of ``--out``/ucr.json made with the same preset,
settings and budget are reused, and a dashkit run that stopped part-way resumes from its run directory
(``--out``/DATASET-sSEED). The table goes to stdout and to ``--out``/ucr.md; the rows to ``--out``/ucr.json.

``--cv K`` compares settings without the archive's test split: each seed cuts the archive's *training* split into K
stratified folds (`cv_folds`, shuffled by the seed), and each fold in turn is the held-out split of one run, whose
training data are the other folds (``from_arrays`` carves its validation split from those, as above). MiniRocket
trains on the same other folds. Every training series is held out once per seed, so a dataset of N training series
gives N held-out predictions a seed where its own validation split gives a handful; the table counts the held-out
errors (`cv_table`). Runs go to ``--out``/DATASET-sSEED-fFOLD.

    python benchmarks/ucr.py --datasets ArrowHead --seeds 0 --cv 4 --set search_rf_penalty=1e-5 --out runs/cv_push
"""
from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

import dashkit
from dashkit.config import parse_setting
from dashkit.pipeline import best_network
from dashkit.tasks.byod import pad_series

# The datasets, and ResNet's published test accuracy where Fawaz et al. (2019, "Deep learning for time series
# classification: a review") report one (approximate; ACSF1 and PickupGestureWiimoteZ joined the archive later).
DATASETS: Dict[str, Optional[float]] = {
    "ArrowHead": 0.84, "ItalyPowerDemand": 0.96, "OSULeaf": 0.98, "ACSF1": None, "PickupGestureWiimoteZ": None,
    "BasicMotions": None, "JapaneseVowels": 0.99}  # JapaneseVowels: the review's multivariate (MTS archive) table

INSTALL = "pip install -e '.[benchmarks]' (or pip install aeon)"
PAD_NOTE = "padded as from_arrays pads (zeros to the longest training series, + a 0/1 mask channel)"
Data = Tuple[Any, np.ndarray, Any, np.ndarray]  # x_train, y_train, x_test, y_test as aeon gives them


def _aeon(what: str) -> None:
    """Raise SystemExit with the install command when aeon is missing."""
    try:
        import aeon  # noqa: F401
    except ImportError:
        raise SystemExit(f"benchmarks/ucr.py needs aeon for {what}, and it is not installed: {INSTALL}") from None


def load(name: str) -> Data:
    """One dataset as aeon ships it: (x_train, y_train, x_test, y_test).

    x is a float array (N, C, L), or a list of (C, L_i) arrays for variable-length data; y holds string labels.
    """
    _aeon("the UCR/UEA data files")
    from aeon.datasets import load_classification

    x_train, y_train = load_classification(name, split="train")
    x_test, y_test = load_classification(name, split="test")
    return x_train, y_train, x_test, y_test


_default_load = load  # main checks for aeon up front only when the loader is this one (tests replace it)


def pad_like_from_arrays(x_train: Any, x_test: Any) -> Tuple[np.ndarray, np.ndarray, bool]:
    """Train and test inputs as equal-length float arrays, padded as ``from_arrays(lengths="pad")`` pads.

    Arrays (N, C, L) pass through. Lists of (C, L_i) series are zero-padded at the end to the longest training
    series, test series longer than that are cut, and when any series is padded a last channel is added that is
    1 on real positions and 0 on padding.

    Returns:
        (x_train (N, C', T), x_test (M, C', T), whether anything was padded or cut).
    """
    if not isinstance(x_train, list) and not isinstance(x_test, list):
        return np.asarray(x_train, dtype=np.float32), np.asarray(x_test, dtype=np.float32), False
    train = [np.asarray(s, dtype=np.float32).reshape(-1, np.shape(s)[-1]) for s in x_train]
    test = [np.asarray(s, dtype=np.float32).reshape(-1, np.shape(s)[-1]) for s in x_test]
    target = max(s.shape[1] for s in train)
    mask = any(s.shape[1] < target for s in train + test)
    return pad_series(train, target, mask), pad_series(test, target, mask), True


_WARM: set = set()  # "univariate" / "multivariate": MiniRocket's code compiled in this process


def minirocket(x_train: Any, y_train: np.ndarray, x_test: Any, y_test: np.ndarray, seed: int) -> Dict[str, Any]:
    """MiniRocket's test accuracy, trained on the whole train split.

    Returns:
        {"acc": test accuracy, "seconds": fit + predict wall time (numba's compilation on first use excluded),
        "input": how variable lengths were handled}.
    """
    _aeon("MiniRocket (or pass --no-minirocket)")
    xtr, xte, padded = pad_like_from_arrays(x_train, x_test)
    kind = "univariate" if xtr.shape[1] == 1 else "multivariate"
    threads = torch.get_num_threads()  # numba's OpenMP layer resizes the OpenMP pool that torch shares: put it back
    try:
        return _fit_minirocket(xtr, y_train, xte, y_test, seed, kind, padded)
    finally:
        torch.set_num_threads(threads)


def _fit_minirocket(xtr: np.ndarray, y_train: np.ndarray, xte: np.ndarray, y_test: np.ndarray, seed: int, kind: str,
                    padded: bool) -> Dict[str, Any]:
    from aeon.classification.convolution_based import MiniRocketClassifier

    if kind not in _WARM:  # numba compiles MiniRocket on its first use (a minute on a fresh install): not timed
        rng = np.random.default_rng(0)
        MiniRocketClassifier(random_state=0, n_jobs=1).fit(
            rng.standard_normal((4, xtr.shape[1], 32)).astype(np.float32), np.array(["a", "b"] * 2))
        _WARM.add(kind)
    t0 = time.perf_counter()
    clf = MiniRocketClassifier(random_state=seed, n_jobs=1)
    clf.fit(xtr, np.asarray(y_train))
    pred = clf.predict(xte)
    seconds = time.perf_counter() - t0
    return {"acc": float(np.mean(np.asarray(pred) == np.asarray(y_test))), "seconds": seconds,
            "input": PAD_NOTE if padded else "as loaded"}


# ------------------------------------------------------------------------------------------------ arguments
def parse_list(option: str, text: str, kind: Callable = str) -> List[Any]:
    """``"a,b"`` -> ["a", "b"] (items read by ``kind``); an empty item or one ``kind`` refuses is named."""
    items = [t.strip() for t in text.split(",")]
    try:
        if not all(items):
            raise ValueError("empty item")
        return [kind(t) for t in items]
    except ValueError as err:
        raise SystemExit(f"{option} {text!r}: expected a comma-separated list of {kind.__name__} ({err})") from None


def parse_datasets(text: Optional[str]) -> List[str]:
    """The datasets named in ``--datasets``, each one of DATASETS (all of them when not given)."""
    if text is None:
        return list(DATASETS)
    names = parse_list("--datasets", text)
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        raise SystemExit(f"--datasets {text!r}: unknown dataset(s) {', '.join(map(repr, unknown))}; known: "
                         f"{', '.join(DATASETS)}")
    return list(dict.fromkeys(names))


def parse_settings(tokens: Sequence[str]) -> Dict[str, Any]:
    """``--set`` tokens KEY=VALUE -> typed dashkit settings (``dashkit run --set`` reads them the same way)."""
    settings = {}
    for token in tokens:
        try:
            key, value = parse_setting(token)
        except (ValueError, TypeError, KeyError) as err:
            raise SystemExit(f"--set {token!r}: {err}") from None
        settings[key] = value
    return settings


def budget_kwargs(budget: Optional[str], run: Callable = dashkit.run) -> Dict[str, Any]:
    """``{"budget": budget}`` for ``run``, or {} when no budget is given.

    Raises SystemExit when a budget is given but ``run`` has no ``budget`` parameter (an older dashkit).
    """
    if budget is None:
        return {}
    if "budget" not in inspect.signature(run).parameters:
        raise SystemExit(f"--budget {budget!r}: this dashkit's run() takes no budget argument (its parameters: "
                         f"{', '.join(inspect.signature(run).parameters)}); update dashkit or leave --budget out")
    return {"budget": budget}


# ------------------------------------------------------------------------------------------------ one run
def _accuracy(error_pct: Optional[float]) -> Optional[float]:
    """Test accuracy from dashkit's error in % (rounded to 6 places: the error is computed in float32)."""
    return None if error_pct is None else round(1.0 - error_pct / 100.0, 6)


def _length_text(x: Any) -> str:
    if isinstance(x, list):
        lens = [np.shape(s)[-1] for s in x]
        return f"{min(lens)}-{max(lens)}"
    return str(np.shape(x)[-1])


def run_dashkit(name: str, data: Data, seed: int, args: argparse.Namespace, settings: Dict[str, Any],
                extra: Dict[str, Any], fold: Optional[int] = None) -> Dict[str, Any]:
    """DASH and the baseline on one dataset and seed (and ``fold`` of ``--cv``): the row's dashkit fields."""
    x_train, y_train, x_test, y_test = data
    task = dashkit.tasks.from_arrays(x_train, y_train, x_test=x_test, y_test=y_test, name=name, seed=seed)
    t0 = time.perf_counter()
    r = dashkit.run(task, preset=args.preset, out=Path(args.out) / run_name(name, seed, fold), seed=seed,
                    device=args.device, resume=True, figures=False, verbose=False, **settings, **extra)
    run_s = time.perf_counter() - t0  # the whole dashkit.run call (a resumed run: its last part only)
    sizes = task.info["sizes"]
    channels = np.shape(x_train[0])[0] if isinstance(x_train, list) else np.shape(x_train)[1]
    counts = Counter(np.asarray(y_test).tolist())
    return {"train": sizes["train"] + sizes["val"], "val": sizes["val"], "test": sizes["test"],
            "classes": len(task.info["classes"]), "channels": int(channels), "length": _length_text(x_train),
            "lengths": task.info.get("lengths", {}).get("policy", "equal"),
            "chance": max(counts.values()) / len(y_test),
            "dash": _accuracy(r.metrics.get("dash")), "baseline": _accuracy(r.metrics.get("baseline")),
            "random": _accuracy(r.metrics.get("random")), "run_s": run_s, **chosen_fields(r.val_metrics, r.metrics),
            "decided": list(r.card.decided_count() or ()) or None,
            "dash_s": sum(r.times.get(s, 0.0) for s in ("search", "tune", "retrain")),
            "baseline_s": sum(r.times.get(s, 0.0) for s in ("baseline_tune", "baseline_retrain")),
            "arch": " ".join(f"{layer.k}/{layer.d}" for layer in r.card.layers),
            "threads": torch.get_num_threads(), **plan_fields(r.plan, r.budget)}


def plan_fields(plan: Optional[Dict[str, Any]], budget: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """A row's record of its run's plan (config.json's ``plan`` and ``budget``): the optimiser steps of the search
    and of the retraining (``steps``), and what set them (``plan``): "preset" (the preset's own steps), "capped"
    (a standard run forecast over its five minutes and fit to them), "fit after the <stage>" (watched, and fit
    then), or "budget" (``--budget``)."""
    if not plan:
        return {}
    cap = (budget or {}).get("time_cap")
    how = ("preset" if not budget else "budget" if not cap else
           f"fit after the {cap['fit_after']}" if cap.get("fit_after") else "capped")
    return {"steps": [plan.get("search", {}).get("steps"), plan.get("retrain", {}).get("steps")], "plan": how}


def run_name(name: str, seed: int, fold: Optional[int] = None) -> str:
    """A row's run directory under ``--out``: DATASET-sSEED, and -fFOLD for a fold of ``--cv``."""
    return f"{name}-s{seed}" + ("" if fold is None else f"-f{fold}")


def cv_folds(y: Any, k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of every training example: stratified, shuffled by ``seed``.

    Each class's examples, in an order shuffled by ``seed``, are dealt to the folds in turn, continuing from the
    fold where the previous class ended, so every fold gets a class's share to within one example and the folds'
    sizes differ by at most one. A class with fewer than ``k`` examples is missing from some folds.

    Args:
        y: (N,) labels, any hashable values.
        k: the number of folds, 2 <= k <= N.
        seed: the shuffle's seed (another seed, another partition: repeated k-fold).

    Returns:
        (N,) int array of fold indices.
    """
    labels = np.asarray(y).tolist()
    n = len(labels)
    if not 2 <= k <= n:
        raise SystemExit(f"--cv {k}: expected a number of folds from 2 to the training split's {n} series")
    rng = np.random.default_rng(seed)
    fold = np.empty(n, dtype=np.int64)
    start = 0
    for label in sorted(set(labels), key=repr):  # a fixed order of the classes, whatever their type
        members = rng.permutation([i for i, v in enumerate(labels) if v == label])
        fold[members] = (start + np.arange(len(members))) % k
        start = (start + len(members)) % k
    return fold


def fold_data(data: Data, fold: np.ndarray, f: int) -> Data:
    """``--cv``'s data for fold ``f``: the training split's other folds to train on, fold ``f`` held out as the run's
    test split (the archive's test split is not used)."""
    x, y = data[0], np.asarray(data[1])
    held = np.flatnonzero(fold == f)
    rest = np.flatnonzero(fold != f)
    take = (lambda idx: [x[i] for i in idx]) if isinstance(x, list) else (lambda idx: x[idx])
    return take(rest), y[rest], take(held), y[held]


def chosen_fields(val_metrics: Dict[str, float], test_metrics: Dict[str, float]) -> Dict[str, Any]:
    """A row's fields for the network chosen on validation (`dashkit.pipeline.best_network`): which one, and its
    test accuracy."""
    if "dash" not in val_metrics or "baseline" not in val_metrics:
        return {}
    which = best_network(val_metrics)
    return {"chosen": which, "chosen_acc": _accuracy(test_metrics.get(which))}


def _fill_from_run(row: Dict[str, Any], folder: Path) -> Dict[str, Any]:
    """What a row made before rows recorded it lacks, read from its run directory (if it is there):
    ``chosen_fields`` from metrics.json, ``plan_fields`` from config.json, ``threads`` from environment.json."""
    run = folder / run_name(row["dataset"], row["seed"], row.get("fold"))
    row = dict(row)
    if "chosen" not in row and (run / "metrics.json").exists():
        m = json.loads((run / "metrics.json").read_text())
        val = {k: v["val"] for k, v in m.items() if k in ("dash", "baseline") and isinstance(v, dict)}
        test = {k: v["test"] for k, v in m.items() if k in ("dash", "baseline") and isinstance(v, dict)}
        row.update(chosen_fields(val, test))
    if "steps" not in row and (run / "config.json").exists():
        meta = json.loads((run / "config.json").read_text())
        row.update(plan_fields(meta.get("plan"), meta.get("budget")))
    if "threads" not in row and (run / "environment.json").exists():
        threads = json.loads((run / "environment.json").read_text()).get("threads")
        if threads is not None:
            row["threads"] = threads
    return row


def run_config(a: argparse.Namespace) -> Dict[str, Any]:
    """What a row records of the arguments it was made with; rows of the same ``run_config`` are read back."""
    return {"preset": a.preset, "settings": sorted(a.settings), "budget": a.budget,
            **({} if a.time_cap else {"time_cap": False}), **({"cv": a.cv} if a.cv else {})}


def _same_config(row: Dict[str, Any], config: Dict[str, Any]) -> bool:
    """Whether ``row`` was made with ``config`` (a row of an uncapped run, ``time_cap`` False, only with one; a
    row of ``--cv K`` only with the same K)."""
    return (all(row.get(k) == v for k, v in config.items())
            and row.get("time_cap", True) == config.get("time_cap", True) and row.get("cv") == config.get("cv"))


def _key(row: Dict[str, Any]) -> Tuple[str, int, Optional[int]]:
    return row["dataset"], row["seed"], row.get("fold")


# ------------------------------------------------------------------------------------------------ main
def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", default=None, help=f"comma-separated; default all: {','.join(DATASETS)}")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated ints")
    p.add_argument("--preset", default="standard")
    p.add_argument("--budget", default=None, help="passed to dashkit.run(budget=...) when given, e.g. 5m")
    p.add_argument("--out", default="runs/ucr")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", dest="settings",
                   help="dashkit settings on top of the preset, as dashkit run --set reads them")
    p.add_argument("--no-time-cap", dest="time_cap", action="store_false",
                   help="run the preset's own steps even where they are forecast to take well over its time here "
                        "(dashkit.run(time_cap=False); by default such a standard run is fit to its 5 minutes)")
    p.add_argument("--no-minirocket", action="store_true", help="run dashkit only")
    p.add_argument("--cv", type=int, default=None, metavar="K",
                   help="K-fold cross-validation on the archive's training split (stratified, one partition per "
                        "seed); the archive's test split is not read, and the table counts held-out errors")
    p.add_argument("--collect", nargs="+", metavar="DIR", default=None,
                   help="train nothing: the table of the rows in DIR/ucr.json (several runs' --out, e.g. datasets "
                        "run side by side), with the same --preset, --set and --budget, written to --out")
    a = p.parse_args(argv)
    if a.cv is not None and a.cv < 2:
        raise SystemExit(f"--cv {a.cv}: expected a number of folds of at least 2")
    if a.collect:
        return collect(a)
    names = parse_datasets(a.datasets)
    seeds = parse_list("--seeds", a.seeds, int)
    settings = parse_settings(a.settings)
    extra = {**budget_kwargs(a.budget), **({} if a.time_cap else {"time_cap": False})}
    if load is _default_load:
        _aeon("the UCR/UEA data files")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ucr.json"
    earlier = json.loads(path.read_text()) if path.exists() else []
    config = run_config(a)
    by_key = {_key(r): r for r in earlier if _same_config(r, config)}
    rows = []
    for name in names:
        data = None
        for seed in seeds:
            folds: Optional[np.ndarray] = None
            for f in range(a.cv) if a.cv else [None]:
                row = dict(by_key.get((name, seed, f), {}))
                todo_dash = "dash" not in row
                todo_mr = not a.no_minirocket and row.get("minirocket") is None
                if todo_dash or todo_mr:
                    data = data or load(name)
                    here = data
                    if f is not None:
                        folds = cv_folds(data[1], a.cv, seed) if folds is None else folds
                        here = fold_data(data, folds, f)
                    row.update({"dataset": name, "seed": seed, **({} if f is None else {"fold": f}), **config})
                    if todo_dash:
                        row.update(run_dashkit(name, here, seed, a, settings, extra, fold=f))
                    if todo_mr:
                        mr = minirocket(*here, seed=seed)
                        row.update({"minirocket": mr["acc"], "minirocket_s": mr["seconds"],
                                    "minirocket_input": mr["input"]})
                    row.setdefault("minirocket", None)
                    print(json.dumps(row), flush=True)
                rows.append(row)
                ran = {_key(r) for r in rows}  # earlier rows of other runs are kept
                path.write_text(json.dumps([r for r in earlier if _key(r) not in ran] + rows, indent=2))
    text = cv_table(rows, a.preset) if a.cv else table(rows, a.preset)
    (out / "ucr.md").write_text(text + "\n")
    print(text)
    return 0


def collect(a: argparse.Namespace) -> int:
    """``--collect``: the rows of several ``--out`` directories as one table (the later directory wins a row)."""
    config = run_config(a)
    out = Path(a.out)
    if any(out.resolve() == Path(d).resolve() for d in a.collect):
        raise SystemExit(f"--out {a.out!r} is one of the --collect directories; name another (its ucr.json would "
                         f"lose the rows of other presets and settings)")
    by_key: Dict[Tuple[str, int, Optional[int]], Dict[str, Any]] = {}
    for d in a.collect:
        path = Path(d) / "ucr.json"
        if not path.exists():
            raise SystemExit(f"--collect {d!r}: no ucr.json there")
        for r in json.loads(path.read_text()):
            if _same_config(r, config):
                by_key[_key(r)] = _fill_from_run(r, Path(d))
    if not by_key:
        raise SystemExit(f"--collect: no rows made with {config} in {', '.join(a.collect)}")
    order = {name: i for i, name in enumerate(DATASETS)}
    rows = sorted(by_key.values(), key=lambda r: (order.get(r["dataset"], len(order)), r["dataset"], r["seed"],
                                                  r.get("fold") or 0))
    text = cv_table(rows, a.preset) if a.cv else table(rows, a.preset)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ucr.json").write_text(json.dumps(rows, indent=2))
    (out / "ucr.md").write_text(text + "\n")
    print(text)
    return 0


# ------------------------------------------------------------------------------------------------ table
COLUMNS = ("dataset", "train (val) / test", "C x L", "classes", "chance", "DASH", "baseline", "random archs",
           "MiniRocket", "ResNet (published)", "chosen on validation", "layers decided", "DASH s", "baseline s",
           "run s", "MiniRocket s", "steps: search / retraining")


def _chosen_text(rs: List[Dict[str, Any]]) -> str:
    """The chosen-on-validation cell: accuracy mean ± sd and how many seeds chose the baseline."""
    chosen = [r for r in rs if r.get("chosen")]
    if not chosen:
        return "–"
    return (f"{_mean_sd([r.get('chosen_acc') for r in chosen])} "
            f"(baseline {sum(r['chosen'] == 'baseline' for r in chosen)}/{len(chosen)})")


def _mean_sd(values: List[Optional[float]]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    sd = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.3f}{sd}"


def _mean(values: List[Optional[float]]) -> Optional[float]:
    values = [v for v in values if v is not None]
    return statistics.mean(values) if values else None


def _seconds(values: List[Optional[float]]) -> str:
    m = _mean(values)
    return "–" if m is None else f"{m:.1f}"


def _span(values: List[int]) -> str:
    return f"{min(values)}" if min(values) == max(values) else f"{min(values)}-{max(values)}"


def _steps_text(rs: List[Dict[str, Any]]) -> str:
    """The steps cell: the search's and the retraining's optimiser steps over seeds, and what set them where it
    was not the preset."""
    planned = [r for r in rs if r.get("steps") and None not in r["steps"]]
    if not planned:
        return "–"
    hows = sorted({r.get("plan", "preset") for r in planned} - {"preset"})
    return (f"{_span([r['steps'][0] for r in planned])} / {_span([r['steps'][1] for r in planned])}"
            + (f" ({', '.join(hows)})" if hows else ""))


def _threads_text(rows: List[Dict[str, Any]]) -> str:
    """The footer's line on the torch threads each run had (CPU timings, and so capped plans, depend on it)."""
    threads = sorted({r["threads"] for r in rows if r.get("threads") is not None})
    if not threads:
        return "Torch threads per run: not recorded."
    unknown = sum(r.get("threads") is None for r in rows)
    return (f"Torch threads per run: {', '.join(map(str, threads))}"
            + (f" ({unknown} of {len(rows)} runs not recorded)." if unknown else "."))


def table(rows: List[Dict[str, Any]], preset: str = "") -> str:
    """The Markdown table: one line per dataset (accuracy mean ± sd over seeds), then the means over datasets.

    Accuracy is on the archive's test split; chance is the majority class of the test split; times are wall
    seconds per run, mean over seeds (DASH: search + tune + retrain; baseline: tune + retrain; MiniRocket: fit
    + predict).
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    means: Dict[str, List[float]] = {k: [] for k in ("chance", "dash", "baseline", "random", "minirocket",
                                                      "chosen_acc")}
    wins, compared, padded = 0, 0, []
    random_wins, random_compared = 0, 0
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        first = rs[0]
        for k in means:
            m = _mean([r.get(k) for r in rs])
            if m is not None:
                means[k].append(m)
        dash, base = _mean([r.get("dash") for r in rs]), _mean([r.get("baseline") for r in rs])
        if dash is not None and base is not None:
            compared += 1
            wins += dash >= base
        rand = _mean([r.get("random") for r in rs])
        if dash is not None and rand is not None:
            random_compared += 1
            random_wins += dash >= rand
        decided = [r["decided"] for r in rs if r.get("decided")]
        decided_text = (f"{sum(d[0] for d in decided)}/{sum(d[1] for d in decided)}" if decided else "–")
        if first.get("lengths") == "pad" or first.get("minirocket_input", "as loaded") != "as loaded":
            padded.append(name)
        resnet = DATASETS.get(name)
        lines.append(" | ".join([
            f"| {name}", f"{first['train']} ({first['val']}) / {first['test']}",
            f"{first['channels']} x {first['length']}", str(first["classes"]), f"{first['chance']:.3f}",
            _mean_sd([r.get("dash") for r in rs]), _mean_sd([r.get("baseline") for r in rs]),
            _mean_sd([r.get("random") for r in rs]),
            _mean_sd([r.get("minirocket") for r in rs]), "–" if resnet is None else f"~{resnet:.2f}",
            _chosen_text(rs), decided_text,
            _seconds([r.get("dash_s") for r in rs]), _seconds([r.get("baseline_s") for r in rs]),
            _seconds([r.get("run_s") for r in rs]), _seconds([r.get("minirocket_s") for r in rs]),
            _steps_text(rs)]) + " |")
    n = len(dict.fromkeys(r["dataset"] for r in rows))
    # a method missing on some datasets (--no-minirocket for some) says over how many its mean is
    avg = {k: (f"{statistics.mean(v):.3f}" + (f" ({len(v)} of {n})" if len(v) < n else "")) if v else "–"
           for k, v in means.items()}
    lines.append(f"| mean over {n} datasets | | | | {avg['chance']} | {avg['dash']} | {avg['baseline']} | "
                 f"{avg['random']} | {avg['minirocket']} | | {avg['chosen_acc']} | | | | | | |")
    seeds = sorted({r["seed"] for r in rows})
    lines += ["", f"DASH >= baseline (mean test accuracy over seeds) on {wins} of {compared} datasets."]
    if random_compared:
        lines.append(f"DASH >= the mean random architecture on {random_wins} of {random_compared} datasets.")
    lines += ["",
              f"Preset {preset or '?'}, seeds {', '.join(map(str, seeds))}; test accuracy, mean ± sd over seeds. "
              "DASH and the baseline train on the train split less the validation split in brackets, on which they "
              "choose everything; random archs: architectures drawn uniformly from DASH's space, trained like "
              "DASH's (mean over the draws, then over seeds); MiniRocket (aeon, seeded) trains on the whole train "
              "split. Chance: the test split's majority class. Layers decided: searched layers that passed the "
              "decision test, summed over seeds. Times: wall seconds per seed (DASH: search + tuning + retraining; "
              "run: the whole dashkit.run call, the random architectures and tests included). ResNet: Fawaz et al. "
              "(2019), approximate. Chosen on validation: the test accuracy of whichever of DASH and the baseline "
              "has the better validation metric (DASH on a tie; `which=\"best\"` in dashkit), and on how many "
              "seeds that was the baseline. Steps: the optimiser steps of the search and of the retraining "
              "(DASH's; the baseline and the random architectures retrain for as many), over seeds; capped: the "
              "run was forecast over the preset's five minutes and fit to them (`dashkit.run(time_cap=...)`).",
              _threads_text(rows)]
    if padded:
        lines.append(f"Variable-length series ({', '.join(padded)}): {PAD_NOTE}, for dashkit and MiniRocket alike.")
    return "\n".join(lines)


CV_COLUMNS = ("dataset", "folds x seeds", "held-out series", "DASH errors", "baseline errors", "random archs' errors",
              "MiniRocket errors", "DASH's folds better / level / worse than the baseline's", "layers decided")


def _row_errors(row: Dict[str, Any], key: str) -> float:
    """A row's held-out errors by ``key``'s network: one minus its accuracy, times the held-out series (the random
    archs' is the draws' mean, so it may be fractional)."""
    return (1.0 - row[key]) * row["test"]


def _errors(rows: List[Dict[str, Any]], key: str) -> Optional[float]:
    """`_row_errors` summed over ``rows``; None when a row lacks ``key``."""
    if any(r.get(key) is None for r in rows):
        return None
    return sum(_row_errors(r, key) for r in rows)


def _count(errors: Optional[float]) -> str:
    """A count of errors: whole where it is one (accuracies are stored to 6 places), else to one decimal."""
    return "–" if errors is None else (f"{errors:.0f}" if abs(errors - round(errors)) < 0.01 else f"{errors:.1f}")


def cv_table(rows: List[Dict[str, Any]], preset: str = "") -> str:
    """``--cv``'s Markdown table: per dataset, the held-out errors summed over folds and seeds (each training
    series is held out once a seed), and how the folds compare DASH with the baseline."""
    lines = ["| " + " | ".join(CV_COLUMNS) + " |", "|" + "---|" * len(CV_COLUMNS)]
    total: Dict[str, Optional[float]] = {"dash": 0.0, "baseline": 0.0, "random": 0.0, "minirocket": 0.0}
    held_all = 0
    for name in dict.fromkeys(r["dataset"] for r in rows):
        rs = [r for r in rows if r["dataset"] == name]
        held = sum(r["test"] for r in rs)
        held_all += held
        errors = {k: _errors(rs, k) for k in total}
        for k, v in errors.items():
            total[k] = None if v is None or total[k] is None else total[k] + v
        paired = [_row_errors(r, "dash") - _row_errors(r, "baseline") for r in rs
                  if r.get("dash") is not None and r.get("baseline") is not None]
        compare = (f"{sum(d < -0.5 for d in paired)} / {sum(abs(d) <= 0.5 for d in paired)} / "
                   f"{sum(d > 0.5 for d in paired)}" if paired else "–")  # counts: whole, to rounding
        decided = [r["decided"] for r in rs if r.get("decided")]
        decided_text = f"{sum(d[0] for d in decided)}/{sum(d[1] for d in decided)}" if decided else "–"
        folds = len({r.get("fold") for r in rs})
        seeds = len({r["seed"] for r in rs})
        lines.append(" | ".join([f"| {name}", f"{folds} x {seeds}", str(held),
                                 *(_count(errors[k]) for k in total), compare, decided_text]) + " |")
    n = len(dict.fromkeys(r["dataset"] for r in rows))
    lines.append(" | ".join([f"| all {n} datasets", "", str(held_all), *(_count(total[k]) for k in total), "", ""])
                 + " |")
    seeds = sorted({r["seed"] for r in rows})
    lines += ["", f"Preset {preset or '?'}, seeds {', '.join(map(str, seeds))}; cross-validation on the archive's "
              "training split alone (its test split is not read): each seed cuts it into stratified folds, and each "
              "fold is held out from one run, which trains on the others (dashkit carving its validation split from "
              "those, MiniRocket on all of them). Errors: held-out series misclassified, summed over folds and seeds "
              "(the random archs': the mean over the draws). Better / level / worse: DASH's held-out errors against "
              "the baseline's, fold by fold."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
