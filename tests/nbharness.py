"""Helpers shared by the notebook test files."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator


@contextlib.contextmanager
def deadline(seconds: int, what: str) -> Iterator[None]:
    """Raise TimeoutError after ``seconds`` even if a kernel hangs (papermill's own timeout is per cell).

    POSIX main thread only; elsewhere it does nothing.
    """
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise TimeoutError(f"{what} did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def kernel_environment(mp: Any) -> None:
    """The environment a papermill kernel inherits in the tests (``mp``: a ``pytest.MonkeyPatch``).

    One torch thread per kernel (tiny tensors; two kernels at once on a 2-core machine spin against each other with
    torch's default of one thread per core), plain progress lines, and no ``MPLBACKEND=Agg``, which would drop the
    figures from the executed notebook.
    """
    mp.setenv("OMP_NUM_THREADS", "1")
    mp.setenv("DASHKIT_PROGRESS", "plain")
    mp.delenv("MPLBACKEND", raising=False)
