"""Pure tensor functions behind DASH's three tricks.

DASH (Shen, Khodak, Talwalkar et al., "Efficient Architecture Search for Diverse Tasks", NeurIPS 2022) searches a
kernel size k and a dilation d for every convolution. Its cost rests on three identities, each exact:

1. Mixed weights: ``sum_i c_i conv(x, dilate(w_i, d_i)) == conv(x, sum_i c_i pad_S(dilate(w_i, d_i)))``
   (`aggregate_kernel`; the slow left-hand side is `mixed_results`, DARTS's way).
2. Kronecker dilation: ``dilate(w, d) = kron(w, one_hot(d))`` cropped (`dilate`; a strided scatter is the same).
3. Fourier convolution: ``conv(x, W) = irfft(rfft(x) * K)`` with zero padding (`fft_conv`), whose cost does not
   grow with the kernel size (`circular_conv` is the textbook recipe; `fft_conv` takes the fast path of
   `dashkit.spectral`).

The sections below follow that order; `direct_conv` is PyTorch's convolution, the reference they all equal.

Conventions: inputs ``x`` are (B, C_in, L) or (B, C_in, H, W); weights are (C_out, C_in / groups, *kernel) with
odd kernel sizes; convolutions are PyTorch's cross-correlations with "same" output size (centred kernel) or, in
1D, causal (the output at t sees inputs at times <= t). Stride s keeps every s-th output: ceil(n / s) outputs.
"""
from __future__ import annotations

import functools
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from . import spectral

__all__ = [
    "aggregate_kernel", "mixed_results",  # trick 1
    "dilate", "center_pad", "kept_taps", "crop_kernel",  # trick 2
    "direct_conv", "circular_conv", "fast_fft_len", "fft_len_for", "fft_conv",  # trick 3
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

    ``sum_i coeffs[i] * conv(x, weights[i], dilation=dilations[i])``, "same" (or causal) padding; equal to
    ``direct_conv(x, aggregate_kernel(weights, coeffs, dilations, causal=causal), stride, groups, causal)``.

    Args:
        x: (B, C_in, L) or (B, C_in, H, W).
        weights: M kernels, the i-th (C_out, C_in/groups, *[k_i]), k_i odd.
        coeffs: (M,) mixing coefficients.
        dilations: M positive ints.
        stride, groups, causal: as in `direct_conv`.

    Returns:
        (B, C_out, *ceil(n / stride)).
    """
    _check_candidates(weights, coeffs, dilations)
    out = None
    for w, d, c in zip(weights, dilations, coeffs):
        y = _conv(x, w, stride, groups, d, causal)
        out = c * y if out is None else out + c * y
    return out


# ----------------------------------------------------------------------------------------------------------------
# trick 2: Kronecker dilation

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


def kept_taps(k: int, d: int, n: int, causal: bool = False) -> Tuple[int, int]:
    """Which taps of a k-tap kernel at dilation d can reach an axis of n inputs: (first, count), a contiguous run.

    A tap at offset o from the output position meets an input only when |o| <= n - 1; the others always read the
    zero padding, so dropping them changes nothing (`crop_kernel`, `fft_conv`, `AutoConv1d`). Centred taps sit at
    offsets d (j - (k - 1) / 2), causal ones at d (j - (k - 1)), j = 0..k-1.

    Args:
        k: taps along the axis (odd unless causal).
        d: dilation.
        n: input size along the axis.
        causal: right-aligned (1D causal) kernel.

    Returns:
        (first, count): taps first .. first + count - 1 are kept.

    Example:
        >>> kept_taps(9, 3, 8)  # a 9-tap kernel at dilation 3 on 8 inputs: offsets -6..6 keep taps 2..6
        (2, 5)
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
        first, keep = kept_taps(K, 1, m, causal)
        idx.append(slice(first, first + keep))
    return w[(...,) + tuple(idx)]


# ----------------------------------------------------------------------------------------------------------------
# trick 3: Fourier convolution, and the direct convolution it equals

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
    """The smallest 5-smooth integer (2^a 3^b 5^c) >= n: FFT sizes that pocketfft and cuFFT handle fast.

    Example:
        >>> fast_fft_len(121 + 60)
        192
    """
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


def fft_len_for(n: int, reach: int, stride: int = 1) -> int:
    """FFT length for a "same" output of size n from a kernel reaching ``reach`` taps from its centre.

    ``fft_len_for(50, 10) == fast_fft_len(60) == 60``; with ``stride=2`` the length is even.

    Circular convolution of length N >= n + reach equals the linear one on the n kept outputs (the wrap-around
    lands in the zero padding). Rounded up to a fast (5-smooth) size, and to an even size for stride 2, so that
    the subsampling can be done in the frequency domain (`spectral.fold_stride2`).
    """
    N = fast_fft_len(n + reach)
    if stride == 2:
        while N % 2:
            N = fast_fft_len(N + 1)
    return N


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

    The kernel's spectrum comes from small DFT matmuls over its taps (`spectral.tap_spectrum`) when that needs
    fewer operations than an FFT of the kernel padded to N (small kernels, any dilation;
    `spectral.tables_cheaper`); otherwise from that FFT (`spectral.dense_kernel_spectrum`). The transforms and the
    channel mixing are `spectral.spectral_conv`; the result equals `circular_conv` with the same N.

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
    x, out_dtype = spectral.fft_input(x)
    w = w.to(x.dtype)
    n = tuple(x.shape[2:])
    offsets = []
    for axis, (k, m) in enumerate(zip(w.shape[2:], n)):  # drop the taps that only ever read padding
        first, keep = kept_taps(k, dilation, m, causal)
        w = w.narrow(2 + axis, first, keep)
        shift = (k - 1) if causal else (k - 1) // 2
        offsets.append([dilation * (j - shift) for j in range(first, first + keep)])
    reach = [max(abs(o) for o in offs) for offs in offsets]
    N = tuple(fft_len_for(m, p, stride) for m, p in zip(n, reach))
    depthwise = groups == x.shape[1] == w.shape[0] and groups > 1
    Cout, ci = w.shape[:2]
    if spectral.tables_cheaper(w.shape[2:], N):
        taps = w.reshape(Cout * ci, -1).t().reshape(tuple(w.shape[2:]) + (Cout * ci,))  # (*k, CC)
        K = spectral.spectrum_layout(spectral.tap_spectrum(taps, N, offsets), Cout, ci, groups, depthwise)
    else:
        wd = dilate(w, dilation) if dilation > 1 else w
        K = spectral.dense_kernel_spectrum(wd, N, groups, depthwise, causal)
    y = spectral.spectral_conv(x, K, N, stride, groups, depthwise)
    if bias is not None:
        y = y + bias.to(y.dtype).view((1, -1) + (1,) * s)
    return y.to(out_dtype)
