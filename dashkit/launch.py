"""Starting a data-parallel run from Python: the torchrun command line, and a launch that waits for it.

    from dashkit.launch import launch, torchrun_command

    print(" ".join(torchrun_command("mnist1d", "runs/ddp", nproc=2)))  # what a terminal runs
    result = launch("mnist1d", "runs/ddp", nproc=2)                    # the same from a notebook, then the result

Each process of the launch runs ``python -m dashkit run`` under torchrun (see `dashkit.distributed` for what holds
with N processes); the result is read back from the run directory.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, List, Mapping, Optional, Sequence

from .pipeline import RunResult, load_result

__all__ = ["torchrun_command", "launch"]


def torchrun_command(task: str, out: str, nproc: int = 2, preset: str = "smoke", seed: int = 0,
                     device: str = "cpu", settings: Optional[Mapping[str, Any]] = None,
                     imports: Sequence[str] = (), resume: bool = False) -> List[str]:
    """The torchrun command line of a data-parallel ``dashkit run`` (what a terminal or a notebook runs).

    Example:
        >>> " ".join(torchrun_command("mnist1d", "runs/ddp", nproc=2))
        '... -m torch.distributed.run --standalone --nproc_per_node 2 -m dashkit run mnist1d --preset smoke ...'
    """
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ValueError(f"nproc must be a positive int, got {nproc!r}")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "dashkit", "run", str(task), "--preset", preset, "--out", str(out), "--seed", str(seed),
           "--device", device]
    for module in imports:
        cmd += ["--import", str(module)]
    if resume:
        cmd.append("--resume")
    if settings:
        cmd.append("--set")
        cmd += [f"{k}={json.dumps(v) if not isinstance(v, str) else v}" for k, v in settings.items()]
    return cmd


def launch(task: str, out: str, nproc: int = 2, preset: str = "smoke", seed: int = 0, device: str = "cpu",
           settings: Optional[Mapping[str, Any]] = None, imports: Sequence[str] = (), resume: bool = False,
           threads_per_process: int = 1, echo: bool = True) -> RunResult:
    """Run ``dashkit run`` under torchrun with ``nproc`` processes and wait for it (from a notebook or a script).

    Each process gets ``threads_per_process`` intra-op threads (OMP_NUM_THREADS), so N processes share the cores
    instead of fighting over them. The output of the processes is printed as it comes; a failure raises
    RuntimeError with the end of that output. Returns the run's ``RunResult`` (read back from ``out``).
    """
    cmd = torchrun_command(task, out, nproc, preset, seed, device, settings, imports, resume)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads_per_process), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    tail: List[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line])[-40:]
        if echo:
            print(line, end="", flush=True)
    if proc.wait() != 0:
        raise RuntimeError(f"torchrun exited with status {proc.returncode}; its last lines:\n{''.join(tail)}")
    return load_result(out)
