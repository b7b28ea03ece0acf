"""Tests of dashkit.DashConv: every backend computes the same convolution, gradients, relaxations, discretisation."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from dashkit import DashConv, SearchSpace, conv_choice, ops
from dashkit.layers import CausalConv1d

SPACE_1D = SearchSpace((3, 7, 11, 15, 19), (1, 3, 7, 15), dims=1)  # DASH's default 1D space
SPACE_2D = SearchSpace((3, 5, 7, 9), (1, 3, 7, 15), dims=2)  # DASH's default 2D space
F64 = dict(rtol=0, atol=1e-10)


def make(cin, cout, space, backend="fft", **kw) -> DashConv:
    """A float64 DashConv with O(1) weights, a non-uniform alpha and a bias, so that every candidate matters."""
    kw.setdefault("relaxation", "softmax")
    m = DashConv(cin, cout, space, backend=backend, **kw).double()
    with torch.no_grad():
        for w in m.weights:
            w.normal_()
        m.alpha.normal_()
        if m.bias is not None:
            m.bias.normal_()
    return m


def clone_as(m: DashConv, backend: str) -> DashConv:
    new = DashConv(m.in_channels, m.out_channels, m.space, stride=m.stride, groups=m.groups,
                   bias=m.bias is not None, causal=m.causal, backend=backend, relaxation=m.relaxation,
                   tau=m.tau).double()
    new.load_state_dict(m.state_dict())
    return new


def spatial(dims, n):
    return (n,) if dims == 1 else n


def reference(m: DashConv, x: torch.Tensor) -> torch.Tensor:
    """sum_i c_i conv(x, w_i, dilation=d_i) + bias with PyTorch's own convolutions, written independently."""
    c = F.softmax(m.alpha / m.tau, dim=0)
    out = 0
    for ci, w, (k, d) in zip(c, m.weights, m.space.candidates):
        if m.causal:
            n = x.shape[-1]
            y = F.conv1d(x, w, None, 1, d * (k - 1), d, m.groups)[..., :n][..., ::m.stride]
        else:
            conv = F.conv1d if m.space.dims == 1 else F.conv2d
            y = conv(x, w, None, m.stride, d * (k - 1) // 2, d, m.groups)
        out = out + ci * y
    if m.bias is not None:
        out = out + m.bias.view((1, -1) + (1,) * m.space.dims)
    return out


# ------------------------------------------------------------------------------------------------- backends agree

CASES = [
    # dims, c_in, c_out, groups, stride, causal, n
    (1, 3, 4, 1, 1, False, 40),
    (1, 3, 4, 1, 2, False, 41),
    (1, 4, 4, 4, 1, False, 33),   # depthwise
    (1, 4, 4, 4, 2, False, 300),  # depthwise, longer than the largest field (271): nothing cropped
    (1, 4, 6, 2, 2, False, 50),   # grouped
    (1, 3, 6, 3, 1, False, 30),   # groups == in_channels with a channel multiplier of 2: grouped, not depthwise
    (1, 3, 4, 1, 1, True, 40),
    (1, 4, 4, 4, 2, True, 37),
    (1, 4, 6, 2, 1, True, 21),
    (2, 2, 3, 1, 1, False, (9, 9)),
    (2, 2, 3, 1, 2, False, (10, 10)),
    (2, 3, 3, 3, 1, False, (8, 8)),   # depthwise
    (2, 3, 3, 3, 2, False, (7, 7)),
    (2, 4, 2, 2, 2, False, (11, 11)),  # grouped
    (2, 1, 1, 1, 1, False, (61, 61)),  # reaches every offset (|o| <= 60): nothing cropped
]
IDS = [f"{dims}d-{ci}to{co}-g{g}-s{s}{'-causal' if c else ''}-n{n}" for dims, ci, co, g, s, c, n in CASES]


@pytest.mark.parametrize("dims,cin,cout,groups,stride,causal,n", CASES, ids=IDS)
def test_backends_compute_the_same_convolution(dims, cin, cout, groups, stride, causal, n):
    space = SPACE_1D if dims == 1 else SPACE_2D
    m = make(cin, cout, space, "fft", stride=stride, groups=groups, causal=causal)
    x = torch.randn((2, cin) + spatial(dims, n), dtype=torch.float64)
    ref = reference(m, x)
    assert ref.shape == (2, cout) + tuple(-(-a // stride) for a in x.shape[2:])
    outs = {}
    for backend in ("fft", "direct", "mixed_results"):
        mb = clone_as(m, backend)
        outs[backend] = mb(x)
        assert mb.last_backend == backend
        torch.testing.assert_close(outs[backend], ref, **F64, msg=lambda s: f"{backend}: {s}")

    auto = clone_as(m, "auto")
    y = auto(x)
    torch.testing.assert_close(y, ref, **F64)
    cache = conv_choice.backend_cache()
    assert len(cache) == 1
    (choice, _), = cache.values()
    assert choice in ("fft", "direct") and auto.last_backend == choice
    auto(x)
    assert len(conv_choice.backend_cache()) == 1  # the same shape does not measure again


@pytest.mark.parametrize("dims,cin,cout,groups,stride,causal,n", [CASES[4], CASES[7], CASES[10], CASES[13]],
                         ids=[IDS[4], IDS[7], IDS[10], IDS[13]])
def test_backends_compute_the_same_gradients(dims, cin, cout, groups, stride, causal, n):
    space = SPACE_1D if dims == 1 else SPACE_2D
    m = make(cin, cout, space, "fft", stride=stride, groups=groups, causal=causal)
    x0 = torch.randn((2, cin) + spatial(dims, n), dtype=torch.float64)
    grads = {}
    for backend in ("fft", "direct", "mixed_results"):
        mb = clone_as(m, backend)
        x = x0.clone().requires_grad_()
        y = mb(x)
        g = torch.sin(torch.arange(y.numel(), dtype=torch.float64)).view_as(y)  # a fixed, non-uniform cotangent
        (y * g).sum().backward()
        grads[backend] = {"x": x.grad, **{name: p.grad for name, p in mb.named_parameters()}}
        assert all(t is not None for t in grads[backend].values())
    assert len(grads["fft"]) == 1 + len(space) + 2  # x, one weight per candidate, alpha, bias
    for backend in ("direct", "mixed_results"):
        for name, g in grads["fft"].items():
            torch.testing.assert_close(g, grads[backend][name], **F64, msg=lambda s: f"{backend} {name}: {s}")
    assert grads["fft"]["alpha"].abs().max() > 1e-3  # alpha gets a real gradient


REFERENCE_CASES = [
    # dims, c_in, c_out, groups, stride, causal, n
    (1, 3, 4, 1, 1, False, 40),
    (1, 3, 4, 1, 2, False, 41),        # stride 2
    (1, 4, 4, 4, 1, False, 33),        # depthwise
    (1, 3, 4, 1, 1, True, 40),         # causal
    (1, 4, 4, 4, 2, True, 37),         # causal, depthwise, stride 2
    (2, 2, 3, 1, 1, False, (9, 11)),
    (2, 2, 3, 1, 2, False, (10, 10)),  # stride 2
    (2, 3, 3, 3, 1, False, (8, 8)),    # depthwise
]


@pytest.mark.parametrize("dims,cin,cout,groups,stride,causal,n", REFERENCE_CASES,
                         ids=[f"{dims}d-{ci}to{co}-g{g}-s{s}{'-causal' if c else ''}"
                              for dims, ci, co, g, s, c, n in REFERENCE_CASES])
def test_forward_equals_the_reference_composition(dims, cin, cout, groups, stride, causal, n):
    """What DashConv's docstring promises, in float64: every backend's forward equals

    ops.direct_conv(x, ops.aggregate_kernel(W, c, D, causal), stride, groups, causal) + b
    == ops.fft_conv(x, <the same kernel>, ...) + b == ops.mixed_results(x, W, c, D, ...) + b,

    the aggregated kernel equals the Kronecker-dilated, centre-padded candidates summed by hand, and (centred, full
    convolutions) the textbook ops.circular_conv with N >= n + (S - 1) / 2 gives the same.
    """
    space = SPACE_1D if dims == 1 else SPACE_2D
    m = make(cin, cout, space, "fft", stride=stride, groups=groups, causal=causal)
    x = torch.randn((2, cin) + spatial(dims, n), dtype=torch.float64)
    W, c, D = list(m.weights), m.coefficients(), [d for _, d in space.candidates]
    b = m.bias.view((1, -1) + (1,) * dims)
    kernel = ops.aggregate_kernel(W, c, D, causal=causal)
    S = space.max_field
    assert kernel.shape == (cout, cin // groups) + (S,) * dims
    by_hand = sum(ci * ops.center_pad(ops.dilate(w, d, method="kron"), S, causal=causal) for ci, w, d in zip(c, W, D))
    torch.testing.assert_close(kernel, by_hand, **F64)

    ref = ops.direct_conv(x, kernel, stride, groups, causal) + b
    torch.testing.assert_close(ops.fft_conv(x, kernel, stride, groups, causal=causal) + b, ref, **F64)
    torch.testing.assert_close(ops.mixed_results(x, W, c, D, stride, groups, causal) + b, ref, **F64)
    torch.testing.assert_close(ref, reference(m, x), **F64)  # and PyTorch's dilated convs, written independently
    if not causal and groups == 1:
        N = tuple(a + (S - 1) // 2 for a in x.shape[2:])
        textbook = ops.circular_conv(x, kernel, N)[(...,) + (slice(None, None, stride),) * dims] + b
        torch.testing.assert_close(textbook, ref, **F64)
    for backend in ("fft", "direct", "mixed_results", "auto"):
        mb = clone_as(m, backend)
        torch.testing.assert_close(mb(x), ref, **F64, msg=lambda s: f"{backend}: {s}")
    # the direct backend's kernel is the reference kernel cropped to the input (and to the farthest offset a
    # candidate has within it, so it can be smaller still: only zeros differ)
    cropped = ops.crop_kernel(kernel, tuple(x.shape[2:]), causal=causal)
    torch.testing.assert_close(ops.center_pad(m.aggregated_kernel(c, x.shape[2:]), cropped.shape[2:], causal=causal),
                               cropped, **F64)


def test_one_layer_serves_several_input_sizes():
    for backend in ("fft", "direct", "auto"):
        m = make(2, 3, SPACE_1D, backend, stride=2)
        for n in (20, 300, 7, 20):
            x = torch.randn(2, 2, n, dtype=torch.float64)
            torch.testing.assert_close(m(x), reference(m, x), **F64)
    assert len(conv_choice.backend_cache()) == 3  # auto measured each new shape once


def test_auto_backend_on_a_frozen_layer_with_grad_enabled():
    """A frozen layer (e.g. a searched net used as a feature extractor) still runs outside torch.no_grad()."""
    m = make(4, 4, SPACE_2D, "auto", groups=4).float()
    m.requires_grad_(False)
    x = torch.randn(2, 4, 8, 8)  # a shape whose cost estimates are close, so the choice is measured
    assert torch.is_grad_enabled()
    y = m(x)
    assert m.last_backend in ("fft", "direct")
    torch.testing.assert_close(y, reference(m.double(), x.double()).float(), rtol=1e-4, atol=1e-4)


def test_dropped_taps_get_zero_gradient_on_small_maps():
    m = make(1, 1, SPACE_2D, "fft")
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    m(x).square().sum().backward()
    g = m.weights[SPACE_2D.index(9, 15)].grad  # offsets -60, -45, ..., 60: only 0 reaches an 8x8 map
    assert g[..., 4, 4].abs() > 0
    g = g.clone()
    g[..., 4, 4] = 0
    assert g.abs().max() == 0


def test_aggregated_kernel_equals_ops_aggregate_kernel():
    for space, n, causal in ((SPACE_2D, (8, 8), False), (SPACE_2D, (70, 70), False), (SPACE_1D, (30,), False),
                             (SPACE_1D, (30,), True), (SPACE_1D, (400,), True)):
        m = make(2, 3, space, causal=causal)
        c = torch.distributions.Dirichlet(torch.ones(len(space), dtype=torch.float64)).sample()
        ref = ops.aggregate_kernel(list(m.weights), c, [d for _, d in space.candidates], crop_to=n, causal=causal)
        W = m.aggregated_kernel(c, n)
        # DashConv sizes the kernel to the furthest offset it keeps, ops to 2n - 1: zero-pad to compare
        assert W.shape[:2] == ref.shape[:2] and all(a <= b for a, b in zip(W.shape[2:], ref.shape[2:]))
        W = ops.center_pad(W, tuple(ref.shape[2:]), causal=causal)
        torch.testing.assert_close(W, ref, **F64)


# ------------------------------------------------------------------------------- inputs that are not square

@pytest.mark.parametrize("backend", ["fft", "direct"])
@pytest.mark.parametrize("n", [(4, 20), (20, 4), (5, 7)], ids=["4x20", "20x4", "5x7"])
def test_non_square_input_crops_each_axis_on_its_own(backend, n):
    """A 4 x 20 feature map keeps offsets |o| <= 3 along H and |o| <= 19 along W: two different tap sets."""
    m = make(2, 2, SPACE_2D, backend)
    x = torch.randn((1, 2) + n, dtype=torch.float64)
    torch.testing.assert_close(m(x), reference(m, x), **F64)


def test_non_square_input_without_cropping():
    m = make(2, 2, SPACE_2D, "fft")
    x = torch.randn(1, 2, 62, 70, dtype=torch.float64)  # both axes reach every offset (|o| <= 60)
    torch.testing.assert_close(m(x), reference(m, x), **F64)


# ------------------------------------------------------------------------------------------------- gradcheck

def _gradcheck(m: DashConv, x: torch.Tensor, fast: bool) -> bool:
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for _, p in m.named_parameters()]

    def f(x, *ps):
        return functional_call(m, dict(zip(names, ps)), (x,))

    return torch.autograd.gradcheck(f, (x.requires_grad_(), *params), fast_mode=fast)


SMALL_1D = SearchSpace((3, 5), (1, 3), dims=1)  # offsets up to 6
SMALL_2D = SearchSpace((3, 5), (1, 2), dims=2)  # offsets up to 4
GRAD_CASES = [
    # space, c_in, c_out, groups, stride, causal, n  (n small enough that some offsets are cropped)
    (SMALL_1D, 1, 2, 1, 1, False, 6),
    (SMALL_1D, 2, 2, 2, 2, False, 7),
    (SMALL_1D, 2, 4, 2, 1, False, 5),
    (SMALL_1D, 2, 1, 1, 2, True, 6),
    (SMALL_2D, 1, 1, 1, 1, False, (4, 4)),
    (SMALL_2D, 2, 2, 2, 2, False, (4, 4)),
    (SMALL_2D, 2, 4, 2, 1, False, (5, 5)),
]
GRAD_IDS = [f"{sp.dims}d-{ci}to{co}-g{g}-s{s}{'-causal' if c else ''}" for sp, ci, co, g, s, c, _ in GRAD_CASES]


@pytest.mark.parametrize("backend", ["fft", "direct"])
@pytest.mark.parametrize("space,cin,cout,groups,stride,causal,n", GRAD_CASES, ids=GRAD_IDS)
def test_gradcheck_input_weights_alpha(backend, space, cin, cout, groups, stride, causal, n):
    m = make(cin, cout, space, backend, stride=stride, groups=groups, causal=causal)
    x = torch.randn((1, cin) + spatial(space.dims, n), dtype=torch.float64)
    assert _gradcheck(m, x, fast=False)


@pytest.mark.parametrize("backend", ["fft", "direct"])
@pytest.mark.parametrize("dims", [1, 2])
def test_gradcheck_default_spaces_fast_mode(backend, dims):
    space = SPACE_1D if dims == 1 else SPACE_2D
    m = make(2, 2, space, backend)
    x = torch.randn((1, 2) + spatial(dims, 9 if dims == 1 else (5, 5)), dtype=torch.float64)
    assert _gradcheck(m, x, fast=True)


# ------------------------------------------------------------------------------------------------- relaxations

def test_softmax_coefficients_sum_to_one_and_follow_tau():
    m = make(2, 2, SPACE_2D, relaxation="softmax", tau=0.5)
    c = m.coefficients()
    assert c.shape == (16,) and (c > 0).all()
    assert abs(c.sum().item() - 1) < 1e-12
    torch.testing.assert_close(c, torch.softmax(m.alpha * 2, 0), **F64)
    torch.testing.assert_close(m.coefficients(), c, rtol=0, atol=0)  # deterministic in training too


def test_gumbel_coefficients_resample_in_training_only():
    m = make(2, 2, SPACE_1D, relaxation="gumbel")
    m.train()
    c1, c2 = m.coefficients(), m.coefficients()
    for c in (c1, c2):
        assert c.shape == (20,) and (c >= 0).all() and abs(c.sum().item() - 1) < 1e-12
    assert (c1 - c2).abs().max() > 1e-3
    x = torch.randn(1, 2, 30, dtype=torch.float64)
    assert (m(x) - m(x)).abs().max() > 1e-6  # a fresh sample every training forward
    m.eval()
    e1, e2 = m.coefficients(), m.coefficients()
    torch.testing.assert_close(e1, e2, rtol=0, atol=0)
    torch.testing.assert_close(e1, torch.softmax(m.alpha, 0), **F64)
    torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)


def test_gumbel_coefficients_centre_on_softmax():
    m = DashConv(1, 1, SearchSpace((3, 5), (1,), dims=1), relaxation="gumbel", backend="direct")
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([0.0, math.log(3.0)]))  # softmax = (1/4, 3/4)
    m.train()
    torch.manual_seed(1)
    # with tau = 1, the Gumbel-max sample picks candidate 1 with probability 3/4: argmax frequency over draws
    wins = sum(int(m.coefficients().argmax()) for _ in range(4000))
    assert abs(wins / 4000 - 0.75) < 0.03


# ------------------------------------------------------------------------------------------------- arch gradient

def test_postprocess_alpha_grad_by_hand():
    m = make(2, 2, SPACE_1D, grad_scale=50.0, rf_penalty=1e-3)
    g = torch.randn(20, dtype=torch.float64)
    m.alpha.grad = g.clone()
    m.postprocess_alpha_grad()
    rf = torch.tensor([d * (k - 1) + 1 for k in (3, 7, 11, 15, 19) for d in (1, 3, 7, 15)], dtype=torch.float64)
    assert rf.max() == 271
    expected = g / (50.0 * (g.norm() + 1e-8)) + 1e-3 * rf
    torch.testing.assert_close(m.alpha.grad, expected, rtol=0, atol=1e-14)


def test_postprocess_alpha_grad_switches():
    g = torch.randn(16, dtype=torch.float64)
    m = make(1, 1, SPACE_2D, grad_scale=0.0, rf_penalty=0.0)
    m.alpha.grad = g.clone()
    m.postprocess_alpha_grad()
    torch.testing.assert_close(m.alpha.grad, g, rtol=0, atol=0)
    m = make(1, 1, SPACE_2D, grad_scale=100.0, rf_penalty=0.0)
    m.alpha.grad = g.clone()
    m.postprocess_alpha_grad()
    assert abs(m.alpha.grad.norm().item() - 0.01) < 1e-9  # normalised to 1 / grad_scale
    m = make(1, 1, SPACE_2D)  # DASH's defaults
    assert m.grad_scale == 100.0 and m.rf_penalty == 1e-5
    m.alpha.grad = None
    m.postprocess_alpha_grad()  # nothing to do, no error
    assert m.alpha.grad is None


# ------------------------------------------------------------------------------------------------- init and to_conv

def test_parameters_and_initialisation():
    m = DashConv(8, 8, SPACE_2D, groups=8)
    assert len(m.weights) == 16
    for w, (k, _) in zip(m.weights, SPACE_2D.candidates):
        assert w.shape == (8, 1, k, k)
    allw = torch.cat([w.flatten() for w in m.weights])
    assert abs(allw.std().item() - 0.01) < 0.001  # N(0, 0.01^2), thousands of samples
    assert m.alpha.shape == (16,) and m.alpha.abs().max() < 0.01 and m.alpha.abs().max() > 0
    assert torch.equal(m.bias, torch.zeros(8))
    assert m.depthwise and not DashConv(8, 8, SPACE_2D).depthwise
    assert DashConv(4, 4, SPACE_2D, bias=False).bias is None


@pytest.mark.parametrize("dims,causal", [(1, False), (1, True), (2, False)], ids=["1d", "1d-causal", "2d"])
def test_to_conv_copies_the_chosen_candidate(dims, causal):
    space = SPACE_1D if dims == 1 else SPACE_2D
    gen = torch.Generator().manual_seed(3)
    picks = torch.randperm(len(space), generator=gen)[:6].tolist()
    n = 40 if dims == 1 else (12, 12)
    x = torch.randn((2, 3) + spatial(dims, n), dtype=torch.float64)
    for stride in (1, 2):
        for i in picks:
            m = make(3, 4, space, "fft", stride=stride, causal=causal).eval()
            with torch.no_grad():
                m.alpha.zero_()
                m.alpha[i] = 1e4
            k, d = space.pair(i)
            assert m.chosen() == (k, d)
            conv = m.to_conv()
            assert type(conv) is (CausalConv1d if causal else (nn.Conv1d if dims == 1 else nn.Conv2d))
            assert conv.kernel_size == (k,) * dims and conv.dilation == (d,) * dims
            assert conv.stride == (stride,) * dims and conv.groups == 1
            assert conv.weight.dtype == torch.float64
            assert torch.equal(conv.weight, m.weights[i]) and torch.equal(conv.bias, m.bias)
            torch.testing.assert_close(conv(x), m(x), **F64)


def test_to_conv_with_other_groups_keeps_a_fresh_init():
    m = make(4, 4, SPACE_2D, groups=4, retrain_groups=1)
    conv = m.to_conv()
    assert conv.groups == 1 and conv.weight.shape[1] == 4
    k, d = m.chosen()
    assert conv.kernel_size == (k, k) and conv.padding == (d * (k - 1) // 2,) * 2
    keep = m.to_conv(groups=4)
    assert keep.groups == 4 and torch.equal(keep.weight, m.weights[SPACE_2D.index(k, d)])


def test_retrain_causal_defaults_to_causal_and_decides_what_to_conv_builds():
    assert DashConv(3, 4, SPACE_1D, causal=True).retrain_causal is True
    assert DashConv(3, 4, SPACE_1D).retrain_causal is False
    # searched centred, retrained causal (DASH's TCN search): a CausalConv1d with PyTorch's initialisation, since
    # the centred candidate's weights would compute another function in a causal conv
    m = make(3, 4, SPACE_1D, causal=False, retrain_causal=True)
    conv = m.to_conv()
    k, d = m.chosen()
    assert type(conv) is CausalConv1d and conv.kernel_size == (k,) and conv.dilation == (d,)
    assert conv.weight.dtype == torch.float64 and not torch.equal(conv.weight, m.weights[SPACE_1D.index(k, d)])
    x = torch.randn(1, 3, 30, dtype=torch.float64)
    x2 = x.clone()
    x2[..., 20:] = 0
    torch.testing.assert_close(conv(x)[..., :20], conv(x2)[..., :20], rtol=0, atol=0)
    # searched causal, retrained causal: the weights are copied
    m = make(3, 4, SPACE_1D, causal=True)
    k, d = m.chosen()
    assert torch.equal(m.to_conv().weight, m.weights[SPACE_1D.index(k, d)])


def test_bfloat16_input_on_the_fft_path():
    m = DashConv(3, 3, SPACE_2D, backend="fft", relaxation="softmax")
    with torch.no_grad():
        for w in m.weights:
            w.normal_(std=0.1)
    x = torch.randn(2, 3, 10, 10)
    y = m(x.bfloat16())
    assert y.dtype == torch.bfloat16
    ref = m(x.bfloat16().float())
    assert (y.float() - ref).abs().max() < 2e-2 * ref.abs().max()


# ------------------------------------------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(space=(3, 5)), TypeError, r"space=\(3, 5\) has type tuple; accepted: a dashkit.SearchSpace"),
    (dict(in_channels=0), ValueError, r"in_channels=0 is out of range; accepted: an integer >= 1"),
    (dict(out_channels=2.0), TypeError, r"out_channels=2\.0 has type float; accepted: an integer >= 1"),
    (dict(stride=0), ValueError, r"stride=0 is out of range; accepted: an integer >= 1"),
    (dict(stride=True), TypeError, r"stride=True has type bool; accepted: an integer >= 1"),
    (dict(groups=0), ValueError, r"groups=0 is out of range; accepted: an integer >= 1"),
    (dict(groups=3), ValueError, r"groups=3 does not divide in_channels=4 and out_channels=6; accepted: a common "
                                 r"divisor of both"),
    (dict(backend="cuda"), ValueError, r"backend='cuda' is not supported; accepted: 'auto', 'fft', 'direct', "
                                       r"'mixed_results'"),
    (dict(relaxation="hard"), ValueError, r"relaxation='hard' is not supported; accepted: 'gumbel', 'softmax'"),
    (dict(tau=0), ValueError, r"tau=0 is out of range; accepted: a finite number in \(0\.0, inf\)"),
    (dict(tau=-1.0), ValueError, r"tau=-1\.0 is out of range; accepted: a finite number in \(0\.0, inf\)"),
    (dict(tau=float("nan")), ValueError, r"tau=nan is out of range; accepted: a finite number in \(0\.0, inf\)"),
    (dict(grad_scale=-1.0), ValueError, r"grad_scale=-1\.0 is out of range; accepted: a finite number in "
                                        r"\[0\.0, inf\)"),
    (dict(rf_penalty=float("inf")), ValueError, r"rf_penalty=inf is out of range; accepted: a finite number in "
                                                r"\[0\.0, inf\)"),
    (dict(init_std=-0.1), ValueError, r"init_std=-0\.1 is out of range; accepted: a finite number in \[0\.0, inf\)"),
    (dict(bias=1), TypeError, r"bias=1 has type int; accepted: True or False"),
    (dict(causal=True), ValueError, r"causal=True with a 2D space: a causal convolution is 1D; accepted: "
                                    r"causal=False, or a space with dims=1"),
    (dict(retrain_groups=4), ValueError, r"retrain_groups=4 does not divide in_channels=4 and out_channels=6; "
                                         r"accepted: a common divisor of both"),
    (dict(retrain_groups=0), ValueError, r"retrain_groups=0 is out of range; accepted: an integer >= 1"),
    (dict(retrain_causal=True), ValueError, r"retrain_causal=True with a 2D space: a causal convolution is 1D; "
                                            r"accepted: retrain_causal=False, or a space with dims=1"),
    (dict(retrain_causal=1), TypeError, r"retrain_causal=1 has type int; accepted: None \(the same as causal\), "
                                        r"True or False"),
])
def test_bad_arguments_raise_clear_errors(kwargs, exc, match):
    args = dict(in_channels=4, out_channels=6, space=SPACE_2D)
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        DashConv(**args)


def test_bad_input_raises_clear_errors():
    m2 = DashConv(4, 6, SPACE_2D)
    with pytest.raises(ValueError, match=r"DashConv expects input \(B, C, H, W\) with C = 4, got shape \(2, 4, 9\)"):
        m2(torch.randn(2, 4, 9))
    with pytest.raises(ValueError, match=r"DashConv expects input \(B, C, H, W\) with C = 4, got shape \(2, 3, 9, 9\)"):
        m2(torch.randn(2, 3, 9, 9))
    m1 = DashConv(4, 6, SPACE_1D)
    with pytest.raises(ValueError, match=r"DashConv expects input \(B, C, L\) with C = 4, got shape \(2, 4, 9, 9\)"):
        m1(torch.randn(2, 4, 9, 9))


# ------------------------------------------------------------------------------------------- the decision record
SPACE_SMALL = SearchSpace((3, 5), (1, 2), dims=1)  # M = 4: (3, 1), (3, 2), (5, 1), (5, 2)


def alpha_steps(m: DashConv, grads, lr: float = 0.05) -> None:
    """Plain SGD steps on alpha with hand-made gradients (each (M,)), post-processed as the search does."""
    for g in grads:
        m.alpha.grad = g.clone().to(m.alpha.dtype)
        m.postprocess_alpha_grad()
        with torch.no_grad():
            m.alpha.sub_(lr * m.alpha.grad)


def test_a_consistent_push_towards_one_candidate_is_decided():
    torch.manual_seed(0)
    m = DashConv(2, 2, SPACE_SMALL, backend="direct")
    gen = torch.Generator().manual_seed(1)
    push = torch.tensor([0.0, 0.0, -1.0, 0.0])  # descent raises alpha of (5, 1)
    grads = [push + 0.5 * torch.randn(4, generator=gen) for _ in range(60)]
    alpha_steps(m, grads)
    rec = m.decision()
    assert m.chosen() == (5, 1) == rec["chosen"]
    assert rec["steps"] == 60 and rec["decided"] is True
    assert 5.0 < rec["z"] <= math.sqrt(60)  # far past the threshold; a self-normalised sum never exceeds sqrt(T)
    assert rec["runner_up"] in [p for p in SPACE_SMALL.candidates if p != (5, 1)]
    # z against each rival, from the buffers' definition: sum u_t / sqrt(sum u_t^2), u_t = g_t[r] - g_t[j]
    post = []
    for g in grads:
        gn = g / (100.0 * (g.norm() + 1e-8)) + 1e-5 * torch.tensor(SPACE_SMALL.receptive_fields)
        post.append(gn)
    G = torch.stack(post).double()  # (T, M)
    j = SPACE_SMALL.index(5, 1)
    zs = {r: float((G[:, r] - G[:, j]).sum() / (G[:, r] - G[:, j]).pow(2).sum().sqrt()) for r in range(4) if r != j}
    r_min = min(zs, key=zs.get)
    assert rec["runner_up"] == SPACE_SMALL.pair(r_min) and rec["z"] == pytest.approx(zs[r_min], rel=1e-4)


def test_a_push_against_the_chosen_candidate_gives_a_negative_z():
    # alpha set by hand to favour (3, 1) while the gradients push (3, 1) down: the argmax is not what they chose
    m = DashConv(2, 2, SPACE_SMALL, backend="direct")
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        m.alpha.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    alpha_steps(m, [torch.tensor([1.0, 0.0, 0.0, 0.0]) + 0.3 * torch.randn(4, generator=gen) for _ in range(40)])
    rec = m.decision()
    assert rec["chosen"] == (3, 1) and rec["z"] < -3 and rec["decided"] is False


def test_random_gradients_rarely_decide():
    # the null: gradients with no preference (independent random signs and sizes); the chosen candidate is alpha's
    # argmax after the steps, so the selection of the top one of M is part of what is measured
    def null_z(space: SearchSpace, seed: int, steps: int) -> float:
        torch.manual_seed(seed)
        m = DashConv(1, 1, space, backend="direct", rf_penalty=0.0)  # the receptive-field push is a real preference
        gen = torch.Generator().manual_seed(10_000 + seed)
        alpha_steps(m, [torch.randn(len(space), generator=gen) for _ in range(steps)])
        return m.decision()["z"]

    for space, runs in ((SearchSpace((3,), (1, 2), dims=1), 1000), (SPACE_SMALL, 400)):
        zs = torch.tensor([null_z(space, seed, steps=30) for seed in range(runs)])
        rate = float((zs >= 3.0).float().mean())
        assert rate < 0.01, (len(space), rate)
        if len(space) == 2:
            # the statistic is not degenerate: for M = 2, z is about |N(0, 1)| (j is the leader), so z >= 1.96
            # about 5% of the time and z >= 1 about 32%
            assert 0.02 < float((zs >= 1.96).float().mean()) < 0.09
            assert 0.25 < float((zs >= 1.0).float().mean()) < 0.40


def test_the_record_before_any_step_and_with_one_candidate():
    m = DashConv(2, 2, SPACE_SMALL)
    rec = m.decision()
    assert rec["steps"] == 0 and rec["z"] == 0.0 and rec["decided"] is False  # no step, no evidence
    one = DashConv(2, 2, SearchSpace((3,), (1,), dims=1))
    alpha_steps(one, [torch.randn(1) for _ in range(3)])
    assert one.decision() == {"z": None, "chosen": (3, 1), "runner_up": None, "steps": 3, "decided": True}
    with pytest.raises(ValueError, match=r"threshold=nan is out of range; accepted: a finite number"):
        m.decision(float("nan"))
    m.alpha.grad = None
    m.postprocess_alpha_grad()  # no gradient, no step: nothing recorded
    assert int(m.decision_steps) == 0


def test_the_record_is_buffers_in_the_state_dict_and_not_parameters():
    m = DashConv(2, 2, SPACE_SMALL)
    params = dict(m.named_parameters())
    buffers = dict(m.named_buffers())
    for name, shape in (("decision_sum", (4,)), ("decision_sq", (4, 4)), ("decision_steps", ())):
        assert name not in params and name in buffers and name in m.state_dict()
        assert tuple(buffers[name].shape) == shape
    assert not any(b.requires_grad for b in buffers.values())


def test_a_resumed_record_equals_an_uninterrupted_one():
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(4, generator=gen) + torch.tensor([0.0, 0.3, 0.0, 0.0]) for _ in range(40)]
    torch.manual_seed(4)
    whole = DashConv(2, 2, SPACE_SMALL)
    torch.manual_seed(4)
    first = DashConv(2, 2, SPACE_SMALL)
    alpha_steps(whole, grads)
    alpha_steps(first, grads[:25])
    torch.manual_seed(99)
    resumed = DashConv(2, 2, SPACE_SMALL)  # a fresh layer, as a resumed search builds it
    resumed.load_state_dict(first.state_dict())
    alpha_steps(resumed, grads[25:])
    for name in ("decision_sum", "decision_sq", "decision_steps"):
        assert torch.equal(getattr(resumed, name), getattr(whole, name)), name
    assert resumed.decision() == whole.decision() and whole.decision()["steps"] == 40


def test_a_state_dict_from_before_the_record_loads_with_an_empty_one():
    m = DashConv(2, 2, SPACE_SMALL)
    alpha_steps(m, [torch.randn(4) for _ in range(5)])
    old = {k: v for k, v in m.state_dict().items() if not k.startswith("decision_")}
    new = DashConv(2, 2, SPACE_SMALL)
    alpha_steps(new, [torch.randn(4) for _ in range(3)])
    new.load_state_dict(old)  # strict
    assert torch.equal(new.alpha, m.alpha) and int(new.decision_steps) == 0
    assert not new.decision_sum.any() and not new.decision_sq.any()


def test_the_record_changes_neither_the_forward_nor_the_alpha_step():
    torch.manual_seed(5)
    a = DashConv(3, 3, SPACE_SMALL, backend="direct", relaxation="softmax")
    b = DashConv(3, 3, SPACE_SMALL, backend="direct", relaxation="softmax")
    b.load_state_dict(a.state_dict())
    with torch.no_grad():  # b's record holds arbitrary sums: nothing it computes may depend on them
        b.decision_sum.normal_()
        b.decision_sq.normal_()
        b.decision_steps.fill_(1234)
    x = torch.randn(2, 3, 17)
    assert torch.equal(a(x), b(x))
    opt_a = torch.optim.SGD([a.alpha], lr=0.05, momentum=0.9, nesterov=True)
    opt_b = torch.optim.SGD([b.alpha], lr=0.05, momentum=0.9, nesterov=True)
    for step in range(5):
        for m, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            m(x).pow(2).mean().backward()
            g = m.alpha.grad.clone()
            m.postprocess_alpha_grad()
            # DASH's post-processing, as it was before the record existed, to the bit
            ref = g / (m.grad_scale * (g.norm() + 1e-8)) + m.rf_penalty * m.receptive_fields
            assert torch.equal(m.alpha.grad, ref)
            opt.step()
        assert torch.equal(a.alpha, b.alpha) and torch.equal(a(x), b(x))
    assert int(a.decision_steps) == 5 and int(b.decision_steps) == 1239
