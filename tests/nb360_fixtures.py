"""Writers of TINY NAS-Bench-360 files, each in its task's exact original format, for the loader tests.

Each ``write_*`` function writes into a folder and returns the arrays it wrote, so a test can check that a
loader reads back exactly those values.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import pickle
import tarfile
from pathlib import Path
from typing import Any, Dict, Sequence

import numpy as np


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def write_cifar100(root: Path, n_train: int = 12, n_test: int = 6, extracted: bool = False) -> Dict[str, Any]:
    """cifar-100-python.tar.gz holding the pickled batches train / test / meta, keyed by bytes like the original."""
    rng = _rng(1)
    batches = {}
    for split, n in (("train", n_train), ("test", n_test)):
        batches[split] = {
            b"filenames": [f"img_{i}.png".encode() for i in range(n)],
            b"batch_label": f"{split} batch".encode(),
            b"fine_labels": [int(v) for v in (np.arange(n) * 7) % 100],
            b"coarse_labels": [int(v) for v in (np.arange(n) * 3) % 20],
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
        }
    meta = {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"s{i}".encode() for i in range(20)]}
    members = {"train": batches["train"], "test": batches["test"], "meta": meta}
    if extracted:
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for name, obj in members.items():
            (folder / name).write_bytes(pickle.dumps(obj, protocol=2))
    else:
        with tarfile.open(root / "cifar-100-python.tar.gz", "w:gz") as tar:
            for name, obj in members.items():
                blob = pickle.dumps(obj, protocol=2)
                info = tarfile.TarInfo(f"cifar-100-python/{name}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    return {split: (b[b"data"], np.array(b[b"fine_labels"])) for split, b in batches.items()}


def write_spherical(root: Path, n_train: int = 10, n_test: int = 4, size: int = 6) -> Dict[str, Any]:
    """s2_cifar100.gz: a gzip-compressed pickle {"train": {"images", "labels"}, "test": {...}}."""
    rng = _rng(2)
    data = {split: {"images": rng.integers(0, 256, size=(n, 3, size, size), dtype=np.uint8),
                    "labels": (np.arange(n) * 11) % 100}
            for split, n in (("train", n_train), ("test", n_test))}
    with gzip.open(root / "s2_cifar100.gz", "wb") as f:
        pickle.dump(data, f)
    return data


def write_ninapro(root: Path, sizes: Sequence[int] = (8, 4, 5)) -> Dict[str, Any]:
    """ninapro_{train,val,test}.npy (N, 52, 16) and label_{...}.npy (N,)."""
    rng = _rng(3)
    out = {}
    for split, n in zip(("train", "val", "test"), sizes):
        x = rng.normal(size=(n, 52, 16)).astype(np.float32)
        y = (np.arange(n) * 5) % 18
        np.save(root / f"ninapro_{split}.npy", x)
        np.save(root / f"label_{split}.npy", y)
        out[split] = (x, y)
    return out


FSD_LABELS = {"Bark": 0, "Meow": 1, "Speech": 2}


def write_fsd50k(root: Path, sizes: Sequence[int] = (3, 2, 2), rate: int = 22050) -> Dict[str, Any]:
    """tr.csv / val.csv / eval.csv (columns files, labels) + lbl_map.json + 16-bit PCM wav chunks of tones.

    Train lists paths relative to root; eval lists absolute paths, as the baseline wrote them; validation lists
    absolute paths of another machine (the folder was moved), which the loader finds under root/clips.
    """
    from scipy.io import wavfile

    (root / "clips").mkdir()
    (root / "lbl_map.json").write_text(json.dumps(FSD_LABELS))
    label_sets = [("Bark",), ("Meow", "Speech"), ("Speech",), ("Bark", "Meow")]
    written: Dict[str, Any] = {}
    k = 0
    for split, csv_name, n in zip(("train", "val", "test"), ("tr.csv", "val.csv", "eval.csv"), sizes):
        rows = []
        for i in range(n):
            t = np.arange(rate) / rate
            wave = (0.3 * np.sin(2 * np.pi * (300 + 200 * k) * t) * 32767).astype(np.int16)
            rel = f"clips/{split}_{i}.wav"
            wavfile.write(root / rel, rate, wave)
            labels = label_sets[k % len(label_sets)]
            listed = {"train": rel, "val": f"/machine/that/cut/the/chunks/{rel}", "test": str(root / rel)}[split]
            rows.append({"files": listed, "labels": ",".join(labels),
                         "ext": f"{split}{i}"})
            k += 1
        with open(root / csv_name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["files", "labels", "ext"])
            writer.writeheader()
            writer.writerows(rows)
        written[split] = rows
    return written


def _matlab_v73(path: Path, fields: Dict[str, np.ndarray]) -> None:
    """A MATLAB v7.3 file: HDF5 after a 512-byte user block that starts with MATLAB's 128-byte header;
    arrays are stored column-major, so HDF5 sees each one with its axes reversed."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        for name, arr in fields.items():
            f.create_dataset(name, data=np.ascontiguousarray(arr.transpose()))
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 ."
    header = text.ljust(116, b" ") + b"\x00" * 8 + b"\x00\x02" + b"IM"
    with open(path, "r+b") as f:
        f.write(header)


def write_darcy(root: Path, n_dev: int = 12, n_test: int = 4, grid: int = 21, version: str = "v5") -> Dict[str, Any]:
    """piececonst_r421_N1024_smooth{1,2}.mat with fields coeff and sol (N, grid, grid), MATLAB v5 or v7.3."""
    import scipy.io

    rng = _rng(4)
    out = {}
    for name, n in (("piececonst_r421_N1024_smooth1.mat", n_dev), ("piececonst_r421_N1024_smooth2.mat", n_test)):
        fields = {"coeff": np.where(rng.normal(size=(n, grid, grid)) > 0, 12.0, 3.0),
                  "sol": rng.uniform(0.0, 0.01, size=(n, grid, grid))}
        if version == "v5":
            scipy.io.savemat(root / name, fields)
        else:
            _matlab_v73(root / name, fields)
        out[name] = fields
    return out


def _protein(length: int, rng: np.random.Generator) -> Dict[str, Any]:
    return {"seq": "".join(rng.choice(list("ACDEFGHIKLMNPQRSTVWY"), size=length)),
            "ss": rng.uniform(size=(3, length)), "pssm": rng.uniform(size=(length, 22)),
            "sa": rng.uniform(size=length), "entropy": rng.uniform(size=length),
            "ccmpred": rng.normal(size=(length, length)), "freecon": rng.normal(size=(length, length)),
            "potential": rng.normal(size=(length, length))}


def _distances(length: int, rng: np.random.Generator) -> np.ndarray:
    pos = rng.normal(scale=4.0, size=(length, 3))  # a compact blob: many pairs closer than 8 A
    return np.sqrt(((pos[:, None] - pos[None, :]) ** 2).sum(-1))


def write_psicov(root: Path, deepcov: Sequence[int] = (10, 6, 12, 9), psicov: Sequence[int] = (30, 26),
                 pickled_maps: bool = True) -> Dict[str, Any]:
    """PDNET's layout: deepcov.lst / psicov.lst, <set>/features/<id>.pkl, <set>/distance/<id>-cb.npy.

    Distance maps are PDNET's pickled (length, sequence, map) triples, or plain arrays when pickled_maps is False.
    """
    rng = _rng(5)
    out: Dict[str, Any] = {}
    for subset, lengths in (("deepcov", deepcov), ("psicov", psicov)):
        (root / subset / "features").mkdir(parents=True)
        (root / subset / "distance").mkdir(parents=True)
        ids = [f"{subset[:2]}{i:03d}" for i in range(len(lengths))]
        (root / f"{subset}.lst").write_text("".join(f"{p}\n" for p in ids))
        for pid, length in zip(ids, lengths):
            feats, dist = _protein(length, rng), _distances(length, rng)
            with open(root / subset / "features" / f"{pid}.pkl", "wb") as f:
                pickle.dump(feats, f)
            target = root / subset / "distance" / f"{pid}-cb.npy"
            if pickled_maps:
                triple = np.empty(3, dtype=object)
                triple[:] = [length, feats["seq"], dist]
                np.save(target, triple, allow_pickle=True)
            else:
                np.save(target, dist)
            out[pid] = (feats, dist)
    return out


def write_cosmic(root: Path, n_train: int = 10, n_test: int = 3, size: int = 12) -> Dict[str, Any]:
    """train_dirs.npy / test_dirs.npy (paths "./..." relative to root) of (3, H, W) image/mask/ignore files,
    with sky.npy (one level per image, indexed by the file's number) in each visit folder."""
    rng = _rng(6)
    out: Dict[str, Any] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        visit = root / split / "f435w" / "visit01"
        visit.mkdir(parents=True)
        np.save(visit / "sky.npy", np.linspace(10.0, 20.0, n))
        rel = []
        for i in range(n):
            image = rng.normal(100.0, 5.0, size=(size, size))
            mask = (rng.uniform(size=(size, size)) < 0.2).astype(np.float64)
            ignore = np.zeros((size, size))
            ignore[size // 2, size // 2 - 2:size // 2 + 1] = 1.0  # inside the centre crop
            name = f"{i + 1}_exp.npy"
            np.save(visit / name, np.stack([image, mask, ignore]))
            rel.append(f"./{split}/f435w/visit01/{name}")
            out[rel[-1]] = (image, mask, ignore)
        np.save(root / f"{split}_dirs.npy", np.array(rel))
    return out


def write_ecg(root: Path, n_records: int = 20) -> Dict[str, Any]:
    """challenge2017.pkl: {"data": list of 1-D float arrays at 300 Hz, "label": ["N" | "A" | "O" | "~"]}."""
    rng = _rng(7)
    classes = ["N", "A", "O", "~"]
    data = [rng.normal(3.0, 2.0, size=int(rng.integers(1200, 2600))) for _ in range(n_records)]
    labels = [classes[i % 4] for i in range(n_records)]
    with open(root / "challenge2017.pkl", "wb") as f:
        pickle.dump({"data": data, "label": labels}, f)
    return {"data": data, "label": labels}


def write_satellite(root: Path, n_train: int = 30, n_test: int = 8, length: int = 46) -> Dict[str, Any]:
    """satellite_{train,test}.npy, each an np.save'd dict {"data": (N, 46), "label": (N,) in 1..24}."""
    rng = _rng(8)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        d = {"data": rng.uniform(0, 3000, size=(n, length)), "label": 1 + (np.arange(n) * 5) % 24}
        np.save(root / f"satellite_{split}.npy", d, allow_pickle=True)
        out[split] = d
    return out


def write_deepsea(root: Path, sizes: Sequence[int] = (6, 4, 4), length: int = 20, labels: int = 5) -> Dict[str, Any]:
    """deepsea_filtered.npz with x_{train,val,test} (N, L, 4) one-hot and y_{...} (N, labels) 0/1."""
    rng = _rng(9)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        arrays[f"x_{split}"] = np.eye(4, dtype=np.uint8)[rng.integers(0, 4, size=(n, length))]
        y = np.zeros((n, labels), dtype=np.uint8)
        y[np.arange(n) % 2 == 0] = 1  # every label has positives and negatives in every split
        arrays[f"y_{split}"] = y
    np.savez_compressed(root / "deepsea_filtered.npz", **arrays)
    return arrays


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file to a fraction of its size, as an interrupted download leaves it."""
    blob = path.read_bytes()
    path.write_bytes(blob[:int(len(blob) * keep)])
