"""Tests of dashkit.space.SearchSpace: candidate order, receptive fields, offsets, serialisation, bad input."""
from __future__ import annotations

import json

import pytest

from dashkit import SearchSpace

K2, D2 = (3, 5, 7, 9), (1, 3, 7, 15)  # DASH's default 2D space
K1, D1 = (3, 7, 11, 15, 19), (1, 3, 7, 15)  # DASH's default 1D space


@pytest.fixture
def space2d() -> SearchSpace:
    return SearchSpace(K2, D2, dims=2)


@pytest.fixture
def space1d() -> SearchSpace:
    return SearchSpace(K1, D1, dims=1)


def test_defaults_are_dash_2d_space():
    space = SearchSpace()
    assert space.kernel_sizes == K2 and space.dilations == D2 and space.dims == 2
    assert len(space) == 16


def test_candidates_are_k_major(space1d):
    cands = space1d.candidates
    assert len(cands) == len(space1d) == 20
    # index = i_k * |D| + i_d: the dilation changes fastest
    for i_k, k in enumerate(K1):
        for i_d, d in enumerate(D1):
            assert cands[i_k * len(D1) + i_d] == (k, d)
    assert cands[:5] == [(3, 1), (3, 3), (3, 7), (3, 15), (7, 1)]


@pytest.mark.parametrize("which", ["1d", "2d"])
def test_index_pair_round_trip(which, space1d, space2d):
    space = space1d if which == "1d" else space2d
    for i in range(len(space)):
        k, d = space.pair(i)
        assert space.index(k, d) == i
        assert space.candidates[i] == (k, d)
    for i_k, k in enumerate(space.kernel_sizes):
        for i_d, d in enumerate(space.dilations):
            assert space.index(k, d) == i_k * len(space.dilations) + i_d
    assert space2d.pair(5) == (5, 3)
    assert space1d.index(19, 15) == 19


def test_index_and_pair_reject_values_outside_the_space(space2d):
    with pytest.raises(ValueError, match=r"\(k, d\) = \(4, 1\) is not in the space"):
        space2d.index(4, 1)
    with pytest.raises(ValueError, match=r"\(k, d\) = \(3, 2\) is not in the space"):
        space2d.index(3, 2)
    with pytest.raises(ValueError, match=r"index must be in \[0, 16\), got 16"):
        space2d.pair(16)
    with pytest.raises(ValueError, match=r"index must be in \[0, 16\), got -1"):
        space2d.pair(-1)


def test_receptive_fields_and_max_field(space1d, space2d):
    assert SearchSpace.field(3, 1) == 3
    assert SearchSpace.field(9, 15) == 121
    assert SearchSpace.field(19, 15) == 271
    assert space2d.receptive_fields == [d * (k - 1) + 1 for k in K2 for d in D2]
    assert space2d.receptive_fields[:4] == [3, 7, 15, 31]
    assert space2d.max_field == 121
    assert space1d.max_field == 271
    assert SearchSpace((3,), (1,), dims=1).max_field == 3


def test_offsets_centred(space2d):
    tiny = SearchSpace((3, 5), (1, 2), dims=1)
    # (3,1): -1..1; (3,2): -2,0,2; (5,1): -2..2; (5,2): -4,-2,0,2,4
    assert tiny.offsets() == [-4, -2, -1, 0, 1, 2, 4]
    offs = space2d.offsets()
    assert offs == sorted(set(offs))
    assert offs == [-o for o in reversed(offs)]  # symmetric about the centre
    assert min(offs) == -60 and max(offs) == 60  # (9, 15): half of the field 121
    expected = {d * (j - (k - 1) // 2) for k in K2 for d in D2 for j in range(k)}
    assert set(offs) == expected
    assert len(offs) == 31  # the count the FFT offset table is built on


def test_offsets_causal(space1d):
    tiny = SearchSpace((3, 5), (1, 2), dims=1)
    assert tiny.offsets(causal=True) == [-8, -6, -4, -3, -2, -1, 0]
    offs = space1d.offsets(causal=True)
    assert max(offs) == 0 and min(offs) == -(space1d.max_field - 1)


@pytest.mark.parametrize("which", ["1d", "2d"])
def test_to_dict_from_dict_round_trip(which, space1d, space2d):
    space = space1d if which == "1d" else space2d
    d = space.to_dict()
    assert d == {"kernel_sizes": list(space.kernel_sizes), "dilations": list(space.dilations), "dims": space.dims}
    back = SearchSpace.from_dict(json.loads(json.dumps(d)))
    assert back == space and hash(back) == hash(space)
    assert back.candidates == space.candidates


def test_values_are_sorted_and_spaces_compare_by_value():
    a = SearchSpace((7, 3, 5), (3, 1), dims=1)
    assert a.kernel_sizes == (3, 5, 7) and a.dilations == (1, 3)
    assert a == SearchSpace([3, 5, 7], [1, 3], dims=1)
    assert a != SearchSpace((3, 5, 7), (1, 3), dims=2)


def test_num_architectures(space1d, space2d):
    assert space2d.num_architectures(13) == 16 ** 13
    assert space1d.num_architectures(9) == 20 ** 9
    assert space2d.num_architectures(1) == 16
    assert space2d.num_architectures(0) == 1


def test_repr_names_the_size(space2d):
    text = repr(space2d)
    assert "16 candidates" in text and "max field 121" in text


def test_space_is_frozen(space2d):
    with pytest.raises(AttributeError):
        space2d.dims = 1


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(kernel_sizes=(3, 4)), ValueError, r"kernel_sizes must be odd positive ints.*\[4\]"),
    (dict(kernel_sizes=(-3, 5)), ValueError, r"kernel_sizes must be odd positive ints.*\[-3\]"),
    (dict(kernel_sizes=()), ValueError, r"kernel_sizes must not be empty"),
    (dict(kernel_sizes=(3, 5, 3)), ValueError, r"kernel_sizes must not repeat a value, got \(3, 5, 3\)"),
    (dict(kernel_sizes=3), TypeError, r"kernel_sizes must be a sequence of ints, got 3"),
    (dict(kernel_sizes=(3.0, 5)), TypeError, r"kernel_sizes must hold ints, got 3\.0"),
    (dict(kernel_sizes=(True, 3)), TypeError, r"kernel_sizes must hold ints, got True"),
    (dict(dilations=(0, 1)), ValueError, r"dilations must be positive ints, got \[0\]"),
    (dict(dilations=()), ValueError, r"dilations must not be empty"),
    (dict(dilations=(1, 1)), ValueError, r"dilations must not repeat a value, got \(1, 1\)"),
    (dict(dilations="13"), TypeError, r"dilations must be a sequence of ints, got '13'"),
    (dict(dims=3), ValueError, r"dims must be 1 or 2, got 3"),
    (dict(dims=0), ValueError, r"dims must be 1 or 2, got 0"),
    (dict(dims=True), ValueError, r"dims must be 1 or 2, got True"),
])
def test_bad_input_raises_clear_errors(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SearchSpace(**kwargs)
