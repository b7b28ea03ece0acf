"""Plain layers that backbones use and that dashkit knows how to search, and the retrained network's convolutions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import conv_choice, ops

__all__ = ["CausalConv1d", "AutoConv1d", "AutoConv2d", "auto_convs"]


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
            first, keep = ops._kept_taps(k, d, n, causal=False)
            if keep < k:
                w = w.narrow(2 + axis, first, keep)
        return w

    def _direct(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        pad = tuple(d * (k - 1) // 2 for k, d in zip(w.shape[2:], self.dilation))  # type: ignore[attr-defined]
        conv = F.conv1d if x.dim() == 3 else F.conv2d
        return conv(x, w, self.bias, self.stride, pad, self.dilation, self.groups)  # type: ignore[attr-defined]

    def _fft(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            xf, out_dtype = ops._fft_dtype_guard(x)
            y = ops.fft_conv(xf, w.to(xf.dtype), stride=self.stride[0], groups=self.groups,  # type: ignore
                             bias=self.bias, dilation=self.dilation[0])  # type: ignore[attr-defined]
        return y.to(out_dtype)

    def _choose(self, x: torch.Tensor, w: torch.Tensor) -> str:
        if self.backend != "auto":
            return self.backend
        params = [p for p in (self.weight, self.bias) if p is not None and p.requires_grad]  # type: ignore
        grad = torch.is_grad_enabled() and (x.requires_grad or bool(params))
        n = tuple(x.shape[2:])
        kk = tuple(w.shape[2:])
        key = ("conv", x.device.type, x.dtype, x.shape[0], self.in_channels, self.out_channels,  # type: ignore
               self.groups, n, kk, tuple(self.dilation), self.stride[0], grad)  # type: ignore[attr-defined]
        hit = conv_choice.backend_choice(key)  # the common case, before any estimate is computed: small layers feel it
        if hit is not None:
            return hit
        B, ci = x.shape[0], self.in_channels // self.groups  # type: ignore[attr-defined]
        out_pos = math.prod(-(-m // self.stride[0]) for m in n)  # type: ignore[attr-defined]
        direct_cost = B * self.out_channels * ci * out_pos * math.prod(kk)  # type: ignore[attr-defined]
        N = [ops.fft_len_for(m, d * (k - 1) // 2, self.stride[0])  # what fft_conv will use  # type: ignore
             for m, k, d in zip(n, kk, self.dilation)]  # type: ignore[attr-defined]
        NN = math.prod(N)
        fft_cost = (B * (self.in_channels + self.out_channels) * NN * max(math.log2(NN), 1) * 2  # type: ignore
                    + B * self.out_channels * ci * NN * 2)  # type: ignore[attr-defined]
        x_probe = x.detach().requires_grad_(x.requires_grad)

        def runner(fn):
            def go() -> None:
                y = fn(x_probe, self._cropped_weight(x_probe))
                if grad:
                    inputs = ([x_probe] if x_probe.requires_grad else []) + params
                    torch.autograd.grad(y.float().sum(), inputs, allow_unused=True)
            return go

        with torch.enable_grad() if grad else torch.no_grad():
            return conv_choice.choose_backend(key, {"fft": runner(self._fft), "direct": runner(self._direct)}, x.device,
                                      estimates={"fft": fft_cost, "direct": direct_cost})

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

    Eligible: ``nn.Conv1d`` / ``nn.Conv2d`` exactly (not subclasses such as `CausalConv1d`) with odd kernel
    sizes larger than 1, "same" padding (``padding="same"`` or ``dilation * (k - 1) / 2``), zero padding mode, and
    the same stride and dilation along every axis. The
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
        k, d, p, s = m.kernel_size, m.dilation, m.padding, m.stride
        centred = tuple(dd * (kk - 1) // 2 for kk, dd in zip(k, d))
        same = p == "same" or (not isinstance(p, str) and tuple(p) == centred)
        if (m.padding_mode != "zeros" or not same or any(kk % 2 == 0 for kk in k) or max(k) == 1 or len(set(s)) != 1
                or len(set(d)) != 1):
            continue
        m.__class__ = AutoConv1d if type(m) is nn.Conv1d else AutoConv2d
        m.backend = backend
    return model
