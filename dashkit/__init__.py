"""dashkit: DASH (kernel size and dilation search for every convolution), to learn from and to use.

DASH: Shen, Khodak, Talwalkar et al., "Efficient Architecture Search for Diverse Tasks", NeurIPS 2022.
"""
from . import ops
from .dashconv import DashConv
from .space import SearchSpace
from .supernet import ArchCard, LayerChoice, discretize, to_supernet

__version__ = "0.1.0"

__all__ = ["SearchSpace", "DashConv", "to_supernet", "discretize", "ArchCard", "LayerChoice", "ops",
           "backbones", "tasks", "bench", "viz", "widgets", "run", "RunResult"]


def __getattr__(name):  # lazy submodules: `import dashkit` stays fast and light
    import importlib

    if name in ("backbones", "tasks", "bench", "viz", "widgets", "metrics", "pipeline", "stages", "launch"):
        return importlib.import_module(f".{name}", __name__)
    if name in ("run", "RunResult"):
        return getattr(importlib.import_module(".pipeline", __name__), name)
    raise AttributeError(f"module 'dashkit' has no attribute {name!r}")
