"""Tests of dashkit.supernet: to_supernet on the backbones, discretize, the ArchCard, arch-gradient helpers."""
from __future__ import annotations

import dataclasses
import json
import re
import math
import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

from dashkit import ArchCard, DashConv, SearchSpace, backbones, discretize, to_supernet
from dashkit.backbones import resnet1d, tcn, wrn
from dashkit.layers import CausalConv1d, search_mark, searchable
from dashkit.supernet import (ARCHCARD_VERSION, MEMORISING_PASSES, LayerChoice, SearchMemorisingWarning,
                              SearchUndecidedWarning, arch_parameters, dash_layers, postprocess_arch_grads,
                              warn_if_memorising, warn_if_undecided, weight_parameters)

SPACE_1D = SearchSpace((3, 7, 11, 15, 19), (1, 3, 7, 15), dims=1)  # DASH's default 1D space
SPACE_2D = SearchSpace((3, 5, 7, 9), (1, 3, 7, 15), dims=2)  # DASH's default 2D space
F64 = dict(rtol=0, atol=1e-10)

RESNET1D_CONVS = [f"blocks.{b}.conv{c}" for b in range(3) for c in (1, 2, 3)]
WRN16_CONVS = ["stem"] + [f"layer{s}.{b}.conv{c}" for s in (1, 2, 3) for b in (0, 1) for c in (1, 2)]


def small_resnet1d():
    return resnet1d(in_channels=2, num_classes=3, width=4)


def small_tcn():
    return tcn(in_channels=2, num_classes=3, channels=(4, 4))


def convs_by_name(model):
    return {n: m for n, m in model.named_modules() if type(m) in (nn.Conv1d, nn.Conv2d, CausalConv1d)}


def make_one_hot_and_random(model, gen: torch.Generator):
    """Give every DashConv O(1) weights and a one-hot alpha (1e4 at a random index); randomise BatchNorm stats.

    Returns {layer name: chosen index}.
    """
    picks = {}
    with torch.no_grad():
        for name, m in dash_layers(model):
            for w, (k, _) in zip(m.weights, m.space.candidates):
                w.normal_(std=1 / math.sqrt(w.shape[1] * k ** m.space.dims), generator=gen)
            i = int(torch.randint(len(m.space), (1,), generator=gen))
            m.alpha.zero_()
            m.alpha[i] = 1e4
            if m.bias is not None:
                m.bias.normal_(generator=gen)
            picks[name] = i
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_(std=0.1, generator=gen)
                m.running_var.uniform_(0.5, 2.0, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.normal_(std=0.1, generator=gen)
    return picks


# ----------------------------------------------------------------------------------------------------- to_supernet

def test_resnet1d_has_nine_searched_convs_and_keeps_the_shortcut():
    model = small_resnet1d()
    net = to_supernet(model, SPACE_1D, backend="fft")
    assert net is model  # in place
    layers = dash_layers(net)
    assert [n for n, _ in layers] == RESNET1D_CONVS
    assert net.dash_replaced == tuple(RESNET1D_CONVS) and net.dash_space == SPACE_1D
    assert isinstance(net.blocks[0].shortcut[0], nn.Conv1d) and not isinstance(net.blocks[0].shortcut[0], DashConv)
    # equal-channel convs are searched depthwise, the others full
    full = {n for n, m in layers if m.groups == 1}
    assert full == {"blocks.0.conv1", "blocks.1.conv1"}
    for name, m in layers:
        assert m.space == SPACE_1D and m.backend == "fft" and not m.causal and m.retrain_groups == 1
        if name not in full:
            assert m.depthwise and m.groups == m.in_channels == m.out_channels
    assert net(torch.randn(2, 2, 20)).shape == (2, 3)


def test_wrn16_1_has_thirteen_searched_convs():
    net = to_supernet(wrn(16, 1, in_channels=3, num_classes=4), SPACE_2D)
    layers = dict(dash_layers(net))
    assert list(layers) == WRN16_CONVS
    assert {n for n, m in layers.items() if m.groups == 1} == {"stem", "layer2.0.conv1", "layer3.0.conv1"}
    assert layers["layer2.0.conv1"].stride == 2 and layers["layer3.0.conv1"].stride == 2
    assert layers["stem"].bias is None  # only the original conv's bias would be kept, and WRN has none
    shortcuts = [n for n, m in net.named_modules() if "shortcut" in n and isinstance(m, nn.Conv2d)]
    assert shortcuts == ["layer2.0.shortcut", "layer3.0.shortcut"]
    assert net(torch.randn(1, 3, 8, 8)).shape == (1, 4)


def test_depthwise_false_keeps_every_layer_full():
    net = to_supernet(wrn(16, 1, num_classes=4), SPACE_2D, depthwise=False)
    assert len(dash_layers(net)) == 13
    assert all(m.groups == 1 and not m.depthwise for _, m in dash_layers(net))


def test_tcn_gets_causal_dashconvs():
    net = to_supernet(small_tcn(), SPACE_1D, backend="direct")
    layers = dash_layers(net)
    assert [n for n, _ in layers] == ["blocks.0.conv1", "blocks.0.conv2", "blocks.1.conv1", "blocks.1.conv2"]
    assert all(m.causal for _, m in layers)
    assert [m.groups for _, m in layers] == [1, 4, 4, 4]
    # causality survives the search: changing the future does not change the past
    net.eval()
    x = torch.randn(1, 2, 30)
    y = net.forward_features(x)
    x2 = x.clone()
    x2[..., 20:] = torch.randn(1, 2, 10)
    y2 = net.forward_features(x2)
    torch.testing.assert_close(y2[..., :20], y[..., :20], rtol=0, atol=1e-6)
    assert not torch.allclose(y2[..., 20:], y[..., 20:])

    assert all(m.retrain_causal for _, m in layers)
    centred = to_supernet(small_tcn(), SPACE_1D, causal_search=False)
    assert not any(m.causal for _, m in dash_layers(centred))
    assert all(m.retrain_causal for _, m in dash_layers(centred))  # searched centred, retrained causal
    assert not any(m.retrain_causal for _, m in dash_layers(to_supernet(small_resnet1d(), SPACE_1D)))


def test_to_supernet_passes_the_options_on():
    net = to_supernet(small_resnet1d(), SPACE_1D, backend="mixed_results", relaxation="softmax", tau=0.5,
                      grad_scale=7.0, rf_penalty=0.0, init_std=0.5)
    for _, m in dash_layers(net):
        assert (m.backend, m.relaxation, m.tau, m.grad_scale, m.rf_penalty) == ("mixed_results", "softmax", 0.5,
                                                                                7.0, 0.0)
    w = torch.cat([w.flatten() for _, m in dash_layers(net) for w in m.weights])
    assert abs(w.std().item() - 0.5) < 0.05


def test_to_supernet_follows_the_model_dtype():
    net = to_supernet(small_resnet1d().double(), SPACE_1D)
    assert all(p.dtype == torch.float64 for p in net.parameters())


def test_custom_filter():
    net = to_supernet(small_resnet1d(), SPACE_1D, filter=lambda name, m: name.startswith("blocks.1.conv"))
    assert [n for n, _ in dash_layers(net)] == ["blocks.1.conv1", "blocks.1.conv2", "blocks.1.conv3"]
    assert isinstance(net.blocks[0].conv1, nn.Conv1d) and net.blocks[0].conv1.kernel_size == (8,)
    # a filter may pick convs the default leaves alone, e.g. a shortcut (its 1x1 kernel keeps the size)
    net = to_supernet(small_resnet1d(), SPACE_1D, filter=lambda name, m: "shortcut" in name)
    assert [n for n, _ in dash_layers(net)] == ["blocks.0.shortcut.0", "blocks.1.shortcut.0"]


# The layers to_supernet searched in each built-in backbone (and the backbones of the tasks' defaults) before
# shortcuts were marked out by `searchable` instead of being skipped for the words in their names: the contract
# must select exactly these.
_RESNET1D_SEARCHED = RESNET1D_CONVS
_TCN_SEARCHED = [f"blocks.{b}.conv{c}" for b in range(4) for c in (1, 2)]
_WRN10_SEARCHED = ["stem"] + [f"layer{s}.0.conv{c}" for s in (1, 2, 3) for c in (1, 2)]


@pytest.mark.parametrize("name,kwargs,expected", [
    ("resnet1d", {}, _RESNET1D_SEARCHED),
    ("resnet1d", {"dense": True}, _RESNET1D_SEARCHED),
    ("resnet1d", {"in_channels": 12, "num_classes": 24}, _RESNET1D_SEARCHED),
    ("tcn", {}, _TCN_SEARCHED),
    ("tcn", {"dense": True}, _TCN_SEARCHED),
    ("wrn", {}, WRN16_CONVS),
    ("wrn", {"dense": True}, WRN16_CONVS),
    ("wrn", {"dims": 1}, WRN16_CONVS),
    ("wrn", {"dims": 1, "dense": True}, WRN16_CONVS),
    ("wrn", {"depth": 16, "width": 4}, WRN16_CONVS),
    ("wrn", {"depth": 10, "dims": 2, "dense": True, "channels": (16, 16, 16)}, _WRN10_SEARCHED),  # darcy
], ids=lambda v: v if isinstance(v, str) else None)
def test_builtin_backbones_search_the_same_layers_as_before(name, kwargs, expected):
    model = backbones.get(name, **kwargs)
    space = SearchSpace((3, 5), (1, 2), dims=model.dims)
    net = to_supernet(model, space)
    assert list(net.dash_replaced) == expected
    # what is left plain (1x1 shortcuts, a dense head) is marked out of the search, not skipped for its name
    left = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d))]
    assert all(search_mark(m) is False for _, m in left), [n for n, m in left if search_mark(m) is not False]


def _three_convs():
    return nn.Sequential(OrderedDict(shortcut=nn.Conv1d(2, 2, 3, padding=1), downsample=nn.Conv1d(2, 2, 3, padding=1),
                                     body=nn.Conv1d(2, 2, 3, padding=1), proj=nn.Conv1d(2, 2, 1)))


def test_names_do_not_decide_marks_and_lists_do():
    # words in names mean nothing: a kernel-3 conv named "shortcut" is searched, the 1x1 one is not
    assert to_supernet(_three_convs(), SPACE_1D).dash_replaced == ("shortcut", "downsample", "body")
    model = _three_convs()
    assert searchable(model.body, False) is model.body and search_mark(model.body) is False
    searchable(model.proj)  # a 1x1 conv marked in is searched
    assert to_supernet(model, SPACE_1D).dash_replaced == ("shortcut", "downsample", "proj")
    net = to_supernet(_three_convs(), SPACE_1D, exclude=["shortcut"], include=["proj"])
    assert net.dash_replaced == ("downsample", "body", "proj")
    # include and exclude win over the marks and the filter
    model = _three_convs()
    searchable(model.body, False)
    assert to_supernet(model, SPACE_1D, include=["body"], exclude=("downsample",)).dash_replaced == ("shortcut", "body")
    net = to_supernet(_three_convs(), SPACE_1D, filter=lambda name, m: False, include=["body"])
    assert net.dash_replaced == ("body",)
    # the mark is a plain attribute: not in the state dict
    plain, marked = _three_convs(), _three_convs()
    searchable(marked.body, False)
    assert list(plain.state_dict()) == list(marked.state_dict())


def test_include_and_exclude_errors_name_the_bad_names():
    with pytest.raises(ValueError, match=re.escape("include=['blocks.9.conv1', 'nope'] names no 1D convolution of "
                                                   "ResNet1D; accepted: the names of its 1D convolutions: "
                                                   "['blocks.0.conv1'")):
        to_supernet(small_resnet1d(), SPACE_1D, include=["nope", "blocks.9.conv1"])
    with pytest.raises(ValueError, match=re.escape("exclude=['blocks.0.bn1'] names no 1D convolution")):
        to_supernet(small_resnet1d(), SPACE_1D, exclude=["blocks.0.bn1"])  # a module, but not a conv
    with pytest.raises(ValueError, match=re.escape("include and exclude both name ['body']; accepted: each name in "
                                                   "at most one")):
        to_supernet(_three_convs(), SPACE_1D, include=["body", "proj"], exclude=["body"])
    with pytest.raises(TypeError, match=re.escape("include='body' is not a list of names; accepted: a list of "
                                                  "convolution names")):
        to_supernet(_three_convs(), SPACE_1D, include="body")
    # an explicit pick that cannot keep the input size is refused, naming who picked it
    valid = nn.Sequential(nn.Conv1d(2, 2, 3, padding=1), nn.Conv1d(2, 2, 3))
    with pytest.raises(ValueError, match=r"conv '1' was selected by include but does not use zero 'same' padding"):
        to_supernet(valid, SPACE_1D, include=["1"])
    searchable(valid[1])
    with pytest.raises(ValueError, match=r"conv '1' was selected by its searchable mark but does not use zero"):
        to_supernet(valid, SPACE_1D)
    assert not any(isinstance(m, DashConv) for m in valid.modules())


def test_subclasses_of_conv_are_searched():
    class MyConv(nn.Conv2d):
        pass

    model = nn.Sequential(MyConv(2, 2, 3, padding=1), nn.ReLU(), nn.Conv2d(2, 2, 3, padding=1))
    assert to_supernet(model, SPACE_2D).dash_replaced == ("0", "2")


def test_arch_and_weight_parameters_partition_the_model():
    net = to_supernet(small_resnet1d(), SPACE_1D)
    arch, weights = arch_parameters(net), weight_parameters(net)
    assert len(arch) == 9 and all(p.shape == (20,) for p in arch)
    ids_a, ids_w = {id(p) for p in arch}, {id(p) for p in weights}
    assert not ids_a & ids_w
    assert ids_a | ids_w == {id(p) for p in net.parameters()}
    assert len(arch) + len(weights) == len(list(net.parameters()))


def test_postprocess_arch_grads_acts_on_every_layer():
    net = to_supernet(small_resnet1d(), SPACE_1D, grad_scale=10.0, rf_penalty=1e-4)
    rf = torch.tensor(SPACE_1D.receptive_fields, dtype=torch.float32)
    gs = [torch.randn(20) for _ in arch_parameters(net)]
    for p, g in zip(arch_parameters(net), gs):
        p.grad = g.clone()
    postprocess_arch_grads(net)
    for p, g in zip(arch_parameters(net), gs):
        torch.testing.assert_close(p.grad, g / (10.0 * (g.norm() + 1e-8)) + 1e-4 * rf, rtol=1e-6, atol=1e-7)


def test_converting_twice_raises():
    net = to_supernet(small_resnet1d(), SPACE_1D)
    with pytest.raises(ValueError, match=r"model already contains DashConv layers: it is a supernet already"):
        to_supernet(net, SPACE_1D)


def test_no_eligible_conv_raises():
    with pytest.raises(ValueError, match=r"found no convolution to search for a 2D space in Sequential; its convs: "
                                         r"none"):
        to_supernet(nn.Sequential(nn.Linear(3, 3)), SPACE_2D)
    with pytest.raises(ValueError, match=r"found no convolution to search for a 2D space in ResNet1D; its convs: "
                                         r"\['blocks.0.conv1'"):
        to_supernet(small_resnet1d(), SPACE_2D)  # a 1D model and a 2D space
    # convs that do not keep the size are left alone by the default filter ...
    valid = nn.Sequential(nn.Conv1d(2, 2, 3), nn.Conv1d(2, 2, 3, padding=1, padding_mode="circular"))
    with pytest.raises(ValueError, match=r"found no convolution to search for a 1D space in Sequential; its convs: "
                                         r"\['0', '1'\]"):
        to_supernet(valid, SPACE_1D)
    # ... and refused when a filter picks them
    with pytest.raises(ValueError, match=r"conv '0' was selected by the filter but does not use zero 'same' "
                                         r"padding \(padding=\(0,\)"):
        to_supernet(valid, SPACE_1D, filter=lambda name, m: True)


def test_unequal_strides_raise_before_anything_is_replaced():
    model = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 3, stride=(1, 2), padding=1))
    with pytest.raises(ValueError, match=r"conv '1' has unequal strides \(1, 2\); DashConv needs one stride"):
        to_supernet(model, SPACE_2D)
    # the error leaves the model as it was, so that it can be fixed and converted again
    assert not any(isinstance(m, DashConv) for m in model.modules())


def test_bad_arguments_to_to_supernet():
    with pytest.raises(TypeError, match=r"model=list is not a module; accepted: a torch.nn.Module"):
        to_supernet([nn.Conv1d(1, 1, 3)], SPACE_1D)
    with pytest.raises(TypeError, match=r"space=\{'kernel_sizes': .* has type dict; accepted: a dashkit.SearchSpace"):
        to_supernet(small_resnet1d(), SPACE_1D.to_dict())
    with pytest.raises(ValueError, match=r"backend='gpu' is not supported; accepted: 'auto', 'fft', 'direct', "
                                         r"'mixed_results'"):
        to_supernet(small_resnet1d(), SPACE_1D, backend="gpu")
    with pytest.raises(TypeError, match=r"causal_search=1 has type int; accepted: True or False"):
        to_supernet(small_tcn(), SPACE_1D, causal_search=1)
    with pytest.raises(TypeError, match=r"depthwise='yes' has type str; accepted: True or False"):
        to_supernet(small_tcn(), SPACE_1D, depthwise="yes")


# ----------------------------------------------------------------------------------------------------- discretize

@pytest.mark.parametrize("backend", ["fft", "direct"])
def test_discretized_resnet1d_computes_what_the_supernet_computes(backend):
    net = to_supernet(small_resnet1d().double(), SPACE_1D, depthwise=False, relaxation="softmax", backend=backend)
    picks = make_one_hot_and_random(net, torch.Generator().manual_seed(1))
    net.eval()
    x = torch.randn(3, 2, 25, dtype=torch.float64)
    ref = net(x)
    before = {k: v.clone() for k, v in net.state_dict().items()}

    plain, card = discretize(net)
    assert not any(isinstance(m, DashConv) for m in plain.modules())
    convs = convs_by_name(plain)
    for layer in card.layers:
        k, d = SPACE_1D.pair(picks[layer.name])
        assert (layer.k, layer.d) == (k, d)
        conv = convs[layer.name]
        assert type(conv) is nn.Conv1d and conv.kernel_size == (k,) and conv.dilation == (d,)
        assert conv.padding == (d * (k - 1) // 2,)
    plain.eval()
    out = plain(x)
    assert ref.abs().max() > 0.1  # a real signal, not a vanishing one
    torch.testing.assert_close(out, ref, **F64)

    # the supernet is unchanged
    assert len(dash_layers(net)) == 9
    after = net.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)
    torch.testing.assert_close(net(x), ref, rtol=0, atol=0)
    assert not hasattr(plain, "dash_replaced") and hasattr(net, "dash_replaced")


def test_discretized_wrn16_1_computes_what_the_supernet_computes():
    net = to_supernet(wrn(16, 1, in_channels=3, num_classes=4).double(), SPACE_2D, depthwise=False,
                      relaxation="softmax", backend="fft")
    picks = make_one_hot_and_random(net, torch.Generator().manual_seed(2))
    net.eval()
    x = torch.randn(2, 3, 9, 9, dtype=torch.float64)
    ref = net(x)
    plain, card = discretize(net)
    plain.eval()
    assert [layer.name for layer in card.layers] == WRN16_CONVS
    assert [(layer.k, layer.d) for layer in card.layers] == [SPACE_2D.pair(picks[n]) for n in WRN16_CONVS]
    assert not any(isinstance(m, DashConv) for m in plain.modules())
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(plain(x), ref, **F64)
    torch.testing.assert_close(plain.forward_features(x), net.forward_features(x), **F64)


def test_discretized_causal_tcn_computes_what_the_supernet_computes():
    net = to_supernet(small_tcn().double(), SPACE_1D, depthwise=False, relaxation="softmax", backend="fft")
    make_one_hot_and_random(net, torch.Generator().manual_seed(3))
    net.eval()
    x = torch.randn(2, 2, 40, dtype=torch.float64)
    ref = net.forward_features(x)
    plain, card = discretize(net)
    assert all(type(m) is CausalConv1d for n, m in convs_by_name(plain).items() if "shortcut" not in n)
    assert all(layer.causal for layer in card.layers)
    assert ref.abs().max() > 0.1
    torch.testing.assert_close(plain.eval().forward_features(x), ref, **F64)


def test_keep_search_groups_keeps_depthwise_weights():
    net = to_supernet(small_resnet1d().double(), SPACE_1D, relaxation="softmax", backend="fft")  # depthwise search
    make_one_hot_and_random(net, torch.Generator().manual_seed(4))
    net.eval()
    x = torch.randn(2, 2, 30, dtype=torch.float64)
    ref = net(x)
    same, card = discretize(net, keep_search_groups=True)
    assert [layer.groups for layer in card.layers] == [m.groups for _, m in dash_layers(net)]
    torch.testing.assert_close(same.eval()(x), ref, **F64)

    full, card = discretize(net)  # DASH retrains depthwise-searched layers as full convolutions
    assert all(layer.groups == 1 for layer in card.layers)
    assert all(m.groups == 1 for m in convs_by_name(full).values())
    assert full.eval()(x).shape == ref.shape


def test_tcn_searched_centred_is_discretized_causal():
    net = to_supernet(small_tcn(), SPACE_1D, causal_search=False)
    plain, card = discretize(net)
    layers = dict(dash_layers(net))
    for layer in card.layers:
        assert layer.causal and not layers[layer.name].causal
        conv = plain.get_submodule(layer.name)
        assert type(conv) is CausalConv1d and conv.kernel_size == (layer.k,) and conv.dilation == (layer.d,)


def test_discretize_needs_a_supernet():
    with pytest.raises(ValueError, match=r"discretize\(\) needs a supernet"):
        discretize(small_resnet1d())


# ----------------------------------------------------------------------------------------------------- ArchCard

def searched_wrn_card(seed: int = 5):
    net = to_supernet(wrn(16, 1, in_channels=3, num_classes=4), SPACE_2D)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, m in dash_layers(net):
            m.alpha.copy_(torch.randn(len(SPACE_2D), generator=gen))
    return net, discretize(net)[1]


def test_archcard_records_the_argmax_of_alpha():
    net, card = searched_wrn_card()
    assert card.space == SPACE_2D and card.backbone == "WideResNet"
    assert len(card.layers) == 13
    for (name, m), layer in zip(dash_layers(net), card.layers):
        assert layer.name == name
        assert (layer.k, layer.d) == SPACE_2D.pair(int(m.alpha.argmax()))
        assert layer.alpha == pytest.approx(m.alpha.tolist())
        assert layer.receptive_field == layer.d * (layer.k - 1) + 1
        assert (layer.in_channels, layer.out_channels, layer.stride) == (m.in_channels, m.out_channels, m.stride)
    decided, header, *rows = card.summary().splitlines()
    assert len(rows) == 13
    # alpha set by hand, no search step: no evidence for any choice
    assert decided == "0 of 13 layers decided (z >= 3)"
    assert f"1/M = {1 / len(SPACE_2D):.3f}" in header  # the p(choice) of no preference, for reading the column
    assert header.split()[:7] == ["layer", "k", "d", "field", "p(choice)", "z", "decided"]
    for row, layer in zip(rows, card.layers):
        p = torch.softmax(torch.tensor(layer.alpha, dtype=torch.float64), 0).max().item()
        assert row.split() == [layer.name, str(layer.k), str(layer.d), str(layer.receptive_field), f"{p:.3f}",
                               "0.0", "no"]


def test_archcard_save_load_round_trip(tmp_path):
    _, card = searched_wrn_card()
    path = card.save(tmp_path / "sub" / "arch.json")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["arch.json"]  # no temp file left
    raw = json.loads(path.read_text())
    assert raw["format"] == "dashkit.archcard" and raw["version"] == ARCHCARD_VERSION
    assert raw["space"] == SPACE_2D.to_dict() and len(raw["layers"]) == 13
    back = ArchCard.load(path)
    assert back == card
    assert back.to_dict() == card.to_dict()  # alpha, channels, meta too


def test_archcard_apply_to_a_fresh_backbone():
    _, card = searched_wrn_card()
    fresh = card.apply(wrn(16, 1, in_channels=3, num_classes=4))
    convs = convs_by_name(fresh)
    for layer in card.layers:
        conv = convs[layer.name]
        assert conv.kernel_size == (layer.k, layer.k) and conv.dilation == (layer.d, layer.d)
        assert conv.padding == (layer.d * (layer.k - 1) // 2,) * 2
        assert conv.groups == 1
    assert [n for n in convs if "shortcut" in n] == ["layer2.0.shortcut", "layer3.0.shortcut"]
    assert fresh(torch.randn(2, 3, 16, 16)).shape == (2, 4)
    assert discretize(to_supernet(fresh, SPACE_2D))[1].layers[0].name == "stem"  # the result can be searched again


def test_archcard_apply_to_a_wider_wrn():
    _, card = searched_wrn_card()
    wide = card.apply(wrn(16, 4, in_channels=3, num_classes=4))
    convs = convs_by_name(wide)
    for layer in card.layers:
        conv = convs[layer.name]
        assert (conv.kernel_size[0], conv.dilation[0]) == (layer.k, layer.d)
    assert convs["layer3.1.conv2"].in_channels == 256 and convs["layer1.0.conv1"].out_channels == 64
    assert wide(torch.randn(1, 3, 8, 8)).shape == (1, 4)


def test_archcard_apply_to_a_tcn_keeps_it_causal():
    net = to_supernet(small_tcn(), SPACE_1D)
    _, card = discretize(net)
    fresh = card.apply(small_tcn())
    for layer in card.layers:
        conv = fresh.get_submodule(layer.name)
        assert type(conv) is CausalConv1d and conv.dilation == (layer.d,)


def test_archcard_apply_to_another_backbone_raises():
    _, card = searched_wrn_card()
    with pytest.raises(ValueError, match=r"this ArchCard \(backbone 'WideResNet'\) does not fit ResNet1D: no conv "
                                         r"named \['stem', 'layer1.0.conv1'"):
        card.apply(small_resnet1d())
    with pytest.raises(ValueError, match=r"layer 'stem' is a 1D conv, the ArchCard is 2D"):
        card.apply(wrn(16, 1, dims=1))
    with pytest.raises(ValueError, match=r"apply\(\) needs a plain backbone, not a supernet"):
        card.apply(to_supernet(wrn(16, 1), SPACE_2D))


def test_archcard_rejects_foreign_or_broken_files(tmp_path):
    _, card = searched_wrn_card()
    good = card.to_dict()
    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "dashkit.archcard", "version": 1, "space": ')
    with pytest.raises(ValueError, match=r"ArchCard file .*broken.json' is not valid JSON"):
        ArchCard.load(broken)
    foreign = tmp_path / "foreign.json"
    foreign.write_text(json.dumps({"name": "resnet", "layers": []}))
    with pytest.raises(ValueError, match=r"not a dashkit ArchCard: the JSON must have \"format\": "
                                         r"\"dashkit.archcard\""):
        ArchCard.load(foreign)
    with pytest.raises(ValueError, match=r"not a dashkit ArchCard"):
        ArchCard.from_dict([good])
    with pytest.raises(FileNotFoundError, match=r"no ArchCard at .*missing.json"):
        ArchCard.load(tmp_path / "missing.json")

    newer = dict(good, version=ARCHCARD_VERSION + 1)
    with pytest.raises(ValueError, match=rf"ArchCard version {ARCHCARD_VERSION + 1} is not supported \(this dashkit "
                                         rf"reads version {ARCHCARD_VERSION}\)"):
        ArchCard.from_dict(newer)
    with pytest.raises(ValueError, match=r"ArchCard version None is not supported"):
        ArchCard.from_dict({k: v for k, v in good.items() if k != "version"})
    with pytest.raises(ValueError, match=r"ArchCard is missing or has malformed fields: 'layers'"):
        ArchCard.from_dict({k: v for k, v in good.items() if k != "layers"})
    extra = json.loads(json.dumps(good))
    extra["layers"][0]["colour"] = "red"
    with pytest.raises(ValueError, match=r"ArchCard is missing or has malformed fields: .*colour"):
        ArchCard.from_dict(extra)
    outside = json.loads(json.dumps(good))
    outside["layers"][0]["k"] = 11
    with pytest.raises(ValueError, match=r"\(k, d\) = \(11, .*\) is not in the space"):
        ArchCard.from_dict(outside)


# ------------------------------------------------------------------------------------------- the decision record
class MSETask:
    """What `search_step` needs of a task: its loss."""

    def loss(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.mse_loss(y_hat, y)


class CETask:
    def loss(self, y_hat: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(y_hat, y)


def pushed_resnet1d(decided_layers: int, steps: int = 40, seed: int = 0):
    """A resnet1d supernet whose first ``decided_layers`` layers got alpha gradients that push consistently
    towards candidate 0 and the others random ones, through `postprocess_arch_grads` and SGD steps."""
    torch.manual_seed(seed)
    net = to_supernet(small_resnet1d(), SPACE_1D)
    gen = torch.Generator().manual_seed(seed + 1)
    M = len(SPACE_1D)
    push = torch.zeros(M)
    push[0] = -1.0
    for _ in range(steps):
        for i, (_, m) in enumerate(dash_layers(net)):
            noise = torch.randn(M, generator=gen)
            m.alpha.grad = push + 0.5 * noise if i < decided_layers else noise
        postprocess_arch_grads(net)
        with torch.no_grad():
            for p in arch_parameters(net):
                p.sub_(0.05 * p.grad)
    return net


def test_decision_buffers_are_neither_arch_nor_weight_parameters():
    net = to_supernet(small_resnet1d(), SPACE_1D)
    record = {id(b) for n, b in net.named_buffers() if n.rsplit(".", 1)[-1].startswith("decision_")}
    assert len(record) == 3 * 9
    assert not record & {id(p) for p in arch_parameters(net) + weight_parameters(net)}
    assert len(arch_parameters(net)) == 9 and all(p.shape == (len(SPACE_1D),) for p in arch_parameters(net))


def test_discretize_records_each_layers_decision_and_the_card_keeps_it(tmp_path):
    net = pushed_resnet1d(decided_layers=3)
    records = {name: m.decision() for name, m in dash_layers(net)}
    _, card = discretize(net)
    assert card.meta["decision_z"] == 3.0
    for i, layer in enumerate(card.layers):
        rec = records[layer.name]
        assert (layer.z, layer.decided, layer.steps) == (rec["z"], rec["decided"], 40)
        assert layer.runner_up == list(rec["runner_up"]) and (layer.k, layer.d) == rec["chosen"]
        assert layer.decided is (i < 3)  # the pushed layers decided (z well above 3), the random ones did not
        assert layer.z > 4 if i < 3 else layer.z < 3
    assert card.decided_count() == (3, 9) and card.decided_fraction() == pytest.approx(3 / 9)
    back = ArchCard.load(card.save(tmp_path / "arch.json"))
    assert back.to_dict() == card.to_dict()
    assert [(l.z, l.decided, l.runner_up, l.steps) for l in back.layers] == \
        [(l.z, l.decided, l.runner_up, l.steps) for l in card.layers]
    decided, header, *rows = card.summary().splitlines()
    assert decided == "3 of 9 layers decided (z >= 3)" and len(rows) == 9
    for row, layer in zip(rows, card.layers):
        assert row.split()[-2:] == [f"{layer.z:.1f}", "yes" if layer.decided else "no"]


def test_a_card_from_before_the_record_loads_and_shows_dashes(tmp_path):
    _, card = discretize(pushed_resnet1d(decided_layers=9))
    raw = card.to_dict()
    for layer in raw["layers"]:
        for key in ("z", "decided", "runner_up", "steps"):
            del layer[key]
    del raw["meta"]["decision_z"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(raw))
    old = ArchCard.load(path)
    assert old == card and all(l.z is None and l.decided is None and l.runner_up is None for l in old.layers)
    assert old.decided_fraction() is None and old.decision_z == 3.0
    decided, header, *rows = old.summary().splitlines()
    assert decided == "– of 9 layers decided (z >= 3; this card has no decision record)"
    assert all(row.split()[-2:] == ["–", "–"] for row in rows)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_undecided(old) is None  # no record, no warning


@pytest.mark.parametrize("undecided, warns", [(0, False), (4, False), (5, True), (9, True)])
def test_warn_if_undecided_warns_when_most_layers_did_not_decide(undecided, warns):
    _, card = discretize(pushed_resnet1d(decided_layers=9 - undecided))
    assert card.decided_count() == (9 - undecided, 9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fraction = warn_if_undecided(card)
    assert fraction == pytest.approx((9 - undecided) / 9)
    found = [w for w in caught if issubclass(w.category, SearchUndecidedWarning)]
    assert len(found) == int(warns) and len(caught) == len(found)
    if warns:
        text = str(found[0].message)
        assert text.startswith(f"{undecided} of 9 searched layers did not decide after 40 alpha steps")
        assert "search_epochs" in text and "search_arch_lr" in text and "larger preset" in text
        assert "search_relaxation=softmax" in text and "search_batch_size" in text
        assert found[0].filename == __file__  # stacklevel=2 names the caller's line
    assert issubclass(SearchUndecidedWarning, UserWarning)


def test_warn_if_undecided_checks_its_arguments():
    with pytest.raises(TypeError, match=r"card=\{\} has type dict; accepted: a dashkit.ArchCard"):
        warn_if_undecided({})
    _, card = discretize(pushed_resnet1d(decided_layers=9))
    with pytest.raises(ValueError, match=r"stacklevel=0 is not valid; accepted: an int >= 1"):
        warn_if_undecided(card, stacklevel=0)
    with pytest.raises(ValueError, match=r"decision_z=inf is out of range"):
        discretize(pushed_resnet1d(decided_layers=9), decision_z=float("inf"))
    # a one-candidate layer has nothing to decide: decided, with no z
    one = LayerChoice(name="a", k=3, d=1, alpha=[0.0], in_channels=1, out_channels=1, z=None, decided=True)
    assert dataclasses.replace(card, layers=[one]).decided_fraction() == 1.0


@pytest.mark.parametrize("meta, warns", [
    ({"passes": 1000.0, "scheme": "single_level", "train_examples": 180}, True),
    ({"passes": MEMORISING_PASSES, "scheme": "single_level"}, True),
    ({"passes": MEMORISING_PASSES - 0.01, "scheme": "single_level", "train_examples": 180}, False),
    ({"passes": 36.0, "scheme": "single_level", "train_examples": 3600}, False),
    ({"passes": 1000.0, "scheme": "bilevel", "train_examples": 90}, False),  # alpha on held-out batches
    ({}, False),  # a card written before dashkit recorded the passes
])
def test_warn_if_memorising_warns_on_a_single_level_search_of_many_passes(meta, warns):
    _, card = discretize(pushed_resnet1d(decided_layers=9))
    card.meta.update(meta)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert warn_if_memorising(card) is warns
    assert [w.category for w in caught] == [SearchMemorisingWarning] * warns
    if warns:
        text = str(caught[0].message)
        examples = meta.get("train_examples")
        split = f"its training split ({examples} examples)" if examples else "its training split"
        assert text.startswith(f"The search went through {split} {meta['passes']:g} times")
        assert "dashkit.pipeline.shuffled_control(run_dir)" in text and "search_scheme='bilevel'" in text
        assert "search_arch_holdout=0.5" in text and "which='best'" in text and "search_rf_penalty=1e-5" in text
        assert "search_max_passes=100" in text
        assert caught[0].filename == __file__  # stacklevel=2 names the caller's line
    with pytest.raises(TypeError, match=r"card=\[\] has type list; accepted: a dashkit.ArchCard"):
        warn_if_memorising([])
    with pytest.raises(ValueError, match=r"stacklevel=0 is not valid"):
        warn_if_memorising(card, stacklevel=0)


@pytest.mark.filterwarnings("ignore::dashkit.supernet.SearchUndecidedWarning")
@pytest.mark.filterwarnings("ignore::dashkit.tasks.base.SmallSplitWarning")
@pytest.mark.parametrize("steps, warns", [(int(MEMORISING_PASSES), True), (20, False)])
def test_the_search_records_its_passes_and_warns_when_it_can_memorise(tmp_path, steps, warns):
    import numpy as np

    import dashkit
    from dashkit import pipeline
    from dashkit.config import make_config

    rng = np.random.default_rng(0)  # 24 series: 20 to train on, one batch of 20 a pass
    task = dashkit.tasks.from_arrays(rng.standard_normal((24, 1, 32)).astype("float32"), np.arange(24) % 2,
                                     x_test=rng.standard_normal((8, 1, 32)).astype("float32"), y_test=np.arange(8) % 2,
                                     val_fraction=4 / 24)
    cfg = make_config("smoke", task.defaults, seed=0, device="cpu", search_steps=steps, search_batch_size=64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        card = pipeline.search(task, cfg, pipeline.open_run_dir(tmp_path / "run", task, cfg, preset="smoke"))
    assert card.meta["train_examples"] == len(task.train) == 20
    assert card.meta["passes"] == steps  # one batch of 20 a pass
    found = [w for w in caught if issubclass(w.category, SearchMemorisingWarning)]
    assert len(found) == int(warns)
    if warns:
        assert str(found[0].message).startswith(f"The search went through its training split (20 examples) "
                                                f"{steps:g} times")


def test_a_search_with_one_right_candidate_decides_it():
    # y = x(t - 4) + x(t + 4): of (3, 1), (3, 2), (5, 1), (5, 2) only (5, 2) has taps at +-4. Checked while
    # writing over seeds 0-3: z = 9.4-10.2 after 300 steps (the threshold is 3)
    from dashkit.stages import search_step

    space = SearchSpace((3, 5), (1, 2), dims=1)
    torch.manual_seed(0)
    net = to_supernet(nn.Sequential(nn.Conv1d(1, 1, 3, padding=1)), space, backend="direct")
    w_opt = torch.optim.SGD(weight_parameters(net), lr=0.1, momentum=0.9)
    a_opt = torch.optim.SGD(arch_parameters(net), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        x = torch.randn(16, 1, 32, generator=gen)
        search_step(net, MSETask(), x, torch.roll(x, 4, 2) + torch.roll(x, -4, 2), w_opt, a_opt)
    ((_, m),) = dash_layers(net)
    rec = m.decision()
    assert rec["chosen"] == (5, 2) and rec["steps"] == 300 and rec["decided"] and rec["z"] > 6
    _, card = discretize(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_undecided(card) == 1.0


def test_a_search_on_noise_labels_decides_nothing_and_warns():
    # labels independent of the inputs: no candidate can help. Checked while writing over seeds 0-3: every
    # layer's |z| < 1.1
    from dashkit.stages import search_step

    torch.manual_seed(0)
    net = to_supernet(resnet1d(in_channels=1, num_classes=3, width=4), SearchSpace((3, 5), (1, 2), dims=1),
                      backend="direct")
    w_opt = torch.optim.SGD(weight_parameters(net), lr=0.1, momentum=0.9)
    a_opt = torch.optim.SGD(arch_parameters(net), lr=0.05, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        search_step(net, CETask(), torch.randn(16, 1, 32, generator=gen), torch.randint(0, 3, (16,), generator=gen),
                    w_opt, a_opt)
    _, card = discretize(net)
    assert all(layer.steps == 300 and not layer.decided for layer in card.layers)
    assert max(layer.z for layer in card.layers) < 2
    with pytest.warns(SearchUndecidedWarning, match=r"^9 of 9 searched layers did not decide after 300 alpha steps"):
        assert warn_if_undecided(card) == 0.0


def test_figures_mark_the_undecided_layers():
    from matplotlib.patches import Rectangle

    from dashkit import viz

    _, card = discretize(pushed_resnet1d(decided_layers=3))
    (ax, _cbar) = viz.alpha_heatmap(card).axes
    frames = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(frames) == 9  # one frame per chosen candidate, dashed where the layer did not decide
    assert [f.get_linestyle() for f in frames] == ["-"] * 3 + ["--"] * 6
    labels = [t.get_text() for t in ax.get_yticklabels()]
    for label, layer in zip(labels, card.layers):
        assert label == f"{layer.name}  (z {layer.z:.1f}{'' if layer.decided else ' undecided'})"
    assert "dashed: undecided, z < 3" in ax.get_title()

    fig = viz.choices(card)
    assert fig.get_suptitle() == "the searched architecture: 3 of 9 layers decided (z >= 3)"
    for ax in fig.axes:
        assert [bool(b.get_hatch()) for b in ax.patches] == [False] * 3 + [True] * 6
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == \
        ["undecided (z < 3): about what noise picks"]

    old = ArchCard.from_dict({**card.to_dict(), "layers": [
        {k: v for k, v in layer.items() if k not in ("z", "decided", "runner_up", "steps")}
        for layer in card.to_dict()["layers"]]})
    ax = viz.alpha_heatmap(old).axes[0]
    assert all(p.get_linestyle() == "-" for p in ax.patches)
    assert all(t.get_text().endswith("(z –)") for t in ax.get_yticklabels())
    fig = viz.choices(old)
    assert fig.axes[0].get_legend() is None and not any(b.get_hatch() for b in fig.axes[0].patches)
    assert fig.get_suptitle() == "the searched architecture"


def test_a_search_resumed_from_its_checkpoint_continues_the_record(tmp_path):
    # what the search stage does: save_checkpoint after an epoch, load_checkpoint into a fresh supernet
    from dashkit.rundir import RunDir

    rd = RunDir.create(tmp_path / "run", {"task": "t"})
    saved = pushed_resnet1d(decided_layers=2, steps=30)
    rd.save_checkpoint("search", 1, saved, {})
    fresh = to_supernet(small_resnet1d(), SPACE_1D)
    rd.load_checkpoint("search", fresh, {}, restore_rng=False)
    for (_, a), (_, b) in zip(dash_layers(saved), dash_layers(fresh)):
        assert torch.equal(a.decision_sum, b.decision_sum) and torch.equal(a.decision_sq, b.decision_sq)
        assert a.decision() == b.decision() and b.decision()["steps"] == 30
