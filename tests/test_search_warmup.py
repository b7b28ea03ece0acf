"""search_warmup (alpha frozen while the weights train first) and search_joint_clip (the reference's clipping of
alpha together with the weights)."""
import dataclasses
import json

import pytest
import torch

from dashkit import pipeline, supernet
from dashkit.config import SearchConfig
from dashkit.stages.models import build_supernet
from dashkit.stages.search import search_step
from test_pipeline import tiny_cfg, tiny_task


def test_warmup_steps_round_a_fraction_of_the_search():
    assert SearchConfig().warmup == 0.0 and SearchConfig().warmup_steps(2000) == 0  # DASH: alpha from step 1
    assert SearchConfig(warmup=0.25).warmup_steps(2000) == 500
    assert SearchConfig(warmup=0.25).warmup_steps(6) == 2  # round(1.5): half to even
    assert SearchConfig(warmup=0.9).warmup_steps(3) == 2 and SearchConfig(warmup=0.6).warmup_steps(1) == 0  # alpha
    # keeps at least one step of a very short search


@pytest.mark.parametrize("value", [-0.1, 1.0, 3, True, "0.2", None])
def test_warmup_refuses_what_is_not_a_fraction_and_names_the_setting(value):
    with pytest.raises(ValueError, match=r"search_warmup = .*expected a fraction in \[0, 1\) of the search's steps"):
        SearchConfig(warmup=value)


def test_search_with_warmup_freezes_alpha_then_moves_it_and_records_only_its_own_steps(tmp_path):
    task = tiny_task()
    cfg = tiny_cfg(task, search_warmup=0.5, search_epochs=4)  # 3 steps an epoch: 12 steps, the first 6 frozen
    card = pipeline.search(task, cfg, tmp_path / "w")
    steps, warm = card.meta["steps"], card.meta["warmup_steps"]
    assert (steps, warm) == (12, 6)
    assert {layer.steps for layer in card.layers} == {steps - warm}  # the decision record counts alpha's steps only
    epochs = json.loads((tmp_path / "w" / "alphas.json").read_text())["epochs"]
    per_epoch = steps // len(epochs)
    start = [torch.tensor(p) for p in epochs[0]]
    for e in range(len(epochs)):
        probs = [torch.tensor(p) for p in epochs[e]]
        frozen = (e + 1) * per_epoch <= warm
        same = all(torch.equal(a, b) for a, b in zip(start, probs))
        assert same == frozen, e  # unchanged through the warm-up epochs, moved after
    history = (tmp_path / "w" / "history_search.csv").read_text().splitlines()
    col = history[0].split(",").index("arch_lr")
    lrs = [float(row.split(",")[col]) for row in history[1:]]
    assert lrs[:2] == [0.0, 0.0] and all(lr > 0 for lr in lrs[2:])  # the history says alpha's lr was 0 then
    # alpha's lr is scaled for the steps alpha takes (search_arch_lr_steps), not for the whole search
    scaled = pipeline.search(task, tiny_cfg(task, search_warmup=0.5, search_epochs=4, search_arch_lr_steps=60),
                             tmp_path / "s")
    assert scaled.meta["arch_lr"] == pytest.approx(cfg.search.arch_lr * 60 / 6)


def test_search_without_warmup_is_unchanged(tmp_path):
    """Without a warm-up every step is an alpha step (the smoke reference runs, tests/test_reference_runs.py, check
    the alphas bit for bit against the recorded ones); and the joint-clip path, when the clip never bites, moves
    alpha exactly as the weights-only path: post-processing before the clip changes nothing but the order."""
    task = tiny_task()
    a = pipeline.search(task, tiny_cfg(task, search_grad_clip=1e9), tmp_path / "a")
    b = pipeline.search(task, tiny_cfg(task, search_grad_clip=1e9, search_joint_clip=True), tmp_path / "b")
    assert [layer.alpha for layer in a.layers] == [layer.alpha for layer in b.layers]
    assert a.meta["warmup_steps"] == 0 and {layer.steps for layer in a.layers} == {a.meta["steps"]}


def _one_step(task, cfg, joint: bool, scale: float):
    """One single-level step from the same supernet and batch; the loss scaled by ``scale`` (weights' gradients
    grow with it, alpha's post-processed gradient does not). Returns alpha's change per layer."""
    torch.manual_seed(0)
    model = build_supernet(task, cfg)
    before = [a.detach().clone() for a in supernet.arch_parameters(model)]
    w_opt = torch.optim.SGD(supernet.weight_parameters(model), lr=0.01)
    a_opt = torch.optim.SGD(supernet.arch_parameters(model), lr=1.0)
    x, y = task.train.tensors[0][:32], task.train.tensors[1][:32]
    scaled = dataclasses.replace(task, loss_fn=lambda out, tgt: scale * torch.nn.functional.cross_entropy(out, tgt))
    search_step(model, scaled, x, y, w_opt, a_opt, grad_clip=1.0, joint_clip=joint)
    return [(a.detach() - b).norm().item() for a, b in zip(supernet.arch_parameters(model), before)]


def test_joint_clip_shrinks_alpha_steps_while_the_weights_gradient_is_large():
    task = tiny_task()
    cfg = tiny_cfg(task)
    alone = _one_step(task, cfg, joint=False, scale=1000.0)
    joint = _one_step(task, cfg, joint=True, scale=1000.0)
    # weights-only clipping: alpha's step is its normalised gradient, lr x 1/grad_scale (grad_scale 10 here)
    assert alone == pytest.approx([0.1] * len(alone), rel=1e-3)
    # one norm over weights and alpha: the weights' gradient (far above 1) shrinks alpha's step with it
    assert all(j < 0.01 * a for j, a in zip(joint, alone))
    # a small loss leaves the joint norm under the clip: the same step either way
    small_alone, small_joint = _one_step(task, cfg, False, 1e-4), _one_step(task, cfg, True, 1e-4)
    assert small_joint == pytest.approx(small_alone)
