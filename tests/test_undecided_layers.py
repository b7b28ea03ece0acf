"""Undecided layers at the backbone's default kernels (``search_undecided``, `ArchCard.undecided`).

A layer whose choice did not pass the decision test (`DashConv.decision`) is, with "default_kernels", left as the
backbone built it; "searched" (DASH, the card's default) sets every layer. Checked on a hand-made mix of decided,
undecided and record-less layers (what `apply` sets and leaves, the summary, the explorer's rows and figures, the
errors), on the presets, and through one small run whose saved weights must load into the network `load_model`
rebuilds from the card: the tuning, the retraining and the loading all build the same network.
"""
from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from dashkit import pipeline, supernet
from dashkit.config import make_config
from dashkit.stages.models import build_backbone, build_model
from dashkit.supernet import ArchCard

from test_pipeline import TINY, tiny_cfg, tiny_task


def kernels(model: torch.nn.Module) -> dict:
    """{conv name: (kernel size, dilation)} of a plain network's convolutions."""
    return {name: (m.kernel_size[0], m.dilation[0]) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Conv1d)}


def mixed_card(undecided=None):
    """A real card of the tiny task's backbone: every layer at the space's widest pair (5, 2), which no default
    conv has, the first decided, the second not, the rest without a record."""
    task = tiny_task()
    cfg = tiny_cfg(task)
    _, card = supernet.discretize(supernet.to_supernet(build_backbone(task, cfg, "search"),
                                                       supernet.SearchSpace((3, 5), (1, 2), dims=1)))
    records = [dict(decided=True, z=4.0), dict(decided=False, z=1.0)] + [dict(decided=None, z=None)] * 99
    layers = [dataclasses.replace(layer, k=5, d=2, **rec) for layer, rec in zip(card.layers, records)]
    meta = dict(card.meta, **({} if undecided is None else {"undecided": undecided}))
    return task, cfg, dataclasses.replace(card, layers=layers, meta=meta)


def test_default_kernels_leaves_only_the_undecided_layer_as_built():
    task, cfg, card = mixed_card()
    assert len(card.layers) >= 3
    before = kernels(build_backbone(task, cfg, "retrain"))
    assert all(kd != (5, 2) for kd in before.values())
    names = [layer.name for layer in card.layers]
    gated = kernels(card.apply(build_backbone(task, cfg, "retrain"), undecided="default_kernels"))
    assert gated[names[1]] == before[names[1]]  # undecided: the backbone's own conv
    assert all(gated[n] == (5, 2) for i, n in enumerate(names) if i != 1)  # decided, and no record: the card's
    every = kernels(card.apply(build_backbone(task, cfg, "retrain"), undecided="searched"))
    assert all(every[n] == (5, 2) for n in names)
    # convs the card does not name are untouched either way
    assert {n: kd for n, kd in gated.items() if n not in names} == {n: kd for n, kd in before.items()
                                                                     if n not in names}
    assert [layer.name for layer in card.applied_layers("default_kernels")] == names[:1] + names[2:]
    assert card.kept_layers() == []  # the card's own policy: "searched"
    assert dataclasses.replace(card, meta={**card.meta, "undecided": "default_kernels"}).kept_layers() == [names[1]]


def test_apply_follows_the_cards_own_policy_and_an_old_card_keeps_every_choice():
    task, cfg, old = mixed_card()
    assert "undecided" not in old.meta and old.undecided == "searched"
    name = old.layers[1].name
    default = kernels(build_backbone(task, cfg, "retrain"))[name]
    assert kernels(old.apply(build_backbone(task, cfg, "retrain")))[name] == (5, 2)
    _, _, new = mixed_card("default_kernels")
    assert kernels(new.apply(build_backbone(task, cfg, "retrain")))[name] == default
    assert kernels(new.apply(build_backbone(task, cfg, "retrain"), undecided="searched"))[name] == (5, 2)
    # the policy survives the JSON round trip
    assert ArchCard.from_dict(new.to_dict()).undecided == "default_kernels"


def test_bad_policies_are_refused_with_the_value_and_what_is_accepted():
    task, cfg, card = mixed_card()
    with pytest.raises(ValueError, match=r"undecided = 'maybe'.*searched, default_kernels"):
        card.apply(build_backbone(task, cfg, "retrain"), undecided="maybe")
    _, _, bad = mixed_card("sometimes")
    with pytest.raises(ValueError, match=r"meta\['undecided'\] = 'sometimes'.*searched, default_kernels"):
        bad.apply(build_backbone(task, cfg, "retrain"))
    with pytest.raises(ValueError, match=r"search_undecided = 'x': expected one of searched, default_kernels"):
        make_config("standard", search_undecided="x")


def test_every_preset_keeps_the_searched_choices_and_the_option_reaches_the_config():
    for preset in ("smoke", "standard", "paper"):  # DASH's network (RESULTS.md: the option is not the default)
        assert make_config(preset).search.undecided == "searched"
    assert make_config("standard", search_undecided="default_kernels").search.undecided == "default_kernels"


def test_summary_rows_and_figures_say_which_layers_keep_the_default_kernel():
    from dashkit import viz, widgets

    _, _, card = mixed_card("default_kernels")
    text = card.summary()
    head, rows = text.splitlines()[0], text.splitlines()[2:]
    assert "the 1 undecided trained at the backbone's default kernels" in head
    assert [("trained: default kernel" in row) for row in rows] == [i == 1 for i in range(len(card.layers))]
    assert "default kernel" not in mixed_card()[2].summary()  # "searched": nothing is kept
    assert [r["trained"] for r in widgets.architecture_rows(card)] == \
        ["default kernel" if i == 1 else "searched" for i in range(len(card.layers))]
    fig = widgets.architecture_diagram(card)
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert [("trained at the default kernel" in t) for t in labels] == [i == 1 for i in range(len(card.layers))]
    assert "default kernels" in viz.choices(card)._suptitle.get_text()
    assert "default kernels" in viz.alpha_heatmap(card).axes[0].get_title()
    assert "default kernels" not in viz.choices(mixed_card()[2])._suptitle.get_text()


def test_the_undecided_warning_says_what_the_trained_network_keeps():
    _, _, card = mixed_card("default_kernels")
    card = dataclasses.replace(card, layers=[dataclasses.replace(layer, decided=False, z=0.5, steps=10)
                                             for layer in card.layers])
    with pytest.warns(supernet.SearchUndecidedWarning, match="keeps the backbone's default kernels"):
        supernet.warn_if_undecided(card)
    searched = dataclasses.replace(card, meta={k: v for k, v in card.meta.items() if k != "undecided"})
    with pytest.warns(supernet.SearchUndecidedWarning, match="search_undecided='default_kernels'"):
        supernet.warn_if_undecided(searched)


def test_a_run_trains_and_loads_the_gated_network(tmp_path):
    task = tiny_task()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = pipeline.run(task, out=tmp_path / "r", figures=False, verbose=False,
                           **{**TINY, "search_undecided": "default_kernels"})
    card = ArchCard.load(tmp_path / "r" / "archcard.json")
    assert card.meta["undecided"] == "default_kernels"
    assert all(layer.decided is not None for layer in card.layers)
    default = kernels(build_backbone(task, res.config, "retrain"))
    model = pipeline.load_model(tmp_path / "r", "dash", task=task)  # strict load: the trained network's shapes
    got = kernels(model)
    for layer in card.layers:
        assert got[layer.name] == ((layer.k, layer.d) if layer.decided else default[layer.name]), layer
    # the check discriminates: some undecided layer chose other than its default (two search epochs decide none)
    assert any(not layer.decided and (layer.k, layer.d) != default[layer.name] for layer in card.layers)
    # the same network as build_model's, whose weights the run saved
    assert kernels(build_model(task, res.config, card)) == got
    assert 0 <= res.metrics["dash"] <= 100


def test_the_benchmark_retrains_only_dash_and_keeps_the_rest(tmp_path):
    """benchmarks/undecided_layers.py: the gated copy redoes DASH's tuning and retraining and nothing else."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "bench_undecided", Path(__file__).resolve().parents[1] / "benchmarks" / "undecided_layers.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    task = tiny_task()
    settings = {k: v for k, v in TINY.items() if k != "random_draws"}
    row = bench.compare(task, 0, tmp_path, preset="standard", random_draws=1, **settings)
    searched, gated = tmp_path / "tiny-seed0-searched", tmp_path / "tiny-seed0-gated"
    assert row["decided"] is not None and row["kept_default"] == row["decided"][1] - row["decided"][0] > 0
    assert row["searched"] is not None and row["gated"] is not None and row["random"] is not None
    # the baseline's and the draw's weights are the searched run's, byte for byte; DASH's were trained anew
    for name in ("baseline.safetensors", "random_0.safetensors"):
        assert (gated / name).read_bytes() == (searched / name).read_bytes()
    assert (gated / "dash.safetensors").read_bytes() != (searched / "dash.safetensors").read_bytes()
    default = kernels(build_backbone(task, make_config("standard", task.defaults), "retrain"))
    got = kernels(pipeline.load_model(gated, "dash", task=task))
    card = ArchCard.load(gated / "archcard.json")
    assert all(got[layer.name] == default[layer.name] for layer in card.layers if layer.decided is False)
    # read back, not repeated; the table has the task's row
    assert bench.compare(task, 0, tmp_path, preset="standard", random_draws=1, **settings) == \
        {**row, "run_s": pytest.approx(0, abs=5), "gated_s": pytest.approx(0, abs=5)}
    lines = bench.table([row]).splitlines()
    assert len(lines) == 3 and lines[2].startswith("| tiny | error_pct | 1 | ")
    assert "±" not in lines[2]  # one seed: means without a spread
