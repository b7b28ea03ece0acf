"""Tests of the planted-architecture tasks (planted1d, planted2d), their teacher and the plain backbone they use."""
import itertools

import pytest
import torch
from torch import nn

import dashkit
import dashkit.tasks as tasks
from dashkit import backbones
from dashkit.config import make_config
from dashkit.pipeline import build_backbone
from dashkit.space import SearchSpace
from dashkit.supernet import discretize, to_supernet
from dashkit.tasks import planted

pytestmark = pytest.mark.usefixtures("private_data_dir")  # a fresh, empty cache (conftest)

NAMES = ["planted1d", "planted2d"]
# Small sets for the structural tests; the candidate tables use the defaults.
SMALL = {"planted1d": dict(n_train=64, n_val=16, n_test=16), "planted2d": dict(n_train=32, n_val=8, n_test=8)}


@pytest.fixture(scope="module", params=NAMES)
def small(request):
    return tasks.get(request.param, **SMALL[request.param])


def _taps(k, d):
    return set(range(-d * (k - 1) // 2, d * (k - 1) // 2 + 1, d))


# ---------------------------------------------------------------------------------------------- the tasks


def test_registered():
    assert set(NAMES) <= set(tasks.names("planted*"))


@pytest.mark.parametrize("name,in_shape", [("planted1d", (2, 128)), ("planted2d", (1, 24, 24))])
def test_default_shapes_and_sizes(name, in_shape):
    task = tasks.get(name)
    assert (task.kind, task.in_shape, task.num_outputs, task.metric_name) == ("dense", in_shape, 1, "mse")
    sizes = {"planted1d": (2000, 500, 500), "planted2d": (1000, 250, 250)}[name]
    assert (len(task.train), len(task.val), len(task.test)) == sizes
    for split in ("train", "val", "test"):
        x, y = getattr(task, split).tensors
        assert x.dtype == y.dtype == torch.float32
        assert tuple(x.shape[1:]) == in_shape and tuple(y.shape[1:]) == (1,) + in_shape[1:]
    # The clean target has unit variance and the noise std 0.1, so the target variance is about 1.01.
    assert 0.9 < task.train.tensors[1].var().item() < 1.12


def test_splits_are_independent_draws(small):
    xs = [getattr(small, s).tensors[0].flatten(1) for s in ("train", "val", "test")]
    for a, b in itertools.combinations(xs, 2):
        assert not (a[:, None] == b[None]).all(-1).any()


def test_planted_names_are_the_searched_layers(small):
    cfg = make_config("smoke", small.defaults)
    space = SearchSpace(small.defaults.kernel_sizes, small.defaults.dilations, dims=small.dims)
    net = to_supernet(build_backbone(small, cfg, "search"), space)
    assert list(small.info["planted"]) == list(net.dash_replaced)
    _, card = discretize(net)
    assert [layer.name for layer in card.layers] == list(small.info["planted"])
    # The retrain backbone has the same convs, so the planted card applies to it.
    built = dict(planted.planted_card(small).apply(build_backbone(small, cfg, "retrain")).named_modules())
    assert {name: [built[name].kernel_size[0], built[name].dilation[0]] for name in small.info["planted"]} == \
        {name: list(kd) for name, kd in small.info["planted"].items()}


def test_planted_pairs_are_in_the_space_uncontained_and_differ_by_layer(small):
    space = SearchSpace(small.defaults.kernel_sizes, small.defaults.dilations, dims=small.dims)
    pairs = [tuple(kd) for kd in small.info["planted"].values()]
    assert len({d for _, d in pairs}) == len(pairs) >= 2
    for kd in pairs:
        space.index(*kd)  # raises if outside the space
        others = [c for c in space.candidates if c != kd and planted.contains(c, kd)]
        assert others == [], f"{kd} is contained by {others}"
    assert small.info["space"] == {"kernel_sizes": list(space.kernel_sizes), "dilations": list(space.dilations)}


def test_contains_is_the_inclusion_of_tap_sets():
    pairs = list(itertools.product((1, 3, 5, 7, 9), (1, 2, 3, 4, 6)))
    for outer, inner in itertools.product(pairs, pairs):
        assert planted.contains(outer, inner) == (_taps(*inner) <= _taps(*outer)), (outer, inner)
    assert planted.contains((5, 1), (3, 2)) and planted.contains((9, 1), (3, 2))
    assert not planted.contains((7, 1), (5, 2))


@pytest.mark.parametrize("name", NAMES)
def test_targets_are_the_teacher_plus_the_stated_noise(name):
    clean = tasks.get(name, noise=0.0, **SMALL[name])
    noisy = tasks.get(name, noise=0.1, **SMALL[name])
    for split in ("train", "val", "test"):
        (x0, y0), (x1, y1) = getattr(clean, split).tensors, getattr(noisy, split).tensors
        assert torch.equal(x0, x1)
        diff = y1 - y0
        assert 0.09 < diff.std().item() < 0.11 and abs(diff.mean().item()) < 0.02


def test_teacher_forward_uses_only_the_planted_taps():
    """Perturbing an input position outside the teacher's receptive taps leaves the output unchanged."""
    gen = torch.Generator().manual_seed(0)
    weights = [torch.randn(3, 1, 3, generator=gen, dtype=torch.float64)]
    readout = torch.randn(1, 3, generator=gen, dtype=torch.float64)
    x = torch.randn(1, 1, 21, generator=gen, dtype=torch.float64)
    y = planted.teacher_forward(x, weights, [3], readout)
    for offset in range(-5, 6):
        x2 = x.clone()
        x2[..., 10 + offset] += 1.0
        changed = not torch.allclose(planted.teacher_forward(x2, weights, [3], readout)[..., 10], y[..., 10])
        assert changed == (offset in (-3, 0, 3)), offset


def test_seed_changes_the_data():
    a, b = (tasks.get("planted1d", seed=s, **SMALL["planted1d"]) for s in (0, 1))
    assert not torch.equal(a.train.tensors[1], b.train.tensors[1])


def test_second_call_reads_the_cache(monkeypatch):
    first = tasks.get("planted2d", **SMALL["planted2d"])

    def fail(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(planted, "_generate", fail)
    second = tasks.get("planted2d", **SMALL["planted2d"])
    for split in ("train", "val", "test"):
        for t1, t2 in zip(getattr(first, split).tensors, getattr(second, split).tensors):
            assert torch.equal(t1, t2)
    with pytest.raises(AssertionError, match="generated again"):
        tasks.get("planted2d", seed=5, **SMALL["planted2d"])


@pytest.mark.parametrize("name,kwargs,error,message", [
    ("planted1d", dict(length=4), ValueError, r"length=4 is out of range; accepted: an integer in \[8, 4096\]"),
    ("planted1d", dict(n_train=0), ValueError, r"n_train=0 is out of range; accepted: an integer >= 1"),
    ("planted1d", dict(n_val=True), TypeError, r"n_val=True has type bool; accepted: an integer >= 1"),
    ("planted1d", dict(noise=-0.1), ValueError, r"noise=-0.1 .*accepted: a finite number in \[0.0, inf\)"),
    ("planted1d", dict(width="8"), TypeError, r"width='8' has type str; accepted: an integer >= 1"),
    ("planted2d", dict(size=300), ValueError, r"size=300 is out of range; accepted: an integer in \[8, 256\]"),
    ("planted2d", dict(n_test=1.5), TypeError, r"n_test=1.5 has type float"),
    ("planted2d", dict(seed=-1), ValueError, r"seed=-1"),
])
def test_bad_parameters_are_named(name, kwargs, error, message):
    with pytest.raises(error, match=message):
        tasks.get(name, **kwargs)


def test_planted_card_refuses_unknown_layers_and_pairs_outside_the_space(small):
    with pytest.raises(ValueError, match=r"overrides names layer 'conv9'; accepted: the planted layers"):
        planted.planted_card(small, {"conv9": (3, 1)})
    with pytest.raises(ValueError, match=r"\(k, d\) = \(9, 1\) is not in the space"):
        planted.planted_card(small, {"convs.0": (9, 1)})


# ------------------------------------------------------------------------- the planted choice is the best


# Runner-up validation MSE over the planted one's, at least (measured at seed 0: 1D 2.7x, 2D 4.5x; RESULTS.md).
MARGIN = 1.5


@pytest.mark.parametrize("name", NAMES)
def test_each_candidate_trained_alone_loses_to_the_planted_one(name):
    """Per layer, every (k, d) of the space with the other layers planted: the planted pair wins by MARGIN."""
    task = tasks.get(name)
    table = planted.candidate_losses(task, seeds=(0,), **planted.CANDIDATE_TRAINING[name])
    assert list(table) == list(task.info["planted"])
    for layer, row in table.items():
        kd = tuple(task.info["planted"][layer])
        assert len(row) == len(task.defaults.kernel_sizes) * len(task.defaults.dilations)
        runner_up = min(v for c, v in row.items() if c != kd)
        assert row[kd] * MARGIN < runner_up, (layer, row)
    text = planted.format_table(task, table)
    assert text.count("*") == len(table) and "margin" in text.splitlines()[0]


def test_train_candidate_is_reproducible_and_checks_its_parameters():
    task = tasks.get("planted1d", **SMALL["planted1d"])
    a = planted.train_candidate(task, "convs.0", (3, 1), seed=3, steps=3, batch_size=8)
    b = planted.train_candidate(task, "convs.0", (3, 1), seed=3, steps=3, batch_size=8)
    assert a == b
    with pytest.raises(ValueError, match=r"steps=0 is out of range; accepted: an integer >= 1"):
        planted.train_candidate(task, steps=0)
    with pytest.raises(ValueError, match=r"layer='convs.0' and pair=None; accepted: both None"):
        planted.train_candidate(task, "convs.0")


# -------------------------------------------------------------------------------------------- the pipeline


def test_found_layers_scores_a_card_against_the_planted_pairs():
    task = tasks.get("planted1d")
    card = planted.planted_card(task)
    assert planted.found_layers(card, task.info["planted"]) == {"convs.0": True, "convs.1": True, "convs.2": True}
    wrong = planted.planted_card(task, {"convs.1": (5, 1)})
    assert planted.found_layers(wrong, task.info["planted"]) == {"convs.0": True, "convs.1": False, "convs.2": True}


def test_smoke_run_searches_the_planted_layers(tmp_path):
    res = dashkit.run("planted1d", preset="smoke", out=tmp_path / "run", figures=False, verbose=False)
    assert [layer.name for layer in res.card.layers] == list(tasks.get("planted1d").info["planted"])
    assert set(res.metrics) == {"dash", "baseline"}
    assert all(0.0 < v < 10.0 for v in res.metrics.values())


@pytest.mark.parametrize("name,seed", [("planted1d", 8), ("planted2d", 4)])
def test_the_search_recovers_every_planted_layer(tmp_path, name, seed):
    """The search's unit test: the standard search with the task's own settings (``planted.PLANTED_SEARCH``:
    candidates at init std 0.3, softmax mixing, full convolutions, the weights' lr 0.3; planted2d with batches of
    32), as ``dashkit.run(task, preset="standard")`` takes them, finds the planted (k, d) of all three layers, and
    the decision test calls each of them decided. Chance: (1/M)^3 per seed (M = 9 in 1D, 6 in 2D).

    Measured over ten seeds (RESULTS.md, "The search on the planted task, by setting"): every layer of every seed
    in both tasks, 29 of 30 layers decided in 1D and 30 of 30 in 2D. planted1d's seed 8 is one that the weights'
    lr 0.1 gets wrong even at these settings (it swaps the dilations of convs.1 and convs.2); planted2d's seed 4
    decided by wide margins before, so the check does not rest on a choice near the gradient noise, which the
    thread count's roundings could flip. ``search_backend="fft"`` makes the search repeatable."""
    from dashkit import pipeline

    task = tasks.get(name)
    cfg = make_config("standard", task.defaults, seed=seed, device="cpu", search_backend="fft")
    assert cfg.search.lr == 0.3 and cfg.search.relaxation == "softmax"  # the task's settings, not DASH's
    card = pipeline.search(task, cfg, tmp_path / "search")
    assert {layer.name: [layer.k, layer.d] for layer in card.layers} == task.info["planted"]
    assert all(layer.decided for layer in card.layers), [layer.z for layer in card.layers]
    assert all(planted.found_layers(card, task.info["planted"]).values())


# ------------------------------------------------------------------------------------- the plain backbone


@pytest.mark.parametrize("dims,shape", [(1, (2, 3, 17)), (2, (2, 3, 9, 9))])
@pytest.mark.parametrize("dense", [False, True])
def test_plain_backbone_interface_and_gradients(dims, shape, dense):
    model = backbones.get("plain", in_channels=3, num_classes=5, dims=dims, dense=dense, depth=3, width=4,
                          dropout=0.1)
    assert isinstance(model, backbones.Backbone) and model.num_features == 4
    x = torch.randn(*shape)
    model.eval()  # no dropout: forward is forward_head after forward_features
    assert torch.equal(model.forward_head(model.forward_features(x)), model(x))
    model.train()
    out = model(x)
    assert tuple(out.shape) == ((2, 5) + shape[2:] if dense else (2, 5))
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname
    searchable = [n for n, m in model.named_modules()
                  if isinstance(m, (nn.Conv1d, nn.Conv2d)) and max(m.kernel_size) > 1]
    assert searchable == ["convs.0", "convs.1", "convs.2"]


@pytest.mark.parametrize("kwargs,message", [
    (dict(kernel_size=4), r"kernel_size=4 is even; accepted: an odd integer >= 3"),
    (dict(activation="sigmoid"), r"activation='sigmoid' is not one of \('tanh', 'relu', 'gelu'\)"),
    (dict(depth=0), r"depth=0 is out of range; accepted: an integer >= 1"),
    (dict(dims=3), r"dims=3 is out of range; accepted: an integer in \[1, 2\]"),
])
def test_plain_backbone_checks(kwargs, message):
    with pytest.raises(ValueError, match=message):
        backbones.get("plain", **kwargs)
