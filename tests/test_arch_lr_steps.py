"""search_arch_lr_steps: alpha's learning rate scaled up for short searches, so its reach does not shrink with them."""
import json

import pytest
import torch

from dashkit import pipeline
from dashkit.config import SearchConfig, make_config
from test_pipeline import tiny_cfg, tiny_task


def test_arch_lr_for_scales_short_searches_up_and_leaves_long_ones_and_dash_alone():
    sc = SearchConfig(arch_lr=0.05, arch_lr_steps=2000)
    assert sc.arch_lr_for(500) == pytest.approx(0.2)
    assert sc.arch_lr_for(8) * 8 == pytest.approx(0.05 * 2000)  # lr x steps: the reach of 2000 steps at 0.05
    assert sc.arch_lr_for(2000) == 0.05 and sc.arch_lr_for(19000) == 0.05
    dash = SearchConfig(arch_lr=0.05)
    assert dash.arch_lr_steps is None and {dash.arch_lr_for(n) for n in (1, 150, 2000, 19000)} == {0.05}
    assert make_config("paper").search.arch_lr_steps is None  # DASH's published lr in the paper preset


@pytest.mark.parametrize("value", [0, -5, 1.5, True, "2000"])
def test_arch_lr_steps_refuses_what_is_not_a_positive_int_and_names_the_setting(value):
    with pytest.raises(ValueError, match=r"search_arch_lr_steps = .*expected None \(arch_lr whatever the steps\) "
                                         r"or an int >= 1"):
        SearchConfig(arch_lr_steps=value)


def test_search_steps_alpha_with_the_scaled_lr_and_records_it(tmp_path):
    task = tiny_task()
    moved = {}
    for name, extra in (("dash", {}), ("scaled", {"search_arch_lr_steps": 60})):
        cfg = tiny_cfg(task, **extra)
        card = pipeline.search(task, cfg, tmp_path / name)
        steps = card.meta["steps"]
        lr = cfg.search.arch_lr * (max(1.0, 60 / steps) if extra else 1.0)
        assert card.meta["arch_lr"] == pytest.approx(lr)
        history = (tmp_path / name / "history_search.csv").read_text().splitlines()
        col = history[0].split(",").index("arch_lr")
        assert float(history[1].split(",")[col]) == pytest.approx(lr)  # epoch 1: before any milestone
        alphas = json.loads((tmp_path / name / "alphas.json").read_text())["epochs"][-1]
        moved[name] = max(torch.tensor(p).log().std().item() for p in alphas)  # log p = alpha + const per layer
    assert steps < 60
    # same seed, same batches: the scaled search moves alpha far more (10x lr for 6 steps; alpha starts at 1e-3 randn)
    assert moved["scaled"] > 3 * moved["dash"]
