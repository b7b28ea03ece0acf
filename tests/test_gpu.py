"""The CUDA path: the same code on a GPU, with bf16 autocast for the network and FFTs in float32.

Skipped where CUDA is not available (CI has none); ``bash benchmarks/gpu_check.sh`` runs these on a GPU machine.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import dashkit
from dashkit import ops, pipeline
from dashkit.config import resolve_device
from dashkit.dashconv import DashConv
from dashkit.layers import auto_convs
from dashkit.space import SearchSpace

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda")


@pytest.mark.parametrize("dims,n", [(1, 100), (2, 20)])
@pytest.mark.parametrize("stride", [1, 2])
def test_fft_conv_equals_pytorch_dilated_conv_on_cuda_in_float64(dims, n, stride):
    torch.manual_seed(0)
    x = torch.randn(3, 6, *([n] * dims), dtype=torch.float64, device=CUDA)
    for k, d in [(3, 1), (5, 3), (7, 2)]:
        w = torch.randn(6, 6, *([k] * dims), dtype=torch.float64, device=CUDA)
        conv = F.conv1d if dims == 1 else F.conv2d
        want = conv(x, w, stride=stride, padding=d * (k - 1) // 2, dilation=d)
        got = ops.fft_conv(x, ops.dilate(w, d), stride=stride)
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("backend", ["fft", "direct", "auto"])
def test_dashconv_on_cuda_matches_cpu(backend):
    torch.manual_seed(0)
    space = SearchSpace((3, 5, 7), (1, 2, 4), dims=2)
    cpu = DashConv(8, 8, space, groups=8, backend=backend).double().eval()  # eval: no Gumbel noise
    with torch.no_grad():
        cpu.alpha.normal_()
    gpu = copy.deepcopy(cpu).to(CUDA)
    x = torch.randn(2, 8, 16, 16, dtype=torch.float64)
    got = gpu(x.to(CUDA))
    assert got.device.type == "cuda" and gpu.last_backend in ("fft", "direct", "mixed_results")
    torch.testing.assert_close(got.cpu(), cpu(x), rtol=1e-9, atol=1e-9)


def test_auto_conv_under_bf16_autocast_on_cuda_runs_the_fft_in_float32():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 16, 9, padding=12, dilation=3).to(CUDA)
    x = torch.randn(4, 16, 32, 32, device=CUDA)
    want = conv(x)
    fast = auto_convs(copy.deepcopy(conv), "fft")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = fast(x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3)
    auto = auto_convs(copy.deepcopy(conv), "auto")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        auto(x).float().sum().backward()
    assert auto.last_backend in ("fft", "direct") and auto.weight.grad is not None


def test_a_smoke_run_on_cuda_learns_and_auto_picks_cuda(tmp_path):
    assert resolve_device("auto").type == "cuda"
    res = dashkit.run("mnist1d", preset="smoke", out=tmp_path / "run", device="cuda", figures=False, verbose=False,
                      search_epochs=3, retrain_epochs=4, retrain_max_batches=30)
    assert res.config.device == "cuda"
    # chance is about 90% error on ten balanced classes; a network that learned anything is well below
    assert res.metrics["dash"] < 80 and res.metrics["baseline"] < 80
    net = pipeline.load_model(tmp_path / "run", "dash")  # device="cpu": weights saved on a GPU load anywhere
    assert all(p.device.type == "cpu" for p in net.parameters())
