"""Tests of dashkit.layers: AutoConv1d/AutoConv2d and auto_convs, checked in float64 against PyTorch's conv; the
plain-conv builder, the same-padding rule and the searchable mark."""
from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dashkit import conv_choice, ops
from dashkit.layers import (AutoConv1d, AutoConv2d, CausalConv1d, auto_convs, is_same_padding, plain_conv,
                            search_mark, searchable)

# (dims, n, k, d, stride, groups): dead taps cropped or not, stride 2, grouped and depthwise, kernel wider than the map
CASES = [
    (1, 40, 9, 7, 1, 1), (1, 15, 19, 3, 2, 1), (1, 5, 3, 15, 1, 1), (1, 33, 11, 1, 1, 8),
    (2, 8, 9, 3, 1, 1), (2, 9, 7, 2, 2, 4), (2, 12, 5, 1, 1, 1), (2, 7, 3, 1, 2, 8),
]


def reference(dims, k, d, stride, groups, bias=True):
    Conv = nn.Conv1d if dims == 1 else nn.Conv2d
    return Conv(8, 8, k, stride=stride, padding=d * (k - 1) // 2, dilation=d, groups=groups, bias=bias).double()


@pytest.mark.parametrize("backend", ["fft", "direct", "auto"])
@pytest.mark.parametrize("dims,n,k,d,stride,groups", CASES)
def test_auto_conv_equals_pytorch_conv_with_gradients(dims, n, k, d, stride, groups, backend):
    torch.manual_seed(0)
    ref = reference(dims, k, d, stride, groups)
    x = torch.randn(3, 8, *([n] * dims), dtype=torch.float64, requires_grad=True)
    y_ref = ref(x)
    gx_ref, gw_ref, gb_ref = torch.autograd.grad(y_ref.square().sum(), [x, ref.weight, ref.bias])

    model = auto_convs(copy.deepcopy(ref), backend)
    assert type(model) is (AutoConv1d if dims == 1 else AutoConv2d)
    y = model(x)
    gx, gw, gb = torch.autograd.grad(y.square().sum(), [x, model.weight, model.bias])
    assert model.last_backend in ("fft", "direct") and (backend == "auto" or model.last_backend == backend)
    assert y.shape == y_ref.shape
    for got, want in [(y, y_ref), (gx, gx_ref), (gw, gw_ref), (gb, gb_ref)]:
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_dead_taps_are_cropped_and_get_zero_gradient():
    # 9 taps with dilation 3 on 8 positions: offsets beyond +-7 never touch an input, so 5 taps remain.
    conv = auto_convs(reference(2, 9, 3, 1, 1, bias=False), "direct")
    x = torch.randn(2, 8, 8, 8, dtype=torch.float64)
    assert tuple(conv._cropped_weight(x).shape[2:]) == (5, 5)
    assert tuple(conv._cropped_weight(torch.randn(2, 8, 13, 8, dtype=torch.float64)).shape[2:]) == (9, 5)
    conv(x).sum().backward()
    g = conv.weight.grad
    assert g[:, :, 2:7, 2:7].abs().min() > 0  # the kept taps all learn
    assert g[:, :, :2].abs().max() == 0 and g[:, :, 7:].abs().max() == 0 and g[:, :, :, :2].abs().max() == 0


def test_auto_picks_by_measurement_and_caches_per_shape():
    conv = auto_convs(nn.Conv1d(4, 4, 19, padding=9), "auto")
    x = torch.randn(2, 4, 64)
    conv(x)
    keys = [key for key in conv_choice.backend_cache() if key[0] == "conv"]
    assert len(keys) == 1
    choice, times = conv_choice.backend_cache()[keys[0]]
    assert choice == conv.last_backend
    # measured (both timed, the faster wins) or decided by a clear operation-count estimate (nothing timed)
    assert times == {} or (set(times) == {"fft", "direct"} and times[choice] == min(times.values()))
    conv(x)
    assert len([key for key in conv_choice.backend_cache() if key[0] == "conv"]) == 1  # same shape: cached
    conv(torch.randn(2, 4, 100))
    assert len([key for key in conv_choice.backend_cache() if key[0] == "conv"]) == 2


def test_auto_convs_touches_only_same_padded_odd_convs_and_keeps_the_state_dict():
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),                # yes
        nn.Conv2d(8, 8, 5, padding=4, dilation=2),   # yes
        nn.Conv2d(8, 8, 3, padding="same"),          # yes
        nn.Conv2d(8, 8, 4, padding="same"),          # even "same" (asymmetric padding): no
        nn.Conv2d(8, 8, 1),                          # 1x1: no
        nn.Conv2d(8, 8, 4, padding=2),               # even: no
        nn.Conv2d(8, 8, 3, padding=0),               # not "same": no
        nn.Conv2d(8, 8, 3, padding=1, padding_mode="circular"),  # not zero padding: no
        nn.Conv2d(8, 8, 3, padding=1, stride=(1, 2)),  # unequal strides: no
        nn.Conv2d(8, 8, 3, padding=(1, 2), dilation=(1, 2)),  # unequal dilations: no
    )
    causal = nn.Sequential(CausalConv1d(2, 2, 3))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    auto_convs(model)
    auto_convs(causal)
    assert [type(m).__name__ for m in model] == ["AutoConv2d"] * 3 + ["Conv2d"] * 7
    assert type(causal[0]) is CausalConv1d
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], before[k]) for k in before)
    assert isinstance(model[0], nn.Conv2d)  # still a Conv2d for every isinstance check


def test_auto_convs_rejects_an_unknown_backend():
    with pytest.raises(ValueError, match=re.escape("backend = 'gpu': expected one of 'auto', 'fft', 'direct'")):
        auto_convs(nn.Conv1d(2, 2, 3, padding=1), "gpu")


def test_auto_conv_under_bf16_autocast_stays_close_to_float32():
    torch.manual_seed(0)
    conv = nn.Conv1d(8, 8, 15, padding=21, dilation=3)
    x = torch.randn(2, 8, 50)
    want = conv(x)
    auto_convs(conv, "fft")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = conv(x)
    assert got.dtype == torch.float32  # the FFT runs in float32 and returns the input's dtype
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert F.mse_loss(got, want) < 1e-8


def test_changing_the_backend_of_a_used_layer_takes_effect():
    conv = auto_convs(nn.Conv1d(4, 4, 9, padding=4), "fft")
    x = torch.randn(2, 4, 30)
    conv(x)
    assert conv.last_backend == "fft"
    auto_convs(conv, "direct")
    conv(x)
    assert conv.last_backend == "direct"


def test_archcard_and_to_supernet_see_auto_convs_as_convs():
    from dashkit import backbones
    from dashkit.space import SearchSpace
    from dashkit.supernet import dash_layers, discretize, to_supernet

    space = SearchSpace((3, 5), (1, 2), dims=2)
    _, card = discretize(to_supernet(backbones.wrn(depth=10, num_classes=3), space))
    fast = auto_convs(backbones.wrn(depth=10, num_classes=3))
    assert len(dash_layers(to_supernet(auto_convs(backbones.wrn(depth=10, num_classes=3)), space))) == 7
    applied = card.apply(fast)
    chosen = {name: (m.kernel_size[0], m.dilation[0]) for name, m in applied.named_modules()
              if name in {layer.name for layer in card.layers}}
    assert chosen == {layer.name: (layer.k, layer.d) for layer in card.layers}


# ------------------------------------------------------------------------------------------ plain_conv, padding, marks

@pytest.mark.parametrize("dims,causal", [(1, False), (2, False), (1, True)], ids=["1d", "2d", "1d-causal"])
def test_plain_conv_keeps_the_size_and_equals_the_dilated_reference(dims, causal):
    for k, d, stride, groups in [(3, 1, 1, 1), (5, 3, 2, 2), (9, 2, 1, 4)]:
        conv = plain_conv(4, 8, k, d, stride=stride, groups=groups, bias=False, causal=causal, dims=dims,
                          dtype=torch.float64)
        assert type(conv) is (CausalConv1d if causal else nn.Conv1d if dims == 1 else nn.Conv2d)
        assert conv.kernel_size == (k,) * dims and conv.dilation == (d,) * dims and conv.groups == groups
        assert conv.weight.dtype == torch.float64 and conv.bias is None and is_same_padding(conv)
        x = torch.randn((2, 4) + (13,) * dims, dtype=torch.float64)
        ref = ops.direct_conv(x, ops.dilate(conv.weight, d), stride, groups, causal=causal)
        torch.testing.assert_close(conv(x), ref, rtol=0, atol=1e-10)
    assert repr(plain_conv(4, 8, 5, 3, dims=2)) == ("Conv2d(4, 8, kernel_size=(5, 5), stride=(1, 1), padding=(6, 6), "
                                                    "dilation=(3, 3))")


def test_plain_conv_refuses_what_it_cannot_build():
    with pytest.raises(ValueError, match=re.escape("causal=True with dims=2: a causal convolution is 1D; accepted: "
                                                   "dims=1")):
        plain_conv(2, 2, 3, causal=True, dims=2)
    with pytest.raises(ValueError, match=re.escape("dims=3 is not supported; accepted: 1, 2")):
        plain_conv(2, 2, 3, dims=3)
    with pytest.raises(ValueError, match=re.escape("k=4 is even: a centred 'same' kernel has an odd size; accepted: "
                                                   "odd k, or causal=True")):
        plain_conv(2, 2, 4)
    assert plain_conv(2, 2, 4, causal=True).kernel_size == (4,)  # a causal kernel may be even


def test_is_same_padding():
    assert is_same_padding(nn.Conv1d(2, 2, 5, padding=2))
    assert is_same_padding(nn.Conv2d(2, 2, 5, padding=6, dilation=3))
    assert is_same_padding(nn.Conv2d(2, 2, (3, 5), padding=(1, 2)))
    assert is_same_padding(nn.Conv1d(2, 2, 8, padding="same"))  # PyTorch pads an even "same" kernel asymmetrically
    assert is_same_padding(CausalConv1d(2, 2, 4, dilation=2))
    assert is_same_padding(AutoConv2d(2, 2, 3, padding=1))
    assert is_same_padding(nn.Conv1d(2, 2, 1))
    assert not is_same_padding(nn.Conv1d(2, 2, 5))
    assert not is_same_padding(nn.Conv1d(2, 2, 4, padding=2))  # even kernel: one more output
    assert not is_same_padding(nn.Conv1d(2, 2, 3, padding="valid"))
    assert not is_same_padding(nn.Conv1d(2, 2, 3, padding=1, padding_mode="reflect"))
    assert not is_same_padding(nn.Linear(2, 2))


def test_searchable_marks_a_conv_and_refuses_anything_else():
    conv = nn.Conv2d(2, 2, 1)
    assert search_mark(conv) is None
    assert searchable(conv, False) is conv and search_mark(conv) is False
    assert search_mark(searchable(conv)) is True
    assert search_mark(copy.deepcopy(conv)) is True  # the mark travels with the module
    with pytest.raises(TypeError, match=re.escape("conv=Linear is not a convolution; accepted: an nn.Conv1d or "
                                                  "nn.Conv2d")):
        searchable(nn.Linear(2, 2))
    with pytest.raises(TypeError, match=re.escape("flag=0 has type int; accepted: True or False")):
        searchable(conv, 0)
