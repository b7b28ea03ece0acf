"""The standard CNNs that DASH searches over: Wide ResNet, the time-series ResNet1D, a TCN, and a plain stack.

DASH (Shen et al., "Efficient Architecture Search for Diverse Tasks", NeurIPS 2022) keeps a backbone's topology
and searches only the kernel size and dilation of its convolutions. The backbones here are therefore plain
``nn.Module``\\ s with nothing of the search inside them: every convolution that may be searched is an ordinary
``nn.Conv1d`` / ``nn.Conv2d`` (or :class:`dashkit.layers.CausalConv1d`) with a kernel larger than 1, and the
1x1 convolutions that are not (shortcuts, dense heads) are marked out of the search.

The contract for a searchable convolution
-----------------------------------------
`dashkit.to_supernet` searches, in any model (these backbones or one of the user's own), every convolution that

1. is an ``nn.Conv1d`` (for a 1D search space) or an ``nn.Conv2d`` (2D), subclasses included
   (:class:`~dashkit.layers.CausalConv1d`, :class:`~dashkit.layers.AutoConv1d` / ``AutoConv2d``);
2. keeps the input's size with zero padding: "same" padding (``padding="same"``, or ``dilation * (k - 1) / 2``
   with an odd k) or causal padding (``CausalConv1d``), as :func:`dashkit.layers.is_same_padding` says;
3. has one stride along every axis (unequal strides are an error);
4. is picked: by default every convolution with a kernel larger than 1 (DASH's rule), unless it is marked out.

A convolution is marked in or out explicitly, never by the words in its name:

- by the model's author: ``dashkit.layers.searchable(conv, False)`` (or ``True``) when building the model. The
  backbones here mark their 1x1 shortcut convolutions and their dense heads out;
- by the caller: ``to_supernet(model, space, include=[...], exclude=[...])`` with module names as
  ``model.named_modules()`` gives them; a name that is not a convolution of the space's dims is an error;
- by a rule: ``to_supernet(..., filter=lambda name, conv: ...)`` replaces the default rule
  (:func:`dashkit.supernet.default_filter`: the mark if there is one, else kernel > 1).

``include`` and ``exclude`` win over the filter and the marks. A convolution picked explicitly (``include``, a
filter or a True mark) that breaks rule 2 is an error; one that only the default rule picks is left alone.

Every backbone has the same small interface (in the manner of timm), so training code never asks which one it
has:

- ``forward(x)`` equals ``forward_head(forward_features(x))``;
- ``forward_features(x)``: (B, in_channels, *spatial) -> (B, num_features, *spatial'), the map before the head;
- ``forward_head(features)``: -> (B, num_classes), or (B, num_classes, *spatial) when ``dense``;
- attributes ``in_channels``, ``num_classes``, ``num_features``, ``dims`` (1 or 2) and ``dense`` (bool);
- ``reset_classifier(num_classes)`` replaces the head.

Example:
    >>> from dashkit import backbones
    >>> backbones.names()
    ['plain', 'resnet1d', 'tcn', 'wrn']
    >>> model = backbones.get("wrn", depth=16, width=1, in_channels=3, num_classes=10)
    >>> model(torch.randn(2, 3, 32, 32)).shape
    torch.Size([2, 10])
"""
from __future__ import annotations

import warnings
from typing import Any, List, Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_bool, check_float, check_int
from .layers import CausalConv1d, searchable
from .registry import Registry

# ResNet1D's kernel-8 convs use padding="same" (DASH's default kernels are 8, 5, 3): PyTorch warns on every forward
# that it pads a copy of the input for an even kernel. That is expected here, and only that message is silenced.
warnings.filterwarnings("ignore", message=r"Using padding='same' with even kernel lengths", category=UserWarning)

__all__ = [
    "BACKBONES",
    "Backbone",
    "WideResNet",
    "ResNet1D",
    "TCN",
    "wrn",
    "resnet1d",
    "tcn",
    "get",
    "names",
]

BACKBONES = Registry("backbone")

_HEAD_POOLS = ("avg", "last")


def names(pattern: str = "*") -> List[str]:
    """Names of the registered backbones matching a glob pattern, sorted."""
    return BACKBONES.names(pattern)


def get(name: str, **kwargs: Any) -> "Backbone":
    """Build a registered backbone, e.g. ``get("resnet1d", in_channels=1, num_classes=10)``.

    An unknown name raises ``ValueError`` listing the known backbones.
    """
    return BACKBONES.get(name, **kwargs)


# ----------------------------------------------------------------------------------------------- checks


def _check_dropout(dropout: Any) -> float:
    return check_float("dropout", dropout, 0.0, 1.0, high_open=True)


def _check_channels(channels: Any, count: Optional[int] = None) -> Tuple[int, ...]:
    """A sequence of channel counts (``count`` of them, or any non-zero number), each an int >= 1."""
    want = f"{count} integers >= 1 (one per stage)" if count else "a non-empty sequence of integers >= 1"
    if (isinstance(channels, (str, bytes)) or not isinstance(channels, Sequence) or len(channels) == 0
            or (count is not None and len(channels) != count)):
        raise ValueError(f"channels={channels!r} is not a sequence of the right length; accepted: {want}")
    return tuple(check_int(f"channels[{i}]", c, 1) for i, c in enumerate(channels))


def _layers(dims: int) -> Tuple[Type[nn.Module], Type[nn.Module]]:
    """The convolution and batch-norm classes for 1 or 2 spatial dimensions."""
    return (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)


def _shape_text(channels: Any, dims: int) -> str:
    spatial = "L" if dims == 1 else "H, W"
    return f"(B, {channels}, {spatial})"


# ------------------------------------------------------------------------------------------ the interface


class _Head(nn.Module):
    """Features -> outputs: pooled + Linear, or a 1x1 convolution at every position when dense.

    Shapes: (B, C, *spatial) -> (B, num_classes), or (B, num_classes, *spatial) when dense.
    """

    def __init__(self, num_features: int, num_classes: int, dims: int, dense: bool, pool: str):
        super().__init__()
        assert pool in _HEAD_POOLS, pool
        self.dense = dense
        self.pool = pool
        if dense:
            # the head maps features to outputs: not a searched layer
            self.fc: nn.Module = searchable(_layers(dims)[0](num_features, num_classes, kernel_size=1), False)
        else:
            self.fc = nn.Linear(num_features, num_classes)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense:
            return self.fc(x)
        if self.pool == "avg":
            x = x.mean(dim=tuple(range(2, x.dim())))  # (B, C)
        else:
            # In a causal network the last step is the only one that has seen the whole sequence.
            x = x[..., -1]  # (B, C)
        return self.fc(x)


class Backbone(nn.Module):
    """Base class of dashkit backbones: the shared interface and the head.

    A subclass calls ``super().__init__(...)``, builds its body, sets ``self.num_features`` (the channels of
    its feature map), calls ``self.reset_classifier(num_classes)`` to build the head, and defines
    ``forward_features``. A model of the user's own needs no base class, only the same attributes and methods.

    Args:
        in_channels: C_in, the input's channels.
        num_classes: outputs per example (dense: per position).
        dims: 1 (input (B, C_in, L)) or 2 (input (B, C_in, H, W)).
        dense: one output per input position, (B, num_classes, *spatial), instead of one per example.
        head_pool: how a non-dense head reduces the feature map: ``"avg"`` (global mean) or ``"last"`` (last
            step along the final axis).
    """

    def __init__(self, in_channels: int, num_classes: int, dims: int, dense: bool, head_pool: str = "avg"):
        super().__init__()
        if head_pool not in _HEAD_POOLS:
            raise ValueError(f"head_pool={head_pool!r} is not supported; accepted: "
                             f"{', '.join(map(repr, _HEAD_POOLS))}")
        self.in_channels = check_int("in_channels", in_channels, 1)
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.dims = check_int("dims", dims, 1, 2)
        self.dense = check_bool("dense", dense)
        self.head_pool = head_pool
        self.num_features = 0  # set by the subclass before reset_classifier

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` outputs."""
        self.num_classes = check_int("num_classes", num_classes, 1)
        self.head = _Head(self.num_features, num_classes, self.dims, self.dense, self.head_pool)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Map the feature map to outputs.

        Args:
            features: (B, num_features, *spatial), as returned by ``forward_features``.

        Returns:
            (B, num_classes), or (B, num_classes, *spatial) when ``dense``.
        """
        if features.dim() != self.dims + 2 or features.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}.forward_head expects features of shape "
                f"{_shape_text(self.num_features, self.dims)}, got {tuple(features.shape)}"
            )
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, *spatial) -> (B, num_classes), or (B, num_classes, *spatial) when ``dense``."""
        return self.forward_head(self.forward_features(x))

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != self.dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__} expects input of shape {_shape_text(self.in_channels, self.dims)} "
                f"(in_channels={self.in_channels}, dims={self.dims}), got {tuple(x.shape)}"
            )


# ------------------------------------------------------------------------------------------ Wide ResNet


class _WideBlock(nn.Module):
    """Pre-activation basic block: BN-ReLU-conv3-BN-ReLU-dropout-conv3, plus the shortcut.

    Shapes: (B, in_ch, *spatial) -> (B, out_ch, *spatial / stride).
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int, dims: int, dropout: float):
        super().__init__()
        Conv, BN = _layers(dims)
        self.bn1 = BN(in_ch)
        self.conv1 = Conv(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn2 = BN(out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = Conv(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.shortcut: Optional[nn.Module] = None
        if in_ch != out_ch or stride != 1:
            self.shortcut = searchable(Conv(in_ch, out_ch, 1, stride=stride, bias=False), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = F.relu(self.bn1(x))
        # As in the original WRN, a projection shortcut reads the activated input, an identity one the raw input.
        residual = x if self.shortcut is None else self.shortcut(o)
        y = self.conv1(o)
        y = self.conv2(self.drop(F.relu(self.bn2(y))))
        return y + residual


class WideResNet(Backbone):
    """Wide ResNet WRN-depth-width (Zagoruyko & Komodakis, 2016) with pre-activation basic blocks, 1D or 2D.

    A 3x3 stem with 16 channels, then three stages of ``(depth - 4) / 6`` blocks with 16*width, 32*width and
    64*width channels, then BN-ReLU and the head. Stage strides are 1, 2, 2; with ``dense=True`` every stride is
    1 and the head is a 1x1 convolution at every position (DASH's choice for PDE and segmentation tasks). Each
    block has two kernel-3 convolutions (padding 1) with dropout between them; a block that changes channels or
    stride has a 1x1 convolution named ``shortcut``, marked out of the search. WRN-16-w thus has 13 kernel-3 convolutions, with the same
    names for every width.

    Args:
        depth: 6n + 4 for n >= 1 (10, 16, 22, 28, 40, ...).
        width: channel multiplier.
        in_channels: C_in.
        num_classes: outputs per example (dense: per position).
        dims: 1 (Conv1d / BatchNorm1d) or 2 (Conv2d / BatchNorm2d).
        dense: strides 1, no pooling, per-position head.
        dropout: drop probability between the two convolutions of a block.
        channels: the three stages' channels, overriding ``(16, 32, 64) * width``; e.g. ``(16, 16, 16)`` for a
            dense network that keeps full-resolution maps in every stage and cannot afford 64 channels there.

    Shapes:
        input (B, C_in, L) or (B, C_in, H, W); features (B, channels[2], *spatial / 4) (dense: *spatial);
        output (B, num_classes) or, dense, (B, num_classes, *spatial).
    """

    def __init__(self, depth: int = 16, width: int = 1, in_channels: int = 3, num_classes: int = 10,
                 dims: int = 2, dense: bool = False, dropout: float = 0.0,
                 channels: Optional[Sequence[int]] = None):
        depth = check_int("depth", depth, 1)
        if depth < 10 or (depth - 4) % 6 != 0:
            raise ValueError(f"depth={depth!r} is not 6n + 4 with n >= 1; accepted: 10, 16, 22, 28, 40, ...")
        width = check_int("width", width, 1)
        in_channels = check_int("in_channels", in_channels, 1)
        num_classes = check_int("num_classes", num_classes, 1)
        dims = check_int("dims", dims, 1, 2)
        check_bool("dense", dense)
        dropout = _check_dropout(dropout)
        super().__init__(in_channels, num_classes, dims, dense, head_pool="avg")
        self.depth, self.width = depth, width

        Conv, BN = _layers(dims)
        blocks_per_stage = (depth - 4) // 6
        if channels is None:
            widths = (16 * width, 32 * width, 64 * width)
        else:
            widths = _check_channels(channels, 3)
        self.channels = widths
        strides = (1, 1, 1) if dense else (1, 2, 2)
        self.stem = Conv(in_channels, 16, 3, padding=1, bias=False)
        in_ch = 16
        for i, (out_ch, stride) in enumerate(zip(widths, strides)):
            blocks = []
            for j in range(blocks_per_stage):
                blocks.append(_WideBlock(in_ch, out_ch, stride if j == 0 else 1, dims, dropout))
                in_ch = out_ch
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
        self.bn = BN(in_ch)
        self.num_features = in_ch

        for m in self.modules():
            if isinstance(m, (nn.Conv1d, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        self.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, *spatial) -> (B, num_features, *spatial'), spatial' = spatial / 4 (dense: spatial)."""
        self._check_input(x)
        x = self.stem(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        return F.relu(self.bn(x))


@BACKBONES.register("wrn")
def wrn(depth: int = 16, width: int = 1, in_channels: int = 3, num_classes: int = 10, dims: int = 2,
        dense: bool = False, dropout: float = 0.0, channels: Optional[Sequence[int]] = None) -> WideResNet:
    """Wide ResNet WRN-depth-width; DASH searches on WRN-16-1 and retrains on WRN-16-4. See :class:`WideResNet`."""
    return WideResNet(depth=depth, width=width, in_channels=in_channels, num_classes=num_classes, dims=dims,
                      dense=dense, dropout=dropout, channels=channels)


# ------------------------------------------------------------------------------------------------ ResNet1D


class _ResBlock1d(nn.Module):
    """Time-series ResNet block: conv8-BN-ReLU, conv5-BN-ReLU, conv3-BN, add the shortcut, ReLU.

    Shapes: (B, in_ch, L) -> (B, out_ch, L).
    """

    kernel_sizes = (8, 5, 3)

    def __init__(self, in_ch: int, out_ch: int, dropout: float):
        super().__init__()
        k1, k2, k3 = self.kernel_sizes
        # "same" padding keeps the length for the even kernel 8 too (one more zero on the right).
        self.conv1 = nn.Conv1d(in_ch, out_ch, k1, padding="same", bias=False)
        self.bn1 = nn.BatchNorm1d(out_ch)
        self.conv2 = nn.Conv1d(out_ch, out_ch, k2, padding="same", bias=False)
        self.bn2 = nn.BatchNorm1d(out_ch)
        self.conv3 = nn.Conv1d(out_ch, out_ch, k3, padding="same", bias=False)
        self.bn3 = nn.BatchNorm1d(out_ch)
        self.drop = nn.Dropout(dropout)
        if in_ch != out_ch:
            self.shortcut: nn.Module = nn.Sequential(searchable(nn.Conv1d(in_ch, out_ch, 1, bias=False), False),
                                                     nn.BatchNorm1d(out_ch))
        else:
            self.shortcut = nn.BatchNorm1d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(F.relu(self.bn1(self.conv1(x))))
        y = self.drop(F.relu(self.bn2(self.conv2(y))))
        y = self.bn3(self.conv3(y))
        return F.relu(y + self.shortcut(x))


class ResNet1D(Backbone):
    """The 3-block time-series ResNet (Wang et al., 2017; Ismail Fawaz et al., 2019) that DASH uses for 1D tasks.

    Three blocks of widths w, 2w, 2w; each block has convolutions with kernels 8, 5 and 3 ("same" padding, so
    the length is kept), each followed by BatchNorm1d and ReLU, except that after the last BN the shortcut is
    added first and then ReLU. The shortcut (submodule ``shortcut``) is a 1x1 convolution (marked out of the
    search) + BatchNorm1d when the channels change, else BatchNorm1d only (no identity), as in Ismail Fawaz et
    al. Dropout follows the first two ReLUs of each block. Then global average pooling and Linear, or with ``dense=True`` a 1x1 convolution at
    every step. 9 convolutions have a kernel larger than 1.

    Args:
        in_channels: C_in.
        num_classes: outputs per example (dense: per step).
        width: w, the first block's channels; None gives DASH's rule min(4 ** (num_classes // 10 + 1), 64),
            16 for 10 classes.
        dropout: drop probability inside the blocks.
        dense: per-step head, output (B, num_classes, L).

    Shapes:
        input (B, C_in, L); features (B, 2w, L); output (B, num_classes) or, dense, (B, num_classes, L).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: Optional[int] = None,
                 dropout: float = 0.0, dense: bool = False):
        in_channels = check_int("in_channels", in_channels, 1)
        num_classes = check_int("num_classes", num_classes, 1)
        width = self.default_width(num_classes) if width is None else check_int("width", width, 1)
        dropout = _check_dropout(dropout)
        check_bool("dense", dense)
        super().__init__(in_channels, num_classes, dims=1, dense=dense, head_pool="avg")
        self.width = width
        widths = (width, 2 * width, 2 * width)
        blocks, in_ch = [], in_channels
        for out_ch in widths:
            blocks.append(_ResBlock1d(in_ch, out_ch, dropout))
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.num_features = in_ch
        self.reset_classifier(num_classes)

    @staticmethod
    def default_width(num_classes: int) -> int:
        """DASH's width rule for ResNet1D: min(4 ** (num_classes // 10 + 1), 64)."""
        num_classes = check_int("num_classes", num_classes, 1)
        # Capped before exponentiating so that a huge class count does not build a huge integer.
        return min(4 ** min(num_classes // 10 + 1, 3), 64)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, L) -> (B, num_features, L)."""
        self._check_input(x)
        return self.blocks(x)


@BACKBONES.register("resnet1d")
def resnet1d(in_channels: int = 1, num_classes: int = 10, width: Optional[int] = None, dropout: float = 0.0,
             dense: bool = False) -> ResNet1D:
    """The 3-block time-series ResNet with kernels 8, 5, 3 per block. See :class:`ResNet1D`."""
    return ResNet1D(in_channels=in_channels, num_classes=num_classes, width=width, dropout=dropout, dense=dense)


# ----------------------------------------------------------------------------------------------------- TCN


class _TemporalBlock(nn.Module):
    """TCN residual block: two dilated causal convolutions, each followed by ReLU and dropout, plus the shortcut.

    Shapes: (B, in_ch, L) -> (B, out_ch, L); output step t depends only on input steps <= t.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, dilation: int, dropout: float):
        super().__init__()
        self.conv1 = CausalConv1d(in_ch, out_ch, kernel_size, dilation=dilation)
        self.conv2 = CausalConv1d(out_ch, out_ch, kernel_size, dilation=dilation)
        self.drop = nn.Dropout(dropout)
        self.shortcut: Optional[nn.Module] = None
        if in_ch != out_ch:
            self.shortcut = searchable(nn.Conv1d(in_ch, out_ch, 1), False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(F.relu(self.conv1(x)))
        y = self.drop(F.relu(self.conv2(y)))
        residual = x if self.shortcut is None else self.shortcut(x)
        return F.relu(y + residual)


class TCN(Backbone):
    """Temporal convolutional network (Bai, Kolter & Koltun, 2018).

    One residual block per entry of ``channels``; block i has two :class:`~dashkit.layers.CausalConv1d` with
    dilation 2 ** i, and a 1x1 convolution named ``shortcut`` (marked out of the search) when its channels change. Bai et al. put weight
    normalisation on the convolutions; it is left out so that every convolution is a plain layer that the search
    can replace. The head reads the last time step (the only one that has seen the whole sequence) and applies
    Linear; with ``dense=True`` it is a 1x1 convolution at every step, so output step t depends only on input
    steps <= t.

    Args:
        in_channels: C_in.
        num_classes: outputs per example (dense: per step).
        channels: the channels of each block; its length is the number of blocks.
        kernel_size: kernel of every causal convolution.
        dropout: drop probability after each ReLU inside the blocks.
        dense: per-step head, output (B, num_classes, L).

    Shapes:
        input (B, C_in, L); features (B, channels[-1], L); output (B, num_classes) or, dense,
        (B, num_classes, L).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (32, 32, 32, 32),
                 kernel_size: int = 3, dropout: float = 0.0, dense: bool = False):
        in_channels = check_int("in_channels", in_channels, 1)
        num_classes = check_int("num_classes", num_classes, 1)
        channels = _check_channels(channels)
        kernel_size = check_int("kernel_size", kernel_size, 1)
        dropout = _check_dropout(dropout)
        check_bool("dense", dense)
        super().__init__(in_channels, num_classes, dims=1, dense=dense, head_pool="last")
        self.channels = channels
        self.kernel_size = kernel_size
        blocks, in_ch = [], in_channels
        for i, out_ch in enumerate(self.channels):
            blocks.append(_TemporalBlock(in_ch, out_ch, kernel_size, 2 ** i, dropout))
            in_ch = out_ch
        self.blocks = nn.Sequential(*blocks)
        self.num_features = in_ch
        self.reset_classifier(num_classes)

    @property
    def receptive_field(self) -> int:
        """Input steps that one output step sees: 1 + 2 (k - 1) (2 ** levels - 1)."""
        return 1 + 2 * (self.kernel_size - 1) * (2 ** len(self.channels) - 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, L) -> (B, num_features, L), causal."""
        self._check_input(x)
        return self.blocks(x)


@BACKBONES.register("tcn")
def tcn(in_channels: int = 1, num_classes: int = 10, channels: Sequence[int] = (32, 32, 32, 32),
        kernel_size: int = 3, dropout: float = 0.0, dense: bool = False) -> TCN:
    """Temporal convolutional network with dilations 1, 2, 4, ... See :class:`TCN`."""
    return TCN(in_channels=in_channels, num_classes=num_classes, channels=channels, kernel_size=kernel_size,
               dropout=dropout, dense=dense)


# --------------------------------------------------------------------------------------------- Plain CNN

_PLAIN_ACTIVATIONS = {"tanh": torch.tanh, "relu": F.relu, "gelu": F.gelu}


class PlainCNN(Backbone):
    """A plain stack of ``depth`` convolutions, each followed by a fixed nonlinearity: no residuals, no BatchNorm.

    Convolution i (module ``convs.i``) maps ``in_channels`` (i = 0) or ``width`` channels to ``width``, with
    kernel ``kernel_size``, dilation 1 and "same" padding, so every one is searchable and the spatial size is
    kept; the head is a 1x1 convolution (dense) or global average pooling and Linear. It is the student of the
    planted-architecture tasks (``dashkit.tasks.planted``), whose teacher has the same layout, so that the
    teacher's kernels and dilations are a point of the search space.

    Args:
        in_channels: C_in.
        num_classes: outputs per example (dense: per position).
        dims: 1 or 2.
        dense: per-position head, output (B, num_classes, *spatial).
        depth: number of searchable convolutions.
        width: channels of every convolution's output.
        kernel_size: odd kernel of every convolution before any search.
        activation: "tanh", "relu" or "gelu", applied after every convolution (not after the head).
        dropout: drop probability after each activation.

    Shapes:
        input (B, C_in, *spatial); features (B, width, *spatial); output (B, num_classes) or, dense,
        (B, num_classes, *spatial).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, dims: int = 1, dense: bool = False,
                 depth: int = 3, width: int = 16, kernel_size: int = 3, activation: str = "tanh",
                 dropout: float = 0.0):
        depth = check_int("depth", depth, 1)
        width = check_int("width", width, 1)
        kernel_size = check_int("kernel_size", kernel_size, 3, odd=True)  # a searchable 'same' convolution
        if activation not in _PLAIN_ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {tuple(_PLAIN_ACTIVATIONS)}")
        dropout = _check_dropout(dropout)
        super().__init__(in_channels, num_classes, dims, dense, head_pool="avg")
        self.depth, self.width, self.kernel_size, self.activation = depth, width, kernel_size, activation
        Conv = _layers(dims)[0]
        self.convs = nn.ModuleList(
            Conv(in_channels if i == 0 else width, width, kernel_size, padding=(kernel_size - 1) // 2)
            for i in range(depth))
        self.drop = nn.Dropout(dropout)
        self._act = _PLAIN_ACTIVATIONS[activation]
        self.num_features = width
        self.reset_classifier(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, *spatial) -> (B, width, *spatial)."""
        self._check_input(x)
        for conv in self.convs:
            x = self.drop(self._act(conv(x)))
        return x


@BACKBONES.register("plain")
def plain(in_channels: int = 1, num_classes: int = 10, dims: int = 1, dense: bool = False, depth: int = 3,
          width: int = 16, kernel_size: int = 3, activation: str = "tanh", dropout: float = 0.0) -> PlainCNN:
    """A plain conv -> activation stack with "same" padding, 1D or 2D. See :class:`PlainCNN`."""
    return PlainCNN(in_channels=in_channels, num_classes=num_classes, dims=dims, dense=dense, depth=depth,
                    width=width, kernel_size=kernel_size, activation=activation, dropout=dropout)


__all__ += ["PlainCNN", "plain"]
