"""The run directory: every file a run writes, each written atomically, none of them a pickle.

Layout::

    config.json                 task name and the full RunConfig (a folder made with another config is refused)
    environment.json            versions, device, torch threads and CPUs, and start time of the latest
                                session
    archcard.json               the searched architecture (dashkit.ArchCard)
    alphas.json                 softmax(alpha) per layer per search epoch
    tune.json, baseline_tune.json   tuning trials and the chosen hyper-parameters
    init_dash.safetensors, init_baseline.safetensors   the shared initial weights of tuning and retraining
    dash.safetensors, baseline.safetensors   final weights (best validation epoch)
    random_<i>_archcard.json    draw i of the random-architecture control (dashkit.stages.control); its weights
                                init_random_<i>.safetensors, random_<i>.safetensors, its stage random_<i>_retrain
    metrics.json                test metrics of DASH, the baseline and each random draw ("random_<i>"), computed
                                once over the whole split, and the random draws' summary ("random")
    history_<stage>.csv         one row per epoch (or per trial, for tuning)
    figures/                    PNG figures
    checkpoints/                per-stage checkpoints (tensors in safetensors, the rest in JSON)
    done/<stage>.json           a stage's done marker, with its wall time

Atomic means: a temporary file in the same folder, flushed and fsynced, then ``os.replace``; a reader never
sees half a file, and a run killed at any moment leaves the previous version in place.
"""
from __future__ import annotations

import csv
import io
import json
import os
import platform
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

__all__ = ["RunDir", "atomic_write_bytes", "atomic_write_text", "save_tensors", "load_tensors",
           "environment_info", "config_diff"]

PathLike = Union[str, os.PathLike]


# --- atomic files ---------------------------------------------------------------------------------------
def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (temp file in the same folder, fsync, os.replace)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files: give the usual permissions of a new file
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove_quietly(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_tensors(path: PathLike, tensors: Mapping[str, torch.Tensor],
                 metadata: Optional[Mapping[str, str]] = None) -> Path:
    """Save named tensors as safetensors, atomically. Tensors are copied to CPU and made contiguous."""
    from safetensors.torch import save

    # clone: safetensors refuses tensors that share storage (tied weights, views of one buffer)
    data = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    return atomic_write_bytes(path, save(data, metadata=dict(metadata) if metadata else None))


def load_tensors(path: PathLike) -> Dict[str, torch.Tensor]:
    """Load a safetensors file; a missing or corrupt file raises an error that names it."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {str(path)!r} does not exist")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own SafetensorError on a truncated or foreign file
        raise ValueError(f"weights file {str(path)!r} is corrupt or not a safetensors file ({e}); "
                         f"delete it to recompute it") from e


def _fsync_dir(folder: Path) -> None:
    # the rename itself is durable only once the folder entry is on disk (POSIX); Windows has no dir fds
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove_quietly(path: PathLike) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


# --- config comparison -----------------------------------------------------------------------------------
def _flatten(data: Any, prefix: str = "") -> Dict[str, Any]:
    if isinstance(data, Mapping):
        out: Dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: data}


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Sequence[str] = ()) -> List[str]:
    """Dotted keys whose values differ, as ``"key: old -> new"`` lines."""
    a, b = _flatten(json.loads(json.dumps(old))), _flatten(json.loads(json.dumps(new)))
    lines = []
    for key in sorted(set(a) | set(b)):
        if any(key == i or key.startswith(i + ".") for i in ignore):
            continue
        if a.get(key, "<absent>") != b.get(key, "<absent>"):
            lines.append(f"{key}: {a.get(key, '<absent>')!r} -> {b.get(key, '<absent>')!r}")
    return lines


def environment_info(device: Any = None) -> Dict[str, Any]:
    """Versions and machine facts recorded with every run."""
    import dashkit

    info = {
        "dashkit": getattr(dashkit, "__version__", "unknown"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": str(device) if device is not None else None,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        # what a CPU run's timings (and so a time-budgeted run's steps) depend on
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    try:
        import optuna

        info["optuna"] = optuna.__version__
    except ImportError:
        pass
    return info


# --- the run directory --------------------------------------------------------------------------------------
class RunDir:
    """A run's folder. ``RunDir(path)`` opens an existing one for reading; :meth:`create` starts or resumes.

    Args:
        path: the folder.
    """

    CONFIG = "config.json"

    def __init__(self, path: PathLike, writable: bool = True):
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"path = {path!r}: expected a str or os.PathLike folder")
        self.path = Path(path)
        # False on the ranks > 0 of a torchrun launch: rank 0 alone writes, every write here is skipped
        self.writable = bool(writable)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @classmethod
    def create(cls, path: PathLike, config: Mapping[str, Any], overwrite: bool = False, resume: bool = True,
               ignore: Sequence[str] = (), new_keys: Sequence[str] = ()) -> "RunDir":
        """Open `path` for a run with `config`, creating it when needed.

        Args:
            path: the folder.
            config: a JSON-ready dict describing the run; stored as config.json.
            overwrite: delete an existing run in `path` (one with a config.json) and start afresh.
            resume: continue an existing run made with the same config; if False, an existing run is an error
                unless `overwrite` is True.
            ignore: dotted config keys that may differ on resume (e.g. ``"config.device"``).
            new_keys: top-level keys that a run made by an earlier version may lack (then not compared); when the
                stored config has one, it must match.

        Raises:
            ValueError: `path` holds a run with another config, or a folder that is not a run directory.
        """
        rd = cls(path)
        if rd.path.exists() and not rd.path.is_dir():
            raise ValueError(f"run directory {str(rd.path)!r} exists and is not a folder")
        has_run = (rd.path / cls.CONFIG).is_file()
        if rd.path.is_dir() and not has_run and any(rd.path.iterdir()):
            raise ValueError(f"run directory {str(rd.path)!r} is not empty and holds no {cls.CONFIG}: it is not "
                             f"a dashkit run; choose a new or empty folder")
        if has_run and overwrite:
            shutil.rmtree(rd.path)
            has_run = False
        if has_run:
            try:
                old = rd.read_json(cls.CONFIG)
            except ValueError as e:
                raise ValueError(f"run directory {str(rd.path)!r} has a corrupt {cls.CONFIG} ({e.__cause__}), so "
                                 f"its run cannot be resumed; pass overwrite=True (--overwrite) to start afresh, or "
                                 f"choose another folder") from e
            diff = config_diff(old, config, ignore=tuple(ignore) + tuple(k for k in new_keys if k not in old))
            if diff:
                raise ValueError(f"run directory {str(rd.path)!r} was made with another config ("
                                 f"{'; '.join(diff[:8])}{'; ...' if len(diff) > 8 else ''}); pass overwrite=True "
                                 f"(--overwrite) to replace it, or choose another folder")
            if not resume:
                raise ValueError(f"run directory {str(rd.path)!r} already holds a run; pass resume=True "
                                 f"(--resume) to continue it or overwrite=True (--overwrite) to replace it")
        rd.path.mkdir(parents=True, exist_ok=True)
        if not has_run:
            rd.write_json(cls.CONFIG, config)
        else:
            rd.remove_partial_writes()
        return rd

    def remove_partial_writes(self) -> List[str]:
        """Delete the temporary files of writes that a killed process left behind; returns their names.

        An atomic write's temporary file (``.<name>.<random>.tmp``) is never read as a result: the file it was
        to replace is still the previous complete version. This only tidies the folder.
        """
        removed = []
        if not self.writable or not self.path.is_dir():
            return removed
        for folder in (self.path, self.path / "checkpoints", self.path / "done", self.path / "figures"):
            if folder.is_dir():
                for p in folder.iterdir():
                    if p.is_file() and p.name.startswith(".") and (p.name.endswith(".tmp")
                                                                   or p.name.endswith(".tmp.png")):
                        _remove_quietly(p)
                        removed.append(str(p.relative_to(self.path)))
        return sorted(removed)

    # --- plain files -------------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def exists(self, name: str) -> bool:
        return (self.path / name).is_file()

    @property
    def figures(self) -> Path:
        p = self.path / "figures"
        if self.writable:
            p.mkdir(parents=True, exist_ok=True)
        return p

    def write_json(self, name: str, data: Any) -> Path:
        if not self.writable:
            return self.path / name
        return atomic_write_text(self.path / name, json.dumps(data, indent=2, sort_keys=False) + "\n")

    def read_json(self, name: str) -> Any:
        path = self.path / name
        if not path.is_file():
            raise FileNotFoundError(f"{str(path)!r} does not exist")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{str(path)!r} is corrupt (not valid JSON: {e}); delete it to recompute it") from e

    def save_weights(self, name: str, state_dict: Mapping[str, torch.Tensor]) -> Path:
        if not self.writable:
            return self.path / name
        return save_tensors(self.path / name, state_dict)

    def load_weights(self, name: str) -> Dict[str, torch.Tensor]:
        return load_tensors(self.path / name)

    # --- per-epoch CSV ----------------------------------------------------------------------------------
    def history_name(self, stage: str) -> str:
        return f"history_{stage}.csv"

    def write_history(self, stage: str, rows: Sequence[Mapping[str, Any]]) -> Path:
        """Write all rows of a stage's history (one row per epoch or trial) as CSV."""
        if not self.writable:
            return self.path / self.history_name(stage)
        columns: List[str] = []
        for row in rows:
            columns += [k for k in row if k not in columns]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})
        return atomic_write_text(self.path / self.history_name(stage), buf.getvalue())

    def read_history(self, stage: str) -> List[Dict[str, Any]]:
        """A stage's history rows; numbers come back as int or float. Missing file: empty list."""
        path = self.path / self.history_name(stage)
        if not path.is_file():
            return []
        with open(path, newline="", encoding="utf-8") as f:
            return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]

    # --- done markers ---------------------------------------------------------------------------------
    def _done_path(self, stage: str) -> Path:
        return self.path / "done" / f"{stage}.json"

    def is_done(self, stage: str, files: Iterable[str] = ()) -> bool:
        """True when the stage's marker exists and so do all of `files`."""
        return self._done_path(stage).is_file() and all((self.path / f).is_file() for f in files)

    def mark_done(self, stage: str, info: Optional[Mapping[str, Any]] = None) -> Path:
        if not self.writable:
            return self._done_path(stage)
        return atomic_write_text(self._done_path(stage), json.dumps(dict(info or {}), indent=2) + "\n")

    def done_info(self, stage: str) -> Dict[str, Any]:
        return self.read_json(f"done/{stage}.json")

    def done_stages(self) -> List[str]:
        folder = self.path / "done"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    # --- checkpoints ------------------------------------------------------------------------------------
    def checkpoint_path(self, stage: str) -> Path:
        """The checkpoint's JSON file; it names the tensors file, so the JSON is the commit point."""
        return self.path / "checkpoints" / f"{stage}.json"

    def save_checkpoint(self, stage: str, epoch: int, model: torch.nn.Module,
                        optimizers: Mapping[str, torch.optim.Optimizer], extra: Optional[Mapping[str, Any]] = None
                        ) -> Path:
        """Save model, optimisers, RNG states, the finished epoch and `extra` (JSON-ready).

        Tensors go to ``checkpoints/<stage>-e<epoch>.safetensors`` and everything else to
        ``checkpoints/<stage>.json``, written last; the previous tensors file is removed afterwards.
        """
        if not self.writable:
            return self.checkpoint_path(stage)
        tensors: Dict[str, torch.Tensor] = {f"model/{k}": v for k, v in model.state_dict().items()}
        optim_json: Dict[str, Any] = {}
        for name, opt in optimizers.items():
            sd = opt.state_dict()
            state_json: Dict[str, Dict[str, Any]] = {}
            for pid, st in sd["state"].items():
                state_json[str(pid)] = {}
                for key, value in st.items():
                    if torch.is_tensor(value):
                        tensors[f"optim/{name}/{pid}/{key}"] = value
                        state_json[str(pid)][key] = {"tensor": f"optim/{name}/{pid}/{key}"}
                    else:
                        state_json[str(pid)][key] = {"value": value}
            optim_json[name] = {"state": state_json, "param_groups": sd["param_groups"]}
        rng_json = _rng_state(tensors)
        tensor_name = f"{stage}-e{epoch:05d}.safetensors"
        folder = self.path / "checkpoints"
        save_tensors(folder / tensor_name, tensors)
        meta = {"stage": stage, "epoch": epoch, "tensors": tensor_name,
                "tensors_bytes": (folder / tensor_name).stat().st_size, "optimizers": optim_json,
                "rng": rng_json, "extra": dict(extra or {})}
        atomic_write_text(self.checkpoint_path(stage), json.dumps(meta) + "\n")
        for old in folder.glob(f"{stage}-e*.safetensors"):
            if old.name != tensor_name:
                _remove_quietly(old)
        return self.checkpoint_path(stage)

    def has_checkpoint(self, stage: str) -> bool:
        return self.checkpoint_path(stage).is_file()

    def load_checkpoint(self, stage: str, model: torch.nn.Module,
                        optimizers: Mapping[str, torch.optim.Optimizer], restore_rng: bool = True
                        ) -> Optional[Tuple[int, Dict[str, Any]]]:
        """Restore a stage's checkpoint into `model` and `optimizers`.

        Returns:
            (epoch, extra), or None when the stage has no checkpoint.

        Raises:
            ValueError: the checkpoint is corrupt or does not fit the model; the message names the file.
        """
        json_path = self.checkpoint_path(stage)
        if not json_path.is_file():
            return None
        meta = self.read_json(f"checkpoints/{stage}.json")
        try:
            name, expected_bytes = meta["tensors"], int(meta["tensors_bytes"])
            if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
                raise TypeError(f"tensors = {name!r} is not a file name in the checkpoints folder")
            tensor_path = json_path.parent / name
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"checkpoint {str(json_path)!r} is corrupt ({type(e).__name__}: {e}); delete it to "
                             f"restart the {stage!r} stage") from e
        if tensor_path.is_file() and tensor_path.stat().st_size != expected_bytes:
            raise ValueError(f"checkpoint file {str(tensor_path)!r} is corrupt (size "
                             f"{tensor_path.stat().st_size} bytes, expected {expected_bytes}); delete "
                             f"{str(json_path)!r} to restart the {stage!r} stage")
        try:
            tensors = load_tensors(tensor_path)
        except (FileNotFoundError, ValueError) as e:
            raise ValueError(f"checkpoint of stage {stage!r} cannot be read: {e}; delete {str(json_path)!r} to "
                             f"restart the stage") from e
        model_sd = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
        try:
            model.load_state_dict(model_sd)
        except RuntimeError as e:
            raise ValueError(f"checkpoint file {str(tensor_path)!r} does not fit this model ({e}); "
                             f"was it made with another config?") from e
        try:
            for name, opt in optimizers.items():
                if name not in meta["optimizers"]:
                    raise ValueError(f"checkpoint {str(json_path)!r} has no optimiser {name!r}")
                saved = meta["optimizers"][name]
                state = {}
                for pid, st in saved["state"].items():
                    state[int(pid)] = {k: (tensors[v["tensor"]] if "tensor" in v else v["value"])
                                       for k, v in st.items()}
                opt.load_state_dict({"state": state, "param_groups": saved["param_groups"]})
            if restore_rng:
                _set_rng_state(meta["rng"], tensors)
            epoch, extra = int(meta["epoch"]), dict(meta.get("extra", {}))
        except (KeyError, TypeError, IndexError, RuntimeError) as e:  # a JSON edited by hand, or a foreign one
            raise ValueError(f"checkpoint {str(json_path)!r} is corrupt or does not fit this stage "
                             f"({type(e).__name__}: {e}); delete it to restart the {stage!r} stage") from e
        return epoch, extra


def _rng_state(tensors: Dict[str, torch.Tensor]) -> Dict[str, Any]:
    """Put the torch RNG states into `tensors`; return numpy's and Python's as JSON."""
    tensors["rng/torch"] = torch.get_rng_state()
    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for i in range(n_cuda):
        tensors[f"rng/cuda/{i}"] = torch.cuda.get_rng_state(i)
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    tensors["rng/numpy"] = torch.from_numpy(np.asarray(keys, dtype=np.int64))
    version, pystate, gauss = random.getstate()
    return {"cuda_devices": n_cuda, "numpy": [kind, int(pos), int(has_gauss), float(cached)],
            "python": [version, list(pystate), gauss]}


def _set_rng_state(rng: Mapping[str, Any], tensors: Mapping[str, torch.Tensor]) -> None:
    torch.set_rng_state(tensors["rng/torch"])
    if torch.cuda.is_available():
        for i in range(min(int(rng.get("cuda_devices", 0)), torch.cuda.device_count())):
            torch.cuda.set_rng_state(tensors[f"rng/cuda/{i}"], i)
    kind, pos, has_gauss, cached = rng["numpy"]
    np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), pos, has_gauss, cached))
    version, pystate, gauss = rng["python"]
    random.setstate((version, tuple(pystate), gauss))


def _number(text: Any) -> Any:
    if not isinstance(text, str):
        return text
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
