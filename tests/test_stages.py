"""Tests of dashkit.stages: one DASH step (`search_step`), one training step (`train_step`), the stage modules'
places, and a package without import circles."""
from __future__ import annotations

import ast
import copy
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from test_pipeline import spikes, tiny_cfg, tiny_task
from torch import nn
from torch.utils.data import DataLoader

import dashkit
from dashkit import pipeline, stages
from dashkit.rundir import RunDir
from dashkit.space import SearchSpace
from dashkit.stages import StageContext, search_step, train_step
from dashkit.stages import search as search_stage
from dashkit.stages.common import read_run, stage_seed
from dashkit.stages.models import build_backbone
from dashkit.supernet import arch_parameters, discretize, to_supernet, weight_parameters

ROOT = Path(__file__).resolve().parent.parent


def tiny_supernet(task, **kw):
    """ResNet1D (width 2) as a supernet over k in (3, 5), d in (1, 2): 9 searched layers."""
    torch.manual_seed(0)
    return to_supernet(build_backbone(task, tiny_cfg(task), "search"), SearchSpace((3, 5), (1, 2), dims=1),
                       backend="fft", grad_scale=10.0, **kw)


def optimisers(model, lr=0.1, arch_lr=0.05, momentum=0.9, weight_decay=5e-4):
    return (torch.optim.SGD(weight_parameters(model), lr=lr, momentum=momentum, weight_decay=weight_decay),
            torch.optim.SGD(arch_parameters(model), lr=arch_lr, momentum=momentum))


def flat(params) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params])


# -------------------------------------------------------------------------------------------- search_step
def test_a_plain_search_loop_without_a_run_directory():
    """The loop a notebook writes: a supernet, two optimisers, `search_step` per batch, then the card."""
    task = tiny_task()
    model = tiny_supernet(task)
    w_opt, a_opt = optimisers(model)
    alpha0, w0 = flat(arch_parameters(model)).clone(), flat(weight_parameters(model)).clone()
    losses = []
    for x, y in DataLoader(task.train, batch_size=32, shuffle=True, drop_last=True):  # x (32, 1, 32), y (32,)
        loss = search_step(model, task, x, y, w_opt, a_opt, grad_clip=1.0)
        losses.append(loss)
    assert len(losses) == 3 and all(loss.dim() == 0 and not loss.requires_grad for loss in losses)
    assert all(math.isfinite(loss.item()) for loss in losses)
    assert not torch.equal(flat(arch_parameters(model)), alpha0)  # alpha moved
    assert not torch.equal(flat(weight_parameters(model)), w0)  # and the weights did
    _, card = discretize(model)
    assert len(card.layers) == 9 and all(layer.k in (3, 5) and layer.d in (1, 2) for layer in card.layers)


def step_from(state, task, x, y, val_batch=None):
    """One search_step from a copy of (model, w_opt, a_opt); returns (alpha, weights) after it."""
    model, w_opt, a_opt = copy.deepcopy(state)
    search_step(model, task, x, y, w_opt, a_opt, val_batch=val_batch, grad_clip=1.0)
    return flat(arch_parameters(model)), flat(weight_parameters(model))


def test_single_level_alpha_follows_the_training_batch_and_bilevel_the_validation_batch():
    task = tiny_task()
    model = tiny_supernet(task, relaxation="softmax")  # no Gumbel draws: a step is a function of its batches
    state = (model, *optimisers(model))
    train_a, train_b = spikes(32, 10, 32, (6, 12), (4, 14)).tensors, spikes(32, 11, 32, (6, 12), (4, 14)).tensors
    val_a, val_b = spikes(32, 12, 32, (6, 12), (4, 14)).tensors, spikes(32, 13, 32, (6, 12), (4, 14)).tensors
    # single-level: alpha steps on the training batch
    alpha_a, _ = step_from(state, task, *train_a)
    alpha_b, _ = step_from(state, task, *train_b)
    assert not torch.equal(alpha_a, alpha_b)
    # bilevel: alpha steps on the validation batch alone, the weights on the training batch
    alpha_1, w_1 = step_from(state, task, *train_a, val_batch=val_a)
    alpha_2, w_2 = step_from(state, task, *train_b, val_batch=val_a)
    alpha_3, _ = step_from(state, task, *train_a, val_batch=val_b)
    assert torch.equal(alpha_1, alpha_2) and not torch.equal(w_1, w_2)
    assert not torch.equal(alpha_1, alpha_3)


def test_search_step_checks_every_loss_it_steps_on():
    task = tiny_task()
    model = tiny_supernet(task, relaxation="softmax")
    w_opt, a_opt = optimisers(model)
    x, y = spikes(32, 10, 32, (6, 12), (4, 14)).tensors
    xv, yv = spikes(32, 12, 32, (6, 12), (4, 14)).tensors
    seen = []
    loss = search_step(model, task, x, y, w_opt, a_opt, check=lambda value: seen.append(value.item()))
    assert seen == [loss.item()]
    seen.clear()
    with torch.no_grad():  # BatchNorm in training mode: the loss of a batch does not depend on the batches before
        val_loss = F.cross_entropy(model(xv), yv).item()
    loss = search_step(model, task, x, y, w_opt, a_opt, val_batch=(xv, yv), check=lambda v: seen.append(v.item()))
    assert len(seen) == 2 and seen[1] == loss.item()  # the validation loss first, then the training loss
    assert seen[0] == pytest.approx(val_loss, rel=1e-6)


def test_search_step_clips_the_weights_gradient_only(monkeypatch):
    task = tiny_task()
    model = tiny_supernet(task, relaxation="softmax")
    w_opt, a_opt = optimisers(model, lr=1.0, arch_lr=1.0, momentum=0.0, weight_decay=0.0)
    clipped = []
    real_clip = nn.utils.clip_grad_norm_
    monkeypatch.setattr(nn.utils, "clip_grad_norm_", lambda params, *a, **k: (clipped.append(list(params)),
                                                                               real_clip(clipped[-1], *a, **k))[1])
    alpha0, w0 = flat(arch_parameters(model)).clone(), flat(weight_parameters(model)).clone()
    x, y = spikes(32, 10, 32, (6, 12), (4, 14)).tensors
    search_step(model, task, x, y, w_opt, a_opt, grad_clip=1e-3)
    assert len(clipped) == 1
    assert {id(p) for p in clipped[0]} == {id(p) for p in weight_parameters(model)}
    assert not {id(p) for p in clipped[0]} & {id(p) for p in arch_parameters(model)}
    # plain SGD with lr 1: the weights moved by the clipped gradient, alpha by its own normalised one
    assert (flat(weight_parameters(model)) - w0).norm() <= 1e-3 * (1 + 1e-4)
    assert (flat(arch_parameters(model)) - alpha0).norm() > 10 * 1e-3
    search_step(model, task, x, y, w_opt, a_opt)  # grad_clip=0: no clipping
    assert len(clipped) == 1


def test_the_search_stage_takes_one_search_step_per_batch(tmp_path, monkeypatch):
    calls = []
    real = search_stage.search_step

    def counted(*args, **kwargs):
        calls.append(kwargs.get("val_batch") is not None)
        return real(*args, **kwargs)

    monkeypatch.setattr(search_stage, "search_step", counted)
    task = tiny_task()
    pipeline.search(task, tiny_cfg(task), tmp_path / "single")
    assert calls == [False] * 6  # 2 epochs x 3 batches of 32 out of 96
    calls.clear()
    pipeline.search(task, tiny_cfg(task, search_scheme="bilevel"), tmp_path / "bilevel")
    assert calls == [True] * 6


# --------------------------------------------------------------------------------------------- train_step
def test_train_step_is_one_sgd_step_on_the_batch_loss():
    torch.manual_seed(0)
    model = nn.Linear(4, 3)
    task = SimpleNamespace(loss=F.cross_entropy)
    x, y = torch.randn(8, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    expected_loss = F.cross_entropy(model(x), y)
    grads = torch.autograd.grad(expected_loss, list(model.parameters()))
    before = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    seen = []
    loss = train_step(model, task, x, y, opt, check=lambda value: seen.append(value.item()))
    assert loss.item() == pytest.approx(expected_loss.item()) and seen == [loss.item()] and not loss.requires_grad
    for p, p0, g in zip(model.parameters(), before, grads):
        torch.testing.assert_close(p.detach(), p0 - 0.5 * g)
    # clipped: the whole step is at most lr * grad_clip long
    before = flat(model.parameters()).clone()
    train_step(model, task, x, y, opt, grad_clip=1e-3)
    assert (flat(model.parameters()) - before).norm() <= 0.5 * 1e-3 * (1 + 1e-4)


def test_train_step_stops_on_what_check_raises():
    model = nn.Linear(4, 3)
    task = SimpleNamespace(loss=lambda y_hat, y: F.cross_entropy(y_hat, y) * float("nan"))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    before = flat(model.parameters()).clone()

    def check(loss):
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss = {loss.item()!r}")

    with pytest.raises(FloatingPointError, match=r"loss = nan"):
        train_step(model, task, torch.randn(8, 4), torch.zeros(8).long(), opt, check=check)
    assert torch.equal(flat(model.parameters()), before)  # no step on a NaN loss


# ------------------------------------------------------------------------------------ context and run dir
def test_stage_context_gives_the_stage_its_seed_and_budget(tmp_path):
    task = tiny_task()
    cfg = tiny_cfg(task)
    rd = RunDir.create(tmp_path / "run", {"task": "tiny"})
    for stage, budget in (("search", cfg.search), ("tune", cfg.tune), ("baseline_tune", cfg.tune),
                          ("retrain", cfg.retrain), ("baseline_retrain", cfg.retrain)):
        ctx = StageContext(task, cfg, rd, torch.device("cpu"), stage)
        assert ctx.budget is budget and ctx.seed == stage_seed(cfg.seed, stage)


def test_read_run_reads_and_checks_config_json_once_for_every_reader(tmp_path):
    task = tiny_task()
    pipeline.open_run_dir(tmp_path / "run", task, tiny_cfg(task), preset="smoke")
    rd = RunDir(tmp_path / "run")
    meta, cfg, the_task = read_run(rd, task)
    assert meta["task"] == "tiny" and cfg.to_dict() == tiny_cfg(task).to_dict() and the_task is task
    assert read_run(rd, resolve=False)[2] is None  # an unregistered task's run reads back too
    with pytest.raises(ValueError, match=r"task = 'other', but the run in .* is for task 'tiny'"):
        read_run(rd, tiny_task("other"))
    with pytest.raises(ValueError, match=r"task = 'other', but the run in .* is for task 'tiny'"):
        pipeline.load_model(rd, task=tiny_task("other"))
    with pytest.raises(FileNotFoundError, match=r"is not a dashkit run directory \(no config.json\)"):
        read_run(RunDir(tmp_path / "nothing"))
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "config.json").write_text("[1, 2]\n")
    for reader in (read_run, pipeline.load_result):
        with pytest.raises(ValueError, match=r"is not a dashkit run config \(it needs 'task' and 'config'\)"):
            reader(RunDir(tmp_path / "odd"))


# ------------------------------------------------------------------------------------------- module map
def test_the_pipeline_conducts_stages_that_live_in_their_own_modules():
    where = {"search": "search", "tune": "tune", "tuning_decided": "tune", "retrain": "retrain",
             "baseline": "retrain", "tune_worker": "queue", "evaluate": "training", "build_model": "models",
             "build_backbone": "models", "resolve_task": "common", "open_run_dir": "common"}
    for name, module in where.items():
        assert getattr(pipeline, name).__module__ == f"dashkit.stages.{module}", name
    assert pipeline.NonFiniteLossError.__module__ == "dashkit.stages.training"
    assert pipeline.TuningUndecidedWarning.__module__ == "dashkit.stages.tune"
    assert pipeline.UNDECIDED_MARGIN == stages.tune.UNDECIDED_MARGIN
    assert dashkit.run is pipeline.run and pipeline.run.__module__ == "dashkit.pipeline"
    assert {"search_step", "train_step"} <= set(stages.__all__)
    assert search_step.__module__ == "dashkit.stages.search" and train_step.__module__ == "dashkit.stages.training"
    from dashkit.launch import launch, torchrun_command

    assert launch.__module__ == torchrun_command.__module__ == "dashkit.launch"
    assert not hasattr(dashkit.distributed, "launch") and not hasattr(dashkit.distributed, "torchrun_command")


def imports_of_dashkit() -> dict:
    """{module: the dashkit modules it imports}, read from the source: imports inside functions count too."""
    files = {}
    for path in (ROOT / "dashkit").rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    edges = {}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                    if node.level else node.module or ""
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            # a package's own submodules, and `dashkit` itself (``from .. import x``), are not imports of it
            found |= {t for t in targets if t in files and t != name and t != "dashkit" and
                      not name.startswith(t + ".")}
        edges[name] = found
    return edges


def test_no_import_circle_in_dashkit():
    edges = imports_of_dashkit()
    assert "dashkit.stages.search" in edges["dashkit.pipeline"]  # the reader sees imports (a sanity check)
    circles = []
    for start in edges:  # a circle through `start`: a path from one of its imports back to it
        seen, todo = set(), list(edges[start])
        while todo:
            module = todo.pop()
            if module == start:
                circles.append(start)
                break
            if module not in seen:
                seen.add(module)
                todo += edges[module]
    assert circles == []
    stage_modules = [m for m in edges if m.startswith("dashkit.stages")]
    assert len(stage_modules) >= 8 and not any("dashkit.pipeline" in edges[m] for m in stage_modules)
    assert edges["dashkit.distributed"] <= {"dashkit.config", "dashkit.rundir"}  # a leaf of collectives
