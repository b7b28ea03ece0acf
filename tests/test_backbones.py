"""Tests of dashkit.backbones: the shared interface over the registry, then each backbone's structure."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from dashkit import backbones
from dashkit.backbones import Backbone
from dashkit.layers import CausalConv1d

# One small configuration per (backbone, dims); the registry loop below fails if a backbone has none.
CASES = [
    ("wrn", dict(depth=10, width=1, in_channels=3, num_classes=5, dims=2), (2, 3, 8, 8)),
    ("wrn", dict(depth=10, width=1, in_channels=2, num_classes=5, dims=1), (2, 2, 16)),
    ("resnet1d", dict(in_channels=2, num_classes=5, width=4), (2, 2, 15)),
    ("tcn", dict(in_channels=2, num_classes=5, channels=(4, 6)), (2, 2, 15)),
    ("plain", dict(in_channels=2, num_classes=5, dims=1, width=4), (2, 2, 15)),
    ("plain", dict(in_channels=3, num_classes=5, dims=2, width=4), (2, 3, 8, 8)),
]
CASE_IDS = [f"{name}-{len(shape) - 2}d" for name, _, shape in CASES]


def build(name, kwargs, dense, **extra):
    return backbones.get(name, **kwargs, dense=dense, **extra)


def convs(model):
    """(name, conv) for every convolution with a kernel larger than 1, in module order."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (nn.Conv1d, nn.Conv2d)) and max(m.kernel_size) > 1]


def test_every_registered_backbone_has_a_case():
    assert backbones.names() == ["plain", "resnet1d", "tcn", "wrn"]
    assert {name for name, _, _ in CASES} == set(backbones.names())


@pytest.mark.parametrize("dense", [False, True], ids=["pooled", "dense"])
@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=CASE_IDS)
def test_interface_shapes_and_gradients(name, kwargs, shape, dense):
    model = build(name, kwargs, dense, dropout=0.1)
    assert isinstance(model, Backbone)
    assert model.dims == len(shape) - 2 and model.dense is dense
    assert model.in_channels == shape[1] and model.num_classes == 5

    x = torch.randn(*shape)
    out = model(x)
    expected = (2, 5, *shape[2:]) if dense else (2, 5)
    assert tuple(out.shape) == expected
    assert torch.isfinite(out).all()

    # A random projection of the output so that no parameter's gradient cancels by symmetry.
    (out * torch.randn_like(out)).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("dense", [False, True], ids=["pooled", "dense"])
@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=CASE_IDS)
def test_forward_is_head_of_features(name, kwargs, shape, dense):
    model = build(name, kwargs, dense).eval()
    x = torch.randn(*shape)
    features = model.forward_features(x)
    assert features.shape[:2] == (2, model.num_features)
    assert features.dim() == x.dim()
    torch.testing.assert_close(model(x), model.forward_head(features), rtol=0, atol=0)


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=CASE_IDS)
def test_dropout_acts_only_in_training(name, kwargs, shape):
    x = torch.randn(*shape)
    model = build(name, kwargs, False, dropout=0.5)
    assert not torch.equal(model(x), model(x))  # two different dropout masks
    model.eval()
    torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)
    plain = build(name, kwargs, False, dropout=0.0)  # BN in training mode is deterministic
    torch.testing.assert_close(plain(x), plain(x), rtol=0, atol=0)


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=CASE_IDS)
def test_reset_classifier(name, kwargs, shape):
    model = build(name, kwargs, False)
    model.reset_classifier(7)
    assert model.num_classes == 7
    assert tuple(model(torch.randn(*shape)).shape) == (2, 7)
    with pytest.raises(ValueError, match=r"num_classes=0 is out of range; accepted: an integer >= 1"):
        model.reset_classifier(0)


@pytest.mark.parametrize("name,kwargs,shape", CASES, ids=CASE_IDS)
def test_wrong_input_and_feature_shapes_are_named(name, kwargs, shape):
    model = build(name, kwargs, False)
    wrong_channels = torch.randn(shape[0], shape[1] + 1, *shape[2:])
    with pytest.raises(ValueError, match=rf"expects input of shape \(B, {shape[1]}, .*got \(2, {shape[1] + 1}"):
        model(wrong_channels)
    with pytest.raises(ValueError, match=r"expects input of shape .*dims="):
        model(torch.randn(*shape, 3))  # one spatial dimension too many
    with pytest.raises(ValueError, match=rf"forward_head expects features of shape \(B, {model.num_features}, "):
        model.forward_head(torch.randn(2, model.num_features + 1, *shape[2:]))


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown backbone 'vgg'; known backbones: plain, resnet1d, tcn, wrn"):
        backbones.get("vgg")


# ----------------------------------------------------------------------------------------------- WRN


def test_wrn16_1_has_13_searchable_convs_and_named_shortcuts():
    model = backbones.wrn(depth=16, width=1)
    found = convs(model)
    assert len(found) == 13
    assert all(m.kernel_size == (3, 3) and m.padding == (1, 1) for _, m in found)
    assert found[0][0] == "stem"
    assert not any("shortcut" in n for n, _ in found)
    ones = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)]
    assert ones == ["layer2.0.shortcut", "layer3.0.shortcut"]
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 6  # one per block


def test_wrn16_4_is_four_times_wider_with_the_same_conv_names():
    small, wide = backbones.wrn(depth=16, width=1), backbones.wrn(depth=16, width=4)
    small_convs, wide_convs = dict(convs(small)), dict(convs(wide))
    assert list(small_convs) == list(wide_convs)
    for name, conv in small_convs.items():
        if name == "stem":
            assert conv.out_channels == wide_convs[name].out_channels == 16
        else:
            assert wide_convs[name].out_channels == 4 * conv.out_channels
    assert (small.num_features, wide.num_features) == (64, 256)
    # Names match but shapes do not: an architecture (k, d per name) transfers, weights do not.
    assert small_convs["layer3.1.conv2"].weight.shape == (64, 64, 3, 3)
    assert wide_convs["layer3.1.conv2"].weight.shape == (256, 256, 3, 3)



def test_wrn_channels_override_the_stage_widths():
    model = backbones.wrn(depth=10, dims=2, dense=True, num_classes=1, channels=(16, 16, 16))
    assert model.channels == (16, 16, 16) and model.num_features == 16
    assert [m.out_channels for _, m in convs(model)] == [16] * 7
    # no channel change, so no 1x1 shortcut: the conv names stay those of WRN-10-1 without shortcuts
    assert not any("shortcut" in n for n, _ in model.named_modules())
    assert tuple(model(torch.randn(2, 3, 9, 9)).shape) == (2, 1, 9, 9)
    wide = backbones.wrn(depth=10, channels=[8, 24, 40])
    assert [m.out_channels for _, m in convs(wide)][1:] == [8, 8, 24, 24, 40, 40]
    for bad in [(16, 16), "abc", 16]:
        with pytest.raises(ValueError, match=re.escape(f"channels={bad!r} is not a sequence of the right length; "
                                                       f"accepted: 3 integers >= 1 (one per stage)")):
            backbones.wrn(depth=10, channels=bad)
    with pytest.raises(ValueError, match=re.escape("channels[1]=0 is out of range; accepted: an integer >= 1")):
        backbones.wrn(depth=10, channels=(16, 0, 16))
    for bad, message in [((16, 16.0, 16), "channels[1]=16.0 has type float"),
                         ((True, 16, 16), "channels[0]=True has type bool")]:
        with pytest.raises(TypeError, match=re.escape(message + "; accepted: an integer >= 1")):
            backbones.wrn(depth=10, channels=bad)

@pytest.mark.parametrize("depth,blocks", [(10, 1), (16, 2), (22, 3)])
def test_wrn_depth_sets_blocks_per_stage(depth, blocks):
    model = backbones.wrn(depth=depth)
    assert [len(model.layer1), len(model.layer2), len(model.layer3)] == [blocks] * 3
    assert len(convs(model)) == 1 + 6 * blocks


@pytest.mark.parametrize("dims,shape", [(2, (2, 3, 12, 9)), (1, (2, 3, 20))])
def test_wrn_strides_pooled_and_dense(dims, shape):
    pooled = backbones.wrn(depth=10, dims=dims)
    dense = backbones.wrn(depth=10, dims=dims, dense=True)
    x = torch.randn(*shape)
    # Strides 1, 2, 2 with padding 1: each stride-2 stage maps n to ceil(n / 2).
    reduced = tuple((n + 3) // 4 for n in shape[2:])
    assert tuple(pooled.forward_features(x).shape) == (2, 64, *reduced)
    assert tuple(dense.forward_features(x).shape) == (2, 64, *shape[2:])
    assert pooled.layer2[0].conv1.stride == (2,) * dims
    assert all(m.stride == (1,) * dims for m in dense.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d)))
    Conv, BN = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
    assert all(isinstance(m, Conv) for _, m in convs(pooled))
    assert isinstance(pooled.bn, BN) and isinstance(dense.head.fc, Conv) and dense.head.fc.kernel_size == (1,) * dims
    assert isinstance(pooled.head.fc, nn.Linear)


def test_wrn_dense_head_is_the_same_map_at_every_position():
    model = backbones.wrn(depth=10, dense=True, num_classes=4).eval()
    features = torch.randn(2, model.num_features, 5, 6)
    out = model.forward_head(features)
    # A 1x1 conv head is the Linear map W f + b applied to each pixel's feature vector.
    w = model.head.fc.weight.reshape(4, model.num_features)
    b = model.head.fc.bias
    per_pixel = torch.einsum("oc,bchw->bohw", w, features) + b[:, None, None]
    torch.testing.assert_close(out, per_pixel, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ ResNet1D


def test_resnet1d_structure():
    model = backbones.resnet1d(in_channels=1, num_classes=10)
    found = convs(model)
    assert len(found) == 9
    assert [m.kernel_size[0] for _, m in found] == [8, 5, 3] * 3
    assert all(m.padding == "same" for _, m in found)
    assert [m.out_channels for _, m in found] == [16] * 3 + [32] * 6
    shortcuts = [model.blocks[i].shortcut for i in range(3)]
    assert isinstance(shortcuts[0][0], nn.Conv1d) and isinstance(shortcuts[0][1], nn.BatchNorm1d)
    assert (shortcuts[0][0].in_channels, shortcuts[0][0].out_channels, shortcuts[0][0].kernel_size) == (1, 16, (1,))
    assert isinstance(shortcuts[1][0], nn.Conv1d) and shortcuts[1][0].out_channels == 32
    assert isinstance(shortcuts[2], nn.BatchNorm1d)  # equal channels: BN only
    ones = [n for n, m in model.named_modules() if isinstance(m, nn.Conv1d) and m.kernel_size == (1,)]
    assert ones == ["blocks.0.shortcut.0", "blocks.1.shortcut.0"]


@pytest.mark.parametrize("length", [1, 7, 16])
def test_resnet1d_keeps_the_length(length):
    model = backbones.resnet1d(in_channels=3, num_classes=2, width=4, dense=True)
    assert tuple(model(torch.randn(2, 3, length)).shape) == (2, 2, length)


@pytest.mark.parametrize("num_classes,width", [(2, 4), (10, 16), (19, 16), (20, 64), (100, 64), (10**9, 64)])
def test_resnet1d_default_width_rule(num_classes, width):
    assert backbones.ResNet1D.default_width(num_classes) == width
    if num_classes <= 100:
        model = backbones.resnet1d(num_classes=num_classes)
        assert model.width == width and model.num_features == 2 * width
        assert model.blocks[0].conv1.out_channels == width


# ----------------------------------------------------------------------------------------------- TCN


def test_tcn_structure():
    model = backbones.tcn(in_channels=1, channels=(8, 8, 16), kernel_size=5)
    found = convs(model)
    assert len(found) == 6 and all(isinstance(m, CausalConv1d) for _, m in found)
    assert [m.dilation[0] for _, m in found] == [1, 1, 2, 2, 4, 4]
    assert all(m.kernel_size == (5,) for _, m in found)
    ones = [n for n, m in model.named_modules() if isinstance(m, nn.Conv1d) and m.kernel_size == (1,)]
    assert ones == ["blocks.0.shortcut", "blocks.2.shortcut"]
    assert model.num_features == 16
    assert model.receptive_field == 1 + 2 * 4 * 7


def test_tcn_is_causal_with_the_stated_receptive_field(f64):
    model = backbones.tcn(in_channels=2, num_classes=3, channels=(4, 4, 4), kernel_size=3, dense=True).eval()
    rf = model.receptive_field  # 1 + 2 * 2 * 7 = 29
    length, t = 64, 40
    x = torch.randn(2, 2, length)
    base = model(x)

    later = x.clone()
    later[..., t] += torch.randn(2, 2)
    out = model(later)
    torch.testing.assert_close(out[..., :t], base[..., :t], rtol=0, atol=0)
    assert (out[..., t] - base[..., t]).abs().max() > 1e-6  # the test can see a change when there is one

    # Output step t sees input step t - rf + 1, and nothing earlier.
    edge = x.clone()
    edge[..., t - rf + 1] += 10.0
    assert (model(edge)[..., t] - base[..., t]).abs().max() > 1e-6
    far = x.clone()
    far[..., : t - rf + 1] += torch.randn(2, 2, t - rf + 1)
    torch.testing.assert_close(model(far)[..., t:], base[..., t:], rtol=0, atol=0)


def test_tcn_pooled_head_reads_the_last_step():
    model = backbones.tcn(in_channels=1, num_classes=3, channels=(4, 4)).eval()
    x = torch.randn(2, 1, 12)
    features = model.forward_features(x)
    torch.testing.assert_close(model(x), model.head.fc(features[..., -1]), rtol=0, atol=0)


# --------------------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize("name,kwargs,error,message", [
    ("wrn", dict(depth=15), ValueError, r"depth=15 is not 6n \+ 4 with n >= 1; accepted: 10, 16, 22, 28, 40, \.\.\."),
    ("wrn", dict(depth=4), ValueError, r"depth=4 is not 6n \+ 4 with n >= 1; accepted: 10, 16"),
    ("wrn", dict(depth=16.0), TypeError, r"depth=16.0 has type float; accepted: an integer >= 1"),
    ("wrn", dict(width=0), ValueError, r"width=0 is out of range; accepted: an integer >= 1"),
    ("wrn", dict(in_channels="3"), TypeError, r"in_channels='3' has type str; accepted: an integer >= 1"),
    ("wrn", dict(num_classes=True), TypeError, r"num_classes=True has type bool; accepted: an integer >= 1"),
    ("wrn", dict(dims=3), ValueError, r"dims=3 is out of range; accepted: an integer in \[1, 2\]"),
    ("wrn", dict(dense="yes"), TypeError, r"dense='yes' has type str; accepted: True or False"),
    ("wrn", dict(dropout=1.0), ValueError, r"dropout=1.0 is out of range; accepted: a finite number in \[0.0, 1.0\)"),
    ("wrn", dict(dropout=-0.1), ValueError, r"dropout=-0.1 is out of range; accepted: a finite number in \[0.0, 1.0\)"),
    ("resnet1d", dict(width=0), ValueError, r"width=0 is out of range; accepted: an integer >= 1"),
    ("resnet1d", dict(num_classes=-3), ValueError, r"num_classes=-3 is out of range; accepted: an integer >= 1"),
    ("resnet1d", dict(dropout="0.1"), TypeError, r"dropout='0.1' has type str; accepted: a finite number in "
                                                 r"\[0.0, 1.0\)"),
    ("resnet1d", dict(dims=2), TypeError, r"unexpected keyword argument 'dims'"),
    ("tcn", dict(channels=()), ValueError, r"channels=\(\) is not a sequence of the right length; accepted: "
                                           r"a non-empty sequence of integers >= 1"),
    ("tcn", dict(channels=(4, 0)), ValueError, r"channels\[1\]=0 is out of range; accepted: an integer >= 1"),
    ("tcn", dict(channels=32), ValueError, r"channels=32 is not a sequence of the right length; accepted: a non-empty"),
    ("tcn", dict(kernel_size=0), ValueError, r"kernel_size=0 is out of range; accepted: an integer >= 1"),
    ("tcn", dict(dense=1), TypeError, r"dense=1 has type int; accepted: True or False"),
])
def test_bad_arguments_name_the_parameter(name, kwargs, error, message):
    with pytest.raises(error, match=message):
        backbones.get(name, **kwargs)


def test_numpy_integers_are_accepted():
    np = pytest.importorskip("numpy")
    model = backbones.tcn(in_channels=np.int64(2), channels=[np.int64(3)], kernel_size=np.int32(2))
    assert model.in_channels == 2 and type(model.in_channels) is int and model.channels == (3,)


def test_user_backbone_on_the_base_class():
    class Tiny(Backbone):
        def __init__(self, head_pool="avg"):
            super().__init__(in_channels=2, num_classes=3, dims=1, dense=False, head_pool=head_pool)
            self.body = nn.Conv1d(2, 4, 3, padding=1)
            self.num_features = 4
            self.reset_classifier(3)

        def forward_features(self, x):
            self._check_input(x)
            return self.body(x)

    x = torch.randn(2, 2, 9)
    avg, last = Tiny("avg"), Tiny("last")
    last.load_state_dict(avg.state_dict())
    features = avg.forward_features(x)
    torch.testing.assert_close(avg(x), avg.head.fc(features.mean(-1)))
    torch.testing.assert_close(last(x), avg.head.fc(features[..., -1]))
    with pytest.raises(ValueError, match=re.escape("head_pool='max' is not supported; accepted: 'avg', 'last'")):
        Tiny("max")
