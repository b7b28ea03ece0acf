"""Tests of what the task modules share: parameter checks, the generated-data cache, the dilation fit."""
import json
import math
import stat

import numpy as np
import pytest
import torch

from dashkit.paths import cache_dir
from dashkit.tasks._common import (DecodedRelL2, PointwiseGaussian, cache_path, cached_arrays, check_bool,
                                   check_float, check_int, check_optional_int, check_seed, fitting_dilations,
                                   rel_l2_loss)


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    monkeypatch.setenv("DASHKIT_DATA", str(tmp_path / "data"))


def _counting(arrays):
    """A generator that returns ``arrays`` and counts its calls in ``.calls``."""
    def make():
        make.calls += 1
        return {k: v.copy() for k, v in arrays.items()}

    make.calls = 0
    return make


# ---------------------------------------------------------------------------------------------------------
# parameter checks


def test_check_int_accepts_ints_in_range():
    assert check_int("n", 3, 1) == 3 and check_int("n", np.int64(5), 1, 5) == 5
    assert type(check_int("n", np.int32(2), 0)) is int


@pytest.mark.parametrize("value, low, high, error, match", [
    (0, 1, None, ValueError, r"^n=0 is out of range; accepted: an integer >= 1$"),
    (6, 1, 5, ValueError, r"^n=6 is out of range; accepted: an integer in \[1, 5\]$"),
    (2.0, 1, None, TypeError, r"^n=2\.0 has type float; accepted: an integer >= 1$"),
    (True, 0, None, TypeError, r"^n=True has type bool; accepted: an integer >= 0$"),
    ("3", 0, 9, TypeError, r"^n='3' has type str; accepted: an integer in \[0, 9\]$"),
])
def test_check_int_messages(value, low, high, error, match):
    with pytest.raises(error, match=match):
        check_int("n", value, low, high)


def test_check_optional_int():
    assert check_optional_int("limit", None, 1, none="every sample") is None
    assert check_optional_int("limit", 7, 1, none="every sample") == 7
    with pytest.raises(ValueError, match=r"^limit=0 is out of range; accepted: None \(every sample\) or an "
                                         r"integer >= 1$"):
        check_optional_int("limit", 0, 1, none="every sample")
    with pytest.raises(TypeError, match=r"^crop=2\.5 has type float; accepted: None \(all\) or an integer in "
                                        r"\[1, 4\]$"):
        check_optional_int("crop", 2.5, 1, 4, none="all")


def test_check_float_bounds():
    assert check_float("p", 0.5, 0.0, 1.0, low_open=True, high_open=True) == 0.5
    assert check_float("p", 0, 0.0, 1.0) == 0.0 and check_float("p", 1, 0.0, 1.0) == 1.0  # closed bounds
    assert type(check_float("p", np.float32(0.25), 0.0, 1.0)) is float
    assert check_float("x", -1e300) == -1e300  # no bounds: any finite number
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match=rf"^p={bad!r} is out of range; accepted: a finite number in "
                                             r"\(0\.0, 1\.0\)$"):
            check_float("p", bad, 0.0, 1.0, low_open=True, high_open=True)


@pytest.mark.parametrize("value, error, match", [
    (-0.5, ValueError, r"^a=-0\.5 is out of range; accepted: a finite number in \[0\.0, inf\)$"),
    (math.nan, ValueError, r"^a=nan is out of range"),
    (math.inf, ValueError, r"^a=inf is out of range"),  # the upper bound is infinite, the value must not be
    (None, TypeError, r"^a=None has type NoneType; accepted: a finite number in \[0\.0, inf\)$"),
    (False, TypeError, r"^a=False has type bool"),
    ("1", TypeError, r"^a='1' has type str"),
])
def test_check_float_messages(value, error, match):
    with pytest.raises(error, match=match):
        check_float("a", value, 0)


def test_check_bool_and_seed():
    assert check_bool("flag", True) is True and check_bool("flag", np.bool_(False)) is False
    with pytest.raises(TypeError, match=r"^flag=1 has type int; accepted: True or False$"):
        check_bool("flag", 1)
    assert check_seed(0) == 0 and check_seed(np.uint8(9)) == 9
    with pytest.raises(ValueError, match=r"^seed=-1 is out of range; accepted: an integer >= 0$"):
        check_seed(-1)
    with pytest.raises(TypeError, match=r"^data_seed=1\.5 has type float"):
        check_seed(1.5, "data_seed")


# ---------------------------------------------------------------------------------------------------------
# the cache


def test_cache_writes_once_and_reads_back():
    make = _counting({"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([1, 2], dtype=np.int64)})
    first = cached_arrays("unit", {"n": 2}, make)
    second = cached_arrays("unit", {"n": 2}, make)
    assert make.calls == 1
    np.testing.assert_array_equal(first["a"], second["a"])
    assert second["b"].dtype == np.int64 and set(second) == {"a", "b"}
    path, blob = cache_path("unit", {"n": 2})
    assert path.exists() and path.parent == cache_dir("unit") and path.name.startswith("unit-")
    assert json.loads(blob)["params"] == {"n": 2}
    assert cache_path("unit", {"n": 3})[0] != path  # other parameters, other file
    assert cache_path("other", {"n": 2})[0].name != path.name  # the task is part of the key
    assert not list(path.parent.glob("*.tmp"))  # the temporary file was renamed, not left behind
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # readable by every user of a shared cache
    with np.load(path) as f:
        assert json.loads(str(f["__params__"])) == json.loads(blob)  # the parameters travel with the data


def test_cache_key_ignores_dict_order_but_not_values():
    assert cache_path("unit", {"a": 1, "b": [1, 2]}) == cache_path("unit", {"b": [1, 2], "a": 1})
    assert cache_path("unit", {"seed": 0})[0] != cache_path("unit", {"seed": 1})[0]
    assert cache_path("unit", {"x": 1})[0] != cache_path("unit", {"x": 1.5})[0]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "npy"])
def test_cache_damaged_file_is_regenerated(damage):
    make = _counting({"a": np.linspace(0.0, 1.0, 5000)})
    params = {"damage": damage}
    cached_arrays("unit", params, make)
    path, _ = cache_path("unit", params)
    raw = path.read_bytes()
    if damage == "npy":  # a readable file that is not an .npz archive
        np.save(path.with_suffix(".tmp.npy"), np.zeros(3))
        path.with_suffix(".tmp.npy").replace(path)
    else:
        path.write_bytes({"truncate": raw[: len(raw) // 2], "garbage": b"not a zip file" * 10, "empty": b""}[damage])
    with pytest.warns(RuntimeWarning, match=r"cache file unit-\w+\.npz is unreadable .*; regenerating it"):
        again = cached_arrays("unit", params, make)
    assert make.calls == 2
    np.testing.assert_array_equal(again["a"], np.linspace(0.0, 1.0, 5000))
    assert path.read_bytes() == raw  # rewritten whole
    cached_arrays("unit", params, make)
    assert make.calls == 2


def test_cache_file_of_other_parameters_is_regenerated():
    make_a = _counting({"v": np.array([1.0])})
    make_b = _counting({"v": np.array([2.0])})
    cached_arrays("unit", {"which": "a"}, make_a)
    cached_arrays("unit", {"which": "b"}, make_b)
    path_a, path_b = cache_path("unit", {"which": "a"})[0], cache_path("unit", {"which": "b"})[0]
    path_b.replace(path_a)  # a's name, b's content: as if the hashes collided
    with pytest.warns(RuntimeWarning, match="holds other parameters; regenerating it"):
        got = cached_arrays("unit", {"which": "a"}, make_a)
    assert got["v"].tolist() == [1.0] and make_a.calls == 2


def test_cache_failed_generation_leaves_no_file():
    def broken():
        raise RuntimeError("generator crashed")

    with pytest.raises(RuntimeError, match="generator crashed"):
        cached_arrays("unit", {"n": 1}, broken)
    assert not list(cache_dir("unit").iterdir())


@pytest.mark.parametrize("task, params, error, match", [
    ("../up", {"n": 1}, ValueError, r"task='\.\./up' is not usable as a folder name"),
    ("", {"n": 1}, ValueError, r"task='' is not usable"),
    ("unit", {"x": np.float32(1.0)}, TypeError, r"params=.* cannot key a cache file .*accepted: a dict of JSON"),
    ("unit", {"x": float("nan")}, ValueError, r"params=.* cannot key a cache file"),
])
def test_cache_bad_keys(task, params, error, match):
    with pytest.raises(error, match=match):
        cached_arrays(task, params, _counting({"a": np.zeros(1)}))


@pytest.mark.parametrize("made, error, match", [
    ([np.zeros(2)], TypeError, r"make\(\) returned list; accepted: a dict of numpy arrays"),
    ({"__params__": np.zeros(2)}, ValueError, r"make\(\) returned an array named '__params__'"),
    ({"a": [1, 2]}, TypeError, r"make\(\) returned a=list; accepted: numpy arrays"),
    ({"a": np.array([{}, 1], dtype=object)}, TypeError, r"make\(\) returned a=ndarray; .*object arrays"),
])
def test_cache_rejects_what_it_cannot_store(made, error, match):
    with pytest.raises(error, match=match):
        cached_arrays("unit", {"n": 1}, lambda: made)
    assert not list(cache_dir("unit").glob("*.npz"))


# ---------------------------------------------------------------------------------------------------------
# the dilation fit and the Darcy helpers


def test_fitting_dilations():
    assert fitting_dilations(30, 7) == (1, 2, 4)  # spans 7, 13, 25 fit in 30; 49 does not
    assert fitting_dilations(25, 7) == (1, 2, 4)  # a span equal to the size still fits
    assert fitting_dilations(24, 7) == (1, 2)
    assert fitting_dilations(4, 7) == (1,)  # nothing fits: keep the plain kernel
    assert fitting_dilations(64, 9, ladder=(1, 3, 7, 15)) == (1, 3, 7)


def test_decoded_rel_l2_measures_in_original_units():
    u = torch.rand(10, 1, 6, 6, dtype=torch.float64) * 5 + 1
    norm = PointwiseGaussian(u)
    loss = DecodedRelL2(norm)
    z = norm.encode(u)
    assert float(loss(z, z)) == 0.0
    # decoded, z + 1 is u + (std + eps) at every point: compare with that error directly
    expected = rel_l2_loss(u + (norm.std + norm.eps), u)
    assert float(loss(z + 1.0, z)) == pytest.approx(float(expected), rel=1e-6)
    half = loss(z.to(torch.bfloat16), z.to(torch.bfloat16))
    assert half.dtype == torch.float32  # decoded in float32, not in bf16


@pytest.mark.parametrize("metric,want", [("error_pct", 40.0), ("1-macro_f1", 1 - (2 * 0.6 / 1.6) / 3)])
def test_chance_metric_is_the_metric_of_always_guessing_the_majority_class(metric, want):
    from dashkit.tasks.base import Task, tensor_dataset

    # test labels 0, 0, 0, 1, 2: the majority class 0 is right 3 times in 5; its F1 is 2 * 0.6 / 1.6 = 0.75, the
    # other two classes' F1 are 0, so the macro F1 is 0.25
    split = lambda y: tensor_dataset(torch.zeros(len(y), 1, 4), torch.tensor(y))  # noqa: E731
    task = Task(name="t", kind="classification", train=split([1, 2]), val=split([1]), test=split([0, 0, 0, 1, 2]),
                in_shape=(1, 4), num_outputs=3, metric_name=metric)
    assert task.chance_metric() == pytest.approx(want)
    regression = Task(name="r", kind="regression", train=split([1.0, 2.0]), val=split([1.0]),
                      test=split([[0.0], [1.0], [5.0]]), in_shape=(1, 4), num_outputs=1, metric_name="mse")
    assert regression.chance_metric() == pytest.approx(((0 - 2) ** 2 + (1 - 2) ** 2 + (5 - 2) ** 2) / 3)  # the mean 2
    dense_y = lambda n: tensor_dataset(torch.zeros(n, 1, 4), torch.ones(n, 1, 4))  # noqa: E731
    dense = Task(name="d", kind="dense", train=dense_y(2), val=dense_y(1), test=dense_y(2), in_shape=(1, 4),
                 num_outputs=1, metric_name="mse")
    assert dense.chance_metric() is None
    assert task.chance_metric("val") == 0.0  # one validation sample: its own class is the majority
    with pytest.raises(ValueError, match=r"split = 'dev': expected 'train', 'val' or 'test'"):
        task.chance_metric("dev")


def test_split_targets_reads_no_input_where_the_dataset_allows_it():
    from torch.utils.data import Dataset, Subset

    from dashkit.tasks.base import split_targets, tensor_dataset

    class Samples(Dataset):  # only __getitem__: read sample by sample
        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.zeros(2), torch.tensor(i * 10)

    class NoInputs(Samples):  # targets() without reading any sample
        def __getitem__(self, i):
            raise AssertionError("an input was read")

        def targets(self):
            return torch.tensor([7, 8, 9])

    y = torch.tensor([3, 1, 4, 1, 5])
    ds = tensor_dataset(torch.zeros(5, 1, 4), y)
    assert split_targets(ds) is y
    assert split_targets(Subset(ds, [4, 0, 2])).tolist() == [5, 3, 4]
    assert split_targets(Samples()).tolist() == [0, 10, 20]
    assert split_targets(Subset(NoInputs(), [2, 1])).tolist() == [9, 8]


def test_chance_metric_of_a_multilabel_task_scores_every_label_by_its_prevalence():
    from dashkit.tasks.base import Task, tensor_dataset

    y = torch.tensor([[1, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 0]], dtype=torch.float32)
    split = tensor_dataset(torch.zeros(4, 1, 4), y)
    task = Task(name="m", kind="multilabel", train=split, val=split, test=split, in_shape=(1, 4), num_outputs=3,
                metric_name="1-auroc")
    assert task.chance_metric("val") == pytest.approx(0.5)  # the same score for every sample ranks nothing
