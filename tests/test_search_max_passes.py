"""search_max_passes: a search cut to at most so many passes over its training split (steps path, time budgets)."""
import json

import pytest
import torch
from torch.utils.data import TensorDataset

from dashkit import budget as B
from dashkit import pipeline
from dashkit.config import SearchConfig, make_config
from dashkit.supernet import SearchUndecidedWarning
from dashkit.tasks.base import Task, TaskDefaults
from test_budget import FAKE_COSTS
from test_pipeline import tiny_cfg, tiny_task


def sized_task(n: int) -> Task:
    x = torch.randn(n, 1, 16)
    y = torch.arange(n) % 2
    ds = TensorDataset(x, y)
    return Task(name=f"n{n}", kind="classification", train=ds, val=ds, test=ds, in_shape=(1, 16), num_outputs=2,
                metric_name="error_pct", defaults=TaskDefaults(backbone="resnet1d"))


@pytest.mark.parametrize("n, batch, steps", [(40, 40, 100), (400, 64, 600), (60_000, 64, 2000)])
def test_the_search_is_cut_to_its_passes_and_the_plan_says_so(n, batch, steps):
    cfg = make_config("standard", search_steps=2000, search_max_passes=100)
    plan = B.stage_plan(sized_task(n), cfg, "search")
    assert (plan.batch_size, plan.steps) == (batch, steps)
    assert plan.passes <= 100 + 1e-9
    d = plan.to_dict()
    if steps < 2000:  # 40 examples: one batch a pass, 100 steps; 400: six batches a pass, 600 steps
        assert (d["steps_asked"], d["max_passes"]) == (2000, 100) and d["passes"] == pytest.approx(100)
        assert "(of 2000: at most 100 passes, search_max_passes)" in B.format_plan({"search": d})
    else:  # 60,000 examples: 2000 steps are 2.1 passes, nothing to cut
        assert "steps_asked" not in d and "search_max_passes" not in B.format_plan({"search": d})
    # the other stages, and a search without the setting, keep their steps
    assert B.stage_plan(sized_task(n), cfg, "retrain").steps == cfg.retrain.steps
    assert B.stage_plan(sized_task(n), make_config("standard", search_steps=2000), "search").steps == 2000
    assert B.passes_cap(0.5, 3) == 2 and B.passes_cap(1e-6, 1) == 1  # ceil, at least one step


@pytest.mark.parametrize("value", [0, -1, True, "100", float("inf"), float("nan")])
def test_search_max_passes_refuses_what_is_not_a_positive_number_and_names_the_setting(value):
    with pytest.raises(ValueError, match=r"search_max_passes = .*expected None \(the search's steps as given\) or "
                                         r"a number of passes over the training split > 0"):
        SearchConfig(max_passes=value)


def test_a_time_budget_gives_what_the_cut_search_leaves_to_the_retraining():
    per_pass = {"search": 2, "tune": 2, "retrain": 2}
    free, _ = B.plan_budget(300.0, FAKE_COSTS, make_config("standard", random_draws=0), per_pass, spent=10.0)
    cut, record = B.plan_budget(300.0, FAKE_COSTS, make_config("standard", random_draws=0, search_max_passes=50),
                                per_pass, spent=10.0)
    assert free["search_steps"] > 100 and cut["search_steps"] == 100  # 50 passes of 2 batches
    assert cut["retrain_steps"] > free["retrain_steps"] + 100  # the search's unspent share went to the retraining
    assert 0.98 * 300.0 <= record["planned_seconds"] <= 300.0


def test_a_cut_search_runs_its_steps_scales_alpha_lr_to_them_and_records_its_passes(tmp_path):
    task = tiny_task()  # 96 training examples: batches of 32, 3 a pass
    cfg = tiny_cfg(task, search_steps=30, search_max_passes=2, search_arch_lr_steps=60)
    card = pipeline.search(task, cfg, tmp_path / "cut")
    assert card.meta["steps"] == 6 and card.meta["passes"] == pytest.approx(2)
    assert card.meta["arch_lr"] == pytest.approx(cfg.search.arch_lr * 60 / 6)  # the reach of 60 steps
    rows = (tmp_path / "cut" / "history_search.csv").read_text().splitlines()[1:]
    assert len(rows) == B.epochs_for(6, 3)
    assert len(json.loads((tmp_path / "cut" / "alphas.json").read_text())["epochs"]) == len(rows)


def test_the_undecided_warning_names_the_cut_and_the_card_records_it(tmp_path):
    task = tiny_task()
    cfg = tiny_cfg(task, search_steps=30, search_max_passes=2)
    with pytest.warns(SearchUndecidedWarning) as got:
        card = pipeline.search(task, cfg, tmp_path / "cut")
    assert (card.meta["steps_asked"], card.meta["max_passes"]) == (30, 2)
    text = str(next(w.message for w in got if w.category is SearchUndecidedWarning))
    assert "This search was cut from 30 to 6 steps by search_max_passes=2" in text
    # an uncut search has neither the record nor the sentence
    with pytest.warns(SearchUndecidedWarning) as got:
        card = pipeline.search(task, tiny_cfg(task, search_steps=6), tmp_path / "uncut")
    assert "steps_asked" not in card.meta
    assert not any("search_max_passes" in str(w.message) for w in got)
