"""`dashkit.tasks.shuffle_targets`: the null control of a search (training targets shuffled among the examples)."""
import pytest
import torch
from torch.utils.data import Subset

import dashkit
from dashkit.tasks.base import ShuffledTargets, split_targets


def test_the_training_targets_are_a_permutation_of_their_own_and_nothing_else_changes():
    task = dashkit.tasks.get("digits")
    shuffled = dashkit.tasks.shuffle_targets(task, seed=3)
    y, y_perm = split_targets(task.train), split_targets(shuffled.train)
    assert torch.equal(torch.sort(y).values, torch.sort(y_perm).values)  # the same targets, as a multiset
    assert (y != y_perm).float().mean() > 0.5  # most examples got another's target (digits: 10 classes)
    assert torch.equal(shuffled.train.tensors[0], task.train.tensors[0])  # inputs unchanged, in order
    assert shuffled.train.tensors[0].data_ptr() == task.train.tensors[0].data_ptr()  # shared, not copied
    assert shuffled.val is task.val and shuffled.test is task.test
    assert shuffled.name == task.name and shuffled.info["shuffled_targets"] == 3
    assert "shuffled_targets" not in task.info  # the task itself is left as it was
    assert torch.equal(split_targets(dashkit.tasks.shuffle_targets(task, seed=3).train), y_perm)  # seeded
    assert not torch.equal(split_targets(dashkit.tasks.shuffle_targets(task, seed=4).train), y_perm)


def test_a_split_that_is_not_in_memory_is_wrapped_with_the_same_permutation():
    task = dashkit.tasks.get("digits")
    y_perm = split_targets(dashkit.tasks.shuffle_targets(task, seed=3).train)
    wrapped = ShuffledTargets(Subset(task.train, range(len(task.train))), seed=3)
    assert len(wrapped) == len(task.train)
    assert torch.equal(wrapped.targets(), y_perm) and torch.equal(split_targets(wrapped), y_perm)
    for i in (0, 5, len(wrapped) - 1):
        assert torch.equal(wrapped[i][0], task.train[i][0]) and int(wrapped[i][1]) == int(y_perm[i])


@pytest.mark.parametrize("task, seed, error, match", [
    ("digits", 0, TypeError, "task='digits'"),
    (None, 1.5, TypeError, "seed=1.5"),
    (None, True, TypeError, "seed=True"),
])
def test_bad_arguments_are_named(task, seed, error, match):
    with pytest.raises(error, match=match):
        dashkit.tasks.shuffle_targets(task if task is not None else dashkit.tasks.get("digits"), seed=seed)
