"""The fast machinery behind `dashkit.ops.fft_conv` and `DashConv`'s Fourier path.

`dashkit.ops` states the Fourier identity ``conv(x, W) = irfft(rfft(x) * K)`` and `ops.circular_conv` computes it
the textbook way. This module computes the same thing faster; every function here is exact (float64 tests compare
it with PyTorch's convolution to 1e-10):

- the kernel's spectrum K from its few taps by small DFT matmuls (`dft_tables`, `tap_spectrum`) instead of an FFT
  of the kernel padded to N (`dense_kernel_spectrum`), whichever an operation count says is cheaper
  (`tables_cheaper`); `spectrum_layout` arranges it for the channel mixing;
- the channel mixing ``Y[f] = X[f] @ K[f]`` per frequency (`spectral_mix`, with a hand-written backward,
  `SpectralMatmul`);
- real FFTs whose backward passes skip work PyTorch's generic ones do (`PaddedRFFT`, `RFFT2T`, `IRFFT2T`), and
  stride 2 done in the frequency domain (`fold_stride2`);
- the whole pipeline, rfft -> mix -> inverse -> crop -> subsample (`spectral_conv`), which runs in float32 at
  least (`fft_input`).

Spectra are laid out (B, C, N // 2 + 1) in 1D and TRANSPOSED, (B, C, N_w // 2 + 1, N_h), in 2D (see `RFFT2T`).
This module depends on torch only, so `ops` and `DashConv` can both build on it.
"""
from __future__ import annotations

import functools
import math
from typing import Sequence, Tuple

import torch
import torch.nn.functional as F

__all__ = [
    "fft_input", "dft_tables", "tap_spectrum", "dense_kernel_spectrum", "spectrum_layout", "tables_cheaper",
    "SpectralMatmul", "spectral_mix", "PaddedRFFT", "RFFT2T", "IRFFT2T", "fold_stride2", "spectral_conv",
]


# ----------------------------------------------------------------------------------------------------------------
# the input's dtype

def fft_input(x: torch.Tensor) -> Tuple[torch.Tensor, torch.dtype]:
    """The input an FFT can take, and the dtype to cast the result back to.

    FFTs run in float32 at least: CPU FFTs have no half precision, and cuFFT's needs power-of-two sizes.

    Args:
        x: any floating tensor, e.g. (B, C, L).

    Returns:
        (x as float32 if it was float16 or bfloat16, else x itself; x's original dtype).

    Example:
        >>> xf, dtype = fft_input(torch.randn(2, 3, 8).bfloat16())
        >>> xf.dtype, dtype
        (torch.float32, torch.bfloat16)
    """
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float(), x.dtype
    return x, x.dtype


# ----------------------------------------------------------------------------------------------------------------
# kernel spectra

@functools.lru_cache(maxsize=512)
def dft_tables(N: Tuple[int, ...], axis_offsets: Tuple[Tuple[int, ...], ...], dtype: torch.dtype,
               device: torch.device) -> Tuple[torch.Tensor, ...]:
    """cos and sin of 2 pi f o / N_a for every frequency f and tap offset o of each axis (cached).

    Returns (cos_1, sin_1, ..., cos_s, sin_s), each (F_a, |O_a|): F_a = N_a, except N_a // 2 + 1 on the last
    (one-sided) axis. Angles are reduced mod 2 pi in float64 before the cast, so large offsets stay exact.
    """
    out = []
    s = len(N)
    for a, (Na, offs) in enumerate(zip(N, axis_offsets)):
        nf = Na // 2 + 1 if a == s - 1 else Na
        f = torch.arange(nf, dtype=torch.float64, device=device)[:, None]
        o = torch.tensor(offs, dtype=torch.float64, device=device)[None, :]
        theta = 2 * math.pi * ((f * o) % Na) / Na
        out += [torch.cos(theta).to(dtype), torch.sin(theta).to(dtype)]
    return tuple(out)


def tap_spectrum(taps: torch.Tensor, N: Tuple[int, ...], axis_offsets: Sequence[Sequence[int]]) -> torch.Tensor:
    """Spectrum for cross-correlation of kernels given by their taps on an offset grid, by small DFT matmuls.

    ``K[f] = sum_o taps[o] e^{+2 pi i f o / N}`` (the conjugate DFT, which turns cross-correlation into a
    product), computed from the taps alone: no padded kernel, no roll, no FFT. With few taps per axis (a k x k
    kernel at any dilation, or DASH's candidates on their few distinct offsets) this is much cheaper than an FFT
    of the kernel padded to N, forward and backward.

    Args:
        taps: real, (|O|, CC) in 1D or (|O_h|, |O_w|, CC) in 2D: the weight at each offset of the grid
            ``axis_offsets`` for CC kernels.
        N: FFT length per axis.
        axis_offsets: the offsets of each axis (any integers; |o| < N_a for the result to be a linear kernel).

    Returns:
        (F, CC) complex, F flattened in `spectral_conv`'s layout: N // 2 + 1 in 1D, (N_w // 2 + 1) * N_h in 2D.
    """
    offs = tuple(tuple(int(o) for o in a) for a in axis_offsets)
    tabs = dft_tables(tuple(N), offs, taps.dtype, taps.device)
    CC = taps.shape[-1]
    if len(N) == 1:
        cos, sin = tabs
        return torch.complex(cos @ taps, sin @ taps)  # (F, CC)
    # 2D spectra are laid out (F_w, N_h) (see RFFT2T): transform H first, then W
    cos_h, sin_h, cos_w, sin_w = tabs  # (N_h, O_h), (N_h, O_h), (F_w, O_w), (F_w, O_w)
    Ow = len(offs[1])
    g3 = taps.transpose(0, 1)  # (O_w, O_h, CC)
    pre, pim = torch.matmul(cos_h, g3), torch.matmul(sin_h, g3)  # (O_w, N_h, CC)
    Nh = cos_h.shape[0]
    pre, pim = pre.reshape(Ow, Nh * CC), pim.reshape(Ow, Nh * CC)
    kre = (cos_w @ pre - sin_w @ pim).view(-1, CC)  # (F_w * N_h, CC)
    kim = (cos_w @ pim + sin_w @ pre).view(-1, CC)
    return torch.complex(kre, kim)


def dense_kernel_spectrum(w: torch.Tensor, N: Tuple[int, ...], groups: int, depthwise: bool,
                          causal: bool) -> torch.Tensor:
    """Spectrum for cross-correlation of a dense kernel, by an FFT of the kernel padded to N, laid out for
    `spectral_mix`; what `tap_spectrum` + `spectrum_layout` give from the taps.

    Args:
        w: (C_out, C_in/groups, *K), centred (odd K) or, when ``causal``, right-aligned.
        N: FFT length per axis, N_a >= K_a.
        groups: G.
        depthwise: C_in == C_out == G: one kernel per channel.
        causal: tap K - 1 is offset 0 (instead of the centre tap).

    Returns:
        depthwise: (F, C); otherwise (G, F, ci, co), F = N // 2 + 1 in 1D, (N_w // 2 + 1) * N_h in 2D.
    """
    s = w.dim() - 2
    # tap j (offset o = j - c) goes to index o mod N: pad at the end, then roll by -c
    shifts = [-(k - 1) if causal else -(k - 1) // 2 for k in w.shape[2:]]
    wp = F.pad(w, [p for k, n in zip(reversed(w.shape[2:]), reversed(N)) for p in (0, n - k)])
    wp = torch.roll(wp, shifts=shifts, dims=tuple(range(2, 2 + s)))
    # cross-correlation needs sum_o W[o] e^{+i w o}: the conjugate of the kernel's DFT
    Kf = torch.fft.rfftn(wp, s=N, dim=tuple(range(2, 2 + s))).conj()  # (C_out, ci, *F)
    if s == 2:
        Kf = Kf.transpose(-1, -2)  # the 2D spectra are (F_w, N_h), see RFFT2T
    Cout, ci = w.shape[:2]
    Kf = Kf.reshape(Cout, ci, -1)
    if depthwise:
        return Kf[:, 0, :].transpose(0, 1)  # (F, C)
    co = Cout // groups
    # contiguous: each (ci, co) matrix of the permuted view has no unit stride, and CPU bmm would copy such a
    # batch matrix by matrix, forward and backward (2x slower channel mixing for a 2D full convolution)
    return Kf.reshape(groups, co, ci, -1).permute(0, 3, 2, 1).contiguous()  # (G, F, ci, co)


def spectrum_layout(K: torch.Tensor, out_channels: int, in_per_group: int, groups: int,
                    depthwise: bool) -> torch.Tensor:
    """(F, C_out * ci) kernel spectra (output-channel-major columns) -> the layout `spectral_mix` takes.

    Depthwise: (F, C). Otherwise (G, F, ci, co), a view whose (ci, co) matrices are transposed contiguous
    blocks, which batched matmul reads as they are.
    """
    if depthwise:
        return K
    co = out_channels // groups
    return K.view(-1, groups, co, in_per_group).permute(1, 0, 3, 2)


def tables_cheaper(kk: Sequence[int], N: Sequence[int]) -> bool:
    """Whether `tap_spectrum` beats an FFT of the padded kernel, from operation counts per kernel.

    ``kk`` is the number of taps per axis (1 or 2 ints), ``N`` the FFT length per axis.

    The FFT path also pads, rolls and lays out full N-sized kernels, forward and backward; measured on CPU
    (16-64 channels, 8x8 to 64x64 maps, 1D up to 1000 steps), the two break even where the tables' matmuls
    count 3-10x the FFT's butterflies (4x is used).
    """
    if len(N) == 1:
        tables = 2 * kk[0] * (N[0] // 2 + 1)
        fft = 3 * N[0] * max(math.log2(N[0]), 1)
    else:
        Fw = N[1] // 2 + 1
        tables = 2 * kk[0] * N[0] * kk[1] + 4 * kk[1] * N[0] * Fw
        fft = 3 * N[0] * N[1] * max(math.log2(N[0] * N[1]), 1)
    return tables <= 4 * fft


# ----------------------------------------------------------------------------------------------------------------
# channel mixing, frequency by frequency

class SpectralMatmul(torch.autograd.Function):
    """Per-frequency channel mixing Y = X @ K with a hand-written backward.

    X: (G, F, B, ci), K: (G, F, ci, co), both complex. Autograd's own backward of a batched complex matmul makes
    many small copies on CPU; the gradients are plain products with the conjugates:
    dX = dY @ K^H, dK = X^H @ dY.
    """

    @staticmethod
    def forward(ctx, X: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(X, K)
        return torch.matmul(X, K)

    @staticmethod
    def backward(ctx, dY: torch.Tensor):
        X, K = ctx.saved_tensors
        dX = dK = None
        dY = dY.contiguous()
        # resolve the conjugates in one copy each: bmm on lazily conjugated views copies matrix by matrix
        if ctx.needs_input_grad[0]:
            dX = torch.matmul(dY, torch.conj_physical(K).transpose(-1, -2))
        if ctx.needs_input_grad[1]:
            dK = torch.matmul(torch.conj_physical(X).transpose(-1, -2), dY)
        return dX, dK


def spectral_mix(X: torch.Tensor, K: torch.Tensor, groups: int, depthwise: bool) -> torch.Tensor:
    """Multiply input spectra by kernel spectra and sum over input channels, frequency by frequency.

    Args:
        X: (B, C_in, *F) complex input spectrum.
        K: depthwise: (F_flat, C) complex (one kernel per channel, C_in == C_out == groups);
            otherwise (G, F_flat, ci, co) complex with ci = C_in / G, co = C_out / G.
        groups: G.
        depthwise: whether K is a depthwise spectrum.

    Returns:
        (B, C_out, *F) complex output spectrum.
    """
    B, Cin = X.shape[:2]
    fshape = X.shape[2:]
    if depthwise:
        return X * K.transpose(0, 1).reshape((Cin,) + tuple(fshape))
    G, Fn, ci, co = K.shape
    # (G, F, B, ci); contiguous, since bmm over a strided batch copies matrix by matrix
    Xg = X.reshape(B, G, ci, Fn).permute(1, 3, 0, 2).contiguous()
    Y = SpectralMatmul.apply(Xg, K)  # (G, F, B, co)
    return Y.permute(2, 0, 3, 1).reshape((B, G * co) + tuple(fshape))


# ----------------------------------------------------------------------------------------------------------------
# real FFTs with cheaper backward passes

def _bin_weights(L: int, mirrored: float, scale: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(L // 2 + 1,) weights of a one-sided spectrum: ``scale``, times ``mirrored`` on bins with a mirror partner."""
    return _bin_weights_cached(L, float(mirrored), float(scale), dtype, device)


@functools.lru_cache(maxsize=256)
def _bin_weights_cached(L: int, mirrored: float, scale: float, dtype: torch.dtype, device: torch.device):
    w = torch.full((L // 2 + 1,), scale, dtype=dtype)
    hi = L // 2 if L % 2 == 0 else L // 2 + 1  # bins [1, hi) have a mirror partner (not DC, not even Nyquist)
    w[1:hi] *= mirrored
    return w.to(device)


class PaddedRFFT(torch.autograd.Function):
    """``rfftn(x, s=N)`` over the trailing dims, with a backward that is one inverse real FFT.

    PyTorch differentiates a one-sided real FFT by a full complex FFT of the zero-extended gradient. The same
    gradient is ``prod(N) * irfftn(G')`` cropped to the input, with G' the incoming gradient whose bins that have
    a mirror partner (all but DC and, for even N, Nyquist, along the halved last axis) are halved: about half the
    work.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, N: Tuple[int, ...]) -> torch.Tensor:
        s = len(N)
        ctx.N, ctx.n = N, tuple(x.shape[-s:])
        return torch.fft.rfftn(x, s=N, dim=tuple(range(-s, 0)))

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        N, n = ctx.N, ctx.n
        s = len(N)
        dx = torch.fft.irfftn(G * _bin_weights(N[-1], 0.5, math.prod(N), G.real.dtype, G.device), s=N,
                              dim=tuple(range(-s, 0)))
        return dx[(...,) + tuple(slice(0, m) for m in n)], None


class RFFT2T(torch.autograd.Function):
    """2D ``rfft2(x, s=N)`` that skips the zero padding, returning the spectrum TRANSPOSED: (..., F_w, N_h).

    The real FFT along W runs on the n_h data rows only (the padded rows are zero); the complex FFT along H then
    runs along the contiguous last axis. The backward is the adjoint of the same two steps. About a third cheaper
    than ``rfftn`` on the padded grid, forward and backward.
    Shapes: x (..., n_h, n_w) -> (..., N_w // 2 + 1, N_h).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, N: Tuple[int, int]) -> torch.Tensor:
        ctx.N, ctx.n = N, tuple(x.shape[-2:])
        X1 = torch.fft.rfft(x, n=N[1], dim=-1).transpose(-1, -2)  # (..., F_w, n_h)
        return torch.fft.fft(X1, n=N[0], dim=-1)

    @staticmethod
    def backward(ctx, G: torch.Tensor):
        (Nh, Nw), (nh, nw) = ctx.N, ctx.n
        g1 = torch.fft.ifft(G, dim=-1)[..., :nh]  # adjoint of the padded FFT along H, up to the factor Nh
        g1 = g1 * _bin_weights(Nw, 0.5, Nh * Nw, g1.real.dtype, g1.device)[:, None]
        dx = torch.fft.irfft(g1.transpose(-1, -2), n=Nw, dim=-1)[..., :nw]
        return dx, None


class IRFFT2T(torch.autograd.Function):
    """Inverse of `RFFT2T` that computes only the first ``n_out`` rows and columns of the output.

    Shapes: Y (..., N_w // 2 + 1, N_h) -> (..., n_out_h, n_out_w).
    """

    @staticmethod
    def forward(ctx, Y: torch.Tensor, N: Tuple[int, int], n_out: Tuple[int, int]) -> torch.Tensor:
        ctx.N, ctx.n_out = N, n_out
        y1 = torch.fft.ifft(Y, dim=-1)[..., : n_out[0]].transpose(-1, -2)  # (..., n_out_h, F_w)
        return torch.fft.irfft(y1, n=N[1], dim=-1)[..., : n_out[1]]

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        (Nh, Nw) = ctx.N
        G1 = torch.fft.rfft(g, n=Nw, dim=-1)  # (..., n_out_h, F_w)
        G1 = G1 * _bin_weights(Nw, 2.0, 1.0 / (Nw * Nh), G1.real.dtype, G1.device)
        return torch.fft.fft(G1.transpose(-1, -2), n=Nh, dim=-1), None, None


def fold_stride2(Y: torch.Tensor, N: Tuple[int, ...]) -> torch.Tensor:
    """Spectrum of y[::2] (length N/2 per axis) from the one-sided spectrum Y of y (length N).

    Y's trailing axes are the one-sided axis first, then the full axes (see `RFFT2T`); N is given in the same
    order. Subsampling in space is aliasing in frequency: Z[f] = (Y[f] + Y[f + N/2]) / 2 per axis. Along the
    one-sided axis, Y[f + N/2] is read from its mirror, conj(Y[-f]), which negates the full axes' frequencies too.
    The inverse FFT then runs at half size.
    """
    s = len(N)
    dev = Y.device
    L = N[0]
    M = L // 2
    half = Y.dim() - s
    mirror = Y.index_select(half, torch.arange(L // 2, L // 2 - M // 2 - 1, -1, device=dev))
    for a in range(1, s):
        mirror = mirror.index_select(half + a, (-torch.arange(N[a], device=dev)) % N[a])
    Y = 0.5 * (Y.narrow(half, 0, M // 2 + 1) + mirror.conj())
    for a in range(1, s):
        Y = 0.5 * (Y.narrow(half + a, 0, N[a] // 2) + Y.narrow(half + a, N[a] // 2, N[a] // 2))
    return Y


# ----------------------------------------------------------------------------------------------------------------
# the spectral convolution

def spectral_conv(x: torch.Tensor, K: torch.Tensor, N: Tuple[int, ...], stride: int, groups: int,
                  depthwise: bool) -> torch.Tensor:
    """rfft(x) -> mix with K -> inverse FFT -> crop to the input size -> subsample by stride.

    With K the spectrum of a kernel W whose taps all lie within N - n of offset 0, this is the "same" (or causal)
    cross-correlation of x with W: what ``ops.fft_conv`` returns (it picks N and K, then calls this).

    Args:
        x: (B, C_in, L) or (B, C_in, H, W), float32 or float64 (see `fft_input`).
        K: the kernel's spectrum as `spectrum_layout` or `dense_kernel_spectrum` lay it out: depthwise (F, C),
            otherwise (G, F, ci, co); 2D spectra are transposed, F = (N_w // 2 + 1) * N_h (see `RFFT2T`).
        N: FFT length per axis (even on every axis for stride 2 to be folded in the frequency domain).
        stride: keep every stride-th output.
        groups: G.
        depthwise: whether K is a depthwise spectrum.

    Returns:
        (B, C_out, *ceil(n / stride)).
    """
    s = x.dim() - 2
    n = tuple(x.shape[2:])
    fold = stride == 2 and all(m % 2 == 0 for m in N)
    if s == 1:
        X = PaddedRFFT.apply(x, tuple(N)) if x.requires_grad else torch.fft.rfft(x, n=N[0], dim=-1)
        Y = spectral_mix(X, K, groups, depthwise)
        if fold:
            return torch.fft.irfft(fold_stride2(Y, N), n=N[0] // 2, dim=-1)[..., : (n[0] + 1) // 2]
        return torch.fft.irfft(Y, n=N[0], dim=-1)[..., : n[0]: stride]
    X = RFFT2T.apply(x, tuple(N))
    Y = spectral_mix(X, K, groups, depthwise)
    if fold:
        # fold only the full H axis (no mirror needed: a plain sum of two halves), invert at half height, and keep
        # every other column: the columns' inverse is the cheapest step, so it is not worth folding
        Mh = N[0] // 2
        Yh = 0.5 * (Y[..., :Mh] + Y[..., Mh:])
        y = IRFFT2T.apply(Yh, (Mh, N[1]), ((n[0] + 1) // 2, n[1]))
        return y[..., ::2]
    y = IRFFT2T.apply(Y, tuple(N), n)
    return y if stride == 1 else y[..., ::stride, ::stride]
