"""One progress helper for every loop: a tqdm bar where a person watches, plain lines everywhere else.

``tqdm.auto`` draws an ipywidgets bar in any Jupyter kernel; executed by papermill or shown in a CI log that
widget stays frozen at 0%. So the mode is chosen here, once per bar:

- ``DASHKIT_PROGRESS`` = ``bar`` | ``plain`` | ``off`` wins when set;
- ``CI`` set to a true value, or a kernel started by papermill: plain lines;
- a live Jupyter kernel: tqdm's notebook widget;
- a terminal (stderr is a TTY): tqdm's text bar;
- anything else (a pipe, a log file): plain lines.

Plain mode prints a line at about every 10% of the work and at the end, to stdout.

A run with a time budget sets a deadline (`set_deadline`); every bar then shows the time left (``left=42s``).
"""
from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable, Iterator, Optional, TextIO

__all__ = ["progress", "progress_mode", "PlainProgress", "set_deadline", "time_left"]

_MODES = ("bar", "notebook", "plain", "off")
_DEADLINE: Optional[float] = None  # time.monotonic() at which a run's time budget ends


def set_deadline(deadline: Optional[float]) -> None:
    """Show the time left until ``deadline`` (a ``time.monotonic()`` value) on every bar; None: stop showing it."""
    global _DEADLINE
    _DEADLINE = deadline


def time_left() -> Optional[float]:
    """Seconds until the deadline set by `set_deadline` (negative once past it), or None without one."""
    return None if _DEADLINE is None else _DEADLINE - time.monotonic()


def _with_left(values: dict) -> dict:
    left = time_left()
    return values if left is None else {**values, "left": f"{left:.0f}s"}


def progress_mode() -> str:
    """How bars are shown now: "notebook", "bar", "plain" or "off"."""
    env = os.environ.get("DASHKIT_PROGRESS", "").strip().lower()
    if env:
        if env not in ("bar", "plain", "off"):
            raise ValueError(f"DASHKIT_PROGRESS = {env!r}: expected 'bar', 'plain' or 'off'")
        if env == "bar":
            return "notebook" if _in_live_kernel() else "bar"
        return env
    if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return "plain"
    if _in_kernel():
        return "plain" if _started_by_papermill() else "notebook"
    stream = sys.stderr
    if stream is not None and hasattr(stream, "isatty") and stream.isatty():
        return "bar"
    return "plain"


def progress(iterable: Optional[Iterable[Any]] = None, total: Optional[int] = None, desc: str = "",
             every: float = 0.1, file: Optional[TextIO] = None, leave: bool = True, initial: int = 0) -> Any:
    """Wrap an iterable with the right kind of progress display.

    Args:
        iterable: what to iterate over (None: update by hand with ``.update(n)``).
        total: number of items; taken from ``len(iterable)`` when it has one.
        desc: a short label printed before the bar or line.
        every: in plain mode, print a line each time this fraction of ``total`` is passed.
        file: plain mode's output stream (default: ``sys.stdout`` at print time).
        leave: keep the finished bar on screen (tqdm modes).
        initial: items already done (a resumed loop).

    Returns:
        An iterable with ``set_postfix(**values)``, ``update(n)`` and ``close()``; usable as a context manager.

    Example:
        >>> for x, y in progress(loader, desc="epoch 1"):
        ...     ...
    """
    if total is None and iterable is not None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    mode = progress_mode()
    if mode == "notebook":
        try:
            from tqdm.notebook import tqdm as tqdm_notebook

            return _left_shown(tqdm_notebook(iterable, total=total, desc=desc, leave=leave, initial=initial))
        except ImportError:  # no ipywidgets: a text bar still works in a live notebook
            mode = "bar"
    if mode == "bar":
        from tqdm.std import tqdm as tqdm_text

        return _left_shown(tqdm_text(iterable, total=total, desc=desc, leave=leave, dynamic_ncols=True,
                                     initial=initial))
    return PlainProgress(iterable, total=total, desc=desc, every=every, file=file, silent=(mode == "off"),
                         initial=initial)


def _left_shown(bar: Any) -> Any:
    """A tqdm bar whose postfix carries the time left while a deadline is set."""
    if _DEADLINE is not None:
        original = bar.set_postfix

        def set_postfix(ordered_dict: Optional[dict] = None, refresh: bool = True, **values: Any) -> None:
            original(_with_left({**(ordered_dict or {}), **values}), refresh=refresh)

        bar.set_postfix = set_postfix
        bar.set_postfix()
    return bar


class PlainProgress:
    """Periodic plain text lines: ``desc: 50/100 (50%) 3.2s loss=0.41``."""

    def __init__(self, iterable: Optional[Iterable[Any]] = None, total: Optional[int] = None, desc: str = "",
                 every: float = 0.1, file: Optional[TextIO] = None, silent: bool = False, initial: int = 0):
        if not 0 < every <= 1:
            raise ValueError(f"every = {every!r}: expected a fraction in (0, 1]")
        self.iterable, self.total, self.desc, self.every = iterable, total, desc, every
        self.file, self.silent = file, silent
        self.n = initial
        self.postfix: dict = {}
        self._start = time.perf_counter()
        self._next_mark = every
        if total:
            while self._next_mark <= initial / total + 1e-12:
                self._next_mark += every
        self._next_count = 1  # without a total: print at 1, 2, 4, 8, ... items
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        if self.iterable is None:
            raise TypeError("this progress object has no iterable; call update(n) instead")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __len__(self) -> int:
        if self.total is None:
            raise TypeError("progress total is unknown")
        return self.total

    def __enter__(self) -> "PlainProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_postfix(self, ordered_dict: Optional[dict] = None, refresh: bool = True, **values: Any) -> None:
        self.postfix = {**(ordered_dict or {}), **values}

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total:
            if self.n / self.total + 1e-12 >= self._next_mark and self.n < self.total:
                self._print()
                while self._next_mark <= self.n / self.total + 1e-12:
                    self._next_mark += self.every
        elif self.n >= self._next_count:
            self._print()
            while self._next_count <= self.n:
                self._next_count *= 2

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._print()

    def _print(self) -> None:
        if self.silent:
            return
        elapsed = time.perf_counter() - self._start
        count = f"{self.n}/{self.total} ({100.0 * self.n / self.total:.0f}%)" if self.total else f"{self.n}"
        post = " ".join(f"{k}={_fmt(v)}" for k, v in _with_left(self.postfix).items())
        line = " ".join(s for s in (f"{self.desc}:" if self.desc else "", count, f"{elapsed:.1f}s", post) if s)
        stream = self.file if self.file is not None else sys.stdout
        print(line, file=stream, flush=True)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _in_kernel() -> bool:
    shell = _ipython_shell()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def _in_live_kernel() -> bool:
    return _in_kernel() and not _started_by_papermill()


def _ipython_shell() -> Any:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:
        return ipython.get_ipython()
    except Exception:  # an IPython that is half imported or shut down
        return None


def _started_by_papermill() -> bool:
    """True when this kernel's parent process is papermill (its command line names it).

    papermill sets no environment variable in the kernel, so the parent's command line is the only trace;
    runs driven through papermill's Python API from another program should set DASHKIT_PROGRESS=plain.
    """
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
            return b"papermill" in f.read()
    except OSError:  # no /proc (macOS, Windows)
        return False
