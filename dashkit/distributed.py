"""Data parallelism under torchrun: one process per device, DistributedDataParallel, whole-split metrics.

    torchrun --nproc_per_node 2 -m dashkit run mnist1d --preset smoke --out runs/m1

torchrun starts one process per device and gives each RANK, WORLD_SIZE and LOCAL_RANK; :func:`setup` reads them
and joins the process group (gloo on CPU, nccl on CUDA, each process on ``cuda:LOCAL_RANK``). Without them every
function here is a no-op, so the pipeline runs in one process exactly as before.

What holds with N processes:

- A step still sees ``batch_size`` examples: each rank takes ``batch_size / N`` of them from its
  ``DistributedSampler`` shard, reshuffled with the epoch's seed. Steps per epoch and learning rates of a config
  do not depend on N.
- DDP averages the gradients of every parameter during backward, alpha included (it is a registered parameter).
  DASH's arch-gradient post-processing runs after backward has returned, on the averaged gradient, and is a
  deterministic function of it, so every rank takes the same step and holds the same alpha; the pipeline checks
  this bit for bit after every search epoch (and after every step with ``DASHKIT_CHECK_SYNC=1``).
- BatchNorm stays plain BatchNorm: in training each rank normalises with the statistics of its own
  ``batch_size / N`` examples. DDP broadcasts rank 0's buffers before each forward, and :func:`broadcast_buffers`
  does so again before every evaluation, so the running statistics evaluated and saved are rank 0's.
  (SyncBatchNorm would need CUDA and a collective per BatchNorm layer; with it per-step statistics would match a
  single process, but the default kernels vs searched kernels comparison does not depend on it.)
- Metrics are computed over the whole split: each rank evaluates a contiguous shard, the outputs and targets are
  all-gathered in order, and every rank computes the one metric on all of them (never an average of per-rank
  metrics).
- Only rank 0 writes files; the other ranks wait at a barrier where they read what rank 0 wrote. An error that
  rank 0 meets while alone (say, a run directory made with another config) is sent to every rank, which raises it
  too, instead of waiting forever.

Starting torchrun from Python (a notebook, a script) is `dashkit.launch`'s job: this module is the collectives
alone and imports nothing of the pipeline.

Debugging: ``DASHKIT_RANK_DUMP=FOLDER`` makes every rank write what it holds (alpha per search epoch, its final
card and metrics) to ``FOLDER/<name>.rank<r>.json``; the tests compare these across ranks.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Mapping, Optional, Sequence, Tuple, TypeVar

import torch
from torch import nn

__all__ = ["Launch", "launch_env", "setup", "teardown", "is_distributed", "rank", "world_size", "is_main",
           "barrier", "wrap", "per_rank_batch", "train_sampler", "shard_range", "all_gather_cat", "all_reduce_sum",
           "broadcast_buffers", "broadcast_floats", "main_decides", "on_main", "check_same", "debug_dump",
           "float_bits", "sync_check_every_step"]

T = TypeVar("T")
_ERRORS = {cls.__name__: cls for cls in (ValueError, TypeError, FileNotFoundError, FloatingPointError, KeyError,
                                         RuntimeError)}


# ------------------------------------------------------------------------------------------ the launch
@dataclass(frozen=True)
class Launch:
    """Where this process sits in a torchrun launch."""

    rank: int
    world_size: int
    local_rank: int


def _env_int(environ: Mapping[str, str], name: str, low: int) -> int:
    raw = environ[name]
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} = {raw!r}: expected an int >= {low} (as torchrun sets "
                         f"it)") from None
    if value < low:
        raise ValueError(f"environment variable {name} = {raw!r}: expected an int >= {low} (as torchrun sets it)")
    return value


def launch_env(environ: Optional[Mapping[str, str]] = None) -> Optional[Launch]:
    """The torchrun launch this process belongs to, from RANK, WORLD_SIZE and LOCAL_RANK; None without torchrun.

    Raises:
        ValueError: the variables are set but not valid (e.g. RANK >= WORLD_SIZE).
    """
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    world = _env_int(env, "WORLD_SIZE", 1)
    r = _env_int(env, "RANK", 0) if "RANK" in env else 0
    if r >= world:
        raise ValueError(f"environment variable RANK = {r!r}: expected 0 <= RANK < WORLD_SIZE = {world}")
    local = _env_int(env, "LOCAL_RANK", 0) if "LOCAL_RANK" in env else r
    return Launch(rank=r, world_size=world, local_rank=local)


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    dist = _dist()
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return _dist().get_rank() if is_distributed() else 0


def world_size() -> int:
    return _dist().get_world_size() if is_distributed() else 1


def is_main() -> bool:
    """True on rank 0 (and in a single process): the process that writes files."""
    return rank() == 0


def setup(device: Any = "auto") -> torch.device:
    """Join torchrun's process group when this process was launched by torchrun; return its device.

    Args:
        device: the configured device ("auto", "cpu", "cuda", "cuda:N", "mps"). Under torchrun a CUDA device
            becomes ``cuda:LOCAL_RANK``: one GPU per process.

    Returns:
        The torch.device this process computes on. Calling it again is harmless.
    """
    from .config import resolve_device

    dev = resolve_device(device)
    launch = launch_env()
    if launch is None or launch.world_size == 1:
        return dev
    if dev.type == "mps":
        raise ValueError(f"device = {device!r}: MPS has no torch.distributed backend; run one process, or use "
                         f"device='cpu' under torchrun")
    if dev.type == "cuda":
        if launch.local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK = {launch.local_rank} but this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s); start at most that many processes per node")
        dev = torch.device("cuda", launch.local_rank)
        torch.cuda.set_device(dev)
    dist = _dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=launch.rank,
                                world_size=launch.world_size)
    elif dist.get_world_size() != launch.world_size:
        raise ValueError(f"a process group of {dist.get_world_size()} processes exists already, but "
                         f"WORLD_SIZE = {launch.world_size}")
    return dev


def teardown() -> None:
    """Leave the process group (at the end of a command), if one was joined."""
    dist = _dist()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing to wait for in one process)."""
    if is_distributed():
        _dist().barrier()


def sync_check_every_step() -> bool:
    """``DASHKIT_CHECK_SYNC=1``: check alpha on every rank after every search step, not only every epoch."""
    return os.environ.get("DASHKIT_CHECK_SYNC", "").strip().lower() in ("1", "true", "yes")


# ------------------------------------------------------------------------------------------------ the model
def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel for training steps (the model itself in one process).

    Keep using ``model`` for everything else (optimisers, checkpoints, evaluation, ``dash_layers``): DDP shares its
    parameters and only adds the gradient all-reduce to backward.
    """
    if not is_distributed():
        return model
    from torch.nn.parallel import DistributedDataParallel

    # DDP's default syncs rank 0's buffers before every forward (the flag's name changes between torch versions)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


@torch.no_grad()
def broadcast_buffers(model: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if not is_distributed():
        return
    dist = _dist()
    for buf in model.buffers():
        if buf.numel():
            dist.broadcast(buf, src=0)


# ------------------------------------------------------------------------------------------------- the data
def per_rank_batch(batch_size: int, setting: str = "batch_size") -> int:
    """Each rank's share of a batch: ``batch_size / world_size``, which must be a whole number.

    Args:
        batch_size: the configured batch (what one step sees over all ranks).
        setting: the setting's name, for the error message.
    """
    n = world_size()
    if batch_size % n:
        lo, hi = n * (batch_size // n), n * (batch_size // n + 1)
        raise ValueError(f"{setting} = {batch_size!r} cannot be split over WORLD_SIZE = {n} processes; choose a "
                         f"multiple of {n} (e.g. {lo or hi} or {hi})")
    return batch_size // n


def train_sampler(dataset: Any, seed: int) -> Any:
    """This rank's shuffled shard of ``dataset``; the order depends only on ``seed`` (one seed per epoch)."""
    from torch.utils.data import DistributedSampler

    return DistributedSampler(dataset, num_replicas=world_size(), rank=rank(), shuffle=True, seed=seed,
                              drop_last=False)


def shard_range(n: int) -> Tuple[int, int]:
    """``[lo, hi)``: this rank's contiguous part of ``n`` items; parts differ in size by at most one.

    With fewer items than ranks every rank takes them all (there is nothing worth sharing).
    """
    w, r = world_size(), rank()
    if n < w:
        return 0, n
    base, extra = divmod(n, w)
    lo = r * base + min(r, extra)
    return lo, lo + base + (1 if r < extra else 0)


def _comm_device() -> torch.device:
    dist = _dist()
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_cat(shard: torch.Tensor, n: int) -> torch.Tensor:
    """The whole of a split from each rank's :func:`shard_range` part, in order, on every rank.

    Args:
        shard: (hi - lo, *rest) this rank's rows.
        n: rows in the whole split.

    Returns:
        (n, *rest) on the CPU, the same tensor on every rank.
    """
    if not is_distributed() or n < world_size():
        return shard
    dist = _dist()
    w = world_size()
    rows = -(-n // w)  # the largest part: every rank pads to it, as all_gather needs equal sizes
    as_bool = shard.dtype == torch.bool
    t = (shard.to(torch.uint8) if as_bool else shard).to(_comm_device())
    padded = t.new_zeros((rows,) + tuple(t.shape[1:]))
    padded[: t.shape[0]] = t
    parts = [torch.empty_like(padded) for _ in range(w)]
    dist.all_gather(parts, padded)
    base, extra = divmod(n, w)
    out = torch.cat([p[: base + (1 if i < extra else 0)] for i, p in enumerate(parts)]).cpu()
    return out.to(torch.bool) if as_bool else out


def all_reduce_sum(values: Sequence[float]) -> List[float]:
    """Sums of ``values`` over the ranks (float64), the same on every rank."""
    if not is_distributed():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_comm_device())
    _dist().all_reduce(t)
    return t.cpu().tolist()


def broadcast_floats(values: Optional[Sequence[float]], n: int) -> List[float]:
    """Rank 0's ``n`` numbers on every rank (other ranks pass None)."""
    if not is_distributed():
        assert values is not None
        return [float(v) for v in values]
    t = torch.zeros(n, dtype=torch.float64, device=_comm_device())
    if is_main():
        assert values is not None and len(values) == n
        t.copy_(torch.tensor([float(v) for v in values], dtype=torch.float64))
    _dist().broadcast(t, src=0)
    return t.cpu().tolist()


def main_decides(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank: decisions that read files rank 0 writes must agree everywhere."""
    return bool(broadcast_floats([1.0 if flag else 0.0] if is_main() else None, 1)[0])


def _broadcast_text(text: Optional[str]) -> str:
    data = (text or "").encode("utf-8") if is_main() else b""
    size = int(broadcast_floats([len(data)] if is_main() else None, 1)[0])
    buf = torch.zeros(size, dtype=torch.uint8, device=_comm_device())
    if is_main() and size:
        buf.copy_(torch.frombuffer(bytearray(data), dtype=torch.uint8))
    if size:
        _dist().broadcast(buf, src=0)
    return bytes(buf.cpu().tolist()).decode("utf-8")


def on_main(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Optional[T]:
    """Run ``fn`` on rank 0 only; the others wait, and raise rank 0's error if it failed.

    Returns:
        ``fn``'s result on rank 0, None on the other ranks.
    """
    if not is_distributed():
        return fn(*args, **kwargs)
    result, error = None, None
    if is_main():
        try:
            result = fn(*args, **kwargs)
        except Exception as e:  # every rank must learn of it, or the others would wait at the next collective
            error = e
    message = _broadcast_text(None if error is None else json.dumps([type(error).__name__, str(error)]))
    if error is not None:
        raise error
    if message:
        kind, text = json.loads(message)
        raise _ERRORS.get(kind, RuntimeError)(text if kind in _ERRORS else f"rank 0 failed: {kind}: {text}")
    return result


# ------------------------------------------------------------------------------------------------- checks
def check_same(tensors: Sequence[torch.Tensor], what: str) -> None:
    """Raise unless ``tensors`` hold the same bits on every rank (an all-gather of their values).

    Float32 and bfloat16 values are exact in float64, so comparing float64 copies compares the bits.
    """
    if not is_distributed():
        return
    flat = torch.cat([t.detach().reshape(-1).double() for t in tensors]).to(_comm_device())
    parts = [torch.empty_like(flat) for _ in range(world_size())]
    _dist().all_gather(parts, flat)
    for r, p in enumerate(parts[1:], start=1):
        if not torch.equal(p, parts[0]):
            diff = (p - parts[0]).abs().max().item()
            raise RuntimeError(f"{what} differs between rank 0 and rank {r} (largest difference {diff:.3g}): the "
                               f"ranks have drifted apart; please report this as a bug")


def debug_dump(name: str, data: Any) -> Optional[Path]:
    """With ``DASHKIT_RANK_DUMP=FOLDER``: write ``data`` (JSON) to ``FOLDER/<name>.rank<r>.json``."""
    folder = os.environ.get("DASHKIT_RANK_DUMP")
    if not folder:
        return None
    from .rundir import atomic_write_text

    return atomic_write_text(Path(folder) / f"{name}.rank{rank()}.json", json.dumps(data) + "\n")


def float_bits(values: Sequence[float]) -> List[str]:
    """Exact text of floats (``float.hex``), for bit-for-bit comparisons in JSON."""
    return [float(v).hex() if math.isfinite(v) else repr(float(v)) for v in values]
