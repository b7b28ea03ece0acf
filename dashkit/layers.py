"""Plain layers that backbones use and that dashkit knows how to search."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CausalConv1d"]


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
