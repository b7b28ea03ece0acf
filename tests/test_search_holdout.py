"""search_arch_holdout: the bilevel search's alpha on a stratified hold-out of the training split (DARTS's split),
so that the validation split, which the tuning and the retraining choose on, stays unseen by the search."""
import pytest
import torch

from dashkit import pipeline
from dashkit.config import SearchConfig
from dashkit.stages import search as search_stage
from dashkit.tasks.base import holdout_indices
from test_pipeline import Guarded, tiny_cfg, tiny_task


def test_holdout_indices_are_a_seeded_stratified_partition():
    labels = torch.tensor([0] * 30 + [1] * 10 + [2] * 1)
    held, rest = holdout_indices(41, 0.2, seed=3, labels=labels)
    assert sorted(held + rest) == list(range(41)) and not set(held) & set(rest)
    assert [int((labels[held] == c).sum()) for c in range(3)] == [6, 2, 0]  # round(0.2 count); a lone class stays
    assert (held, rest) == holdout_indices(41, 0.2, seed=3, labels=labels)
    assert held != holdout_indices(41, 0.2, seed=4, labels=labels)[0]
    plain, _ = holdout_indices(10, 0.5, seed=0)
    assert len(plain) == 5
    assert len(holdout_indices(3, 0.01, seed=0)[0]) == 1 and len(holdout_indices(3, 0.99, seed=0)[0]) == 2
    with pytest.raises(ValueError, match=r"a hold-out of fraction = 1\.5 of n = 10 examples"):
        holdout_indices(10, 1.5, seed=0)
    with pytest.raises(ValueError, match=r"labels has 3 entries; expected n = 10"):
        holdout_indices(10, 0.5, seed=0, labels=torch.zeros(3))


@pytest.mark.parametrize("value", [-0.1, 1.0, True, "0.2"])
def test_arch_holdout_refuses_what_is_not_a_fraction(value):
    with pytest.raises(ValueError, match=r"search_arch_holdout = .*expected a fraction in \[0, 1\)"):
        SearchConfig(scheme="bilevel", arch_holdout=value)


def test_arch_holdout_needs_the_bilevel_scheme():
    with pytest.raises(ValueError, match=r"search_arch_holdout = 0\.3 .* set search_scheme='bilevel' \(it is "
                                         r"'single_level'\)"):
        SearchConfig(arch_holdout=0.3)


def test_bilevel_search_with_a_holdout_steps_alpha_on_it_the_weights_on_the_rest_and_never_reads_val(
        tmp_path, monkeypatch):
    # every training example's first input value is its own index: a batch says which examples it holds
    base = tiny_task()
    x, y = base.train.tensors
    x = x.clone()
    x[:, 0, 0] = torch.arange(len(x), dtype=x.dtype)
    train = torch.utils.data.TensorDataset(x, y)
    val = Guarded(base.val, labels=True)  # locked: reading an example fails the search (its labels may be counted)
    task = tiny_task(train=train, val=val)
    cfg = tiny_cfg(task, search_scheme="bilevel", search_arch_holdout=0.25)
    weights_saw, alpha_saw = set(), set()
    real = search_stage.search_step

    def recording(model, task, x, y, *args, val_batch=None, **kwargs):
        weights_saw.update(x[:, 0, 0].long().tolist())
        if val_batch is not None:
            alpha_saw.update(val_batch[0][:, 0, 0].long().tolist())
        return real(model, task, x, y, *args, val_batch=val_batch, **kwargs)

    monkeypatch.setattr(search_stage, "search_step", recording)
    card = pipeline.search(task, cfg, tmp_path / "run")
    weights_part, arch_part = search_stage.arch_split(task, cfg)
    held = set(arch_part.indices)
    assert card.meta["arch_holdout"] == len(held) == round(0.25 * 48) * 2  # 48 of each class in 96
    assert alpha_saw and alpha_saw <= held and weights_saw and not weights_saw & held
    assert val.reads == 0
    # without the hold-out the bilevel search steps alpha on the validation split: the locked split fails it
    with pytest.raises(AssertionError, match="was read"):
        pipeline.search(task, tiny_cfg(task, search_scheme="bilevel"), tmp_path / "val")
    # a single-level search, and a hold-out of 0, leave the data as they were
    assert search_stage.arch_split(task, tiny_cfg(task)) == (task.train, task.val)
