"""Tests of dashkit.explain: the measurements and figures behind the teaching notebooks.

Numerical identities are checked in float64 to 1e-10; timings only for their shape and sign where the gap is
large; figures for their panels (Agg backend, no display).
"""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

import dashkit  # noqa: E402
from dashkit import SearchSpace, backbones, explain, ops, viz  # noqa: E402
from dashkit.dashconv import DashConv  # noqa: E402

SPACE_1D = SearchSpace((3, 7, 11, 15, 19), (1, 3, 7, 15), dims=1)  # DASH's 1D space
SPACE_2D = SearchSpace((3, 5, 7, 9), (1, 3, 7, 15), dims=2)  # DASH's 2D space
SMALL_1D = SearchSpace((3, 5), (1, 3), dims=1)
SMALL_2D = SearchSpace((3, 5), (1, 2), dims=2)


# ------------------------------------------------------------------------------------------------ helpers

def test_format_count():
    assert explain.format_count(20 ** 9) == "512,000,000,000 (5.1e+11)"
    assert explain.format_count(999) == "999"
    with pytest.raises(ValueError, match=r"^n=-1 is out of range; accepted: an integer >= 0$"):
        explain.format_count(-1)


def test_figures_style_only_themselves():
    before = dict(matplotlib.rcParams)
    with viz.style():
        assert matplotlib.rcParams["axes.grid"] and matplotlib.rcParams["font.size"] == pytest.approx(12 * 0.8)
    with viz.style(font_scale=1.0, grid=False):
        assert not matplotlib.rcParams["axes.grid"] and matplotlib.rcParams["font.size"] == pytest.approx(12)
    explain.plot_field_grid(SMALL_2D)
    assert dict(matplotlib.rcParams) == before  # a context, not a change of the user's global settings


# ------------------------------------------------------------------------------------------- 01 search space

def test_candidate_table_is_k_major_with_receptive_fields():
    rows = explain.candidate_table(SPACE_1D)
    assert len(rows) == 20
    for row in rows:
        assert row["index"] == row["i_k"] * 4 + row["i_d"] == SPACE_1D.index(row["k"], row["d"])
        assert row["field"] == row["d"] * (row["k"] - 1) + 1
    assert rows[10] == {"index": 10, "k": 11, "d": 7, "i_k": 2, "i_d": 2, "field": 71}
    assert max(r["field"] for r in rows) == 271
    with pytest.raises(TypeError, match=r"space must be a dashkit.SearchSpace, got tuple"):
        explain.candidate_table((3, 5))


def test_space_figures():
    fig = explain.plot_field_grid(SPACE_2D)
    assert isinstance(fig, Figure) and len(fig.axes) == 2  # heatmap + colour bar
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "#5\nfield 13" in texts and len(texts) == 16  # (k=5, d=3): index 1*4+1, field 3*4+1
    fig = explain.plot_candidate_taps(SPACE_1D)
    ax = fig.axes[0]
    assert len(ax.collections) == 2 * 20  # one line and one set of dots per candidate
    dots = ax.collections[1::2]  # each candidate draws its line, then its dots
    widest = dots[-1].get_offsets()[:, 0]  # (k=19, d=15): taps at 15 * (j - 9)
    assert sorted(widest.tolist()) == [15 * (j - 9) for j in range(19)]


def test_supernet_report_resnet1d_counts_and_leaves_the_model_alone():
    model = backbones.resnet1d(in_channels=1, num_classes=10)
    before = sum(p.numel() for p in model.parameters())
    rep = explain.supernet_report(model, SPACE_1D)
    assert not any(isinstance(m, DashConv) for m in model.modules())  # a copy was changed, not the model
    assert rep.num_layers == 9 and rep.num_architectures == 20 ** 9
    assert rep.skipped == ["blocks.0.shortcut.0", "blocks.1.shortcut.0"]
    assert rep.plain_params == before
    assert [layer["kernel"] for layer in rep.layers] == [8, 5, 3] * 3
    # layers with C_in == C_out are searched depthwise; widths 16, 32, 32, so only blocks 0 and 1 open with a
    # channel change
    assert [layer["search_groups"] for layer in rep.layers] == [1, 16, 16, 1, 32, 32, 32, 32, 32]
    taps = sum(k for k, _ in SPACE_1D.candidates)  # 4 * (3 + 7 + 11 + 15 + 19) = 220
    for layer in rep.layers:
        assert layer["weights"] == layer["out_channels"] * layer["in_channels"] // layer["search_groups"] * taps
    replaced = sum(layer["in_channels"] * layer["out_channels"] * layer["kernel"] for layer in rep.layers)
    assert rep.arch_params == 9 * 20
    assert rep.supernet_params == before - replaced + sum(l["weights"] for l in rep.layers) + rep.arch_params
    assert "20^9 = 512,000,000,000" in rep.summary()


def test_supernet_report_wrn():
    rep = explain.supernet_report(backbones.wrn(16, 1, in_channels=3, num_classes=10), SPACE_2D)
    assert rep.num_layers == 13 and rep.num_architectures == 16 ** 13
    assert rep.skipped == ["layer2.0.shortcut", "layer3.0.shortcut"]
    with pytest.raises(TypeError, match=r"model must be a torch.nn.Module, got str"):
        explain.supernet_report("wrn", SPACE_2D)


def test_prefer_makes_discretize_pick_the_given_pairs():
    rep = explain.supernet_report(backbones.resnet1d(1, 10), SPACE_1D)
    wanted = {"blocks.0.conv1": (11, 7), "blocks.1.conv2": (19, 15), "blocks.2.conv3": (3, 1)}
    explain.prefer(rep.supernet, wanted)
    _, card = dashkit.discretize(rep.supernet)
    chosen = {layer.name: (layer.k, layer.d) for layer in card.layers}
    assert {name: chosen[name] for name in wanted} == wanted
    p = torch.softmax(torch.tensor(card.layers[0].alpha), 0).max().item()
    assert p == pytest.approx(math.exp(5) / (math.exp(5) + 19))


def test_prefer_errors():
    rep = explain.supernet_report(backbones.resnet1d(1, 10), SPACE_1D)
    with pytest.raises(ValueError, match=r"choices names \['conv9'\], which are not searched layers"):
        explain.prefer(rep.supernet, {"conv9": (3, 1)})
    with pytest.raises(ValueError, match=r"\(k, d\) = \(4, 1\) is not in the space"):
        explain.prefer(rep.supernet, {"blocks.0.conv1": (4, 1)})
    with pytest.raises(ValueError, match=r"^strength=0 is out of range; accepted: a finite number in \(0\.0, inf\)$"):
        explain.prefer(rep.supernet, {"blocks.0.conv1": (3, 1)}, strength=0)
    with pytest.raises(ValueError, match=r"supernet has no DashConv layers"):
        explain.prefer(backbones.resnet1d(1, 10), {"blocks.0.conv1": (3, 1)})


# -------------------------------------------------------------------------------------------- 02 mixed weights

def test_random_candidates_shapes_and_coefficients():
    cand = explain.random_candidates(SPACE_2D, in_channels=4, out_channels=6, groups=2, seed=3)
    assert [tuple(w.shape) for w in cand.weights] == [(6, 2, k, k) for k, _ in SPACE_2D.candidates]
    assert cand.dilations == [d for _, d in SPACE_2D.candidates]
    assert cand.coeffs.shape == (16,) and abs(cand.coeffs.sum().item() - 1) < 1e-12 and (cand.coeffs > 0).all()
    again = explain.random_candidates(SPACE_2D, in_channels=4, out_channels=6, groups=2, seed=3)
    assert torch.equal(cand.coeffs, again.coeffs)  # seeded
    with pytest.raises(ValueError, match=r"groups=3 must divide in_channels \(4\) and out_channels \(6\)"):
        explain.random_candidates(SPACE_2D, 4, 6, groups=3)


def test_aggregated_kernel_figures():
    fig = explain.plot_aggregated_kernel(SMALL_1D)
    assert len(fig.axes) == 5  # four candidates and their sum
    # the bottom panel holds W: its stems are the sum of the four candidate panels
    segs = [ax.collections[0].get_segments() for ax in fig.axes]
    heights = [[s[1][1] for s in seg] for seg in segs]
    total = [sum(col) for col in zip(*heights[:4])]
    assert heights[4] == pytest.approx(total, abs=1e-6)
    fig = explain.plot_aggregated_kernel(SMALL_2D)
    assert len([ax for ax in fig.axes if ax.images]) == 5


def test_mixing_cost_rows():
    rows = explain.mixing_cost(SMALL_1D, channels=2, size=64, batch=2, counts=[1, 4], repeats=1, progress=False)
    assert [r["candidates"] for r in rows] == [1, 4]
    assert [r["S"] for r in rows] == [3, 13]
    assert [r["taps"] for r in rows] == [3, 3 + 3 + 5 + 5]  # sum of k_i over the candidates mixed
    for r in rows:
        assert all(r[k] > 0 for k in ("mixed_results_ms", "aggregate_direct_ms", "aggregate_fft_ms"))
    rows = explain.mixing_cost(SMALL_1D, channels=2, size=64, batch=2, counts=[2], repeats=1,
                               include_direct=False, progress=False)
    assert "aggregate_direct_ms" not in rows[0]
    with pytest.raises(ValueError, match=r"counts must be at most len\(space\) = 4, got \(5,\)"):
        explain.mixing_cost(SMALL_1D, counts=[5], progress=False)
    fig = explain.plot_mixing_cost(rows)
    assert len(fig.axes[0].lines) == 2
    assert fig.axes[0].lines[0].get_xdata().tolist() == [r["S"] for r in rows]  # x is S, not M
    # by receptive field: (3, 1), (5, 1), (3, 3), (5, 3) -> S grows with M
    rows = explain.mixing_cost(SMALL_1D, channels=2, size=64, batch=2, repeats=1, include_fft=False,
                               order="field", progress=False)
    assert [r["S"] for r in rows] == [3, 5, 7, 13] and "aggregate_fft_ms" not in rows[0]
    assert len(explain.plot_mixing_cost(rows).axes[0].lines) == 2
    with pytest.raises(ValueError, match=r"^order must be 'k-major' or 'field', got 'size'$"):
        explain.mixing_cost(SMALL_1D, order="size", progress=False)
    with pytest.raises(ValueError, match=r"include_direct and include_fft are both False"):
        explain.mixing_cost(SMALL_1D, include_direct=False, include_fft=False, progress=False)
    with pytest.raises(ValueError, match=r"rows must be the non-empty output of mixing_cost"):
        explain.plot_mixing_cost([])


# -------------------------------------------------------------------------------------------- 03 dilation

def test_dilation_argument_errors():
    with pytest.raises(ValueError, match=r"^dims=3 is out of range; accepted: an integer in \[1, 2\]$"):
        explain.dilation_cost(dims=3)
    with pytest.raises(TypeError, match=r"^dilations=3 has type int; accepted: a non-empty sequence of integers >= 1$"):
        explain.dilation_cost(dilations=3)


def test_dilation_cost_rows():
    rows = explain.dilation_cost(k=3, dilations=(1, 4), channels=2, repeats=1)
    assert [(r["d"], r["field"], r["kron_intermediate"], r["output"]) for r in rows] == [
        (1, 3, 4 * 9, 4 * 9), (4, 9, 4 * 144, 4 * 81)]
    assert all(r["kron_ms"] >= 0 and r["scatter_ms"] >= 0 for r in rows) and "conv_ms" not in rows[0]
    rows = explain.dilation_cost(k=3, dilations=(1, 4), channels=2, repeats=1, conv_size=12, batch=2)
    assert all(r["conv_ms"] > 0 for r in rows)


def test_plot_dilation():
    fig = explain.plot_dilation(k=3, d=3)
    assert len(fig.axes) == 4
    assert fig.axes[3].images[0].get_array().shape == (7, 7)
    with pytest.raises(ValueError, match=r"^d=0 is out of range; accepted: an integer >= 1$"):
        explain.plot_dilation(d=0)


# -------------------------------------------------------------------------------------------- 04 Fourier

@pytest.mark.parametrize("shape, kernel", [((2, 3, 40), (4, 3, 9)), ((2, 3, 12, 10), (4, 3, 5, 7))])
def test_circular_conv_with_enough_padding_is_linear_convolution(f64, shape, kernel):
    x, w = torch.randn(shape), torch.randn(kernel)
    pads = tuple((k - 1) // 2 for k in kernel[2:])
    ref = (F.conv1d if len(shape) == 3 else F.conv2d)(x, w, padding=pads)
    N = tuple(n + p for n, p in zip(shape[2:], pads))
    assert (ops.circular_conv(x, w, N) - ref).abs().max() < 1e-10
    # without the padding the wrapped taps land on real inputs
    assert (ops.circular_conv(x, w, tuple(shape[2:])) - ref).abs().max() > 0.1


def test_circular_conv_errors():
    x, w = torch.randn(1, 2, 10), torch.randn(3, 2, 5)
    with pytest.raises(ValueError, match=r"N must be >= the input size \(10,\) on every axis, got \(9,\)"):
        ops.circular_conv(x, w, 9)
    with pytest.raises(ValueError, match=r"w must have odd kernel sizes, got \(4,\)"):
        ops.circular_conv(x, torch.randn(3, 2, 4), 20)
    with pytest.raises(ValueError, match=r"w must be a tensor \(C_out, 2, \*K\)"):
        ops.circular_conv(x, torch.randn(3, 5, 5), 20)
    with pytest.raises(ValueError, match=r"N must be a positive int or 1 positive ints, got 'x'"):
        ops.circular_conv(x, w, "x")


def test_wraparound_figure():
    fig = explain.plot_wraparound(length=64, kernel_size=15, pad=0)
    assert len(fig.axes) == 2 and "wrong near both ends" in fig._suptitle.get_text()
    fig = explain.plot_wraparound(length=64, kernel_size=15, pad=7)
    assert "wrong near both ends" not in fig._suptitle.get_text()
    with pytest.raises(ValueError, match=r"^kernel_size=14 is even; accepted: an odd integer >= 1$"):
        explain.plot_wraparound(kernel_size=14)


def test_fft_length_table_is_the_smallest_5_smooth_length():
    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    rows = explain.fft_length_table([97, 1000, 1031, 2053])
    for row in rows:
        n, m = row["n"], row["fast_length"]
        assert m >= n and smooth(m) and not any(smooth(j) for j in range(n, m))
    assert rows[2] == {"n": 1031, "factors": "1031", "fast_length": 1080, "fast_factors": "2 x 2 x 2 x 3 x 3 x 3 x 5"}
    cost = explain.fft_length_cost([1031], batch=2, channels=2, repeats=1)
    assert cost[0]["fast_length"] == 1080 and cost[0]["n_ms"] > 0 and cost[0]["fast_ms"] > 0


def test_crop_saving_on_an_8x8_map():
    out = explain.crop_saving(size=8, kernel_size=121, channels=2, batch=1, repeats=1)
    assert out["kernel_cropped"] == 15 and out["kernel_full"] == 121
    assert out["fft_size_full"] == 72 and out["fft_size_cropped"] == 15  # 5-smooth >= 8 + 60 and 8 + 7
    assert out["crop_error"] < 1e-10 and out["fft_error"] < 1e-10 and out["output_scale"] > 1.0
    assert all(out[k] > 0 for k in ("fft_full_ms", "fft_cropped_ms", "direct_full_ms", "direct_cropped_ms"))


def test_fft_errors_are_float64_rounding():
    errors = explain.fft_errors()
    scale = errors.pop("output_scale")
    assert scale > 1.0
    assert len(errors) == 13 and "1d causal" in errors and "dashconv 2d fft vs mixed results" in errors
    assert max(errors.values()) < 1e-10


def test_fft_crossover_measures_both_methods():
    res = explain.fft_crossover(kernel_sizes=(3, 31), size=64, channels=2, batch=1, repeats=1, progress=False)
    assert [r["kernel_size"] for r in res.rows] == [3, 31]
    assert all(r["direct_ms"] > 0 and r["fft_ms"] > 0 for r in res.rows)
    assert all(r["faster"] == ("fft" if r["fft_ms"] < r["direct_ms"] else "direct") for r in res.rows)
    assert res.setting["dims"] == 1 and res.setting["depthwise"] is False
    res2 = explain.fft_crossover(kernel_sizes=(3, 5), size=8, dims=2, channels=2, batch=1, depthwise=True,
                                 backward=True, repeats=1, progress=False)
    assert len(res2.rows) == 2 and res2.setting["backward"] is True
    with pytest.raises(ValueError, match=r"kernel_sizes must be increasing without repeats, got \(5, 3\)"):
        explain.fft_crossover(kernel_sizes=(5, 3))


@pytest.mark.parametrize("faster, expected", [
    (["direct", "direct", "fft", "fft"], 5),
    (["direct", "fft", "direct", "fft"], 7),  # a win that does not last is not the crossover
    (["direct"] * 4, None),
    (["fft"] * 4, 1),
])
def test_crossover_is_the_first_lasting_fft_win(faster, expected):
    rows = [{"kernel_size": k, "direct_ms": 2.0, "fft_ms": 1.0 if f == "fft" else 3.0}
            for k, f in zip((1, 3, 5, 7), faster)]
    assert explain._lasting_crossover(rows) == expected


def test_plot_crossover_marks_it():
    rows = [{"kernel_size": k, "direct_ms": float(k), "fft_ms": 4.0, "faster": "fft" if k > 4 else "direct"}
            for k in (1, 3, 5, 7)]
    fig = explain.plot_crossover(explain.Crossover(rows, 5, {"dims": 1, "size": 100, "channels": 4, "batch": 2,
                                                             "depthwise": False, "backward": False, "threads": 1}))
    ax = fig.axes[0]
    assert len(ax.lines) == 3  # two methods and the crossover line
    assert "FFT faster from S = 5" in [t.get_text() for t in ax.texts]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "3", "5", "7"]  # a labelled tick per size
    with pytest.raises(TypeError, match=r"result must be a Crossover from fft_crossover\(\), got list"):
        explain.plot_crossover(rows)


def test_auto_choice_takes_the_faster_when_it_times():
    rows = explain.auto_choice(SearchSpace((3, 5), (1, 3), dims=2), sizes=[8, 4], channels=2, batch=1)
    assert [r["size"] for r in rows] == [8, 4]
    assert [r["kernel"] for r in rows] == [13, 7]  # min(S = 13, 2n - 1)
    for r in rows:
        assert r["choice"] in ("fft", "direct")
        if r["decided_by"] == "timing":
            assert r["choice"] == ("fft" if r["fft_ms"] < r["direct_ms"] else "direct")
        else:
            assert r["fft_ms"] is None and r["direct_ms"] is None
