"""The data digest a run records (`dashkit.tasks.base.split_digest`, config.json's ``task_digest``): the same data
split the same way give the same digest, another split seed or other arrays under the same summary another, and a
resumed run or a shuffled-target control on other data is refused with what to do."""
import dataclasses
import warnings

import numpy as np
import pytest
from torch.utils.data import Dataset, TensorDataset

import dashkit
from dashkit import pipeline
from dashkit.config import make_config
from dashkit.rundir import RunDir
from dashkit.tasks.base import SmallSplitWarning, split_digest

from test_pipeline import Guarded

SMOKE = dict(search_backend="fft", retrain_conv_backend="direct", search_steps=4, search_batch_size=16,
             tune_enabled=False, retrain_steps=4, retrain_batch_size=16, random_draws=0)


def arrays(seed: int = 0, n: int = 60):
    """x (n, 1, 24) noise with a class-dependent offset, y (n,) in 0..2."""
    g = np.random.default_rng(seed)
    y = np.arange(n) % 3
    return (g.normal(size=(n, 1, 24)) + y[:, None, None]).astype(np.float32), y


def task_of(x, y, seed=0, name="digest"):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallSplitWarning)
        return dashkit.tasks.from_arrays(x, y, name=name, seed=seed, backbone="resnet1d")


def test_the_same_data_split_alike_give_the_same_digest_and_anything_else_another():
    x, y = arrays()
    first, again = task_of(x, y), task_of(x.copy(), y.copy())
    assert first.summary() == again.summary() and split_digest(first) == split_digest(again)
    assert len(split_digest(first)) == 12 and int(split_digest(first), 16) >= 0
    other_split = task_of(x, y, seed=1)
    assert other_split.summary() == first.summary() and split_digest(other_split) != split_digest(first)
    other_arrays = task_of(*arrays(seed=5))
    assert other_arrays.summary() == first.summary() and split_digest(other_arrays) != split_digest(first)
    # a changed value in a sampled training example (the first always is) changes it; one changed label anywhere too
    xs, ys = first.train.tensors[0].clone(), first.train.tensors[1].clone()
    xs[0, 0, 3] += 1.0
    assert split_digest(dataclasses.replace(first, train=TensorDataset(xs, first.train.tensors[1]))) != \
        split_digest(first)
    ys[7] = (ys[7] + 1) % 3
    assert split_digest(dataclasses.replace(first, train=TensorDataset(first.train.tensors[0], ys))) != \
        split_digest(first)


class Opaque(Dataset):
    """A dataset with no cheap targets: read only example by example."""

    def __init__(self, ds):
        self.ds, self.reads = ds, []

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        self.reads.append(i)
        return self.ds[i]


def test_a_dataset_without_cheap_targets_is_sampled_and_val_and_test_examples_are_never_read():
    x, y = arrays()
    task = task_of(x, y)
    train = Opaque(task.train)
    val, test = Guarded(task.val, labels=True), Guarded(task.test)  # reading an example raises
    wrapped = dataclasses.replace(task, train=train, val=val, test=test)
    digest = split_digest(wrapped, samples=4)
    n = len(task.train)
    assert sorted(set(train.reads)) == [0, round((n - 1) / 3), round(2 * (n - 1) / 3), n - 1]
    assert val.reads == 0 and test.reads == 0
    assert split_digest(wrapped, samples=4) == digest


def test_a_run_records_the_digest_and_refuses_to_resume_on_other_data(tmp_path):
    x, y = arrays()
    task = task_of(x, y)
    pipeline.search(task, make_config("smoke", task.defaults, **SMOKE), tmp_path / "run")
    meta = RunDir(tmp_path / "run").read_json("config.json")
    assert meta["task_digest"] == split_digest(task)
    resplit = task_of(x, y, seed=1)  # the same summary, other training examples
    with pytest.raises(ValueError, match=r"was made with other data under the same task summary \(data digest "
                                         + meta["task_digest"] + r", this task's " + split_digest(resplit)):
        dashkit.run(resplit, preset="smoke", out=tmp_path / "run", figures=False, verbose=False, **SMOKE)
    with pytest.raises(ValueError, match="has the run's summary but other data"):
        pipeline.shuffled_control(tmp_path / "run", task=resplit)
    # the same data rebuilt resume, and a run made before the digest existed (no task_digest) resumes too
    res = dashkit.run(task_of(x.copy(), y.copy()), preset="smoke", out=tmp_path / "run", figures=False,
                      verbose=False, **SMOKE)
    assert res.metrics["dash"] >= 0
    rd = RunDir(tmp_path / "run")
    old = rd.read_json("config.json")
    del old["task_digest"]
    rd.write_json("config.json", old)
    again = dashkit.run(task, preset="smoke", out=tmp_path / "run", figures=False, verbose=False, **SMOKE)
    assert again.metrics == res.metrics


def test_overwrite_replaces_a_run_on_other_data(tmp_path):
    x, y = arrays()
    task = task_of(x, y)
    pipeline.search(task, make_config("smoke", task.defaults, **SMOKE), tmp_path / "run")
    resplit = task_of(x, y, seed=1)
    pipeline.open_run_dir(tmp_path / "run", resplit, make_config("smoke", resplit.defaults, **SMOKE),
                          overwrite=True)
    assert RunDir(tmp_path / "run").read_json("config.json")["task_digest"] == split_digest(resplit)
    assert not (tmp_path / "run" / "archcard.json").exists()  # the old run's search went with it


class Thing:
    """A sample part with the default repr, which holds the object's address."""


def test_samples_that_are_not_arrays_give_a_stable_digest():
    x, y = arrays()
    task = task_of(x, y)

    class WithThing(Dataset):
        def __init__(self, ds):
            self.ds = ds

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            return (*self.ds[i], Thing(), "a label", 3)

    first = split_digest(dataclasses.replace(task, train=WithThing(task.train)))
    assert split_digest(dataclasses.replace(task, train=WithThing(task.train))) == first
    assert first != split_digest(task)
