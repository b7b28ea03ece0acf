"""Tasks: a registry of learning problems (offline generators, NAS-Bench-360 loaders, your own arrays).

    >>> import dashkit
    >>> dashkit.tasks.names()
    >>> task = dashkit.tasks.get("mnist1d")
"""
from .base import KINDS, TASKS, SmallSplitWarning, Task, TaskDefaults, get, names, register, shuffle_targets
from . import offline_simple, offline_darcy, offline_genomics, offline_ecg  # noqa: F401  (register tasks)
from . import planted  # noqa: F401  (register the planted-architecture tasks)
from . import nb360  # noqa: F401  (register NAS-Bench-360 loaders)
from .byod import EmptyClassWarning, SeriesLengthWarning, from_arrays

__all__ = ["Task", "TaskDefaults", "TASKS", "KINDS", "get", "names", "register", "from_arrays", "EmptyClassWarning",
           "SeriesLengthWarning", "SmallSplitWarning", "shuffle_targets"]
