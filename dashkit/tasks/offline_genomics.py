"""A DeepSEA-like genomics task, generated offline: which transcription factors bind a DNA sequence?

DeepSEA (Zhou & Troyanskaya, Nature Methods 2015) predicts chromatin features of 1000-bp sequences; in
NAS-Bench-360 it is a 36-label task scored by 1 - mean AUROC. Here the sequences are synthetic, and the
labels are known by construction, so the best achievable score can be computed (the PWM-scan "oracle"):

* Background: i.i.d. bases with a per-sequence GC content drawn from U(0.35, 0.65). GC-rich sequences make
  GC-rich motifs appear by chance more often, as in real genomes.
* Motif labels: label j owns one real JASPAR motif (a position probability matrix). With probability
  ``motif_prob`` a sequence gets 1 or 2 sites sampled from that matrix, each at a random position on a random
  strand (reverse complement), and then label j is 1.
* Grammar labels (optional, the last ``grammar_labels`` labels): label g owns two motifs A and B and is 1 when
  A is followed by B 20-80 bp later (end of A to start of B, on either strand). With probability
  ``motif_prob`` a sequence gets such a pair; independently, with the same probability, it gets a *far* pair
  (B 110-200 bp after A), which does not count. Both motifs are then present in many negatives, so only a
  model whose receptive field spans the gap can tell the two apart.
* Decoys: the motifs not owned by a label are planted too (each with probability ``decoy_prob``). They change
  no label; a model must learn which motifs matter rather than flag any sequence that looks motif-like.

Sites never overlap one another. Motifs come from ``dashkit/data/jaspar_motifs.json``, shipped inside the
package (a few dozen JASPAR 2024 CORE vertebrate matrices, CC BY 4.0; written by
``scripts/make_jaspar_motifs.py``); nothing is downloaded.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from ._common import cached_arrays, check_float, check_int, check_seed
from .base import Task, TaskDefaults, register, tensor_dataset

__all__ = ["genomics", "Motif", "load_motifs", "label_motifs", "pwm_scan_scores", "pair_scan_scores",
           "oracle_scores", "MOTIF_FILE", "GAP", "FAR_GAP"]

MOTIF_FILE = Path(__file__).resolve().parent.parent / "data" / "jaspar_motifs.json"  # package data of dashkit
GAP = (20, 80)  # bp from the end of motif A to the start of motif B in a grammar pair
FAR_GAP = (110, 200)  # the same for the decoy "far" pairs; beyond GAP by more than a motif length
GC_RANGE = (0.35, 0.65)
_GENERATOR_VERSION = 1  # bump when the generator changes, so that old caches are not reused


# ----------------------------------------------------------------------------------------------------------
# motifs


@dataclass(frozen=True, eq=False)
class Motif:
    """A transcription-factor motif: JASPAR matrix ID, factor name and (4, L) probabilities (rows A, C, G, T)."""

    id: str
    name: str
    probabilities: np.ndarray

    @property
    def length(self) -> int:
        return int(self.probabilities.shape[1])

    def log_odds(self, background: float = 0.25) -> np.ndarray:
        """(4, L) log2(p / background): the position weight matrix a scan sums along a site."""
        return np.log2(self.probabilities / background)

    def information_bits(self) -> float:
        """Total information content in bits against a uniform background."""
        p = self.probabilities
        return float((2.0 + (p * np.log2(p)).sum(0)).sum())


def load_motifs(path: Optional[Path] = None) -> List[Motif]:
    """Read the JASPAR motifs shipped in ``dashkit/data/jaspar_motifs.json`` (or ``path``), in file order."""
    path = Path(MOTIF_FILE if path is None else path)
    if not path.is_file():
        raise FileNotFoundError(
            f"JASPAR motif file not found at {str(path)!r}; the genomics task expects dashkit/data/jaspar_motifs.json "
            "inside the installed package (a JSON list of JASPAR probability matrices, written by "
            "scripts/make_jaspar_motifs.py). Reinstall dashkit, or pass the file's path."
        )
    doc = json.loads(path.read_text())
    motifs = []
    for m in doc["motifs"]:
        p = np.asarray(m["probabilities"], dtype=np.float64)
        if p.ndim != 2 or p.shape[0] != 4 or (p <= 0).any() or not np.allclose(p.sum(0), 1.0, atol=1e-6):
            raise ValueError(f"motif {m.get('id')!r} in {str(path)!r} is not a (4, L) matrix of positive "
                             "probabilities whose columns sum to 1")
        motifs.append(Motif(str(m["id"]), str(m["name"]), p))
    return motifs


def label_motifs(n_labels: int, grammar_labels: int = 0, motifs: Optional[Sequence[Motif]] = None
                 ) -> Tuple[List[Motif], List[Tuple[Motif, Motif]], List[Motif]]:
    """Which motifs the labels own: the generator's assignment, for oracles and explanations.

    Returns:
        singles: the motif of each of the first ``n_labels - grammar_labels`` labels (the file's first motifs),
        pairs: (A, B) of each grammar label (the next ``2 * grammar_labels`` motifs),
        decoys: the remaining motifs, tied to no label.
    """
    motifs = list(load_motifs() if motifs is None else motifs)
    n_single = n_labels - grammar_labels
    if n_single < 0 or n_single + 2 * grammar_labels > len(motifs):
        raise ValueError(f"n_labels={n_labels!r} with grammar_labels={grammar_labels!r} needs "
                         f"{n_labels + grammar_labels} motifs; accepted: n_labels + grammar_labels <= "
                         f"{len(motifs)} and grammar_labels <= n_labels")
    pool = motifs[n_single:n_single + 2 * grammar_labels]
    pairs = [(pool[2 * g], pool[2 * g + 1]) for g in range(grammar_labels)]
    return motifs[:n_single], pairs, motifs[n_single + 2 * grammar_labels:]


# ----------------------------------------------------------------------------------------------------------
# the oracle: log-odds scans with the true matrices


def _scan(x: torch.Tensor, motif: Motif) -> Tuple[torch.Tensor, torch.Tensor]:
    """Log-odds score of a site starting at each position: (forward, reverse strand), each (N, L - w + 1)."""
    w = torch.as_tensor(motif.log_odds(), dtype=x.dtype, device=x.device)
    # Reverse complement: complement swaps A<->T and C<->G (row order ACGT reversed), strand reverses columns.
    both = torch.stack([w, w.flip(0).flip(1)])  # (2, 4, w)
    s = F.conv1d(x, both)  # (N, 2, L - w + 1)
    return s[:, 0], s[:, 1]


def _check_onehot(x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x has type {type(x).__name__}; accepted: a torch.Tensor of shape (N, 4, L)")
    if x.ndim != 3 or x.shape[1] != 4:
        raise ValueError(f"x has shape {tuple(x.shape)!r}; accepted: (N, 4, L) one-hot DNA (rows A, C, G, T)")
    return x.float()


def pwm_scan_scores(x: torch.Tensor, motifs: Sequence[Motif]) -> torch.Tensor:
    """Best log-odds site score of each motif in each sequence, over positions and both strands.

    Args:
        x: (N, 4, L) one-hot DNA, rows A, C, G, T.
        motifs: M motifs, each no longer than L.

    Returns:
        (N, M) float32: max over sites of sum_i log2(p_i(base_i) / 0.25).

    Example:
        >>> task = dashkit.tasks.get("genomics", n_train=10, n_val=10, n_test=200)
        >>> singles, _, _ = label_motifs(12)
        >>> scores = pwm_scan_scores(task.test.tensors[0], singles)  # (200, 12)
    """
    x = _check_onehot(x)
    cols = []
    for m in motifs:
        fwd, rev = _scan(x, m)
        cols.append(torch.maximum(fwd.amax(1), rev.amax(1)))
    return torch.stack(cols, 1) if cols else x.new_zeros(len(x), 0)


def pair_scan_scores(x: torch.Tensor, a: Motif, b: Motif, gap: Tuple[int, int] = GAP) -> torch.Tensor:
    """Best combined score of motif A followed by motif B, ``gap[0]``-``gap[1]`` bp later, on either strand.

    Args:
        x: (N, 4, L) one-hot DNA.
        a, b: the pair's motifs; the gap runs from the end of A to the start of B.
        gap: inclusive range of gap lengths.

    Returns:
        (N,) float32: max over placements of score_A + score_B (``-inf`` where no placement fits).
    """
    x = _check_onehot(x)
    lo, hi = gap
    fa, ra = _scan(x, a)
    fb, rb = _scan(x, b)

    def best(first: torch.Tensor, len_first: int, second: torch.Tensor) -> torch.Tensor:
        # For a site of `first` at i, the partner starts in [i + len_first + lo, i + len_first + hi]: a sliding
        # max of `second` over hi - lo + 1 starts, read at i + len_first + lo.
        win = F.max_pool1d(F.pad(second[:, None], (0, hi - lo), value=-float("inf")), hi - lo + 1, stride=1)[:, 0]
        n = min(first.shape[1], win.shape[1] - len_first - lo)
        if n <= 0:
            return x.new_full((len(x),), -float("inf"))
        return (first[:, :n] + win[:, len_first + lo:len_first + lo + n]).amax(1)

    # Forward strand reads A ... B; the reverse strand's pair reads rc(B) ... rc(A) on the forward strand.
    return torch.maximum(best(fa, a.length, fb), best(rb, b.length, ra))


def oracle_scores(x: torch.Tensor, n_labels: int, grammar_labels: int = 0,
                  motifs: Optional[Sequence[Motif]] = None) -> torch.Tensor:
    """Scores of a model that knows the true motifs: one column per label of ``genomics(n_labels, ...)``.

    Args:
        x: (N, 4, L) one-hot DNA.

    Returns:
        (N, n_labels): ``pwm_scan_scores`` for motif labels, then ``pair_scan_scores`` for grammar labels.
    """
    singles, pairs, _ = label_motifs(n_labels, grammar_labels, motifs)
    cols = [pwm_scan_scores(x, singles)] + [pair_scan_scores(x, a, b)[:, None] for a, b in pairs]
    return torch.cat(cols, 1)


# ----------------------------------------------------------------------------------------------------------
# the generator


def _sample_site(rng: np.random.Generator, motif: Motif) -> np.ndarray:
    """(w,) base codes 0..3 (A, C, G, T) drawn column by column from the motif's probabilities."""
    cum = np.cumsum(motif.probabilities, 0)  # (4, w)
    u = rng.random(motif.length)
    return np.minimum((u[None] >= cum[:3]).sum(0), 3).astype(np.uint8)


def _place(rng: np.random.Generator, seq: np.ndarray, free: np.ndarray, parts: List[Tuple[int, np.ndarray]],
           tries: int = 32) -> bool:
    """Write sites (offset within a block, codes) at a random free spot on a random strand; False if none found."""
    span = max(off + len(c) for off, c in parts)
    if rng.random() < 0.5:  # reverse strand: mirror the block and complement the bases (code 3 - c)
        parts = [(span - off - len(c), (3 - c[::-1]).astype(np.uint8)) for off, c in parts]
    length = len(seq)
    for _ in range(tries):
        s = int(rng.integers(0, length - span + 1))
        if all(free[s + off:s + off + len(c)].all() for off, c in parts):
            for off, c in parts:
                seq[s + off:s + off + len(c)] = c
                free[s + off:s + off + len(c)] = False
            return True
    return False


def _generate_split(rng: np.random.Generator, n: int, length: int, singles: List[Motif],
                    pairs: List[Tuple[Motif, Motif]], decoys: List[Motif], motif_prob: float,
                    decoy_prob: float) -> Tuple[np.ndarray, np.ndarray]:
    """(codes (n, length) uint8 in 0..3, labels (n, len(singles) + len(pairs)) uint8)."""
    gc = rng.uniform(*GC_RANGE, size=n)[:, None]
    u = rng.random((n, length))
    # P(A) = P(T) = (1 - gc) / 2 and P(C) = P(G) = gc / 2, so the cumulative steps are (1-gc)/2, 1/2, (1+gc)/2.
    codes = ((u >= (1 - gc) / 2).astype(np.uint8) + (u >= 0.5) + (u >= (1 + gc) / 2)).astype(np.uint8)
    S, G, D = len(singles), len(pairs), len(decoys)
    single_on = rng.random((n, S)) < motif_prob
    single_two = rng.random((n, S)) < 0.5
    pair_on = rng.random((n, G)) < motif_prob
    far_on = rng.random((n, G)) < motif_prob
    decoy_on = rng.random((n, D)) < decoy_prob
    labels = np.zeros((n, S + G), dtype=np.uint8)
    for i in range(n):
        seq, free = codes[i], np.ones(length, dtype=bool)
        # Largest blocks first, so that pairs still find room.
        for g in np.flatnonzero(pair_on[i] | far_on[i]):
            a, b = pairs[g]
            for far, on in ((False, pair_on[i, g]), (True, far_on[i, g])):
                if on:
                    gap = int(rng.integers(*(FAR_GAP if far else GAP), endpoint=True))
                    placed = _place(rng, seq, free, [(0, _sample_site(rng, a)),
                                                     (a.length + gap, _sample_site(rng, b))])
                    labels[i, S + g] |= placed and not far
        for j in np.flatnonzero(single_on[i]):
            for _ in range(1 + int(single_two[i, j])):
                labels[i, j] |= _place(rng, seq, free, [(0, _sample_site(rng, singles[j]))])
        for k in np.flatnonzero(decoy_on[i]):
            _place(rng, seq, free, [(0, _sample_site(rng, decoys[k]))])
    return codes, labels


def _one_hot(codes: np.ndarray) -> torch.Tensor:
    """(N, L) codes 0..3 -> (N, 4, L) float32 one-hot."""
    return F.one_hot(torch.from_numpy(codes.astype(np.int64)), 4).permute(0, 2, 1).float().contiguous()


@register("genomics")
def genomics(n_labels: int = 12, length: int = 500, n_train: int = 10000, n_val: int = 1000, n_test: int = 2000,
             motif_prob: float = 0.25, grammar_labels: int = 0, seed: int = 0, decoy_prob: float = 0.05) -> Task:
    """A DeepSEA-like multi-label task: which motifs (and motif pairs) a random DNA sequence carries.

    Args:
        n_labels: labels in total (DeepSEA in NAS-Bench-360 has 36).
        length: bases per sequence (DeepSEA: 1000).
        n_train, n_val, n_test: split sizes; each split has its own random stream, so the test set does not
            change with n_train.
        motif_prob: probability that a sequence carries a label's motif (or grammar pair): the label prevalence.
        grammar_labels: how many of the labels are motif pairs at 20-80 bp (they need a long receptive field).
        seed: the data seed.
        decoy_prob: probability of planting each motif that belongs to no label.

    Returns:
        Task "genomics", kind "multilabel": x (4, length) one-hot float32 (rows A, C, G, T),
        y (n_labels,) float32 0/1; metric 1 - mean AUROC.
    """
    motifs = load_motifs()
    n_motifs = len(motifs)
    n_labels = check_int("n_labels", n_labels, 1, n_motifs)
    grammar_labels = check_int("grammar_labels", grammar_labels, 0, n_labels)
    if n_labels + grammar_labels > n_motifs:
        raise ValueError(f"n_labels={n_labels!r} with grammar_labels={grammar_labels!r} needs "
                         f"{n_labels + grammar_labels} motifs, the motif file has {n_motifs}; accepted: "
                         f"n_labels + grammar_labels <= {n_motifs}")
    min_length = 256 if grammar_labels else 64  # a far pair spans up to 20 + 200 + 20 bp
    length = check_int("length", length, min_length, 100_000)
    n_train = check_int("n_train", n_train, 1)
    n_val = check_int("n_val", n_val, 1)
    n_test = check_int("n_test", n_test, 1)
    motif_prob = check_float("motif_prob", motif_prob, 0.0, 1.0, low_open=True, high_open=True)
    decoy_prob = check_float("decoy_prob", decoy_prob, 0.0, 1.0)
    seed = check_seed(seed)

    singles, pairs, decoys = label_motifs(n_labels, grammar_labels, motifs)
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    params = {"version": _GENERATOR_VERSION, "n_labels": n_labels, "length": length,
              "sizes": sizes, "motif_prob": motif_prob, "grammar_labels": grammar_labels, "seed": seed,
              "decoy_prob": decoy_prob, "motifs": hashlib.sha256(MOTIF_FILE.read_bytes()).hexdigest()[:16]}

    def make() -> Dict[str, np.ndarray]:
        out = {}
        for k, (split, n) in enumerate(sizes.items()):
            rng = np.random.default_rng([seed, k])
            out[f"x_{split}"], out[f"y_{split}"] = _generate_split(rng, n, length, singles, pairs, decoys,
                                                                   motif_prob, decoy_prob)
        return out

    arrays = cached_arrays("genomics", params, make)
    data = {s: tensor_dataset(_one_hot(arrays[f"x_{s}"]), torch.from_numpy(arrays[f"y_{s}"].astype(np.float32)))
            for s in sizes}
    names = [m.id for m in singles] + [f"{a.id}->{b.id}" for a, b in pairs]
    return Task(
        name="genomics", kind="multilabel", train=data["train"], val=data["val"], test=data["test"],
        in_shape=(4, length), num_outputs=n_labels, metric_name="1-auroc",
        defaults=TaskDefaults(backbone="resnet1d", kernel_sizes=(3, 7, 11, 15, 19), dilations=(1, 3, 7, 15)),
        info={
            "source": "synthetic DNA with planted JASPAR motifs (generated locally; DeepSEA-like)",
            "sizes": dict(sizes),
            "label_motifs": names,
            "label_names": [m.name for m in singles] + [f"{a.name}->{b.name}" for a, b in pairs],
            "decoy_motifs": [m.id for m in decoys],
            "motif_prob": motif_prob, "grammar_labels": grammar_labels, "decoy_prob": decoy_prob,
            "grammar_gap": GAP, "far_gap": FAR_GAP, "gc_range": GC_RANGE, "seed": seed,
            "credit": "Motifs: JASPAR 2024 (CC BY 4.0), Rauluseviciute et al., Nucleic Acids Research 52(D1) "
                      "D174-D182 (2024). Task after DeepSEA (Zhou & Troyanskaya, Nature Methods 2015) "
                      "as used in NAS-Bench-360.",
            "reference": "mean AUROC at n_labels=12, length=500, motif_prob=0.25: PWM-scan oracle about "
                         "0.95 (see oracle_scores)",
        },
    )
