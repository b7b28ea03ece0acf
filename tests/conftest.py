import os

import pytest
import torch

os.environ.setdefault("DASHKIT_PROGRESS", "plain")
# Tiny tensors: intra-op threads cost more than they save (and the CI machine has 2 cores).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_clean_backend_cache():
    """Every test starts from seed 0 and with no measured FFT/direct choices (backend="auto" re-measures)."""
    from dashkit import conv_choice

    torch.manual_seed(0)
    conv_choice.clear_backend_cache()
    yield
    conv_choice.clear_backend_cache()


@pytest.fixture(scope="module")
def private_data_dir(tmp_path_factory):
    """Generated data sets of the requesting module go to a fresh folder, so their cache starts empty."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DASHKIT_DATA", str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture
def f64():
    """Run a test with float64 as the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture
def kill_tuning_at(monkeypatch):
    """``kill_tuning_at(n)``: the pipeline's n-th tuning trial raises KeyboardInterrupt (a kill, as the process sees
    it); returns the list that records the lr of every trial started."""
    from dashkit.stages import trials

    def kill(n: int) -> list:
        real, calls = trials.run_trial, []

        def trial(*args):
            calls.append(args[1]["lr"])
            if len(calls) == n:
                raise KeyboardInterrupt("killed")
            return real(*args)

        monkeypatch.setattr(trials, "run_trial", trial)
        return calls

    return kill


@pytest.fixture
def kill_after_checkpoint(monkeypatch):
    """``kill_after_checkpoint(stage, epoch)``: from then on, the first checkpoint written for ``stage`` at
    ``epoch`` (any stage or epoch where None) is written whole, then KeyboardInterrupt("killed after the STAGE
    checkpoint of epoch E") is raised, a kill as the process sees it; ``monkeypatch.undo()`` disarms it."""
    from dashkit.rundir import RunDir

    real = RunDir.save_checkpoint

    def arm(stage=None, epoch=None):
        def save(self, saved_stage, saved_epoch, *args, **kwargs):
            path = real(self, saved_stage, saved_epoch, *args, **kwargs)
            if stage in (None, saved_stage) and epoch in (None, saved_epoch):
                raise KeyboardInterrupt(f"killed after the {saved_stage} checkpoint of epoch {saved_epoch}")
            return path

        monkeypatch.setattr(RunDir, "save_checkpoint", save)

    return arm
