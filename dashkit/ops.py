"""Pure tensor functions behind DASH's three tricks.

DASH (Shen, Khodak, Talwalkar et al., "Efficient Architecture Search for Diverse Tasks", NeurIPS 2022) searches a
kernel size k and a dilation d for every convolution. Its cost rests on three identities, each exact:

1. Mixed weights: ``sum_i c_i conv(x, dilate(w_i, d_i)) == conv(x, sum_i c_i pad_S(dilate(w_i, d_i)))``
   (`aggregate_kernel`; the slow left-hand side is `mixed_results`, DARTS's way).
2. Kronecker dilation: ``dilate(w, d) = kron(w, one_hot(d))`` cropped (`dilate`; a strided scatter is the same).
3. Fourier convolution: ``conv(x, W) = irfft(rfft(x) * K)`` with zero padding (`fft_conv`), whose cost does not
   grow with the kernel size.

Conventions: inputs ``x`` are (B, C_in, L) or (B, C_in, H, W); weights are (C_out, C_in / groups, *kernel) with
odd kernel sizes; convolutions are PyTorch's cross-correlations with "same" output size (centred kernel) or, in
1D, causal (the output at t sees inputs at times <= t). Stride s keeps every s-th output: ceil(n / s) outputs.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

__all__ = [
    "dilate", "center_pad", "aggregate_kernel", "circular_conv", "crop_kernel", "direct_conv", "fft_conv", "mixed_results",
    "fast_fft_len", "fft_len_for", "spectral_mix", "tap_spectrum", "dft_tables", "spectrum_layout",
]

IntOrTuple = Union[int, Sequence[int]]


# ----------------------------------------------------------------------------------------------------------------
# argument checks

def _spatial_dims(t: torch.Tensor, name: str, extra: int) -> int:
    s = t.dim() - extra
    if s not in (1, 2):
        want = "(B, C, L) or (B, C, H, W)" if extra == 2 and name == "x" else "(C_out, C_in/groups, *kernel) with 1 or 2 kernel dims"
        raise ValueError(f"{name} must have shape {want}; got a tensor of shape {tuple(t.shape)}")
    return s


def _check_stride(stride: int) -> int:
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be a positive int, got {stride!r}")
    return stride


def _check_groups(x: torch.Tensor, w: torch.Tensor, groups: int) -> None:
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    cin, cout = x.shape[1], w.shape[0]
    if cin % groups or cout % groups:
        raise ValueError(f"groups={groups!r} must divide in_channels ({cin}) and out_channels ({cout})")
    if w.shape[1] * groups != cin:
        raise ValueError(f"weight of shape {tuple(w.shape)} expects {w.shape[1] * groups} input channels with "
                         f"groups={groups}, but x has {cin} channels (x shape {tuple(x.shape)})")


def _pairs(v: IntOrTuple, s: int, name: str) -> Tuple[int, ...]:
    t = (v,) * s if isinstance(v, int) else tuple(v) if isinstance(v, (list, tuple)) else ()
    if len(t) != s or any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in t):
        raise ValueError(f"{name} must be a positive int or {s} positive ints, got {v!r}")
    return t


# ----------------------------------------------------------------------------------------------------------------
# trick 2: dilation

def dilate(w: torch.Tensor, d: int, method: str = "scatter") -> torch.Tensor:
    """Insert d - 1 zeros between the taps of a kernel along every spatial axis.

    Args:
        w: kernel, (C_out, C_in/groups, k) or (C_out, C_in/groups, k, k).
        d: dilation, a positive int.
        method: "scatter" (write the taps into every d-th place; the default, no k*d intermediate) or "kron"
            (the Kronecker product with a one-hot block of size d per axis, cropped by d - 1 at the end).

    Returns:
        (C_out, C_in/groups, *[d (k - 1) + 1]): convolving with it equals ``conv(..., dilation=d)``.

    Example:
        >>> dilate(torch.tensor([[[1., 2., 3.]]]), 2)
        tensor([[[1., 0., 2., 0., 3.]]])
    """
    s = _spatial_dims(w, "w", 2)
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise ValueError(f"dilation d must be a positive int, got {d!r}")
    if method not in ("scatter", "kron"):
        raise ValueError(f"method must be 'scatter' or 'kron', got {method!r}")
    if d == 1:
        return w
    size = [d * (k - 1) + 1 for k in w.shape[2:]]
    if method == "kron":
        block = w.new_zeros((1, 1) + (d,) * s)
        block[(0, 0) + (0,) * s] = 1
        out = torch.kron(w, block)  # (C_out, C_in, k*d, ...): each tap followed by d-1 zeros
        return out[(...,) + tuple(slice(0, n) for n in size)]
    out = w.new_zeros(tuple(w.shape[:2]) + tuple(size))
    out[(...,) + (slice(None, None, d),) * s] = w
    return out


def center_pad(w: torch.Tensor, size: IntOrTuple, causal: bool = False) -> torch.Tensor:
    """Zero-pad an odd kernel to ``size`` per spatial axis, keeping its centre in the centre.

    With ``causal=True`` (1D) the kernel is right-aligned instead: its last tap stays the last tap (offset 0).
    Shapes: (C_out, C_in/groups, *k) -> (C_out, C_in/groups, *size).
    """
    s = _spatial_dims(w, "w", 2)
    size = _pairs(size, s, "size")
    pads: List[int] = []
    for n, k in zip(reversed(size), reversed(w.shape[2:])):
        extra = n - k
        if extra < 0 or (not causal and extra % 2):
            raise ValueError(f"cannot pad a kernel of size {k} to {n}: size must be >= the kernel and, when "
                             f"centred, of the same parity")
        pads += [extra, 0] if causal else [extra // 2, extra // 2]
    return F.pad(w, pads)


def _kept_taps(k: int, d: int, n: int, causal: bool) -> Tuple[int, int]:
    """(first, count) of the taps of a k-tap kernel at dilation d that reach an axis of n inputs.

    A tap at offset o meets an input only when |o| <= n - 1; the others always read the zero padding.
    """
    if causal:  # offsets d * (j - (k - 1)) <= 0
        keep = min(k, (n - 1) // d + 1)
        return k - keep, keep
    keep = min(k, 2 * ((n - 1) // d) + 1)
    return (k - keep) // 2, keep


def crop_kernel(w: torch.Tensor, n: IntOrTuple, causal: bool = False) -> torch.Tensor:
    """Drop the taps that can never meet the input: those further than n - 1 from the centre.

    A "same" convolution of an input of size n only reaches offsets -(n-1)..(n-1), so a kernel wider than
    2n - 1 is cut to 2n - 1 per axis (causal: to its last n taps) without changing the output.
    Shapes: (C_out, C_in/groups, *K) -> (C_out, C_in/groups, *min(K, 2n - 1)).
    """
    s = _spatial_dims(w, "w", 2)
    n = _pairs(n, s, "n")
    idx = []
    for K, m in zip(w.shape[2:], n):
        first, keep = _kept_taps(K, 1, m, causal)
        idx.append(slice(first, first + keep))
    return w[(...,) + tuple(idx)]


# ----------------------------------------------------------------------------------------------------------------
# trick 1: mixed weights

def _check_candidates(weights: Sequence[torch.Tensor], coeffs: torch.Tensor, dilations: Sequence[int]) -> None:
    if len(weights) == 0 or len(weights) != len(dilations):
        raise ValueError(f"weights and dilations must be non-empty and of the same length, got {len(weights)} "
                         f"and {len(dilations)}")
    if coeffs.dim() != 1 or coeffs.numel() != len(weights):
        raise ValueError(f"coeffs must have shape ({len(weights)},), got {tuple(coeffs.shape)}")


def aggregate_kernel(weights: Sequence[torch.Tensor], coeffs: torch.Tensor, dilations: Sequence[int],
                     crop_to: Optional[IntOrTuple] = None, causal: bool = False,
                     method: str = "scatter") -> torch.Tensor:
    """Mixed weights: one kernel that does the work of all candidates at once.

    ``W = sum_i coeffs[i] * pad_S(dilate(weights[i], dilations[i]))`` where S is the largest receptive field
    d_i (k_i - 1) + 1. By linearity, ``conv(x, W) == sum_i coeffs[i] * conv(x, weights[i], dilation=d_i)``.

    Args:
        weights: M kernels, the i-th of shape (C_out, C_in/groups, *[k_i]) with odd k_i.
        coeffs: (M,) mixing coefficients (e.g. a softmax of the architecture parameters).
        dilations: M positive ints.
        crop_to: optional input size n (int or per axis); the kernel is cropped to what can touch it
            (`crop_kernel`), which is exact and saves most of the work on small feature maps.
        causal: right-align the kernels (1D causal convolution) instead of centring them.
        method: dilation method, see `dilate`.

    Returns:
        (C_out, C_in/groups, *[S']) with S' = S, or min(S, 2n - 1) when cropped.
    """
    _check_candidates(weights, coeffs, dilations)
    s = _spatial_dims(weights[0], "weights[0]", 2)
    S = max(d * (w.shape[-1] - 1) + 1 for w, d in zip(weights, dilations))
    total = None
    for i, (w, d) in enumerate(zip(weights, dilations)):
        if w.shape[:2] != weights[0].shape[:2]:
            raise ValueError(f"weights[{i}] has shape {tuple(w.shape)}; all candidates need the same "
                             f"(C_out, C_in/groups) = {tuple(weights[0].shape[:2])}")
        if any(k % 2 == 0 for k in w.shape[2:]):
            raise ValueError(f"weights[{i}] has an even kernel size {tuple(w.shape[2:])}; kernels must be odd")
        term = coeffs[i] * center_pad(dilate(w, d, method), S, causal=causal)
        total = term if total is None else total + term
    if crop_to is not None:
        total = crop_kernel(total, crop_to, causal=causal)
    return total


def mixed_results(x: torch.Tensor, weights: Sequence[torch.Tensor], coeffs: torch.Tensor,
                  dilations: Sequence[int], stride: int = 1, groups: int = 1, causal: bool = False) -> torch.Tensor:
    """The DARTS way: one convolution per candidate, outputs mixed. Slow (M convolutions); kept as the baseline.

    ``sum_i coeffs[i] * conv(x, weights[i], dilation=dilations[i])``, "same" (or causal) padding.
    x: (B, C_in, *n) -> (B, C_out, *ceil(n / stride)).
    """
    _check_candidates(weights, coeffs, dilations)
    out = None
    for w, d, c in zip(weights, dilations, coeffs):
        y = _conv(x, w, stride, groups, d, causal)
        out = c * y if out is None else out + c * y
    return out


# ----------------------------------------------------------------------------------------------------------------
# direct convolution

def _conv(x: torch.Tensor, w: torch.Tensor, stride: int, groups: int, dilation: int, causal: bool) -> torch.Tensor:
    s = w.dim() - 2
    if causal:
        if s != 1:
            raise ValueError("causal convolution is 1D only")
        left = dilation * (w.shape[-1] - 1)
        return F.conv1d(F.pad(x, (left, 0)), w, None, stride, 0, dilation, groups)
    pad = tuple(dilation * (k - 1) // 2 for k in w.shape[2:])
    conv = F.conv1d if s == 1 else F.conv2d
    return conv(x, w, None, stride, pad, dilation, groups)


def direct_conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, groups: int = 1, causal: bool = False,
                bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """PyTorch's convolution with "same" padding for an odd centred kernel (or causal padding in 1D).

    Args:
        x: (B, C_in, L) or (B, C_in, H, W).
        w: (C_out, C_in/groups, *K), K odd unless causal.
        stride, groups: as in ``torch.nn.functional.conv1d``.
        causal: 1D only; left-pad by K - 1.
        bias: optional (C_out,).

    Returns:
        (B, C_out, *ceil(n / stride)).
    """
    s = _spatial_dims(x, "x", 2)
    if w.dim() != x.dim():
        raise ValueError(f"w must have {x.dim()} dims for x of shape {tuple(x.shape)}, got {tuple(w.shape)}")
    _check_stride(stride)
    _check_groups(x, w, groups)
    if not causal and any(k % 2 == 0 for k in w.shape[2:]):
        raise ValueError(f"a centred 'same' kernel must have odd sizes, got kernel size {tuple(w.shape[2:])}")
    y = _conv(x, w, stride, groups, 1, causal)
    if bias is not None:
        y = y + bias.view((1, -1) + (1,) * s)
    return y


# ----------------------------------------------------------------------------------------------------------------
# trick 3: Fourier convolution

def circular_conv(x: torch.Tensor, w: torch.Tensor, N: Union[int, Sequence[int]]) -> torch.Tensor:
    """"Same" cross-correlation by FFTs of an explicit length N per axis, with no cropping of the kernel.

    The textbook recipe, written out: zero-pad x to N, place tap j of the centred kernel at index
    (j - (K-1)/2) mod N, multiply the spectra (the kernel's conjugated: cross-correlation), transform back and
    keep the first n outputs. When N < n + (K-1)/2 the product is a *circular* convolution whose wrapped-around
    taps land on real inputs: the result is wrong near the edges. `fft_conv` picks N for you.

    Args:
        x: (B, C_in, L) or (B, C_in, H, W).
        w: (C_out, C_in, *K), odd K.
        N: FFT length per axis, >= the input size.

    Returns:
        (B, C_out, *n).
    """
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4):
        raise ValueError(f"x must be a tensor (B, C_in, L) or (B, C_in, H, W), got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    s = x.dim() - 2
    if not isinstance(w, torch.Tensor) or w.dim() != x.dim() or w.shape[1] != x.shape[1]:
        raise ValueError(f"w must be a tensor (C_out, {x.shape[1]}, *K) with {s} kernel axes, got "
                         f"{tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__}")
    if any(k % 2 == 0 for k in w.shape[2:]):
        raise ValueError(f"w must have odd kernel sizes, got {tuple(w.shape[2:])}")
    N = _pairs(N, s, "N")
    n = tuple(x.shape[2:])
    if any(a < b for a, b in zip(N, n)):
        raise ValueError(f"N must be >= the input size {n} on every axis, got {N!r}")
    dims = tuple(range(2, 2 + s))
    # tap j sits at offset j - c; its place in a length-N buffer is (j - c) mod N, so taps with a negative
    # offset wrap to the end of the buffer (and several taps may share a place when K > N: aliasing)
    v = w
    for axis, (K, Na) in enumerate(zip(w.shape[2:], N)):
        idx = torch.remainder(torch.arange(K, device=w.device) - (K - 1) // 2, Na)
        shape = list(v.shape)
        shape[2 + axis] = Na
        v = v.new_zeros(shape).index_add_(2 + axis, idx, v)  # one axis at a time: the placement is separable
    X = torch.fft.rfftn(x, s=N, dim=dims)  # (B, C_in, *F)
    V = torch.fft.rfftn(v, s=N, dim=dims).conj()  # (C_out, C_in, *F)
    Y = torch.einsum("bi...,oi...->bo...", X, V)  # sum over input channels, frequency by frequency
    y = torch.fft.irfftn(Y, s=N, dim=dims)
    return y[(...,) + tuple(slice(0, m) for m in n)]


@functools.lru_cache(maxsize=None)
def fast_fft_len(n: int) -> int:
    """The smallest 5-smooth integer (2^a 3^b 5^c) >= n: FFT sizes that pocketfft and cuFFT handle fast."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n!r}")
    best = 1 << (n - 1).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


class _SpectralMatmul(torch.autograd.Function):
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
    Y = _SpectralMatmul.apply(Xg, K)  # (G, F, B, co)
    return Y.permute(2, 0, 3, 1).reshape((B, G * co) + tuple(fshape))


def _dense_kernel_spectrum(w: torch.Tensor, N: Tuple[int, ...], groups: int, depthwise: bool,
                           causal: bool) -> torch.Tensor:
    """Spectrum of a dense kernel for cross-correlation by FFT, laid out for `spectral_mix`."""
    s = w.dim() - 2
    # tap j (offset o = j - c) goes to index o mod N: pad at the end, then roll by -c
    shifts = [-(k - 1) if causal else -(k - 1) // 2 for k in w.shape[2:]]
    wp = F.pad(w, [p for k, n in zip(reversed(w.shape[2:]), reversed(N)) for p in (0, n - k)])
    wp = torch.roll(wp, shifts=shifts, dims=tuple(range(2, 2 + s)))
    # cross-correlation needs sum_o W[o] e^{+i w o}: the conjugate of the kernel's DFT
    Kf = torch.fft.rfftn(wp, s=N, dim=tuple(range(2, 2 + s))).conj()  # (C_out, ci, *F)
    if s == 2:
        Kf = Kf.transpose(-1, -2)  # the 2D spectra are (F_w, N_h), see _RFFT2T
    Cout, ci = w.shape[:2]
    Kf = Kf.reshape(Cout, ci, -1)
    if depthwise:
        return Kf[:, 0, :].transpose(0, 1)  # (F, C)
    co = Cout // groups
    # contiguous: each (ci, co) matrix of the permuted view has no unit stride, and CPU bmm would copy such a
    # batch matrix by matrix, forward and backward (2x slower channel mixing for a 2D full convolution)
    return Kf.reshape(groups, co, ci, -1).permute(0, 3, 2, 1).contiguous()  # (G, F, ci, co)


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
        (F, CC) complex, F flattened in `_spectral_conv`'s layout: N // 2 + 1 in 1D, (N_w // 2 + 1) * N_h in 2D.
    """
    offs = tuple(tuple(int(o) for o in a) for a in axis_offsets)
    tabs = dft_tables(tuple(N), offs, taps.dtype, taps.device)
    CC = taps.shape[-1]
    if len(N) == 1:
        cos, sin = tabs
        return torch.complex(cos @ taps, sin @ taps)  # (F, CC)
    # 2D spectra are laid out (F_w, N_h) (see _RFFT2T): transform H first, then W
    cos_h, sin_h, cos_w, sin_w = tabs  # (N_h, O_h), (N_h, O_h), (F_w, O_w), (F_w, O_w)
    Ow = len(offs[1])
    g3 = taps.transpose(0, 1)  # (O_w, O_h, CC)
    pre, pim = torch.matmul(cos_h, g3), torch.matmul(sin_h, g3)  # (O_w, N_h, CC)
    Nh = cos_h.shape[0]
    pre, pim = pre.reshape(Ow, Nh * CC), pim.reshape(Ow, Nh * CC)
    kre = (cos_w @ pre - sin_w @ pim).view(-1, CC)  # (F_w * N_h, CC)
    kim = (cos_w @ pim + sin_w @ pre).view(-1, CC)
    return torch.complex(kre, kim)


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


def _tables_cheaper(kk: Sequence[int], N: Sequence[int]) -> bool:
    """Whether `tap_spectrum` beats an FFT of the padded kernel, from operation counts per kernel.

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


class _PaddedRFFT(torch.autograd.Function):
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


def fft_len_for(n: int, reach: int, stride: int = 1) -> int:
    """FFT length for a "same" output of size n from a kernel reaching ``reach`` taps from its centre.

    Circular convolution of length N >= n + reach equals the linear one on the n kept outputs (the wrap-around
    lands in the zero padding). Rounded up to a fast (5-smooth) size, and to an even size for stride 2, so that
    the subsampling can be done in the frequency domain (`_fold_stride2`).
    """
    N = fast_fft_len(n + reach)
    if stride == 2:
        while N % 2:
            N = fast_fft_len(N + 1)
    return N


def _fold_stride2(Y: torch.Tensor, N: Tuple[int, ...]) -> torch.Tensor:
    """Spectrum of y[::2] (length N/2 per axis) from the one-sided spectrum Y of y (length N).

    Y's trailing axes are the one-sided axis first, then the full axes (see `_rfft_t`); N is given in the same
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


def _bin_weights(L: int, mirrored: float, scale: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(L // 2 + 1,) weights of a one-sided spectrum: ``scale``, times ``mirrored`` on bins with a mirror partner."""
    return _bin_weights_cached(L, float(mirrored), float(scale), dtype, device)


@functools.lru_cache(maxsize=256)
def _bin_weights_cached(L: int, mirrored: float, scale: float, dtype: torch.dtype, device: torch.device):
    w = torch.full((L // 2 + 1,), scale, dtype=dtype)
    hi = L // 2 if L % 2 == 0 else L // 2 + 1  # bins [1, hi) have a mirror partner (not DC, not even Nyquist)
    w[1:hi] *= mirrored
    return w.to(device)


class _RFFT2T(torch.autograd.Function):
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


class _IRFFT2T(torch.autograd.Function):
    """Inverse of `_RFFT2T` that computes only the first ``n_out`` rows and columns of the output.

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


def _spectral_conv(x: torch.Tensor, K: torch.Tensor, N: Tuple[int, ...], stride: int, groups: int,
                   depthwise: bool) -> torch.Tensor:
    """rfft(x) -> mix with K -> inverse FFT -> crop to the input size -> subsample by stride.

    1D spectra are (B, C, F); 2D spectra are transposed, (B, C, F_w, N_h) (see `_RFFT2T`), and K must match.
    """
    s = x.dim() - 2
    n = tuple(x.shape[2:])
    fold = stride == 2 and all(m % 2 == 0 for m in N)
    if s == 1:
        X = _PaddedRFFT.apply(x, tuple(N)) if x.requires_grad else torch.fft.rfft(x, n=N[0], dim=-1)
        Y = spectral_mix(X, K, groups, depthwise)
        if fold:
            return torch.fft.irfft(_fold_stride2(Y, N), n=N[0] // 2, dim=-1)[..., : (n[0] + 1) // 2]
        return torch.fft.irfft(Y, n=N[0], dim=-1)[..., : n[0]: stride]
    X = _RFFT2T.apply(x, tuple(N))
    Y = spectral_mix(X, K, groups, depthwise)
    if fold:
        # fold only the full H axis (no mirror needed: a plain sum of two halves), invert at half height, and keep
        # every other column: the columns' inverse is the cheapest step, so it is not worth folding
        Mh = N[0] // 2
        Yh = 0.5 * (Y[..., :Mh] + Y[..., Mh:])
        y = _IRFFT2T.apply(Yh, (Mh, N[1]), ((n[0] + 1) // 2, n[1]))
        return y[..., ::2]
    y = _IRFFT2T.apply(Y, tuple(N), n)
    return y if stride == 1 else y[..., ::stride, ::stride]


def _fft_dtype_guard(x: torch.Tensor) -> Tuple[torch.Tensor, torch.dtype]:
    """FFTs run in float32 at least (CPU FFT has no half precision; cuFFT half needs powers of two)."""
    if x.dtype in (torch.float16, torch.bfloat16):
        return x.float(), x.dtype
    return x, x.dtype


def fft_conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, groups: int = 1, padding: str = "same",
             causal: bool = False, bias: Optional[torch.Tensor] = None, dilation: int = 1) -> torch.Tensor:
    """Convolution through the FFT: exact, with a cost that does not grow with the kernel size.

    The kernel is first cropped to what can touch the input (`crop_kernel`). Both are zero-padded to a fast
    length N >= n + P per axis (P the kernel's reach from its centre), which is enough for the circular
    convolution to equal the linear one on the n kept outputs.

    Args:
        x: (B, C_in, L) or (B, C_in, H, W), float32 or float64 (half precision is computed in float32).
        w: (C_out, C_in/groups, *K) with odd K (any K when causal).
        stride: keep every stride-th output.
        groups: 1 (full), C_in == C_out (depthwise), or any divisor of both.
        padding: only "same" is supported.
        causal: 1D causal convolution instead of centred.
        bias: optional (C_out,).
        dilation: the kernel's dilation (the same on every axis); ``fft_conv(x, w, dilation=d)`` equals
            ``fft_conv(x, dilate(w, d))`` without building the dilated kernel.

    The kernel's spectrum comes from small DFT matmuls over its taps (`tap_spectrum`) when that needs fewer
    operations than an FFT of the kernel padded to N (small kernels, any dilation); otherwise from that FFT.

    Returns:
        (B, C_out, *ceil(n / stride)), equal to ``direct_conv(x, dilate(w, dilation), stride, groups, causal)``.

    Example:
        >>> x, w = torch.randn(2, 4, 100), torch.randn(4, 4, 31)
        >>> torch.allclose(fft_conv(x, w), direct_conv(x, w), atol=1e-4)
        True
    """
    s = _spatial_dims(x, "x", 2)
    if w.dim() != x.dim():
        raise ValueError(f"w must have {x.dim()} dims for x of shape {tuple(x.shape)}, got {tuple(w.shape)}")
    if padding != "same":
        raise ValueError(f"padding must be 'same', got {padding!r}")
    if causal and s != 1:
        raise ValueError(f"causal convolution is 1D only, got x of shape {tuple(x.shape)}")
    _check_stride(stride)
    _check_groups(x, w, groups)
    if not causal and any(k % 2 == 0 for k in w.shape[2:]):
        raise ValueError(f"a centred 'same' kernel must have odd sizes, got kernel size {tuple(w.shape[2:])}")
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"dilation must be a positive int, got {dilation!r}")
    x, out_dtype = _fft_dtype_guard(x)
    w = w.to(x.dtype)
    n = tuple(x.shape[2:])
    offsets = []
    for axis, (k, m) in enumerate(zip(w.shape[2:], n)):  # drop the taps that only ever read padding
        first, keep = _kept_taps(k, dilation, m, causal)
        w = w.narrow(2 + axis, first, keep)
        shift = (k - 1) if causal else (k - 1) // 2
        offsets.append([dilation * (j - shift) for j in range(first, first + keep)])
    reach = [max(abs(o) for o in offs) for offs in offsets]
    N = tuple(fft_len_for(m, p, stride) for m, p in zip(n, reach))
    depthwise = groups == x.shape[1] == w.shape[0] and groups > 1
    Cout, ci = w.shape[:2]
    if _tables_cheaper(w.shape[2:], N):
        taps = w.reshape(Cout * ci, -1).t().reshape(tuple(w.shape[2:]) + (Cout * ci,))  # (*k, CC)
        K = spectrum_layout(tap_spectrum(taps, N, offsets), Cout, ci, groups, depthwise)
    else:
        wd = dilate(w, dilation) if dilation > 1 else w
        K = _dense_kernel_spectrum(wd, N, groups, depthwise, causal)
    y = _spectral_conv(x, K, N, stride, groups, depthwise)
    if bias is not None:
        y = y + bias.to(y.dtype).view((1, -1) + (1,) * s)
    return y.to(out_dtype)
