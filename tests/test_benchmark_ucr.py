"""benchmarks/ucr.py end to end on two tiny fake datasets in aeon's formats, with no aeon installed.

The loader and MiniRocket are replaced: one dataset is an (N, C, L) float array with string labels, the other a
list of (C, L_i) series of varying length with labels that read as integers ("2" before "10"), as aeon returns
ArrowHead and JapaneseVowels.
"""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dashkit
from dashkit.config import parse_setting

ROOT = Path(__file__).resolve().parents[1]
# a row keeps an accuracy to 6 decimals (`ucr._accuracy`): compared with the unrounded metric at that precision
ROW = 1e-6
# tiny budgets (TINY in test_pipeline.py), as --set tokens
TINY = ["search_backend=fft", "retrain_conv_backend=direct", "search_epochs=1", "search_batch_size=16",
        "tune_lrs=0.1,0.01", "tune_dropouts=0.0", "tune_weight_decays=0.0005", "tune_momentums=0.9",
        "tune_epochs=1", "tune_batch_size=16", "tune_pruner=none", "retrain_epochs=2", "retrain_batch_size=16",
        "search_max_batches=none", "tune_max_batches=none", "retrain_max_batches=none"]


@pytest.fixture
def ucr():
    spec = importlib.util.spec_from_file_location("bench_ucr", ROOT / "benchmarks" / "ucr.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_fixed(seed: int = 0):
    """(N, C, L) float64 with string labels 'down'/'up': the class is the sign of a ramp."""
    rng = np.random.default_rng(seed)

    def make(n):
        y = rng.integers(0, 2, n)
        x = 0.2 * rng.standard_normal((n, 2, 24)) + np.where(y, 1.0, -1.0)[:, None, None] * np.linspace(0, 1, 24)
        return x, np.array(["down", "up"])[y]

    return (*make(40), *make(30))


def fake_variable(seed: int = 1):
    """A list of (1, L_i) series, L_i in 14..24 (a test series of 26, longer than any training one), labels
    '2' and '10'."""
    rng = np.random.default_rng(seed)

    def make(n, longest):
        y = rng.integers(0, 2, n)
        xs = [np.sin(np.arange(int(rng.integers(14, longest + 1))) * (0.3 + 0.9 * c))[None] +
              0.1 * rng.standard_normal((1, 1)) for c in y]
        return xs, np.array(["2", "10"])[y]

    x_train, y_train = make(40, 24)
    x_test, y_test = make(30, 24)
    x_test[0] = np.zeros((1, 26))
    return x_train, y_train, x_test, y_test


FAKE = {"FakeFixed": fake_fixed(), "FakeVariable": fake_variable()}


class Calls:
    """A stand-in loader and MiniRocket that count their calls."""

    def __init__(self, ucr):
        self.ucr, self.loads, self.fits = ucr, [], []

    def load(self, name):
        self.loads.append(name)
        return FAKE[name]

    def minirocket(self, x_train, y_train, x_test, y_test, seed):
        # what the real one feeds MiniRocket: equal-length arrays
        xtr, xte, padded = self.ucr.pad_like_from_arrays(x_train, x_test)
        assert xtr.ndim == 3 and xte.shape[1:] == xtr.shape[1:]
        self.fits.append((len(xtr), seed, padded))
        majority = max(set(y_train.tolist()), key=y_train.tolist().count)
        return {"acc": float(np.mean(y_test == majority)), "seconds": 0.5,
                "input": self.ucr.PAD_NOTE if padded else "as loaded"}


@pytest.fixture
def fake(ucr, monkeypatch):
    calls = Calls(ucr)
    monkeypatch.setattr(ucr, "DATASETS", {"FakeFixed": 0.9, "FakeVariable": None})
    monkeypatch.setattr(ucr, "load", calls.load)
    monkeypatch.setattr(ucr, "minirocket", calls.minirocket)
    return calls


@pytest.mark.filterwarnings("ignore::UserWarning")  # small splits, undecided smoke tunings, a cut test series
def test_ucr_runs_every_dataset_writes_rows_and_table_and_resumes(ucr, fake, tmp_path, capsys, monkeypatch):
    argv = ["--datasets", "FakeFixed,FakeVariable", "--seeds", "0", "--preset", "smoke", "--out", str(tmp_path),
            "--device", "cpu", "--set", *TINY]
    assert ucr.main(argv) == 0
    assert fake.loads == ["FakeFixed", "FakeVariable"]
    assert fake.fits == [(40, 0, False), (40, 0, True)]
    rows = json.loads((tmp_path / "ucr.json").read_text())
    assert [(r["dataset"], r["seed"]) for r in rows] == [("FakeFixed", 0), ("FakeVariable", 0)]
    fixed, variable = rows
    for r in rows:
        assert (r["train"], r["test"], r["classes"]) == (40, 30, 2)
        assert 0 < r["val"] < 40 and r["preset"] == "smoke" and r["settings"] == sorted(TINY)
        assert 0.0 <= r["dash"] <= 1.0 and 0.0 <= r["baseline"] <= 1.0 and r["dash_s"] > 0 and r["baseline_s"] > 0
        assert r["run_s"] > r["dash_s"] + r["baseline_s"]  # the whole call: both, plus data, tests and files
        assert r["random"] is None  # the smoke preset trains no random architectures
        card = json.loads((tmp_path / f"{r['dataset']}-s0" / "archcard.json").read_text())
        assert r["decided"] == [sum(bool(layer["decided"]) for layer in card["layers"]), len(card["layers"])]
        # the accuracies are the run directory's test errors, and nothing else: test is only reported
        metrics = json.loads((tmp_path / f"{r['dataset']}-s0" / "metrics.json").read_text())
        assert r["dash"] == pytest.approx(1 - metrics["dash"]["test"] / 100, abs=ROW)
        assert r["baseline"] == pytest.approx(1 - metrics["baseline"]["test"] / 100, abs=ROW)
        # the network chosen on validation, and its test accuracy
        lower = "baseline" if metrics["baseline"]["val"] < metrics["dash"]["val"] else "dash"
        assert r["chosen"] == lower and r["chosen_acc"] == r[lower]
        # the run's plan as config.json has it (the smoke preset's own steps), and the threads it ran on
        plan = json.loads((tmp_path / f"{r['dataset']}-s0" / "config.json").read_text())["plan"]
        assert r["steps"] == [plan["search"]["steps"], plan["retrain"]["steps"]] and r["plan"] == "preset"
        assert r["threads"] == torch.get_num_threads()
    assert (fixed["channels"], fixed["length"], fixed["lengths"]) == (2, "24", "equal")
    assert (variable["channels"], variable["length"], variable["lengths"]) == (1, "14-24", "pad")
    assert fixed["minirocket_input"] == "as loaded" and variable["minirocket_input"] == ucr.PAD_NOTE
    y_test = FAKE["FakeVariable"][3]
    assert variable["chance"] == pytest.approx(max(np.mean(y_test == "2"), np.mean(y_test == "10")))

    out = capsys.readouterr().out
    md = (tmp_path / "ucr.md").read_text()
    assert md.strip() in out
    lines = md.splitlines()
    assert lines[0] == "| " + " | ".join(ucr.COLUMNS) + " |"
    assert [c.strip() for c in lines[0].strip("|").split("|")] == [
        "dataset", "train (val) / test", "C x L", "classes", "chance", "DASH", "baseline", "random archs",
        "MiniRocket", "ResNet (published)", "chosen on validation", "layers decided", "DASH s", "baseline s",
        "run s", "MiniRocket s", "steps: search / retraining"]
    cells = {line.split(" | ")[0][2:]: [c.strip() for c in line.strip("|").split("|")] for line in lines[2:5]}
    assert cells["FakeFixed"][1:5] == [f"40 ({fixed['val']}) / 30", "2 x 24", "2", f"{fixed['chance']:.3f}"]
    assert cells["FakeFixed"][5] == f"{fixed['dash']:.3f}" and cells["FakeFixed"][9] == "~0.90"
    assert cells["FakeVariable"][9] == "–" and cells["FakeVariable"][15] == "0.5"
    assert cells["FakeFixed"][10] == f"{fixed['chosen_acc']:.3f} (baseline {int(fixed['chosen'] == 'baseline')}/1)"
    assert cells["FakeFixed"][16] == f"{fixed['steps'][0]} / {fixed['steps'][1]}"  # the preset's: no note
    assert f"Torch threads per run: {torch.get_num_threads()}." in lines
    assert cells["mean over 2 datasets"][5] == f"{(fixed['dash'] + variable['dash']) / 2:.3f}"
    wins = sum(r["dash"] >= r["baseline"] for r in rows)
    assert f"DASH >= baseline (mean test accuracy over seeds) on {wins} of 2 datasets." in lines
    assert any(line.startswith("Variable-length series (FakeVariable): padded") for line in lines)

    # a second call finds both rows finished: it loads nothing, trains nothing and fits nothing
    def no_run(*args, **kwargs):
        raise AssertionError("dashkit.run called for a finished row")

    monkeypatch.setattr(ucr.dashkit, "run", no_run)
    assert ucr.main(argv) == 0
    assert fake.loads == ["FakeFixed", "FakeVariable"] and len(fake.fits) == 2
    assert json.loads((tmp_path / "ucr.json").read_text()) == rows
    assert (tmp_path / "ucr.md").read_text() == md
    # one dataset again keeps the other's row in the JSON, and its table shows that dataset alone
    assert ucr.main(argv[:1] + ["FakeVariable"] + argv[2:]) == 0
    assert json.loads((tmp_path / "ucr.json").read_text()) == rows
    assert "FakeFixed" not in (tmp_path / "ucr.md").read_text()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ucr_without_minirocket_then_with_it_fits_minirocket_alone(ucr, fake, tmp_path, capsys, monkeypatch):
    argv = ["--datasets", "FakeFixed", "--seeds", "0", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu",
            "--set", *TINY]
    assert ucr.main(argv + ["--no-minirocket"]) == 0
    [row] = json.loads((tmp_path / "ucr.json").read_text())
    assert row["minirocket"] is None and "minirocket_s" not in row and fake.fits == []
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("| FakeFixed |"))
    assert [c.strip() for c in line.strip("|").split("|")][7] == "–"

    def no_run(*args, **kwargs):
        raise AssertionError("dashkit.run called for a finished row")

    monkeypatch.setattr(ucr.dashkit, "run", no_run)
    assert ucr.main(argv) == 0
    [again] = json.loads((tmp_path / "ucr.json").read_text())
    assert fake.fits == [(40, 0, False)] and again["minirocket_s"] == 0.5
    assert {k: v for k, v in again.items() if not k.startswith("minirocket")} == {
        k: v for k, v in row.items() if not k.startswith("minirocket")}


@pytest.mark.filterwarnings("ignore::dashkit.tasks.SmallSplitWarning")
def test_ucr_pads_series_for_minirocket_as_from_arrays_pads_them(ucr):
    x_train, y_train, x_test, y_test = FAKE["FakeVariable"]
    with pytest.warns(dashkit.tasks.SeriesLengthWarning):
        task = dashkit.tasks.from_arrays(x_train, y_train, x_test=x_test, y_test=y_test, name="v",
                                         input_scaling="none")  # the padding, before dashkit's standardisation
    xtr, xte, padded = ucr.pad_like_from_arrays(x_train, x_test)
    assert padded and xtr.shape == (40, 2, 24) and xte.shape == (30, 2, 24)
    assert np.array_equal(xte, task.test.tensors[0].numpy())
    assert xte[0, 1].sum() == 24  # the 26-long test series is cut to 24 real positions
    x, _, _, _ = FAKE["FakeFixed"]
    same, _, padded = ucr.pad_like_from_arrays(x, x[:3])
    assert not padded and same.dtype == np.float32 and np.allclose(same, x)


def test_ucr_names_bad_arguments(ucr, fake, tmp_path):
    with pytest.raises(SystemExit, match=r"--datasets 'FakeFixed,Arrowhead': unknown dataset\(s\) 'Arrowhead'; "
                                         r"known: FakeFixed, FakeVariable"):
        ucr.main(["--datasets", "FakeFixed,Arrowhead", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"--seeds '0,x'"):
        ucr.main(["--seeds", "0,x", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"--set 'no_such_setting=1'.*no_such_setting"):
        ucr.main(["--set", "no_such_setting=1", "--out", str(tmp_path)])
    assert fake.loads == [] and not (tmp_path / "ucr.json").exists()


def test_ucr_budget_is_passed_only_when_given_and_only_to_a_run_that_takes_one(ucr):
    def old_run(task, preset="smoke", out=None, seed=0, **overrides):
        """A run() without a budget parameter."""

    def new_run(task, preset="smoke", out=None, seed=0, budget=None, **overrides):
        """A run() with one."""

    assert ucr.budget_kwargs(None, old_run) == {}
    assert ucr.budget_kwargs("5m", new_run) == {"budget": "5m"}
    with pytest.raises(SystemExit, match=r"--budget '5m': this dashkit's run\(\) takes no budget argument"):
        ucr.budget_kwargs("5m", old_run)


def test_ucr_says_how_to_install_aeon_when_it_is_missing(ucr, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "aeon", None)  # import aeon raises ImportError
    with pytest.raises(SystemExit, match=r"needs aeon .*pip install -e '\.\[benchmarks\]' \(or pip install aeon\)"):
        ucr.main(["--datasets", "ArrowHead", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"MiniRocket \(or pass --no-minirocket\).*pip install aeon"):
        ucr.minirocket(*FAKE["FakeFixed"], seed=0)


def test_ucr_table_gives_mean_and_sd_over_seeds_and_says_over_how_many_datasets_a_mean_is(ucr, monkeypatch):
    monkeypatch.setattr(ucr, "DATASETS", {"A": 0.84, "B": None})
    common = {"train": 40, "val": 6, "test": 30, "classes": 3, "channels": 1, "length": "24", "lengths": "equal",
              "dash_s": 10.0, "baseline_s": 4.0}
    rows = [{**common, "dataset": "A", "seed": 0, "chance": 0.4, "dash": 0.5, "baseline": 0.7, "minirocket": 0.8,
             "minirocket_s": 1.0, "minirocket_input": "as loaded"},
            {**common, "dataset": "A", "seed": 1, "chance": 0.4, "dash": 0.7, "baseline": 0.7, "minirocket": 0.9,
             "minirocket_s": 3.0, "minirocket_input": "as loaded"},
            {**common, "dataset": "B", "seed": 0, "chance": 0.2, "dash": 0.4, "baseline": 0.3, "minirocket": None,
             "random": 0.45, "decided": [1, 4], "run_s": 30.0}]
    rows[0].update(random=0.3, decided=[2, 4], run_s=20.0, chosen="baseline", chosen_acc=0.7, threads=1,
                   steps=[900, 420], plan="capped")
    rows[1].update(random=0.5, decided=[3, 4], run_s=22.0, chosen="dash", chosen_acc=0.7, threads=1,
                   steps=[700, 300], plan="capped")
    lines = ucr.table(rows, "standard").splitlines()
    a, b, mean = ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:5])
    assert a[5:] == ["0.600 ± 0.141", "0.700 ± 0.000", "0.400 ± 0.141", "0.850 ± 0.071", "~0.84",
                     "0.700 ± 0.000 (baseline 1/2)", "5/8", "10.0", "4.0", "21.0", "2.0", "700-900 / 300-420 (capped)"]
    assert b[5:] == ["0.400", "0.300", "0.450", "–", "–", "–", "1/4", "10.0", "4.0", "30.0", "–", "–"]
    assert len(mean) == len(ucr.COLUMNS)
    assert "Torch threads per run: 1 (1 of 3 runs not recorded)." in lines
    rows[2].update(threads=2, steps=[2000, 2000], plan="preset")
    lines = ucr.table(rows, "standard").splitlines()
    assert lines[3].endswith("| 2000 / 2000 |") and "Torch threads per run: 1, 2." in lines
    assert mean[:1] + mean[4:9] == ["mean over 2 datasets", "0.300", "0.500", "0.500", "0.425", "0.850 (1 of 2)"]
    assert mean[10] == "0.700 (1 of 2)"
    assert "DASH >= baseline (mean test accuracy over seeds) on 1 of 2 datasets." in lines
    assert "DASH >= the mean random architecture on 1 of 2 datasets." in lines
    assert any(line.startswith("Preset standard, seeds 0, 1;") for line in lines)
    assert not any(line.startswith("Variable-length") for line in lines)


def test_ucr_collect_merges_runs_made_side_by_side_into_one_table(ucr, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(ucr, "DATASETS", {"A": 0.84, "B": None})
    common = {"train": 40, "val": 6, "test": 30, "classes": 3, "channels": 1, "length": "24", "lengths": "equal",
              "chance": 0.4, "baseline": 0.5, "minirocket": 0.9, "preset": "standard", "settings": [], "budget": None}
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "ucr.json").write_text(json.dumps([{**common, "dataset": "B", "seed": 0, "dash": 0.6}]))
    (tmp_path / "a" / "ucr.json").write_text(json.dumps([
        {**common, "dataset": "A", "seed": 1, "dash": 0.8}, {**common, "dataset": "A", "seed": 0, "dash": 0.7},
        {**common, "dataset": "A", "seed": 0, "dash": 0.1, "preset": "smoke"}]))  # another preset: left out
    argv = ["--collect", str(tmp_path / "b"), str(tmp_path / "a"), "--out", str(tmp_path / "all")]
    assert ucr.main(argv) == 0
    rows = json.loads((tmp_path / "all" / "ucr.json").read_text())
    assert [(r["dataset"], r["seed"], r["dash"]) for r in rows] == [("A", 0, 0.7), ("A", 1, 0.8), ("B", 0, 0.6)]
    md = (tmp_path / "all" / "ucr.md").read_text()
    assert md.strip() in capsys.readouterr().out and "| A | " in md and "0.750 ± 0.071" in md
    # rows made before rows recorded the network chosen on validation get it from their run directory
    run = tmp_path / "b" / "B-s0"
    run.mkdir()
    (run / "metrics.json").write_text(json.dumps({"metric": "error_pct", "dash": {"val": 20.0, "test": 40.0},
                                                  "baseline": {"val": 10.0, "test": 50.0}}))
    assert ucr.main(argv) == 0
    rows = json.loads((tmp_path / "all" / "ucr.json").read_text())
    assert rows[2]["chosen"] == "baseline" and rows[2]["chosen_acc"] == pytest.approx(0.5)
    assert "chosen" not in rows[0]  # no run directory: nothing to read
    assert "steps" not in rows[2] and "threads" not in rows[2]  # no config.json or environment.json there
    # and its plan from config.json, the threads from environment.json
    plan = {"search": {"steps": 722}, "retrain": {"steps": 423}}
    budget = {"seconds": 300.0, "time_cap": {"preset": "standard", "forecast_seconds": 1115.1}}
    (run / "config.json").write_text(json.dumps({"plan": plan, "budget": budget}))
    (run / "environment.json").write_text(json.dumps({"device": "cpu", "threads": 2}))
    assert ucr.main(argv) == 0
    rows = json.loads((tmp_path / "all" / "ucr.json").read_text())
    assert (rows[2]["steps"], rows[2]["plan"], rows[2]["threads"]) == ([722, 423], "capped", 2)
    md = (tmp_path / "all" / "ucr.md").read_text()
    assert "| 722 / 423 (capped) |" in md and "Torch threads per run: 2 (2 of 3 runs not recorded)." in md
    with pytest.raises(SystemExit, match="one of the --collect directories"):
        ucr.main(["--collect", str(tmp_path / "a"), "--out", str(tmp_path / "a")])
    with pytest.raises(SystemExit, match="no rows made with"):
        ucr.main(["--collect", str(tmp_path / "a"), "--preset", "paper", "--out", str(tmp_path / "x")])
    with pytest.raises(SystemExit, match="no ucr.json there"):
        ucr.main(["--collect", str(tmp_path / "nothing"), "--out", str(tmp_path / "x")])


def test_plan_fields_say_what_set_a_runs_steps(ucr):
    plan = {"search": {"steps": 135}, "retrain": {"steps": 42}, "tune": {"steps": 300}}
    assert ucr.plan_fields(None, None) == {}
    assert ucr.plan_fields(plan, None) == {"steps": [135, 42], "plan": "preset"}
    assert ucr.plan_fields(plan, {"seconds": 60.0})["plan"] == "budget"
    cap = {"preset": "standard", "forecast_seconds": 7738.5, "promise_seconds": 300.0}
    assert ucr.plan_fields(plan, {"seconds": 300.0, "time_cap": cap})["plan"] == "capped"
    watched = {**cap, "fit_after": "search", "projected_seconds": 400.0}
    assert ucr.plan_fields(plan, {"seconds": 300.0, "time_cap": watched})["plan"] == "fit after the search"


def test_minirocket_gives_torch_its_thread_count_back(ucr, monkeypatch):
    """aeon's numba code resizes the OpenMP pool that torch shares (1 -> 2 threads measured, after which every later
    dashkit run in the process fought an extra spinning thread): the benchmark puts torch's count back."""
    import torch

    before = torch.get_num_threads()

    def greedy(*args, **kwargs):
        torch.set_num_threads(before + 1)
        return {"acc": 1.0, "seconds": 0.0, "input": "as loaded"}

    monkeypatch.setattr(ucr, "_aeon", lambda what: None)
    monkeypatch.setattr(ucr, "_fit_minirocket", greedy)
    try:
        assert ucr.minirocket(*FAKE["FakeFixed"], seed=0)["acc"] == 1.0
        assert torch.get_num_threads() == before
    finally:
        torch.set_num_threads(before)


@pytest.mark.filterwarnings("ignore::UserWarning")  # small splits, undecided smoke searches and tunings
def test_ucr_control_compares_each_finished_run_with_its_shuffled_search(tmp_path, capsys, monkeypatch):
    """benchmarks/ucr_control.py on a run made as ucr.py makes it (the same task name, seed and folder)."""
    spec = importlib.util.spec_from_file_location("bench_ucr_control", ROOT / "benchmarks" / "ucr_control.py")
    control = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(control)
    monkeypatch.setattr(control.ucr, "load", lambda name: FAKE[name])
    x_train, y_train, x_test, y_test = FAKE["FakeFixed"]
    task = dashkit.tasks.from_arrays(x_train, y_train, x_test=x_test, y_test=y_test, name="FakeFixed", seed=0)
    settings = dict(parse_setting(s) for s in TINY)
    result = dashkit.run(task, preset="smoke", out=tmp_path / "FakeFixed-s0", seed=0, device="cpu", figures=False,
                         verbose=False, **settings)
    argv = ["--runs", str(tmp_path), "--datasets", "FakeFixed,FakeVariable", "--seeds", "0"]
    assert control.main(argv) == 0
    out = capsys.readouterr().out
    assert "FakeVariable seed 0: no finished search" in out  # no run there: skipped, said so
    rows = json.loads((tmp_path / "control.json").read_text())
    assert len(rows) == 1 and rows[0]["dataset"] == "FakeFixed" and rows[0]["seed"] == 0
    row = rows[0]
    report = dashkit.pipeline.shuffled_control(tmp_path / "FakeFixed-s0", task=task)  # read back, as written
    assert row["layers"] == len(result.card.layers) == 9 and row["same"] == report.same
    assert row["data"] + row["method"] + row["undecided"] == 9 and row["prior_made_it"] == report.prior_made_it
    assert row["dash"] == pytest.approx(1.0 - result.metrics["dash"] / 100.0, abs=ROW)
    assert row["baseline"] == pytest.approx(1.0 - result.metrics["baseline"] / 100.0, abs=ROW)
    table = out.strip().splitlines()[-3:]
    assert table[0].startswith("| dataset | seeds | passes |") and table[2].startswith("| FakeFixed | 1 |")
    assert control.main(argv) == 0 and len(json.loads((tmp_path / "control.json").read_text())) == 1  # replaced


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_ucr_no_time_cap_reaches_run_and_keeps_its_rows_apart(ucr, fake, tmp_path, monkeypatch):
    """--no-time-cap runs the preset's own steps (dashkit.run(time_cap=False)); its rows are not those of a capped
    run, so neither is read back for the other."""
    seen = []
    real = ucr.dashkit.run

    def recording(*args, **kwargs):
        seen.append(kwargs.get("time_cap", True))
        return real(*args, **kwargs)

    monkeypatch.setattr(ucr.dashkit, "run", recording)
    argv = ["--datasets", "FakeFixed", "--seeds", "0", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu",
            "--no-minirocket", "--set", *TINY]
    assert ucr.main(argv + ["--no-time-cap"]) == 0
    assert seen == [False] and json.loads((tmp_path / "ucr.json").read_text())[0]["time_cap"] is False
    assert ucr.main(argv) == 0  # the capped row is another row: run again, with the cap
    assert seen == [False, True]
    rows = json.loads((tmp_path / "ucr.json").read_text())
    assert [r.get("time_cap", True) for r in rows] == [True]  # a dataset and seed keep one row: the newest


def test_cv_folds_are_stratified_balanced_and_seeded(ucr):
    y = np.array(["a"] * 13 + ["b"] * 7 + ["c"] * 2)
    fold = ucr.cv_folds(y, 4, seed=0)
    assert fold.shape == (22,) and set(fold.tolist()) == {0, 1, 2, 3}
    sizes = np.bincount(fold, minlength=4)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 22
    for label, n in (("a", 13), ("b", 7), ("c", 2)):  # each class dealt evenly: shares within one example
        share = np.bincount(fold[y == label], minlength=4)
        assert share.max() - share.min() <= 1 and share.sum() == n
    assert np.array_equal(fold, ucr.cv_folds(y, 4, seed=0))
    assert not np.array_equal(fold, ucr.cv_folds(y, 4, seed=1))  # another seed, another partition
    assert np.array_equal(np.bincount(ucr.cv_folds(np.arange(5) % 2, 5, 0)), np.ones(5))  # k = N: leave-one-out
    for k in (1, 23):
        with pytest.raises(SystemExit, match=rf"--cv {k}: expected a number of folds from 2 to the training "
                                             r"split's 22 series"):
            ucr.cv_folds(y, k, seed=0)


@pytest.mark.filterwarnings("ignore::UserWarning")  # small splits, undecided smoke tunings, a cut test series
def test_ucr_cv_holds_out_each_training_series_once_and_never_reads_the_test_split(ucr, fake, tmp_path, capsys,
                                                                                    monkeypatch):
    seen = []
    real = ucr.dashkit.tasks.from_arrays

    def recording(x_train, y_train, x_test=None, y_test=None, **kwargs):
        seen.append((len(x_train), len(x_test), np.asarray(x_test).copy()))
        return real(x_train, y_train, x_test=x_test, y_test=y_test, **kwargs)

    monkeypatch.setattr(ucr.dashkit.tasks, "from_arrays", recording)
    argv = ["--datasets", "FakeFixed", "--seeds", "0", "--preset", "smoke", "--out", str(tmp_path), "--device", "cpu",
            "--cv", "3", "--set", *TINY]
    assert ucr.main(argv) == 0
    x_train, y_train, x_test, _ = FAKE["FakeFixed"]
    fold = ucr.cv_folds(y_train, 3, 0)
    # every run trained on two folds and was tested on the third: the archive's training series, never its test ones
    assert [(a, b) for a, b, _ in seen] == [(40 - n, n) for n in np.bincount(fold)]
    for f, (_, _, held) in enumerate(seen):
        assert np.array_equal(held, x_train[fold == f])
        assert not any(np.array_equal(row, t) for row in held for t in x_test)
    assert [n for n, _, _ in fake.fits] == [40 - n for n in np.bincount(fold)]  # MiniRocket on the same folds
    rows = json.loads((tmp_path / "ucr.json").read_text())
    assert [(r["dataset"], r["seed"], r["fold"], r["cv"]) for r in rows] == [("FakeFixed", 0, f, 3) for f in range(3)]
    assert [r["test"] for r in rows] == np.bincount(fold).tolist()
    for r in rows:
        metrics = json.loads((tmp_path / f"FakeFixed-s0-f{r['fold']}" / "metrics.json").read_text())
        assert r["dash"] == pytest.approx(1 - metrics["dash"]["test"] / 100, abs=ROW)
    # the table counts held-out errors: the rows' accuracies times their held-out series, summed over the folds
    md = (tmp_path / "ucr.md").read_text()
    assert md.strip() in capsys.readouterr().out
    lines = md.splitlines()
    assert lines[0] == "| " + " | ".join(ucr.CV_COLUMNS) + " |"
    cells = [c.strip() for c in lines[2].strip("|").split("|")]
    dash = sum((1 - r["dash"]) * r["test"] for r in rows)
    base = sum((1 - r["baseline"]) * r["test"] for r in rows)
    assert cells[:5] == ["FakeFixed", "3 x 1", "40", f"{dash:.0f}", f"{base:.0f}"]
    assert cells[5] == "–"  # the smoke preset trains no random architectures
    mr = sum((1 - r["minirocket"]) * r["test"] for r in rows)
    assert cells[6] == f"{mr:.0f}"
    better = sum((1 - r["dash"]) * r["test"] < (1 - r["baseline"]) * r["test"] - 0.5 for r in rows)
    worse = sum((1 - r["dash"]) * r["test"] > (1 - r["baseline"]) * r["test"] + 0.5 for r in rows)
    assert cells[7] == f"{better} / {3 - better - worse} / {worse}"
    assert any(line.startswith("Preset smoke, seeds 0; cross-validation on the archive's training split")
               for line in lines)

    # finished folds are read back; a run without --cv is another row, kept apart in the same ucr.json
    def no_run(*args, **kwargs):
        raise AssertionError("dashkit.run called for a finished fold")

    real_run = ucr.dashkit.run
    monkeypatch.setattr(ucr.dashkit, "run", no_run)
    assert ucr.main(argv) == 0 and (tmp_path / "ucr.md").read_text() == md
    monkeypatch.setattr(ucr.dashkit, "run", real_run)
    assert ucr.main([a for a in argv if a not in ("--cv", "3")]) == 0
    rows_after = json.loads((tmp_path / "ucr.json").read_text())
    assert [(r.get("fold"), r.get("cv")) for r in rows_after] == [(0, 3), (1, 3), (2, 3), (None, None)]
    assert "held-out series" not in (tmp_path / "ucr.md").read_text()
    with pytest.raises(SystemExit, match=r"--cv 1: expected a number of folds of at least 2"):
        ucr.main(argv[:-len(TINY) - 3] + ["--cv", "1"])


def test_ucr_cv_table_sums_errors_over_folds_and_seeds(ucr):
    common = {"dataset": "A", "cv": 2, "minirocket": 1.0}
    rows = [{**common, "seed": 0, "fold": 0, "test": 10, "dash": 0.8, "baseline": 0.9, "random": 0.75,
             "decided": [1, 3]},
            {**common, "seed": 0, "fold": 1, "test": 10, "dash": 0.9, "baseline": 0.9, "random": 0.6,
             "decided": [2, 3]},
            {**common, "seed": 1, "fold": 0, "test": 10, "dash": 1.0, "baseline": 0.7, "random": 0.8,
             "decided": [0, 3]},
            {**common, "seed": 1, "fold": 1, "test": 10, "dash": 0.7, "baseline": 0.9, "random": 0.7,
             "decided": [3, 3]},
            {"dataset": "B", "cv": 2, "seed": 0, "fold": 0, "test": 4, "dash": 0.5, "baseline": 0.75,
             "random": None, "minirocket": None}]
    lines = ucr.cv_table(rows, "standard").splitlines()
    a, b, total = ([c.strip() for c in line.strip("|").split("|")] for line in lines[2:5])
    assert a == ["A", "2 x 2", "40", "6", "6", "11.5", "0", "1 / 1 / 2", "6/12"]
    assert b == ["B", "1 x 1", "4", "2", "1", "–", "–", "0 / 0 / 1", "–"]
    assert total[:7] == ["all 2 datasets", "", "44", "8", "7", "–", "–"]
    assert lines[-1].startswith("Preset standard, seeds 0, 1; cross-validation")
