"""Where dashkit keeps generated data."""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "cache_dir"]

_PKG = Path(__file__).resolve().parent


def data_dir() -> Path:
    """The folder for generated data sets.

    ``$DASHKIT_DATA`` when set; else ``data/`` of a source checkout; else ``~/.cache/dashkit``.
    """
    env = os.environ.get("DASHKIT_DATA")
    if env:
        p = Path(env)
    elif (_PKG.parent / "pyproject.toml").exists():
        p = _PKG.parent / "data" / "cache"
    else:
        p = Path.home() / ".cache" / "dashkit"
    p.mkdir(parents=True, exist_ok=True)
    return p


def cache_dir(name: str) -> Path:
    p = data_dir() / name
    p.mkdir(parents=True, exist_ok=True)
    return p
