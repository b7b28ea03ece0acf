"""Plain layers that backbones use and that dashkit knows how to search, and the retrained network's convolutions.

- `CausalConv1d`: the causal convolution of TCNs.
- `plain_conv`: THE way dashkit builds a plain convolution of a chosen (k, d) ("same" or causal padding); the
  searched network's `DashConv.to_conv`, `discretize` and `ArchCard.apply` all use it.
- `is_same_padding`: whether a convolution keeps its input's size, the condition for searching it
  (`to_supernet`) and for computing it through the FFT (`auto_convs`).
- `searchable`: mark a convolution in or out of the search (the contract is in `dashkit.backbones`).
- `AutoConv1d` / `AutoConv2d` / `auto_convs`: the retrained network's convolutions, FFT or direct per input shape.
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from . import conv_choice, ops, spectral

__all__ = ["CausalConv1d", "plain_conv", "is_same_padding", "searchable", "search_mark", "AutoConv1d", "AutoConv2d",
           "auto_convs"]

# the attribute `searchable` sets on a convolution (a plain Python attribute: not in the state dict)
_MARK = "dash_searchable"


class CausalConv1d(nn.Conv1d):
    """A 1D convolution whose output at time t sees only inputs at times <= t.

    The input is left-padded by ``dilation * (kernel_size - 1)`` zeros; the output has the input's length
    (divided by the stride, rounded up).

    Shapes: input (B, C_in, L) -> output (B, C_out, ceil(L / stride)).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         dilation=dilation, groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = self.dilation[0] * (self.kernel_size[0] - 1)
        return super().forward(F.pad(x, (left, 0)))


def plain_conv(in_channels: int, out_channels: int, k: int, d: int = 1, stride: int = 1, groups: int = 1,
               bias: bool = True, causal: bool = False, dims: int = 1, device: Optional[Union[str, torch.device]] = None,
               dtype: Optional[torch.dtype] = None) -> nn.Module:
    """The plain convolution with kernel size k and dilation d that keeps the input's size.

    Centred: ``nn.Conv1d`` / ``nn.Conv2d`` with padding ``d (k - 1) / 2`` (k odd); causal (1D): `CausalConv1d`.
    PyTorch's initialisation (it draws from the global random generator).

    Args:
        in_channels, out_channels, stride, groups, bias: as in ``nn.Conv1d``.
        k: kernel size (odd unless causal), the same on every axis.
        d: dilation, the same on every axis.
        causal: a `CausalConv1d` (dims must be 1).
        dims: 1 or 2 spatial dimensions.
        device, dtype: where and in which dtype the parameters live.

    Returns:
        A module mapping (B, C_in, *n) to (B, C_out, *ceil(n / stride)).

    Example:
        >>> plain_conv(4, 8, 5, 3, dims=2)
        Conv2d(4, 8, kernel_size=(5, 5), stride=(1, 1), padding=(6, 6), dilation=(3, 3))
    """
    if dims not in (1, 2) or isinstance(dims, bool):
        raise ValueError(f"dims={dims!r} is not supported; accepted: 1, 2")
    if causal:
        if dims != 1:
            raise ValueError(f"causal=True with dims={dims!r}: a causal convolution is 1D; accepted: dims=1")
        conv: nn.Module = CausalConv1d(in_channels, out_channels, k, stride=stride, dilation=d, groups=groups,
                                       bias=bias)
    else:
        if k % 2 == 0:
            raise ValueError(f"k={k!r} is even: a centred 'same' kernel has an odd size; accepted: odd k, or "
                             f"causal=True")
        cls = nn.Conv1d if dims == 1 else nn.Conv2d
        conv = cls(in_channels, out_channels, k, stride=stride, padding=d * (k - 1) // 2, dilation=d,
                   groups=groups, bias=bias)
    return conv.to(device=device, dtype=dtype)


def is_same_padding(conv: nn.Module) -> bool:
    """Whether a convolution keeps its input's size (ceil(n / stride) outputs) with zero padding.

    True for a `CausalConv1d`, and for an ``nn.Conv1d`` / ``nn.Conv2d`` (or a subclass) with
    ``padding_mode="zeros"`` and either ``padding="same"`` or, on every axis, an odd kernel k and
    ``padding = dilation * (k - 1) / 2``. False for anything else, convolutions of other padding included.

    Example:
        >>> is_same_padding(nn.Conv1d(2, 2, 5, padding=2)), is_same_padding(nn.Conv1d(2, 2, 5))
        (True, False)
    """
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d)) or conv.padding_mode != "zeros":
        return False
    if isinstance(conv, CausalConv1d) or conv.padding == "same":
        return True
    if isinstance(conv.padding, str):
        return False
    return all(k % 2 == 1 and p == d * (k - 1) // 2 for k, p, d in zip(conv.kernel_size, conv.padding, conv.dilation))


def searchable(conv: nn.Module, flag: bool = True) -> nn.Module:
    """Mark a convolution as searched (True) or kept as it is (False) by `dashkit.to_supernet`; returns it.

    The mark overrides the default rule (search every convolution with a kernel larger than 1); see the contract
    in `dashkit.backbones`. It is a plain attribute: it is copied with the module and is not in the state dict.

    Example:
        >>> shortcut = searchable(nn.Conv2d(16, 32, 1, stride=2, bias=False), False)
        >>> search_mark(shortcut)
        False
    """
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d)):
        raise TypeError(f"conv={type(conv).__name__} is not a convolution; accepted: an nn.Conv1d or nn.Conv2d")
    if not isinstance(flag, bool):
        raise TypeError(f"flag={flag!r} has type {type(flag).__name__}; accepted: True or False")
    setattr(conv, _MARK, flag)
    return conv


def search_mark(conv: nn.Module) -> Optional[bool]:
    """The mark `searchable` set on ``conv``: True, False, or None when it has none."""
    return conv.__dict__.get(_MARK)


# ----------------------------------------------------------------------------------------------------------------
# Convolutions for the retrained network: dead taps cropped, FFT or direct chosen per input shape


class _AutoConvMixin:
    """Shared forward of `AutoConv1d` / `AutoConv2d` (a "same" convolution, odd kernel, zero padding).

    Two things make a large dilated kernel cheaper without changing the result:

    1. Taps that only ever read the zero padding are dropped: along an axis of n inputs, a tap at offset
       j * d from the centre with |j * d| > n - 1 never touches an input, so the kernel is cropped to
       k' = min(k, 2 * floor((n - 1) / d) + 1) taps (the 9x9 kernel with dilation 3 of an 8x8 map is 5x5).
    2. The convolution runs through the FFT or directly, whichever a measurement on this input shape says is
       faster (``dashkit.conv_choice.choose_backend``, cached per shape). ``backend="fft"`` or ``"direct"`` forces one.

    Parameters, state-dict keys and initialisation are those of ``nn.Conv1d`` / ``nn.Conv2d``.
    """

    backend: str = "auto"

    def _cropped_weight(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight  # type: ignore[attr-defined]
        for axis, (n, k, d) in enumerate(zip(x.shape[2:], self.kernel_size, self.dilation)):  # type: ignore
            first, keep = ops.kept_taps(k, d, n, causal=False)
            if keep < k:
                w = w.narrow(2 + axis, first, keep)
        return w

    def _direct(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        pad = tuple(d * (k - 1) // 2 for k, d in zip(w.shape[2:], self.dilation))  # type: ignore[attr-defined]
        conv = F.conv1d if x.dim() == 3 else F.conv2d
        return conv(x, w, self.bias, self.stride, pad, self.dilation, self.groups)  # type: ignore[attr-defined]

    def _fft(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf, out_dtype = spectral.fft_input(x)
            y = ops.fft_conv(xf, w.to(xf.dtype), stride=self.stride[0], groups=self.groups,  # type: ignore
                             bias=self.bias, dilation=self.dilation[0])  # type: ignore[attr-defined]
        return y.to(out_dtype)

    def _choose(self, x: torch.Tensor, w: torch.Tensor) -> str:
        if self.backend != "auto":
            return self.backend
        params = [p for p in (self.weight, self.bias) if p is not None and p.requires_grad]  # type: ignore
        grad = conv_choice.needs_grad(x, params)
        n = tuple(x.shape[2:])
        kk = tuple(w.shape[2:])
        stride = self.stride[0]  # type: ignore[attr-defined]
        key = ("conv", x.device.type, x.dtype, x.shape[0], self.in_channels, self.out_channels,  # type: ignore
               self.groups, n, kk, tuple(self.dilation), stride, grad)  # type: ignore[attr-defined]
        hit = conv_choice.backend_choice(key)  # the common case, before any estimate is computed: small layers feel it
        if hit is not None:
            return hit
        N = [ops.fft_len_for(m, d * (k - 1) // 2, stride)  # what fft_conv will use
             for m, k, d in zip(n, kk, self.dilation)]  # type: ignore[attr-defined]
        estimates = conv_choice.conv_costs(x.shape[0], self.in_channels, self.out_channels,  # type: ignore
                                           self.groups, math.prod(-(-m // stride) for m in n),  # type: ignore
                                           math.prod(kk), N)
        forwards = {"fft": lambda xp: self._fft(xp, self._cropped_weight(xp)),
                    "direct": lambda xp: self._direct(xp, self._cropped_weight(xp))}
        return conv_choice.measure(key, forwards, x, params, grad, estimates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self._cropped_weight(x)
        # the layer remembers its choice per input shape (a lookup of a few microseconds on every call)
        memo = self.__dict__.setdefault("_choices", {})
        key = (self.backend, x.shape, x.dtype, x.device, torch.is_grad_enabled())
        backend = memo.get(key)
        if backend is None:
            backend = memo[key] = self._choose(x, w)
        self.last_backend = backend
        return self._fft(x, w) if backend == "fft" else self._direct(x, w)


class AutoConv1d(_AutoConvMixin, nn.Conv1d):
    """``nn.Conv1d`` with "same" padding whose forward crops dead taps and picks FFT or direct (see above).

    Shapes: input (B, C_in, L) -> output (B, C_out, ceil(L / stride)).
    """


class AutoConv2d(_AutoConvMixin, nn.Conv2d):
    """``nn.Conv2d`` with "same" padding whose forward crops dead taps and picks FFT or direct (see above).

    Shapes: input (B, C_in, H, W) -> output (B, C_out, ceil(H / stride), ceil(W / stride)).
    """


def auto_convs(model: nn.Module, backend: str = "auto") -> nn.Module:
    """Make every eligible convolution of ``model`` an `AutoConv1d` / `AutoConv2d`, in place; returns ``model``.

    Eligible: ``nn.Conv1d`` / ``nn.Conv2d`` exactly (not subclasses such as `CausalConv1d`, whose forward is
    their own) with odd kernel sizes larger than 1, zero "same" padding (`is_same_padding`), and the same stride
    and dilation along every axis. The
    weights, their values and the state-dict keys stay as they are; only ``forward`` changes, and it computes
    the same function (to floating-point rounding). Layers that already are AutoConvs take the new backend.

    Args:
        model: any module.
        backend: "auto" (measured per input shape), "fft" or "direct" (dead taps are cropped in every case).
    """
    if backend not in conv_choice.CONV_BACKENDS:
        raise ValueError(f"backend = {backend!r}: expected one of {', '.join(map(repr, conv_choice.CONV_BACKENDS))}")
    for m in model.modules():
        if isinstance(m, _AutoConvMixin):  # already converted: only the backend changes
            m.backend = backend
            continue
        if type(m) not in (nn.Conv1d, nn.Conv2d):
            continue
        k, d, s = m.kernel_size, m.dilation, m.stride
        if not is_same_padding(m) or any(kk % 2 == 0 for kk in k) or max(k) == 1 or len(set(s)) != 1 or len(set(d)) != 1:
            continue
        m.__class__ = AutoConv1d if type(m) is nn.Conv1d else AutoConv2d
        m.backend = backend
    return model
