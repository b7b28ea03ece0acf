import os

import pytest
import torch

os.environ.setdefault("DASHKIT_PROGRESS", "plain")
# Tiny tensors: intra-op threads cost more than they save (and the CI machine has 2 cores).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def f64():
    """Run a test with float64 as the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
