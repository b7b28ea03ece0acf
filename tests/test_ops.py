"""Tests of dashkit.ops: the three DASH identities (dilation, mixed weights, Fourier convolution) against PyTorch.

Every identity is exact, so float64 results are compared with tolerances of 1e-10 or tighter.
"""
from __future__ import annotations

import math
import time

import pytest
import torch
import torch.nn.functional as F

from dashkit import SearchSpace, conv_choice, ops, spectral

K2, D2 = (3, 5, 7, 9), (1, 3, 7, 15)  # DASH's default 2D space
K1, D1 = (3, 7, 11, 15, 19), (1, 3, 7, 15)  # DASH's default 1D space
PAIRS_1D = [(k, d) for k in K1 for d in D1]
PAIRS_2D = [(k, d) for k in K2 for d in D2]

F64 = dict(rtol=0, atol=1e-10)


def torch_conv(x, w, stride=1, groups=1, dilation=1, causal=False):
    """PyTorch's own "same" (or causal) convolution, written independently of dashkit."""
    s = w.dim() - 2
    ks = w.shape[2:]
    if causal:
        n = x.shape[-1]
        y = F.conv1d(x, w, None, 1, dilation * (ks[0] - 1), dilation, groups)[..., :n]
        return y[..., ::stride]
    pad = tuple(dilation * (k - 1) // 2 for k in ks)
    conv = F.conv1d if s == 1 else F.conv2d
    return conv(x, w, None, stride, pad, dilation, groups)


def dirichlet(m: int) -> torch.Tensor:
    c = torch.distributions.Dirichlet(torch.ones(m, dtype=torch.float64)).sample()
    assert abs(c.sum().item() - 1) < 1e-12 and (c > 0).all()
    return c


# ----------------------------------------------------------------------------------------------- trick 2: dilation

@pytest.mark.parametrize("k,d", PAIRS_1D, ids=[f"k{k}d{d}" for k, d in PAIRS_1D])
def test_dilate_1d_equals_pytorch_dilation(k, d):
    w = torch.randn(3, 2, k, dtype=torch.float64)
    x = torch.randn(2, 2, 37, dtype=torch.float64)
    scatter, kron = ops.dilate(w, d), ops.dilate(w, d, method="kron")
    assert scatter.shape == (3, 2, d * (k - 1) + 1)
    assert torch.equal(scatter, kron)
    # the taps sit every d places, everything else is zero
    assert torch.equal(scatter[..., ::d], w)
    assert scatter.count_nonzero() == w.count_nonzero()
    pad = d * (k - 1) // 2
    torch.testing.assert_close(F.conv1d(x, scatter, padding=pad), F.conv1d(x, w, padding=pad, dilation=d), **F64)


@pytest.mark.parametrize("k,d", PAIRS_2D, ids=[f"k{k}d{d}" for k, d in PAIRS_2D])
def test_dilate_2d_equals_pytorch_dilation(k, d):
    w = torch.randn(2, 2, k, k, dtype=torch.float64)
    x = torch.randn(1, 2, 13, 11, dtype=torch.float64)
    scatter, kron = ops.dilate(w, d), ops.dilate(w, d, method="kron")
    L = d * (k - 1) + 1
    assert scatter.shape == (2, 2, L, L)
    assert torch.equal(scatter, kron)
    assert torch.equal(scatter[..., ::d, ::d], w)
    assert scatter.count_nonzero() == w.count_nonzero()
    pad = d * (k - 1) // 2
    torch.testing.assert_close(F.conv2d(x, scatter, padding=pad), F.conv2d(x, w, padding=pad, dilation=d), **F64)


def test_dilate_docstring_example_and_identity():
    assert torch.equal(ops.dilate(torch.tensor([[[1., 2., 3.]]]), 2), torch.tensor([[[1., 0., 2., 0., 3.]]]))
    w = torch.randn(2, 2, 3, 3)
    assert torch.equal(ops.dilate(w, 1), w) and torch.equal(ops.dilate(w, 1, method="kron"), w)


def test_dilate_keeps_gradients():
    w = torch.randn(2, 1, 3, dtype=torch.float64, requires_grad=True)
    for method in ("scatter", "kron"):
        g, = torch.autograd.grad((ops.dilate(w, 3, method) * torch.arange(7.0, dtype=torch.float64)).sum(), w)
        torch.testing.assert_close(g, torch.tensor([0.0, 3.0, 6.0], dtype=torch.float64).expand(2, 1, 3), **F64)


# ----------------------------------------------------------------------------------------------- padding, cropping

def test_center_pad_centred_and_causal():
    w = torch.arange(1.0, 4.0).view(1, 1, 3)
    assert torch.equal(ops.center_pad(w, 7), torch.tensor([[[0., 0., 1., 2., 3., 0., 0.]]]))
    assert torch.equal(ops.center_pad(w, 6, causal=True), torch.tensor([[[0., 0., 0., 1., 2., 3.]]]))
    w2 = torch.randn(2, 3, 3, 5)
    p = ops.center_pad(w2, (7, 9))
    assert p.shape == (2, 3, 7, 9) and torch.equal(p[..., 2:5, 2:7], w2)
    assert p.count_nonzero() == w2.count_nonzero()  # everything else is zero


@pytest.mark.parametrize("causal", [False, True], ids=["centred", "causal"])
def test_kept_taps_are_exactly_the_taps_that_reach_the_input(causal):
    """Brute force: tap j at offset d (j - shift) is kept iff |offset| <= n - 1, and the kept taps are contiguous."""
    for k in (1, 3, 5, 9, 19):
        for d in (1, 2, 3, 7, 15):
            for n in (1, 2, 5, 8, 13, 40):
                shift = (k - 1) if causal else (k - 1) // 2
                reach = [j for j in range(k) if abs(d * (j - shift)) <= n - 1]
                assert ops.kept_taps(k, d, n, causal) == (reach[0], len(reach)), (k, d, n)
    assert ops.kept_taps(9, 3, 8) == (2, 5)  # the docstring's example


def test_crop_kernel_keeps_the_centre_or_the_end():
    w = torch.arange(1.0, 10.0).view(1, 1, 9)
    assert torch.equal(ops.crop_kernel(w, 2), torch.tensor([[[4., 5., 6.]]]))
    assert torch.equal(ops.crop_kernel(w, 2, causal=True), torch.tensor([[[8., 9.]]]))
    assert torch.equal(ops.crop_kernel(w, 20), w)  # nothing to drop
    w2 = torch.randn(1, 1, 121, 121)
    c = ops.crop_kernel(w2, (8, 3))
    assert c.shape == (1, 1, 15, 5) and torch.equal(c, w2[..., 53:68, 58:63])


def test_cropping_is_exact_2d_s121_on_8x8():
    space = SearchSpace(K2, D2, dims=2)
    ws = [torch.randn(3, 2, k, k, dtype=torch.float64) for k, _ in space.candidates]
    ds = [d for _, d in space.candidates]
    c = dirichlet(len(space))
    full = ops.aggregate_kernel(ws, c, ds)
    cropped = ops.aggregate_kernel(ws, c, ds, crop_to=8)
    assert full.shape[-2:] == (121, 121) and cropped.shape[-2:] == (15, 15)
    assert torch.equal(cropped, ops.crop_kernel(full, (8, 8)))
    x = torch.randn(2, 2, 8, 8, dtype=torch.float64)
    ref = ops.direct_conv(x, full)
    torch.testing.assert_close(ops.direct_conv(x, cropped), ref, **F64)
    torch.testing.assert_close(ops.fft_conv(x, cropped), ref, **F64)
    torch.testing.assert_close(ops.fft_conv(x, full), ref, **F64)
    # the dropped taps truly never meet the input: changing them changes nothing
    noisy = full.clone()
    mask = torch.ones_like(noisy, dtype=torch.bool)
    mask[..., 53:68, 53:68] = False
    noisy[mask] = torch.randn(int(mask.sum()), dtype=torch.float64)
    torch.testing.assert_close(ops.direct_conv(x, noisy), ref, **F64)
    # while every kept tap does: the outermost ones (offset +-7) meet the input's opposite corners
    for i, j in ((53, 53), (67, 60), (60, 53)):
        kicked = full.clone()
        kicked[0, 0, i, j] += 1.0
        diff = ops.direct_conv(x, kicked) - ref
        assert diff.abs().max() > 1e-3


def test_cropping_is_exact_1d_causal():
    space = SearchSpace(K1, D1, dims=1)
    ws = [torch.randn(2, 3, k, dtype=torch.float64) for k, _ in space.candidates]
    ds = [d for _, d in space.candidates]
    c = dirichlet(len(space))
    for causal, width in ((False, 2 * 20 - 1), (True, 20)):
        full = ops.aggregate_kernel(ws, c, ds, causal=causal)
        cropped = ops.aggregate_kernel(ws, c, ds, crop_to=20, causal=causal)
        assert full.shape[-1] == 271 and cropped.shape[-1] == width
        assert torch.equal(cropped, ops.crop_kernel(full, 20, causal=causal))
        x = torch.randn(2, 3, 20, dtype=torch.float64)
        ref = ops.direct_conv(x, full, causal=causal)
        torch.testing.assert_close(ops.direct_conv(x, cropped, causal=causal), ref, **F64)
        torch.testing.assert_close(ops.fft_conv(x, cropped, causal=causal), ref, **F64)


# ----------------------------------------------------------------------------------------------- trick 1: mixed weights

MIX_CASES = [
    # dims, c_in, c_out, groups, causal, n
    (1, 3, 4, 1, False, 29),
    (1, 4, 4, 4, False, 30),
    (1, 4, 6, 2, False, 31),
    (1, 3, 4, 1, True, 29),
    (1, 4, 4, 4, True, 300),  # longer than the largest field: no cropping
    (1, 4, 6, 2, True, 31),
    (2, 2, 3, 1, False, (9, 10)),
    (2, 3, 3, 3, False, (8, 8)),
    (2, 4, 2, 2, False, (11, 7)),
]
MIX_IDS = [f"{dims}d-{ci}to{co}-g{g}{'-causal' if c else ''}-n{n}" for dims, ci, co, g, c, n in MIX_CASES]


@pytest.mark.parametrize("dims,cin,cout,groups,causal,n", MIX_CASES, ids=MIX_IDS)
def test_aggregated_conv_equals_mixed_results(dims, cin, cout, groups, causal, n):
    space = SearchSpace(K1, D1, dims=1) if dims == 1 else SearchSpace(K2, D2, dims=2)
    ws = [torch.randn((cout, cin // groups) + (k,) * dims, dtype=torch.float64) for k, _ in space.candidates]
    ds = [d for _, d in space.candidates]
    c = dirichlet(len(space))
    x = torch.randn((2, cin) + ((n,) if dims == 1 else n), dtype=torch.float64)
    ref = ops.mixed_results(x, ws, c, ds, groups=groups, causal=causal)
    # the DARTS baseline is itself the weighted sum of PyTorch's dilated convolutions
    by_hand = sum(ci * torch_conv(x, w, groups=groups, dilation=d, causal=causal) for ci, w, d in zip(c, ws, ds))
    torch.testing.assert_close(ref, by_hand, **F64)
    W = ops.aggregate_kernel(ws, c, ds, causal=causal)
    assert W.shape == (cout, cin // groups) + (space.max_field,) * dims
    torch.testing.assert_close(ops.direct_conv(x, W, groups=groups, causal=causal), ref, **F64)
    torch.testing.assert_close(ops.fft_conv(x, W, groups=groups, causal=causal), ref, **F64)
    Wk = ops.aggregate_kernel(ws, c, ds, causal=causal, method="kron")
    assert torch.equal(Wk, W)
    for stride in (2, 3):
        ref_s = ops.mixed_results(x, ws, c, ds, stride=stride, groups=groups, causal=causal)
        torch.testing.assert_close(ops.fft_conv(x, W, stride, groups, causal=causal), ref_s, **F64)


def test_aggregate_kernel_of_one_hot_coefficients_is_the_padded_candidate():
    space = SearchSpace(K2, D2, dims=2)
    ws = [torch.randn(2, 2, k, k, dtype=torch.float64) for k, _ in space.candidates]
    ds = [d for _, d in space.candidates]
    i = space.index(5, 7)
    c = torch.zeros(len(space), dtype=torch.float64)
    c[i] = 1
    W = ops.aggregate_kernel(ws, c, ds)
    torch.testing.assert_close(W, ops.center_pad(ops.dilate(ws[i], 7), 121), rtol=0, atol=0)
    assert W[..., 60 - 14:60 + 15:7, 60 - 14:60 + 15:7].equal(ws[i])


# ----------------------------------------------------------------------------------------------- trick 3: FFT

FFT_CASES = [
    # dims, batch, c_in, c_out, groups, kernel, n, stride, causal
    (1, 2, 3, 4, 1, 5, 31, 1, False),
    (1, 2, 3, 4, 1, 5, 32, 1, False),
    (1, 2, 3, 4, 1, 5, 31, 2, False),
    (1, 2, 3, 4, 1, 5, 32, 3, False),
    (1, 1, 4, 4, 4, 9, 30, 2, False),   # depthwise, batch 1
    (1, 2, 4, 6, 2, 7, 25, 3, False),   # grouped
    (1, 2, 3, 2, 1, 61, 12, 1, False),  # kernel larger than the input: cropped
    (1, 2, 3, 2, 1, 1, 17, 2, False),   # kernel size 1
    (1, 2, 3, 4, 1, 6, 31, 1, True),    # causal, even kernel
    (1, 2, 4, 4, 4, 9, 32, 3, True),
    (1, 1, 4, 6, 2, 40, 13, 2, True),   # causal, kernel larger than the input
    (2, 2, 3, 4, 1, 5, (9, 9), 1, False),
    (2, 2, 3, 4, 1, 5, (10, 12), 1, False),
    (2, 2, 3, 4, 1, 3, (9, 10), 2, False),
    (2, 2, 3, 4, 1, 7, (11, 8), 3, False),
    (2, 1, 4, 4, 4, 5, (8, 9), 2, False),  # depthwise, batch 1
    (2, 2, 4, 6, 2, 3, (7, 7), 1, False),  # grouped
    (2, 2, 2, 3, 1, 31, (6, 9), 1, False),  # kernel larger than the input
    (2, 2, 2, 3, 1, 1, (5, 6), 2, False),   # kernel size 1
]
FFT_IDS = [f"{dims}d-b{b}-{ci}to{co}-g{g}-k{k}-n{n}-s{s}{'-causal' if c else ''}"
           for dims, b, ci, co, g, k, n, s, c in FFT_CASES]


def _fft_inputs(dims, batch, cin, cout, groups, kernel, n, dtype):
    shape = (n,) if dims == 1 else n
    x = torch.randn((batch, cin) + shape, dtype=dtype)
    w = torch.randn((cout, cin // groups) + (kernel,) * dims, dtype=dtype)
    return x, w


@pytest.fixture(params=["tables", "fft"])
def kernel_spectrum(request, monkeypatch):
    """Force how fft_conv gets the kernel's spectrum: DFT matmuls over the taps, or an FFT of the padded kernel."""
    calls = []

    def forced(kk, N):
        calls.append((tuple(kk), tuple(N)))
        return request.param == "tables"

    monkeypatch.setattr(spectral, "tables_cheaper", forced)
    yield calls
    assert calls, "fft_conv never chose a spectrum path"


@pytest.mark.parametrize("dims,batch,cin,cout,groups,kernel,n,stride,causal", FFT_CASES, ids=FFT_IDS)
def test_fft_conv_equals_direct_float64(dims, batch, cin, cout, groups, kernel, n, stride, causal, kernel_spectrum):
    x, w = _fft_inputs(dims, batch, cin, cout, groups, kernel, n, torch.float64)
    b = torch.randn(cout, dtype=torch.float64)
    ref = torch_conv(x, w, stride, groups, causal=causal)
    out_n = tuple(-(-m // stride) for m in x.shape[2:])
    assert ref.shape == (batch, cout) + out_n
    torch.testing.assert_close(ops.direct_conv(x, w, stride, groups, causal=causal), ref, **F64)
    y = ops.fft_conv(x, w, stride, groups, causal=causal)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, ref, **F64)
    yb = ops.fft_conv(x, w, stride, groups, causal=causal, bias=b)
    torch.testing.assert_close(yb, ref + b.view((1, -1) + (1,) * dims), **F64)
    torch.testing.assert_close(ops.direct_conv(x, w, stride, groups, causal=causal, bias=b), yb, **F64)


@pytest.mark.parametrize("dims,batch,cin,cout,groups,kernel,n,stride,causal", FFT_CASES, ids=FFT_IDS)
def test_fft_conv_equals_direct_float32(dims, batch, cin, cout, groups, kernel, n, stride, causal):
    x, w = _fft_inputs(dims, batch, cin, cout, groups, kernel, n, torch.float32)
    ref = ops.direct_conv(x, w, stride, groups, causal=causal)
    y = ops.fft_conv(x, w, stride, groups, causal=causal)
    assert y.dtype == torch.float32
    scale = ref.abs().max().item()
    torch.testing.assert_close(y, ref, rtol=0, atol=1e-4 * scale)


DILATED_CASES = [
    # dims, c_in, c_out, groups, kernel, dilation, n, stride, causal
    (1, 3, 4, 1, 5, 3, 31, 1, False),
    (1, 4, 4, 4, 7, 15, 40, 2, False),   # depthwise; the outer taps only read padding: cropped
    (1, 4, 6, 2, 5, 7, 30, 1, True),     # causal, grouped
    (1, 3, 2, 1, 19, 15, 50, 3, True),   # causal, cropped
    (2, 3, 4, 1, 3, 7, (9, 12), 1, False),
    (2, 4, 6, 2, 9, 3, (12, 10), 2, False),  # grouped, cropped on the short axis
    (2, 4, 4, 4, 5, 2, (8, 8), 1, False),    # depthwise
    (2, 2, 3, 1, 9, 15, (16, 20), 1, False),  # only the centre row and column of taps reach the input
]


@pytest.mark.parametrize("dims,cin,cout,groups,kernel,dilation,n,stride,causal", DILATED_CASES,
                         ids=[f"{c[0]}d-g{c[3]}-k{c[4]}d{c[5]}-n{c[6]}-s{c[7]}{'-causal' if c[8] else ''}"
                              for c in DILATED_CASES])
def test_fft_conv_with_dilation_equals_torch_dilated_conv_float64(dims, cin, cout, groups, kernel, dilation, n,
                                                                   stride, causal, kernel_spectrum):
    x, w = _fft_inputs(dims, 2, cin, cout, groups, kernel, n, torch.float64)
    x.requires_grad_(True)
    w.requires_grad_(True)
    ref = torch_conv(x, w, stride, groups, dilation=dilation, causal=causal)
    y = ops.fft_conv(x, w, stride, groups, causal=causal, dilation=dilation)
    torch.testing.assert_close(y, ref, **F64)
    torch.testing.assert_close(y, ops.fft_conv(x, ops.dilate(w, dilation), stride, groups, causal=causal), **F64)
    g = torch.randn_like(ref)
    gx, gw = torch.autograd.grad((y * g).sum(), (x, w))
    rx, rw = torch.autograd.grad((ref * g).sum(), (x, w))
    torch.testing.assert_close(gx, rx, **F64)
    torch.testing.assert_close(gw, rw, **F64)


def test_tap_spectrum_equals_the_fft_of_the_padded_kernel():
    """The DFT-matmul spectrum of a dilated kernel is the FFT path's spectrum, in float64, 1D and 2D."""
    for dims, N, d in [(1, (40,), 3), (2, (24, 30), 2)]:
        w = torch.randn((3, 2) + (5,) * dims, dtype=torch.float64)
        wd = ops.dilate(w, d)
        ref = spectral.dense_kernel_spectrum(wd, N, 1, False, False)  # (1, F, ci, co)
        offsets = [[d * (j - 2) for j in range(5)]] * dims
        taps = w.reshape(6, -1).t().reshape((5,) * dims + (6,))
        got = spectral.spectrum_layout(spectral.tap_spectrum(taps, N, offsets), 3, 2, 1, False)
        assert got.shape == ref.shape
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-12)


def test_fft_conv_gradients_equal_direct():
    x = torch.randn(2, 4, 23, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 9, dtype=torch.float64, requires_grad=True)
    g = torch.randn(2, 6, 12, dtype=torch.float64)
    gx, gw = torch.autograd.grad((ops.fft_conv(x, w, 2, 2) * g).sum(), (x, w))
    rx, rw = torch.autograd.grad((ops.direct_conv(x, w, 2, 2) * g).sum(), (x, w))
    torch.testing.assert_close(gx, rx, **F64)
    torch.testing.assert_close(gw, rw, **F64)


@pytest.mark.parametrize("dims", [1, 2])
def test_fft_conv_bfloat16_input_gives_bfloat16_close_to_float32(dims):
    shape = (2, 4, 40) if dims == 1 else (2, 4, 12, 10)
    x = torch.randn(shape).bfloat16()
    w = torch.randn((4, 4) + (7,) * dims) * 0.1
    y = ops.fft_conv(x, w)
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    ref = ops.direct_conv(x.float(), w)
    err = (y.float() - ref).abs().max().item()
    assert err < 2e-2 * ref.abs().max().item()


def test_fft_conv_docstring_example():
    x, w = torch.randn(2, 4, 100), torch.randn(4, 4, 31)
    assert torch.allclose(ops.fft_conv(x, w), ops.direct_conv(x, w), atol=1e-4)


def test_fast_fft_len_is_the_smallest_5_smooth_number():
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 400):
        m = ops.fast_fft_len(n)
        assert m >= n and smooth(m), n
        assert not any(smooth(j) for j in range(n, m)), n
    assert ops.fast_fft_len(121 + 60) == 192
    assert ops.fast_fft_len(1025) == 1080


def test_fft_conv_equals_the_textbook_circular_conv_with_enough_padding():
    """fft_conv (fast spectral path) and circular_conv (the recipe written out) agree once N >= n + (K - 1) / 2."""
    for dims, n, K in [(1, (30,), 9), (2, (9, 12), 7)]:
        x = torch.randn((2, 3) + n, dtype=torch.float64)
        w = torch.randn((4, 3) + (K,) * dims, dtype=torch.float64)
        N = tuple(m + (K - 1) // 2 for m in n)
        torch.testing.assert_close(ops.circular_conv(x, w, N), ops.fft_conv(x, w), **F64)
        torch.testing.assert_close(ops.circular_conv(x, w, N), torch_conv(x, w), **F64)


def test_fft_input_computes_half_precision_in_float32():
    for dtype in (torch.float16, torch.bfloat16):
        xf, out = spectral.fft_input(torch.randn(2, 3, 8).to(dtype))
        assert xf.dtype == torch.float32 and out == dtype
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    xf, out = spectral.fft_input(x)
    assert xf is x and out == torch.float64


def test_ops_exports_the_three_tricks_in_order_and_nothing_private():
    assert ops.__all__ == ["aggregate_kernel", "mixed_results", "dilate", "center_pad", "kept_taps", "crop_kernel",
                           "direct_conv", "circular_conv", "fast_fft_len", "fft_len_for", "fft_conv"]
    assert all(callable(getattr(ops, name)) for name in ops.__all__)
    assert all(callable(getattr(spectral, name)) for name in spectral.__all__)


def test_spectral_matmul_backward_gradcheck():
    X = torch.randn(2, 3, 2, 3, dtype=torch.complex128, requires_grad=True)  # (G, F, B, ci)
    K = torch.randn(2, 3, 3, 4, dtype=torch.complex128, requires_grad=True)  # (G, F, ci, co)
    Y = spectral.SpectralMatmul.apply(X, K)
    torch.testing.assert_close(Y, X @ K, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(spectral.SpectralMatmul.apply, (X, K), eps=1e-6, atol=1e-8)
    # only the input that needs a gradient gets one
    Kc = K.detach()
    gX, = torch.autograd.grad(spectral.SpectralMatmul.apply(X, Kc).abs().sum(), X)
    rX, = torch.autograd.grad((X @ Kc).abs().sum(), X)
    torch.testing.assert_close(gX, rX, rtol=0, atol=1e-12)


def test_spectral_mix_depthwise_and_grouped_match_einsum():
    X = torch.randn(2, 4, 5, dtype=torch.complex128)  # (B, C_in, F)
    Kd = torch.randn(5, 4, dtype=torch.complex128)  # (F, C)
    torch.testing.assert_close(spectral.spectral_mix(X, Kd, 4, True), X * Kd.t()[None], rtol=0, atol=1e-12)
    Kg = torch.randn(2, 5, 2, 3, dtype=torch.complex128)  # (G, F, ci, co)
    ref = torch.einsum("bgif,gfio->bgof", X.view(2, 2, 2, 5), Kg).reshape(2, 6, 5)
    torch.testing.assert_close(spectral.spectral_mix(X, Kg, 2, False), ref, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------- choose_backend

def test_choose_backend_trusts_a_clear_estimate_without_timing():
    calls = []
    runners = {"fft": lambda: calls.append("fft"), "direct": lambda: calls.append("direct")}
    pick = conv_choice.choose_backend("k1", runners, torch.device("cpu"), estimates={"fft": 1.0, "direct": 100.0})
    assert pick == "fft" and calls == []
    assert conv_choice.backend_cache()["k1"] == ("fft", {})
    pick = conv_choice.choose_backend("k2", runners, torch.device("cpu"), estimates={"fft": 90.0, "direct": 10.0})
    assert pick == "direct" and calls == []


def test_choose_backend_times_close_calls_and_caches():
    calls = {"fft": 0, "direct": 0}

    def slow():
        calls["fft"] += 1
        time.sleep(0.02)

    def fast():
        calls["direct"] += 1

    runners = {"fft": slow, "direct": fast}
    pick = conv_choice.choose_backend("k", runners, torch.device("cpu"), estimates={"fft": 1.0, "direct": 2.0}, reps=2)
    assert pick == "direct"
    assert calls["fft"] >= 2 and calls["direct"] >= 2  # warm-up plus timed runs
    choice, times = conv_choice.backend_cache()["k"]
    assert choice == "direct" and times["fft"] > times["direct"] and times["fft"] >= 0.02
    before = dict(calls)
    assert conv_choice.choose_backend("k", runners, torch.device("cpu")) == "direct"
    assert calls == before  # cached: nothing runs again
    conv_choice.clear_backend_cache()
    assert conv_choice.backend_cache() == {}


def test_conv_costs_count_operations():
    """The one cost model: direct = B C_out C_in/G outputs taps; FFT = transforms + mixing (+ the kernel's)."""
    c = conv_choice.conv_costs(2, 8, 6, 2, 50, 9, (64,))
    assert c["direct"] == 2 * 6 * 4 * 50 * 9
    assert c["fft"] == 2 * 14 * 64 * 6.0 * 2 + 2 * 6 * 4 * 64 * 2
    c2 = conv_choice.conv_costs(2, 8, 6, 2, 50, 9, (64,), kernel_transform=1000)
    assert c2["fft"] == c["fft"] + 1000 and c2["direct"] == c["direct"]
    square = conv_choice.conv_costs(1, 4, 4, 1, 16 * 16, 81, (24, 24))
    assert square["fft"] == 1 * 8 * 576 * max(math.log2(576), 1) * 2 + 1 * 4 * 4 * 576 * 2
    assert conv_choice.conv_costs(1, 1, 1, 1, 1, 1, (1,))["fft"] == 1 * 2 * 1 * 1 * 2 + 2  # log2 floored at 1


def test_timing_runners_run_forward_and_backward_on_a_detached_copy():
    x = torch.randn(2, 3, requires_grad=True)
    w = torch.randn(3, requires_grad=True)
    seen = []

    def forward(xp):
        seen.append(xp)
        return (xp * w).sum(1)

    runners = conv_choice.timing_runners({"a": forward}, x, [w], grad=True)
    runners["a"]()
    assert seen[0] is not x and seen[0].requires_grad and torch.equal(seen[0], x)
    assert x.grad is None and w.grad is None  # gradients are computed, not accumulated
    assert conv_choice.needs_grad(x, []) and conv_choice.needs_grad(x.detach(), [w])
    assert not conv_choice.needs_grad(x.detach(), [])
    with torch.no_grad():
        assert not conv_choice.needs_grad(x, [w])
    # measure: a clear estimate decides without running anything; otherwise both run and the choice is cached
    calls = []
    forwards = {"fft": lambda xp: calls.append("fft") or xp.sum(), "direct": lambda xp: calls.append("d") or xp.sum()}
    assert conv_choice.measure("m1", forwards, x, [], True, {"fft": 1.0, "direct": 100.0}) == "fft" and not calls
    assert conv_choice.measure("m2", forwards, x, [], False, {"fft": 1.0, "direct": 2.0}) in ("fft", "direct")
    assert set(calls) == {"fft", "d"} and conv_choice.backend_choice("m2") is not None


# ----------------------------------------------------------------------------------------------- errors

def test_bad_dilate_arguments():
    w = torch.randn(2, 2, 3)
    with pytest.raises(ValueError, match=r"dilation d must be a positive int, got 0"):
        ops.dilate(w, 0)
    with pytest.raises(ValueError, match=r"dilation d must be a positive int, got -2"):
        ops.dilate(w, -2)
    with pytest.raises(ValueError, match=r"dilation d must be a positive int, got 2\.0"):
        ops.dilate(w, 2.0)
    with pytest.raises(ValueError, match=r"method must be 'scatter' or 'kron', got 'fft'"):
        ops.dilate(w, 2, method="fft")
    with pytest.raises(ValueError, match=r"w must have shape .*kernel dims; got a tensor of shape \(2, 2, 3, 3, 3\)"):
        ops.dilate(torch.randn(2, 2, 3, 3, 3), 2)


def test_bad_pad_and_aggregate_arguments():
    w = torch.randn(2, 2, 5)
    with pytest.raises(ValueError, match=r"cannot pad a kernel of size 5 to 3"):
        ops.center_pad(w, 3)
    with pytest.raises(ValueError, match=r"cannot pad a kernel of size 5 to 8.*same parity"):
        ops.center_pad(w, 8)
    with pytest.raises(ValueError, match=r"size must be a positive int or 1 positive ints, got \(7, 7\)"):
        ops.center_pad(w, (7, 7))
    c = torch.ones(2) / 2
    with pytest.raises(ValueError, match=r"weights and dilations must be non-empty .* got 0 and 0"):
        ops.aggregate_kernel([], torch.ones(0), [])
    with pytest.raises(ValueError, match=r"weights and dilations must be non-empty .* got 2 and 1"):
        ops.aggregate_kernel([w, w], c, [1])
    with pytest.raises(ValueError, match=r"coeffs must have shape \(2,\), got \(3,\)"):
        ops.aggregate_kernel([w, w], torch.ones(3), [1, 2])
    with pytest.raises(ValueError, match=r"weights\[1\] has an even kernel size \(4,\)"):
        ops.aggregate_kernel([w, torch.randn(2, 2, 4)], c, [1, 2])
    with pytest.raises(ValueError, match=r"weights\[1\] has shape \(3, 2, 3\); all candidates need the same"):
        ops.aggregate_kernel([w, torch.randn(3, 2, 3)], c, [1, 2])
    with pytest.raises(ValueError, match=r"n must be a positive int or 1 positive ints, got 0"):
        ops.crop_kernel(w, 0)
    with pytest.raises(ValueError, match=r"n must be positive, got 0"):
        ops.fast_fft_len(0)


def test_bad_mixed_results_arguments():
    """The DARTS baseline checks its candidates as aggregate_kernel does, instead of returning None or dropping some."""
    x, w = torch.randn(2, 2, 10), torch.randn(2, 2, 3)
    with pytest.raises(ValueError, match=r"weights and dilations must be non-empty"):
        ops.mixed_results(x, [], torch.ones(0), [])
    with pytest.raises(ValueError, match=r"weights and dilations must be non-empty .* got 2 and 1"):
        ops.mixed_results(x, [w, w], torch.ones(2) / 2, [1])
    with pytest.raises(ValueError, match=r"coeffs must have shape \(2,\), got \(3,\)"):
        ops.mixed_results(x, [w, w], torch.ones(3) / 3, [1, 2])


@pytest.mark.parametrize("conv", [ops.fft_conv, ops.direct_conv], ids=["fft_conv", "direct_conv"])
def test_bad_conv_arguments(conv):
    x, w = torch.randn(2, 4, 10), torch.randn(6, 4, 3)
    with pytest.raises(ValueError, match=r"x must have shape \(B, C, L\) or \(B, C, H, W\); got .* \(4, 10\)"):
        conv(torch.randn(4, 10), w)
    with pytest.raises(ValueError, match=r"x must have shape .* \(1, 2, 4, 4, 4\)"):
        conv(torch.randn(1, 2, 4, 4, 4), torch.randn(2, 2, 3, 3, 3))
    with pytest.raises(ValueError, match=r"w must have 3 dims for x of shape \(2, 4, 10\), got \(6, 4, 3, 3\)"):
        conv(x, torch.randn(6, 4, 3, 3))
    with pytest.raises(ValueError, match=r"expects 4 input channels with groups=1, but x has 5 channels"):
        conv(torch.randn(2, 5, 10), w)
    with pytest.raises(ValueError, match=r"groups=4 must divide in_channels \(4\) and out_channels \(6\)"):
        conv(x, torch.randn(6, 1, 3), groups=4)
    with pytest.raises(ValueError, match=r"groups must be a positive int, got 0"):
        conv(x, w, groups=0)
    with pytest.raises(ValueError, match=r"groups must be a positive int, got 2\.0"):
        conv(x, w, groups=2.0)
    with pytest.raises(ValueError, match=r"stride must be a positive int, got 0"):
        conv(x, w, stride=0)
    with pytest.raises(ValueError, match=r"stride must be a positive int, got 1\.5"):
        conv(x, w, stride=1.5)
    with pytest.raises(ValueError, match=r"stride must be a positive int, got True"):
        conv(x, w, stride=True)
    with pytest.raises(ValueError, match=r"a centred 'same' kernel must have odd sizes, got kernel size \(4,\)"):
        conv(x, torch.randn(6, 4, 4))
    with pytest.raises(ValueError, match=r"causal convolution is 1D only"):
        conv(torch.randn(1, 4, 5, 5), torch.randn(6, 4, 3, 3), causal=True)


def test_fft_conv_padding_must_be_same():
    x, w = torch.randn(2, 4, 10), torch.randn(6, 4, 3)
    with pytest.raises(ValueError, match=r"padding must be 'same', got 'valid'"):
        ops.fft_conv(x, w, padding="valid")


@pytest.mark.parametrize("bad", [0, -2, 1.5, True])
def test_fft_conv_dilation_must_be_a_positive_int(bad):
    x, w = torch.randn(2, 4, 10), torch.randn(6, 4, 3)
    with pytest.raises(ValueError, match=r"dilation must be a positive int, got"):
        ops.fft_conv(x, w, dilation=bad)
