"""RunConfig.augment: window slicing of the training batches (dashkit.augment), checked against a float64 reference."""
import itertools
import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from dashkit import __main__ as cli
from dashkit import pipeline
from dashkit.augment import AugmentingCollate, check_augment, window_slice
from dashkit.config import RunConfig, make_config
from dashkit.rundir import RunDir
from dashkit.stages.training import train_loader
from dashkit.tasks.base import Task, TaskDefaults
from test_pipeline import TINY, tiny_task


def reference_slice(x: np.ndarray, starts: np.ndarray, fraction: float) -> np.ndarray:
    """Window slicing one series at a time with numpy's linear interpolation, in float64."""
    b, c, length = x.shape
    w = max(2, int(round(fraction * length)))
    out = np.empty_like(x, dtype=np.float64)
    where = np.linspace(0.0, w - 1.0, length)  # the window's steps 0 .. w-1, stretched over L points
    for i in range(b):
        for j in range(c):
            out[i, j] = np.interp(starts[i] + where, np.arange(length), x[i, j])
    return out


@pytest.mark.parametrize("length, fraction", [(50, 0.9), (251, 0.9), (7, 0.5), (30, 0.2)])
def test_window_slice_matches_a_float64_reference(length, fraction):
    x = torch.randn(5, 3, length, dtype=torch.float64)
    w = max(2, int(round(fraction * length)))
    starts = torch.randint(0, length - w + 1, (5, 1), generator=torch.Generator().manual_seed(3))[:, 0].numpy()
    got = window_slice(x, fraction, torch.Generator().manual_seed(3))
    assert got.shape == x.shape and got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), reference_slice(x.numpy(), starts, fraction), rtol=0, atol=1e-12)
    # every channel of a series is cut at the same window: a channel that is another's double stays its double
    y = torch.cat([x[:, :1], 2 * x[:, :1]], 1)
    out = window_slice(y, fraction, torch.Generator().manual_seed(4))
    torch.testing.assert_close(out[:, 1], 2 * out[:, 0], rtol=0, atol=1e-12)


def test_window_slice_of_a_ramp_is_a_shallower_ramp_inside_the_series():
    length = 40
    x = torch.arange(length, dtype=torch.float32).expand(64, 1, length).contiguous()
    out = window_slice(x, 0.9, torch.Generator().manual_seed(0))
    w = round(0.9 * length)
    steps = out[:, 0, 1:] - out[:, 0, :-1]
    torch.testing.assert_close(steps, torch.full_like(steps, (w - 1) / (length - 1)))  # linear, slope (w-1)/(L-1)
    first = out[:, 0, 0]
    assert torch.equal(first, first.round()) and first.min() >= 0 and first.max() <= length - w  # integer starts
    assert len(set(first.tolist())) > 1  # the starts vary over the batch
    torch.testing.assert_close(out[:, 0, -1], first + w - 1)  # the window's last step ends the series


def test_window_slice_leaves_what_it_cannot_slice_and_refuses_bad_arguments():
    for x in (torch.randn(3, 1, 2), torch.randn(3, 2, 20)):
        fraction = 1.0 if x.shape[-1] == 20 else 0.5
        assert torch.equal(window_slice(x, fraction), x)
    with pytest.raises(ValueError, match=r"x has shape \(3, 20\); expected \(B, C, L\)"):
        window_slice(torch.randn(3, 20))
    for bad in (0, 1.5, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match=r"fraction = .*expected a number in \(0, 1\]"):
            window_slice(torch.randn(2, 1, 10), bad)


def test_the_setting_names_its_value_and_what_is_accepted():
    assert RunConfig().augment == "none" and make_config("standard").augment == "none"
    cfg = make_config("smoke", augment="slice")
    assert cfg.augment == "slice" and RunConfig.from_dict(cfg.to_dict()).augment == "slice"
    assert make_config("smoke").override(augment="slice").augment == "slice"
    for bad in ("crop", "", None, 1):
        with pytest.raises(ValueError, match=r"augment = .*expected one of 'none', 'slice'"):
            RunConfig(augment=bad)


def _task(in_shape, kind="classification"):
    x = torch.randn(8, *in_shape)
    y = torch.randn(8, 1, *in_shape[1:]) if kind == "dense" else torch.arange(8) % 2
    ds = TensorDataset(x, y)
    return Task(name="t", kind=kind, train=ds, val=ds, test=ds, in_shape=in_shape, num_outputs=1 if
                kind == "dense" else 2, metric_name="mse" if kind == "dense" else "error_pct",
                defaults=TaskDefaults(backbone="resnet1d"))


def test_images_and_dense_tasks_are_refused_before_anything_runs(tmp_path):
    check_augment("slice", _task((1, 16)))
    with pytest.raises(ValueError, match=r"augment = 'slice' slices series \(C, L\); task 't' has inputs of shape "
                                         r"\(1, 8, 8\) \(2D\)"):
        check_augment("slice", _task((1, 8, 8)))
    with pytest.raises(ValueError, match=r"task 't' is 'dense' \(one target per position\)"):
        check_augment("slice", _task((1, 16), kind="dense"))
    with pytest.raises(ValueError, match=r"augment = 'slice' slices series"):
        pipeline.run(_task((1, 8, 8)), out=tmp_path / "run", augment="slice", figures=False, verbose=False)
    assert not (tmp_path / "run").exists()  # refused before the run directory was made


def test_the_training_loader_slices_its_batches_repeatably_and_keeps_the_labels():
    x = torch.arange(32, dtype=torch.float32).expand(16, 1, 32).contiguous() + 100 * torch.arange(16)[:, None, None]
    ds = TensorDataset(x, torch.arange(16))
    plain, aug = make_config("smoke"), make_config("smoke", augment="slice")
    cpu = torch.device("cpu")
    batches = lambda cfg, seed: list(train_loader(ds, 8, cfg, cpu, seed))  # noqa: E731
    raw, a, again, other = batches(plain, 5), batches(aug, 5), batches(aug, 5), batches(aug, 6)
    for (xr, yr), (xa, ya), (xb, yb) in zip(raw, a, again):
        assert torch.equal(yr, ya) and torch.equal(xr, x[yr])  # the same examples in the same order, labels kept
        assert not torch.equal(xa, xr)  # sliced
        assert torch.equal(xa, xb) and torch.equal(ya, yb)  # the loader's seed decides the windows
        # each sliced series lies inside its own example's values (example i holds 100 i .. 100 i + 31)
        low = 100 * yr[:, None, None].float()
        assert bool(((xa >= low) & (xa <= low + 31)).all())
    assert any(not torch.equal(p[0], q[0]) for p, q in zip(a, other))  # another epoch's seed, other windows
    assert isinstance(train_loader(ds, 8, aug, cpu, 0).collate_fn, AugmentingCollate)


def test_a_sliced_run_learns_records_the_setting_and_resumes_to_the_same_result(tmp_path, monkeypatch, capsys,
                                                                                kill_after_checkpoint):
    task = tiny_task()
    settings = {**TINY, "augment": "slice", "tune_enabled": False, "retrain_epochs": 24}
    ref = pipeline.run(task, out=tmp_path / "ref", figures=False, verbose=False, **settings)
    assert json.loads((tmp_path / "ref" / "config.json").read_text())["config"]["augment"] == "slice"
    # the spikes task (48 test series, balanced): a guess errs on about half; both networks, trained on sliced
    # batches only, err on at most 5 (a guess does that with probability below 1e-8)
    assert ref.metrics["dash"] <= 10.5 and ref.metrics["baseline"] <= 10.5
    pipeline.run(task, out=tmp_path / "plain", figures=False, verbose=False, **{**settings, "augment": "none"})
    assert (RunDir(tmp_path / "plain").read_history("retrain") != RunDir(tmp_path / "ref").read_history("retrain"))
    # dashkit show says when a run's training batches were augmented, and only then
    for run, said in (("ref", True), ("plain", False)):
        assert cli.main(["show", str(tmp_path / run)]) == 0
        preset_line = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("  preset"))
        assert ("training batches augmented: 'slice' (dashkit.augment)" in preset_line) is said, preset_line

    kill_after_checkpoint("retrain", 1)
    with pytest.raises(KeyboardInterrupt, match="retrain"):
        pipeline.run(task, out=tmp_path / "b", figures=False, verbose=False, **settings)
    monkeypatch.undo()
    res = pipeline.run(task, out=tmp_path / "b", figures=False, verbose=False, **settings)
    assert res.card == ref.card and res.metrics == ref.metrics and res.val_metrics == ref.val_metrics
    without_time = lambda run: [{k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
                                for r in RunDir(tmp_path / run).read_history("retrain")]
    assert without_time("b") == without_time("ref")


def test_ranks_and_workers_draw_their_own_windows():
    x = torch.arange(32, dtype=torch.float32).expand(4, 1, 32).contiguous()  # four copies of one series
    batch = [(x[i], torch.tensor(0)) for i in range(4)]
    out = lambda seed, rank: AugmentingCollate("slice", seed, rank)(batch)[0]  # noqa: E731
    assert torch.equal(out(5, 0), out(5, 0)) and torch.equal(out(5, 1), out(5, 1))
    assert not torch.equal(out(5, 0), out(5, 1)) and not torch.equal(out(5, 0), out(6, 0))
    # two DataLoader workers each take every other batch of the same examples: their first batches differ
    loader = torch.utils.data.DataLoader(TensorDataset(x.repeat(4, 1, 1), torch.zeros(16, dtype=torch.long)),
                                         batch_size=4, num_workers=2, collate_fn=AugmentingCollate("slice", 5))
    first_of_worker_0, first_of_worker_1 = [b[0] for b in itertools.islice(loader, 2)]
    assert not torch.equal(first_of_worker_0, first_of_worker_1)
