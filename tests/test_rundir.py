"""Tests of dashkit.rundir: atomic files, safetensors weights, histories, done markers and checkpoints."""
from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

from dashkit import rundir as rundir_mod
from dashkit.rundir import RunDir, atomic_write_text, config_diff, load_tensors, save_tensors

CONFIG = {"task": "t", "config": {"seed": 0, "device": "cpu", "search": {"epochs": 2}}}


def small_model():
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def train_steps(model, opt, steps):
    for _ in range(steps):
        x = torch.randn(16, 4)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


# --------------------------------------------------------------------------------------------- atomic files
def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "a.json"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_atomic_write_keeps_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(rundir_mod.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]  # the temporary file was removed


def test_safetensors_round_trip_with_shared_storage(tmp_path):
    base = torch.arange(12.0)
    tensors = {"a": base[:6].view(2, 3), "b": base, "c": torch.tensor([1, 2], dtype=torch.int64)}
    path = save_tensors(tmp_path / "w.safetensors", tensors)
    back = load_tensors(path)
    assert set(back) == {"a", "b", "c"}
    for k in tensors:
        assert torch.equal(back[k], tensors[k])
    assert path.read_bytes()[:8] != b"\x80\x02\x8a\x0a"  # not a pickle


def test_corrupt_and_missing_weights_name_the_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_tensors(path, {"a": torch.ones(100)})
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"w\.safetensors.*corrupt"):
        load_tensors(path)
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        load_tensors(tmp_path / "nope.safetensors")


# --------------------------------------------------------------------------------------------- the folder
def test_create_writes_config_and_resumes_with_same_config(tmp_path):
    rd = RunDir.create(tmp_path / "run", CONFIG)
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == CONFIG
    rd.write_json("metrics.json", {"x": 1})
    again = RunDir.create(tmp_path / "run", CONFIG)
    assert again.read_json("metrics.json") == {"x": 1}


def test_other_config_is_refused_unless_overwrite(tmp_path):
    RunDir.create(tmp_path / "run", CONFIG)
    other = {**CONFIG, "config": {**CONFIG["config"], "search": {"epochs": 3}}}
    with pytest.raises(ValueError, match=r"another config \(config\.search\.epochs: 2 -> 3\).*overwrite=True"):
        RunDir.create(tmp_path / "run", other)
    rd = RunDir.create(tmp_path / "run", other, overwrite=True)
    assert rd.read_json("config.json") == other


def test_ignored_keys_may_change_and_resume_false_is_refused(tmp_path):
    RunDir.create(tmp_path / "run", CONFIG)
    moved = {**CONFIG, "config": {**CONFIG["config"], "device": "cuda"}}
    RunDir.create(tmp_path / "run", moved, ignore=("config.device",))
    with pytest.raises(ValueError, match=r"another config \(config\.device: 'cpu' -> 'cuda'\)"):
        RunDir.create(tmp_path / "run", moved)
    with pytest.raises(ValueError, match=r"already holds a run; pass resume=True"):
        RunDir.create(tmp_path / "run", CONFIG, resume=False)


def test_folder_that_is_not_a_run_is_never_deleted(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match=r"not empty and holds no config\.json"):
        RunDir.create(folder, CONFIG, overwrite=True)
    assert (folder / "thesis.tex").read_text() == "precious"


def test_config_diff_lists_changed_added_and_removed_keys():
    diff = config_diff({"a": {"b": 1, "c": 2}}, {"a": {"b": 1, "c": 3, "d": 4}})
    assert diff == ["a.c: 2 -> 3", "a.d: '<absent>' -> 4"]
    assert config_diff({"a": 1}, {"a": 1}) == []


def test_corrupt_json_names_the_file(tmp_path):
    rd = RunDir.create(tmp_path / "run", CONFIG)
    (rd.path / "metrics.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"metrics\.json.*corrupt"):
        rd.read_json("metrics.json")


def test_history_csv_round_trip_with_numbers(tmp_path):
    rd = RunDir.create(tmp_path / "run", CONFIG)
    rows = [{"epoch": 1, "train_loss": 0.5, "state": "complete"}, {"epoch": 2, "train_loss": 0.25, "extra": 3}]
    rd.write_history("retrain", rows)
    back = rd.read_history("retrain")
    assert back == [{"epoch": 1, "train_loss": 0.5, "state": "complete", "extra": ""},
                    {"epoch": 2, "train_loss": 0.25, "state": "", "extra": 3}]
    assert rd.read_history("search") == []


def test_done_markers_need_their_files(tmp_path):
    rd = RunDir.create(tmp_path / "run", CONFIG)
    assert not rd.is_done("search")
    rd.mark_done("search", {"seconds": 1.5})
    assert rd.is_done("search")
    assert not rd.is_done("search", ["archcard.json"])  # the marker alone is not enough
    rd.write_json("archcard.json", {})
    assert rd.is_done("search", ["archcard.json"])
    assert rd.done_info("search") == {"seconds": 1.5}
    assert rd.done_stages() == ["search"]


# ---------------------------------------------------------------------------------------------- checkpoints
def test_checkpoint_restores_model_optimiser_rng_and_continues_identically(tmp_path):
    rd = RunDir.create(tmp_path / "run", CONFIG)
    torch.manual_seed(1)
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    train_steps(model, opt, 3)
    np.random.seed(5)
    random.seed(5)
    rd.save_checkpoint("retrain", 2, model, {"sgd": opt}, extra={"best_val": 0.5, "history": [{"epoch": 1}]})
    # the uninterrupted continuation
    train_steps(model, opt, 2)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    expected_draws = (np.random.rand(), random.random())
    # a fresh process: another model and optimiser, different RNG states
    torch.manual_seed(99)
    np.random.seed(99)
    random.seed(99)
    model2 = small_model()
    opt2 = torch.optim.SGD(model2.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    epoch, extra = rd.load_checkpoint("retrain", model2, {"sgd": opt2})
    assert epoch == 2 and extra == {"best_val": 0.5, "history": [{"epoch": 1}]}
    train_steps(model2, opt2, 2)
    for k, v in model2.state_dict().items():
        assert torch.equal(v, expected[k]), k
    assert (np.random.rand(), random.random()) == expected_draws


def test_checkpoint_files_hold_no_pickle_and_old_tensors_are_removed(tmp_path):
    rd = RunDir.create(tmp_path / "run", CONFIG)
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train_steps(model, opt, 1)
    rd.save_checkpoint("search", 0, model, {"w": opt})
    rd.save_checkpoint("search", 1, model, {"w": opt})
    files = sorted(p.name for p in (rd.path / "checkpoints").iterdir())
    assert files == ["search-e00001.safetensors", "search.json"]
    meta = json.loads((rd.path / "checkpoints" / "search.json").read_text())
    assert meta["epoch"] == 1 and meta["tensors"] == "search-e00001.safetensors"
    # momentum buffers are tensors in the safetensors file, referenced from the JSON
    names = set(load_tensors(rd.path / "checkpoints" / "search-e00001.safetensors"))
    assert any(n.startswith("optim/w/") and n.endswith("momentum_buffer") for n in names)
    assert "rng/torch" in names


def test_missing_checkpoint_is_none_and_corrupt_checkpoint_names_the_file(tmp_path):
    rd = RunDir.create(tmp_path / "run", CONFIG)
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    assert rd.load_checkpoint("retrain", model, {"sgd": opt}) is None
    rd.save_checkpoint("retrain", 0, model, {"sgd": opt})
    tensors = rd.path / "checkpoints" / "retrain-e00000.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-10])  # a truncated write
    with pytest.raises(ValueError, match=r"retrain-e00000\.safetensors.*corrupt"):
        rd.load_checkpoint("retrain", model, {"sgd": opt})
    (rd.path / "checkpoints" / "retrain.json").write_text("{")
    with pytest.raises(ValueError, match=r"retrain\.json.*corrupt"):
        rd.load_checkpoint("retrain", model, {"sgd": opt})


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    rd = RunDir.create(tmp_path / "run", CONFIG)
    model = small_model()
    rd.save_checkpoint("retrain", 0, model, {})
    other = nn.Linear(3, 3)
    with pytest.raises(ValueError, match=r"does not fit this model"):
        rd.load_checkpoint("retrain", other, {})


def test_a_checkpoint_keeps_only_its_latest_tensors_and_is_gone_without_its_json(tmp_path):
    rd = RunDir.create(tmp_path / "run", CONFIG)
    model = small_model()
    assert not rd.has_checkpoint("retrain")
    rd.save_checkpoint("retrain", 0, model, {})
    assert rd.has_checkpoint("retrain")
    rd.save_checkpoint("retrain", 1, model, {})
    assert [p.name for p in (rd.path / "checkpoints").glob("retrain-*")] == ["retrain-e00001.safetensors"]
    rd.checkpoint_path("retrain").unlink()  # the JSON is written last: without it there is no checkpoint
    assert not rd.has_checkpoint("retrain")
    assert rd.load_checkpoint("retrain", model, {}) is None


def test_run_dir_rejects_bad_path_type():
    with pytest.raises(TypeError, match=r"path = 3: expected a str or os.PathLike"):
        RunDir(3)


def test_environment_info_records_versions():
    info = rundir_mod.environment_info("cpu")
    assert info["torch"] == torch.__version__ and info["device"] == "cpu"
    assert info["python"].count(".") == 2 and "dashkit" in info
    assert info["threads"] == torch.get_num_threads() and info["cpus"] == os.cpu_count()


def test_atomic_writes_give_files_the_usual_permissions(tmp_path):
    import os
    import stat

    from dashkit.rundir import atomic_write_text, save_tensors

    old = os.umask(0o022)
    try:
        a = atomic_write_text(tmp_path / "a.json", "{}")
        b = save_tensors(tmp_path / "b.safetensors", {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    for p in (a, b):  # mkstemp alone would leave 0600: unreadable for the rest of a team sharing a run folder
        assert stat.S_IMODE(p.stat().st_mode) == 0o644, p
