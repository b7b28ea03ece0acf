"""The benchmark scripts that write RESULTS.md's tables, run at smoke size."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_search_ablation_variants_are_typed_and_bad_ones_named():
    ablation = _script("search_ablation")
    assert ablation.parse_variant("default") == ("default", {})
    name, settings = ablation.parse_variant("search_scheme=bilevel search_arch_lr=0.5 tune_lrs=0.1,0.01")
    assert name == "search_arch_lr=0.5-search_scheme=bilevel-tune_lrs=0.1,0.01"
    assert settings == {"search_arch_lr": 0.5, "search_scheme": "bilevel", "tune_lrs": (0.1, 0.01)}
    with pytest.raises(SystemExit, match="search_arch_lr"):
        ablation.parse_variant("search_arch_lr=fast")
    with pytest.raises(SystemExit, match="no_such_setting"):
        ablation.parse_variant("no_such_setting=1")


@pytest.mark.filterwarnings("ignore::dashkit.pipeline.TuningUndecidedWarning")  # smoke tunings decide nothing
def test_search_ablation_runs_each_variant_and_reads_finished_runs_back(tmp_path, capsys):
    ablation = _script("search_ablation")
    argv = ["digits", "--preset", "smoke", "--seeds", "0", "--out", str(tmp_path), "--device", "cpu",
            "--variant", "default", "--variant", "kernel_sizes=3 dilations=1"]
    assert ablation.main(argv) == 0
    rows = json.loads((tmp_path / "digits-ablation.json").read_text())
    assert [r["variant"] for r in rows] == ["default", "dilations=1-kernel_sizes=3"]
    default, fixed = rows
    assert default["candidates"] > 1 and fixed["candidates"] == 1
    # one candidate: softmax gives it everything, which is M * p = 1, "no preference" and certainty at once
    assert fixed["preference"] == pytest.approx(1.0)
    assert set(fixed["arch"].split()) == {"3/1"}
    assert 1.0 <= default["preference"] <= default["candidates"]
    card = json.loads((tmp_path / "digits-default-s0" / "archcard.json").read_text())
    leads = [sorted(layer["alpha"])[-1] - sorted(layer["alpha"])[-2] for layer in card["layers"]]
    assert default["margin"] == pytest.approx(sum(leads) / len(leads)) and default["margin"] > 0
    assert fixed["margin"] == 0.0
    # how far the chosen network sees, and how many layers decided, as the card says
    fields = [1 + c["d"] * (c["k"] - 1) for c in card["layers"]]
    assert default["field"] == 1 + sum(f - 1 for f in fields) and fixed["field"] == 1 + 2 * len(fields)
    assert default["decided"] == [sum(bool(c["decided"]) for c in card["layers"]), len(card["layers"])]
    assert default["val_random"] is None  # smoke: no random-architecture control
    for r in rows:  # DASH alone: no baseline trained, and the test metric is not reported
        run = tmp_path / f"digits-{r['variant']}-s0"
        assert not (run / "baseline.safetensors").exists()
        assert json.loads((run / "metrics.json").read_text())["dash"]["val"] == r["val"]
        assert "test" not in r
    table = capsys.readouterr().out.splitlines()[-2:]
    assert table[0].startswith("| default | ") and table[1].startswith("| dilations=1-kernel_sizes=3 | 1 | ")
    # a second call finds both runs finished and repeats nothing
    written = {f: f.stat().st_mtime_ns for pattern in ("archcard.json", "metrics.json", "dash.safetensors", "*.csv")
               for f in tmp_path.glob(f"digits-*-s0/{pattern}")}
    assert len(written) >= 2 * 5
    assert ablation.main(argv) == 0
    again = json.loads((tmp_path / "digits-ablation.json").read_text())
    assert [r["val"] for r in again] == [r["val"] for r in rows]
    assert {f: f.stat().st_mtime_ns for f in written} == written
    # a call with one variant keeps the other's rows in the JSON
    assert ablation.main(argv[:-2]) == 0
    kept = json.loads((tmp_path / "digits-ablation.json").read_text())
    assert sorted(r["variant"] for r in kept) == ["default", "dilations=1-kernel_sizes=3"]
    assert sorted(r["val"] for r in kept) == sorted(r["val"] for r in rows)


def test_search_ablation_scores_recovery_of_the_planted_architecture(tmp_path, capsys):
    ablation = _script("search_ablation")
    argv = ["planted1d", "--search-only", "--preset", "smoke", "--seeds", "0", "1", "--out", str(tmp_path),
            "--device", "cpu", "--variant", "default"]
    assert ablation.main(argv) == 0
    rows = json.loads((tmp_path / "planted1d-search-ablation.json").read_text())
    import dashkit

    planted = dashkit.tasks.get("planted1d").info["planted"]
    for r in rows:  # the score is the count of layers whose chosen pair is the planted one, read from the card
        card = json.loads((tmp_path / f"planted1d-default-search-s{r['seed']}" / "archcard.json").read_text())
        assert r["planted"] == [sum([c["k"], c["d"]] == list(planted[c["name"]]) for c in card["layers"]), 3]
        assert r["val"] is None  # the search alone: nothing was retrained, no validation metric
        assert not (tmp_path / f"planted1d-default-search-s{r['seed']}" / "dash.safetensors").exists()
    hits = sum(r["planted"][0] for r in rows)
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("| default | 9 | – | – | ")
    assert f" {hits}/6 ({hits / 6:.0%}; chance 11%) | " in line


@pytest.mark.filterwarnings("ignore::dashkit.pipeline.TuningUndecidedWarning")
def test_retrain_convs_times_every_backend_of_both_networks(tmp_path, capsys):
    import dashkit

    retrain_convs = _script("retrain_convs")
    run = tmp_path / "digits-tiny"
    dashkit.run("digits", preset="smoke", out=run, device="cpu", baseline=False, figures=False, verbose=False,
                search_epochs=1, search_max_batches=2, tune_enabled=False, retrain_epochs=1, retrain_max_batches=1)
    r = retrain_convs.measure(run, batch=4, rounds=2)
    assert r["task"] == "digits" and r["batch"] == 4
    assert set(r["seconds"]) == {f"{net}/{b}" for net in ("baseline", "dash") for b in retrain_convs.BACKENDS}
    assert all(s > 0 for s in r["seconds"].values())
    assert r["dash_over_baseline"]["auto"] == pytest.approx(r["seconds"]["dash/auto"] / r["seconds"]["baseline/auto"])
    assert retrain_convs.main([str(run), "--batch", "4", "--rounds", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("| digits | 4 | ")


def test_results_table_has_the_random_control_decisions_and_agreement():
    results = _script("results")

    def row(seed, dash, baseline, random, choices):
        return dict(task="t", seed=seed, metric="error_pct", dash=dash, baseline=baseline, random=random,
                    choices=choices, candidates=4, decided=[1, 2], wall=60,
                    times={"search": 2.0, "retrain": 1.0, "baseline_retrain": 1.0})

    rows = [row(0, 1.0, 2.0, 3.0, {"a": [3, 1], "b": [5, 1]}), row(1, 1.5, 1.0, 2.0, {"a": [3, 1], "b": [3, 1]}),
            row(2, 1.2, 2.0, 1.0, {"a": [5, 1], "b": [5, 1]})]
    # layer a: seeds 0 and 1 agree; layer b: seeds 0 and 2 agree; 2 of the 6 (layer, seed pair)s
    assert results.agreement(rows) == (pytest.approx(1 / 3), 6)
    line = results.table(rows).splitlines()[-1]
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3:10] == ["1.233 ± 0.25", "1.667 ± 0.58", "2 ± 1", "yes (2 of 3 seeds)", "yes (2 of 3 seeds)", "3/6",
                           "0.33 (6 layer pairs; 1/M = 0.25)"]
    assert cells[-1] == "-"  # rows without the network chosen on validation
    chosen = [dict(r, chosen=c, chosen_metric=v)
              for r, c, v in zip(rows, ("dash", "baseline", "dash"), (1.0, 1.0, 1.6))]
    assert results.table(chosen).splitlines()[-1].strip("|").split("|")[-1].strip() == "1.2 ± 0.35 (baseline 1/3)"
    # rows recorded before the control existed still make a table, with '-' where it is missing
    old = [dict(r, random=None, decided=None) for r in rows]
    cells = [c.strip() for c in results.table(old).splitlines()[-1].strip("|").split("|")]
    assert cells[5] == "-" and cells[7] == "-" and cells[8] == "-"


def test_results_collect_reads_the_chosen_network_of_older_rows_from_their_run(tmp_path):
    results = _script("results")
    row = dict(task="t", seed=0, metric="error_pct", dash=3.0, baseline=2.0)
    assert results._chosen_from_run(row, tmp_path) == row  # no run directory: nothing to read
    (tmp_path / "t-s0").mkdir()
    metrics = {"metric": "error_pct", "dash": {"val": 1.0, "test": 3.0}, "baseline": {"val": 0.5, "test": 2.0}}
    (tmp_path / "t-s0" / "metrics.json").write_text(json.dumps(metrics))
    assert results._chosen_from_run(row, tmp_path) == dict(row, chosen="baseline", chosen_metric=2.0)


def test_tune_costs_times_both_tunings_beside_the_cost_models_predictions(tmp_path, capsys):
    import dashkit

    tune_costs = _script("tune_costs")
    run = tmp_path / "digits-tiny"
    dashkit.run("digits", preset="smoke", out=run, device="cpu", figures=False, verbose=False, random_draws=0,
                search_epochs=1, search_max_batches=2, tune_enabled=False, retrain_epochs=1, retrain_max_batches=1)
    task, card = tune_costs.load_task(run), dashkit.ArchCard.load(run / "archcard.json")
    r = tune_costs.check(task, card, steps=3, configs=2)
    assert r["task"] == "digits" and r["folds"] == 1 and r["step_ratio"] > 0 and r["eval_ratio"] > 0
    for net in ("dash", "baseline"):
        assert r[net]["seconds"] > 0 and r[net]["typical"] > 0
    assert r["baseline"]["searched"] == r["baseline"]["typical"]  # the searched costs are DASH's only
    if r["step_ratio"] > 1 and r["eval_ratio"] > 1:
        assert r["dash"]["searched"] > r["dash"]["typical"]
    elif r["step_ratio"] < 1 and r["eval_ratio"] < 1:
        assert r["dash"]["searched"] < r["dash"]["typical"]
    capsys.readouterr()
    assert tune_costs.main([str(run), "--steps", "2", "--configs", "2"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert rows[0].startswith("| run | folds |") and len(rows) == 4
    assert rows[2].startswith("| digits-tiny | 1 | ") and " | dash | " in rows[2] and " | baseline | " in rows[3]


def test_plan_check_divides_each_networks_seconds_by_what_its_plan_costed(tmp_path, capsys):
    """A made-up budgeted run: 10 retraining steps in 5 epochs (2 batches a pass), 4 search steps in 2 epochs;
    each stage's seconds are set so that every ratio is known: from its done marker, or (the stage stopped before
    it was done) from its history's rows."""
    from dashkit.budget import RETRAIN_EPOCH_WRITES, SEARCH_EPOCH_WRITES

    check = _script("plan_check")
    run = tmp_path / "runs" / "Some-s0"
    run.mkdir(parents=True)
    costs = {"search_step": 1.0, "dash_step": 0.5, "baseline_step": 0.25, "dash_eval": 0.1, "baseline_eval": 0.05,
             "random_step": 0.4, "random_eval": 0.1, "checkpoint": 0.01, "after": 1.0}
    plan = {"search": {"steps": 4, "batches_per_pass": 2}, "retrain": {"steps": 10, "batches_per_pass": 2}}
    (run / "config.json").write_text(json.dumps({"plan": plan, "budget": {"seconds": 60.0, "costs": costs,
                                                                          "random_draws": 2}}))
    (run / "metrics.json").write_text("{}")
    planned = {"search": 4 * 1.0 + 2 * SEARCH_EPOCH_WRITES * 0.01,
               "retrain": 10 * 0.5 + 5 * (0.1 + RETRAIN_EPOCH_WRITES * 0.01),
               "baseline_retrain": 10 * 0.25 + 5 * (0.05 + RETRAIN_EPOCH_WRITES * 0.01),
               "random_0_retrain": 10 * 0.4 + 5 * (0.1 + RETRAIN_EPOCH_WRITES * 0.01)}
    planned["random_1_retrain"] = planned["random_0_retrain"]
    wanted = {"search": 0.9, "retrain": 1.2, "baseline_retrain": 1.0, "random_0_retrain": 1.5,
              "random_1_retrain": 2.0}
    (run / "done").mkdir()
    for stage, factor in wanted.items():
        total = planned[stage] * factor
        if stage == "random_1_retrain":  # stopped: its history's rows, split over two epochs
            (run / f"history_{stage}.csv").write_text(f"epoch,seconds\n1,{total / 4}\n2,{3 * total / 4}\n")
        else:
            (run / "done" / f"{stage}.json").write_text(json.dumps({"seconds": total}))
            (run / f"history_{stage}.csv").write_text("epoch,seconds\n1,1000.0\n")  # the done marker counts
    row = check.check_run(run)
    assert row["search"] == pytest.approx(0.9) and row["dash"] == pytest.approx(1.2)
    assert row["baseline"] == pytest.approx(1.0) and row["random"] == pytest.approx([1.5, 2.0])
    assert check.main([str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "| Some-s0 | 0.90 | 1.20 | 1.00 | 1.50, 2.00 | 1.20 | 1.50, 2.00 |" in out
    assert "random / baseline over 2: median 1.75, range 1.50-2.00" in out
    assert check.check_run(tmp_path) is None  # no run here
    costs.update({"search_writes": 0.5, "retrain_writes": 0.2})  # measured epoch files replace the old count
    (run / "config.json").write_text(json.dumps({"plan": plan, "budget": {"seconds": 60.0, "costs": costs,
                                                                          "random_draws": 2}}))
    assert check.check_run(run)["search"] == pytest.approx(0.9 * planned["search"] / (4 * 1.0 + 2 * 0.5))
    assert check.check_run(run)["baseline"] == pytest.approx(planned["baseline_retrain"] / (
        10 * 0.25 + 5 * (0.05 + 0.2)))


@pytest.mark.filterwarnings("ignore::dashkit.tasks.base.SmallSplitWarning")
def test_null_search_builds_ucr_tasks_as_the_ucr_benchmark_does(monkeypatch):
    null = _script("null_search")
    import numpy as np
    import ucr  # on the path through null_search

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((24, 1, 40)).astype("float32"), np.array(["a", "b", "c"] * 8)
    xt, yt = rng.standard_normal((12, 1, 40)).astype("float32"), np.array(["a", "b", "c"] * 4)
    monkeypatch.setattr(ucr, "load", lambda name: (x, y, xt, yt) if name == "Toy" else 1 / 0)
    task = null.build_task("ucr:Toy", seed=0)  # the archive's split: 24 for training and validation, 12 for test
    assert task.name == "toy" and task.info["sizes"]["train"] + task.info["sizes"]["val"] == 24
    assert task.info["sizes"]["test"] == 12
    assert null.build_task("digits", seed=0).name == "digits"


def test_null_search_compares_the_real_and_the_permuted_search(tmp_path, capsys):
    import torch

    null = _script("null_search")
    argv = ["digits", "--preset", "smoke", "--seeds", "0", "--out", str(tmp_path), "--device", "cpu",
            "--variant", "default"]
    assert null.main(argv) == 0
    rows = json.loads((tmp_path / "null-search.json").read_text())
    assert [r["targets"] for r in rows] == ["real", "permuted"]
    cards = {}
    for r in rows:  # every count is the card's
        card = json.loads((tmp_path / f"digits-default-{r['targets']}-s0" / "archcard.json").read_text())
        cards[r["targets"]] = card["layers"]
        assert r["pairs"] == [[c["k"], c["d"]] for c in card["layers"]]
        assert r["max_k"] <= r["layers"] == len(card["layers"])
        assert r["decided"] == [sum(bool(c["decided"]) for c in card["layers"]), len(card["layers"])]
        assert r["z"] == [c["z"] for c in card["layers"]]
        plan = json.loads((tmp_path / f"digits-default-{r['targets']}-s0" / "config.json").read_text())["plan"]
        assert r["passes"] == plan["search"]["passes"] > 0
        probs = [torch.softmax(torch.tensor(c["alpha"]), 0) for c in card["layers"]]
        assert r["p_choice"] == pytest.approx([p.max().item() for p in probs], rel=1e-6)
        assert not (tmp_path / f"digits-default-{r['targets']}-s0" / "dash.safetensors").exists()  # search only
    same = sum(a["k"] == b["k"] and a["d"] == b["d"] for a, b in zip(cards["real"], cards["permuted"]))
    assert rows[0]["same_as_real"] == rows[1]["same_as_real"] == same
    lines = capsys.readouterr().out.splitlines()
    assert lines[-2].startswith("| digits | default | real | 1 | ") and lines[-1].startswith(
        "| digits | default | permuted | 1 | ")
    # a second call reads both searches back
    written = {f: f.stat().st_mtime_ns for f in tmp_path.glob("digits-*/archcard.json")}
    assert len(written) == 2 and null.main(argv) == 0
    assert {f: f.stat().st_mtime_ns for f in written} == written
