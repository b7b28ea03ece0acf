"""Tests of the Darcy-flow generator, its finite-difference solver and the `darcy` task."""
import numpy as np
import pytest
import torch

import dashkit.tasks as tasks
from dashkit.paths import cache_dir
from dashkit.tasks import offline_darcy as od
from dashkit.tasks.offline_darcy import (PointwiseGaussian, gaussian_random_field, generate_darcy,
                                         mean_field_rel_l2, rel_l2_loss, solve_darcy)

SMALL = dict(resolution=16, n_train=12, n_val=4, n_test=4)


pytestmark = pytest.mark.usefixtures("private_data_dir")  # a fresh, empty cache (conftest)


@pytest.fixture(scope="module")
def small():
    return tasks.get("darcy", **SMALL)


def _grid(s):
    g = np.linspace(0.0, 1.0, s)
    return np.meshgrid(g, g, indexing="ij")


def _tensors(ds):
    return ds.tensors


# ---------------------------------------------------------------------------------------------------------
# the solver


def test_constant_coefficient_matches_the_series_solution():
    # -Lap u = 1 on the unit square: u(1/2, 1/2) = sum over odd m, n of 16 / (pi^4 m n (m^2 + n^2)) (+-1 signs).
    m = np.arange(1, 2001, 2)
    mm, nn = np.meshgrid(m, m, indexing="ij")
    sign = (-1.0) ** ((mm - 1) // 2 + (nn - 1) // 2)
    centre = np.sum(16.0 * sign / (np.pi ** 4 * mm * nn * (mm ** 2 + nn ** 2)))
    assert centre == pytest.approx(0.0736713, abs=1e-6)
    errors = []
    for s in (17, 33, 65):
        u = solve_darcy(np.ones((s, s)))
        errors.append(abs(u[s // 2, s // 2] - centre))
    assert errors[-1] < 2e-5
    assert 3.5 < errors[0] / errors[1] < 4.5 and 3.5 < errors[1] / errors[2] < 4.5  # second order


def test_manufactured_solution_converges_at_second_order():
    # u = sin(pi x) sin(pi y) with a = 1 + x^2 + y gives f = -div(a grad u) in closed form.
    errors = []
    for s in (9, 17, 33, 65):
        x, y = _grid(s)
        a = 1.0 + x ** 2 + y
        u = np.sin(np.pi * x) * np.sin(np.pi * y)
        f = (2 * np.pi ** 2 * a * u - 2 * x * np.pi * np.cos(np.pi * x) * np.sin(np.pi * y)
             - np.pi * np.sin(np.pi * x) * np.cos(np.pi * y))
        errors.append(np.abs(solve_darcy(a, f) - u).max())
    ratios = [errors[i] / errors[i + 1] for i in range(3)]
    assert all(3.7 < r < 4.3 for r in ratios), ratios
    assert errors[-1] < 5e-4


@pytest.fixture(scope="module")
def piecewise():
    field = gaussian_random_field(24, rng=np.random.default_rng(7))
    return np.where(field >= 0, 12.0, 3.0)


def test_solver_respects_the_square_symmetries(piecewise):
    a = piecewise
    u = solve_darcy(a)
    np.testing.assert_allclose(solve_darcy(a.T), u.T, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(solve_darcy(a[::-1]), u[::-1], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(solve_darcy(a[:, ::-1]), u[:, ::-1], rtol=1e-10, atol=1e-14)
    assert not np.allclose(u, u.T, rtol=1e-3)  # the coefficient itself is not symmetric, so the check bites


def test_solution_is_positive_inside_and_zero_on_the_boundary(piecewise):
    u = solve_darcy(piecewise)
    assert (u[1:-1, 1:-1] > 0).all()
    assert not u[0].any() and not u[-1].any() and not u[:, 0].any() and not u[:, -1].any()


def test_solution_scales_inversely_with_the_coefficient_and_is_bounded(piecewise):
    u = solve_darcy(piecewise)
    np.testing.assert_allclose(solve_darcy(4.0 * piecewise), u / 4.0, rtol=1e-10)
    np.testing.assert_allclose(solve_darcy(piecewise, f=2.5), 2.5 * u, rtol=1e-10)
    # With f = 1, sum(u) = 1^T A(a)^-1 1 falls as a grows (A is monotone in a), so it lies between the
    # constant-coefficient solutions at the two values.
    lo, hi = solve_darcy(np.full_like(piecewise, 3.0)).sum(), solve_darcy(np.full_like(piecewise, 12.0)).sum()
    assert hi < u.sum() < lo


@pytest.mark.parametrize("a, f, match", [
    (np.ones((4, 5)), 1.0, r"a must be a square \(s, s\) array with s >= 3, got shape \(4, 5\)"),
    (np.ones((2, 2)), 1.0, r"got shape \(2, 2\)"),
    (-np.ones((5, 5)), 1.0, r"a must be finite and positive everywhere"),
    (np.full((5, 5), np.nan), 1.0, r"a must be finite and positive everywhere"),
    (np.ones((5, 5)), np.ones((4, 4)), r"f must be a number or an array of shape \(5, 5\), got shape \(4, 4\)"),
])
def test_solver_bad_input(a, f, match):
    with pytest.raises(ValueError, match=match):
        solve_darcy(a, f)


# ---------------------------------------------------------------------------------------------------------
# the random field and the generator


def test_random_field():
    f1 = gaussian_random_field(32, rng=np.random.default_rng(0))
    f2 = gaussian_random_field(32, rng=np.random.default_rng(0))
    f3 = gaussian_random_field(32, rng=np.random.default_rng(1))
    assert f1.shape == (32, 32)
    np.testing.assert_array_equal(f1, f2)
    assert not np.allclose(f1, f3)
    assert abs(f1.mean()) < 1e-12  # the constant term is zeroed
    # Smooth: neighbouring values are far more alike than values across the square.
    assert np.abs(np.diff(f1, axis=0)).mean() < 0.3 * np.abs(f1 - f1[::-1, ::-1]).mean()
    # About half of the square is high, averaged over many fields.
    share = np.mean([(gaussian_random_field(32, rng=np.random.default_rng(i)) >= 0).mean() for i in range(40)])
    assert 0.4 < share < 0.6


def test_generator_prefix_and_values():
    coeff, sol = generate_darcy(5, 12, low=4.0, high=12.0, seed=3)
    coeff2, sol2 = generate_darcy(3, 12, low=4.0, high=12.0, seed=3)
    assert coeff.shape == sol.shape == (5, 12, 12) and coeff.dtype == sol.dtype == np.float32
    assert set(np.unique(coeff)) == {4.0, 12.0}
    np.testing.assert_array_equal(coeff[:3], coeff2)  # sample i depends on (seed, i) only
    np.testing.assert_array_equal(sol[:3], sol2)
    np.testing.assert_allclose(sol[1], solve_darcy(coeff[1].astype(np.float64)), rtol=1e-6)


def test_pointwise_gaussian_roundtrip():
    data = torch.randn(50, 1, 6, 6, dtype=torch.float64) * torch.arange(1, 37, dtype=torch.float64).view(1, 1, 6, 6)
    data[:, :, 0] = 2.0  # a constant row, like the zero boundary of u
    norm = PointwiseGaussian(data)
    enc = norm.encode(data)
    assert torch.allclose(enc.mean(0), torch.zeros(1, 6, 6, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(enc[:, :, 1:].std(0), torch.ones(1, 5, 6, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(norm.decode(enc), data, atol=1e-10)
    half = norm.decode(enc.to(torch.bfloat16))
    assert half.dtype == torch.float32
    with pytest.raises(ValueError, match=r"data must have shape \(N, ...\) with N >= 2, got shape \(1, 3\)"):
        PointwiseGaussian(torch.zeros(1, 3))


def test_rel_l2_loss():
    y = torch.randn(4, 1, 5, 5)
    assert rel_l2_loss(y, y).item() == 0.0
    assert rel_l2_loss(2 * y, y).item() == pytest.approx(1.0, rel=1e-6)
    y_hat = torch.zeros_like(y, requires_grad=True)
    rel_l2_loss(y_hat, y).backward()
    assert torch.isfinite(y_hat.grad).all() and y_hat.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------------------------
# the task


def test_darcy_shapes_dtypes_and_sizes(small):
    t = small
    assert (t.kind, t.in_shape, t.num_outputs, t.metric_name) == ("dense", (3, 16, 16), 1, "rel_l2")
    assert (len(t.train), len(t.val), len(t.test)) == (12, 4, 4)
    for split in (t.train, t.val, t.test):
        x, y = _tensors(split)
        assert x.dtype == y.dtype == torch.float32
        assert x.shape[1:] == (3, 16, 16) and y.shape[1:] == (1, 16, 16)
        assert torch.isfinite(x).all() and torch.isfinite(y).all()
    x, _ = _tensors(t.train)
    g = torch.linspace(0, 1, 16)
    assert torch.equal(x[:, 1], g.view(1, 16, 1).expand(12, 16, 16))  # x varies along H
    assert torch.equal(x[:, 2], g.view(1, 1, 16).expand(12, 16, 16))  # y varies along W
    d = t.defaults
    assert d.backbone == "wrn" and d.backbone_kwargs["dense"] and d.backbone_kwargs["dims"] == 2
    assert d.kernel_sizes == (3, 5, 7, 9) and d.dilations == (1,)  # at 16x16 only d = 1 spans fit
    assert tasks.TASKS.constructor("darcy")  # registered


def test_darcy_normalisation_and_decode(small):
    x, y = _tensors(small.train)
    # Fit on train: each grid point of the coefficient and the target has mean 0 there.
    assert x[:, 0].mean(0).abs().max() < 1e-5 and y.mean(0).abs().max() < 1e-5
    u = small.decode(y)
    assert (u[:, 0, 1:-1, 1:-1] > 0).all() and u[:, 0, 0].abs().max() < 1e-6  # pressures again
    coeff, sol = generate_darcy(20, 16, seed=0)
    np.testing.assert_allclose(u[:, 0].numpy(), sol[:12], rtol=1e-4, atol=1e-7)
    _, y_test = _tensors(small.test)
    np.testing.assert_allclose(small.decode(y_test)[:, 0].numpy(), sol[16:], rtol=1e-4, atol=1e-7)
    # The coefficient channel is standardised per grid point: high permeability above that point's mean,
    # low below (or exactly 0 where all training fields agree).
    high = torch.from_numpy(coeff[:12] == 12.0)
    assert (x[:, 0][high] >= 0).all() and (x[:, 0][~high] <= 0).all() and (x[:, 0] != 0).float().mean() > 0.5
    assert small.metric(y_test, y_test) == 0.0
    assert small.loss(y_test, y_test).item() == 0.0
    assert small.loss(torch.zeros_like(y_test), y_test).item() > 0.05


def test_darcy_splits_are_disjoint(small):
    tr, va, te = ({r.tobytes() for r in _tensors(s)[0][:, 0].flatten(1).numpy()}
                  for s in (small.train, small.val, small.test))
    assert len(tr) == 12 and len(va) == 4 and len(te) == 4
    assert not (tr & va) and not (tr & te) and not (va & te)


def test_darcy_seeds(small):
    same = tasks.get("darcy", **SMALL)
    other = tasks.get("darcy", **SMALL, seed=1)
    assert torch.equal(_tensors(same.train)[1], _tensors(small.train)[1])
    assert torch.equal(_tensors(same.test)[0], _tensors(small.test)[0])
    assert not torch.equal(_tensors(other.train)[0], _tensors(small.train)[0])


def test_darcy_second_call_reads_the_cache(small, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(od, "generate_darcy", boom)
    again = tasks.get("darcy", **SMALL)
    assert torch.equal(_tensors(again.val)[1], _tensors(small.val)[1])
    with pytest.raises(AssertionError, match="generated again"):
        tasks.get("darcy", **SMALL, seed=2)  # new parameters do generate


def test_darcy_truncated_cache_is_regenerated():
    params = dict(resolution=12, n_train=3, n_val=1, n_test=1, seed=9)
    before = set(cache_dir("darcy").glob("*.npz"))
    first = tasks.get("darcy", **params)
    (path,) = set(cache_dir("darcy").glob("*.npz")) - before
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.warns(RuntimeWarning, match="unreadable"):
        second = tasks.get("darcy", **params)
    assert torch.equal(_tensors(first.train)[1], _tensors(second.train)[1])
    assert path.stat().st_size == len(raw)


def test_mean_field_baseline_at_64():
    # Reference: 0.251 at 64x64 with 800 training fields; a few dozen already land near it.
    task = tasks.get("darcy", resolution=64, n_train=30, n_val=2, n_test=20)
    value = mean_field_rel_l2(task)
    assert 0.15 <= value <= 0.4
    assert task.defaults.dilations == (1, 3, 7)
    with pytest.raises(ValueError, match=r"split='dev' is not one of"):
        mean_field_rel_l2(task, "dev")


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"resolution": 4}, ValueError, r"resolution=4 is out of range; accepted: an integer in \[8, 512\]"),
    ({"resolution": 64.0}, TypeError, r"resolution=64\.0 has type float; accepted: an integer in \[8, 512\]"),
    ({"n_train": 1}, ValueError, r"n_train=1 is out of range; accepted: an integer >= 2"),
    ({"n_val": 0}, ValueError, r"n_val=0 is out of range"),
    ({"low": 0.0}, ValueError, r"low=0.0 is out of range; accepted: a finite number in \(0.0, inf\)"),
    ({"high": float("nan")}, ValueError, r"high=nan is out of range"),
    ({"alpha": 1.0}, ValueError, r"alpha=1.0 is out of range; accepted: a finite number in \(1.0, inf\)"),
    ({"tau": "3"}, TypeError, r"tau='3' has type str; accepted: a finite number in \(0\.0, inf\)"),
    ({"seed": -2}, ValueError, r"seed=-2 is out of range"),
])
def test_darcy_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tasks.get("darcy", **{**SMALL, **kwargs})
