"""Extract a small set of vertebrate transcription-factor motifs from JASPAR into ``jaspar_motifs.json``.

The DeepSEA-like task (``dashkit.tasks.get("genomics")``) plants samples of real binding motifs into random
DNA. It reads them from ``dashkit/data/jaspar_motifs.json``, package data that ships inside dashkit (so an
installed copy has it too), which this script wrote once; dashkit does not need pyJASPAR (or any network
access) at run time. To rebuild the file, from the repository root:

    pip install pyjaspar        # ships the JASPAR releases as SQLite files (about 57 MB)
    python scripts/make_jaspar_motifs.py
    pip uninstall -y pyjaspar biopython

``--out PATH`` writes elsewhere. The genomics task keys its data cache by a hash of the file, so a rebuilt
file regenerates the cached sets.

Selection, deterministic for a given JASPAR release:
  1. CORE collection, vertebrates, the latest version of each matrix.
  2. Single factors only (no "A::B" heterodimers), length 8 to 20 positions.
  3. Counts -> probabilities with a pseudocount of 0.25 per base (1 per position), so that no base is impossible;
     stored with 4 decimals, none below 0.0001.
  4. Information content per position: 2 + sum_b p_b log2 p_b bits (uniform background).
  5. For diversity, keep one matrix per TF family (the one with the highest mean information per position),
     so that labels are not near-copies of one another (E-box after E-box).
  6. Keep the ``N_MOTIFS`` families whose representatives have the highest mean information per position,
     and store them sorted by matrix ID (so that the first K of the file are a mix of easy and hard motifs).

JASPAR is distributed under the Creative Commons Attribution 4.0 licence (CC BY 4.0); the JSON header credits it.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

RELEASE = "JASPAR2024"
N_MOTIFS = 48
MIN_LENGTH, MAX_LENGTH = 8, 20
PSEUDOCOUNT = 0.25  # per base and position
DECIMALS = 4

HEADER: Dict[str, Any] = {
    "source": f"JASPAR {RELEASE[-4:]} CORE collection, vertebrates (via pyJASPAR 4)",
    "url": "https://jaspar.elixir.no",
    "license": "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)",
    "citation": (
        "Rauluseviciute I, Riudavets-Puig R, Blanc-Mathieu R, Castro-Mondragon JA, Ferenc K, Kumar V, "
        "Lemma RB, Lucas J, Cheneby J, Baranasic D, Khan A, Fornes O, Gundersen S, Johansen M, Hovig E, "
        "Lenhard B, Sandelin A, Wasserman WW, Parcy F, Mathelier A. JASPAR 2024: 20th anniversary of the "
        "open-access database of transcription factor binding profiles. Nucleic Acids Research 52(D1): "
        "D174-D182 (2024). doi:10.1093/nar/gkad1059"
    ),
    "changes": (
        "Selected subset; counts converted to probabilities with a pseudocount of "
        f"{PSEUDOCOUNT} per base and rounded to {DECIMALS} decimals (no entry below 1e-{DECIMALS}). "
        "Made by scripts/make_jaspar_motifs.py."
    ),
    "alphabet": "ACGT",
    "matrix_layout": "probability[base][position], rows A, C, G, T; each column sums to 1",
}


def probabilities(counts: np.ndarray) -> np.ndarray:
    """(4, L) counts -> (4, L) column-normalised probabilities with a pseudocount."""
    p = (counts + PSEUDOCOUNT) / (counts.sum(0, keepdims=True) + 4 * PSEUDOCOUNT)
    return p


def information_bits(p: np.ndarray) -> np.ndarray:
    """(4, L) probabilities -> (L,) information content in bits against a uniform background."""
    return 2.0 + (p * np.log2(p)).sum(0)


def select(release: str = RELEASE, n_motifs: int = N_MOTIFS) -> List[Dict[str, Any]]:
    from pyjaspar import jaspardb  # build-time only

    db = jaspardb(release=release)
    best: Dict[str, Dict[str, Any]] = {}
    for m in db.fetch_motifs(collection="CORE", tax_group=["vertebrates"]):
        if "::" in m.name or not MIN_LENGTH <= m.length <= MAX_LENGTH:
            continue
        p = probabilities(np.array([m.counts[b] for b in "ACGT"], dtype=float))
        ic = information_bits(p)
        family = "; ".join(m.tf_family) or m.name
        row = {"id": m.matrix_id, "name": m.name, "family": family, "length": int(m.length),
               "information_bits": round(float(ic.sum()), 2), "mean_bits": float(ic.mean()), "p": p}
        old = best.get(family)
        if old is None or (row["mean_bits"], row["id"]) > (old["mean_bits"], old["id"]):
            best[family] = row
    chosen = sorted(best.values(), key=lambda r: (-r["mean_bits"], r["id"]))[:n_motifs]
    out = []
    for r in sorted(chosen, key=lambda r: r["id"]):
        # Rounding may not zero a base (a log-odds scan would give it -inf), and each column must still sum
        # to 1: floor at the last stored digit, then let the most likely base absorb the residual.
        p = np.maximum(np.round(r["p"], DECIMALS), 10.0 ** -DECIMALS)
        top = p.argmax(0)
        cols = np.arange(p.shape[1])
        p[top, cols] = np.round(1.0 - (p.sum(0) - p[top, cols]), DECIMALS)
        out.append({"id": r["id"], "name": r["name"], "family": r["family"], "length": r["length"],
                    "information_bits": r["information_bits"], "probabilities": p.tolist()})
    return out


def dumps(doc: Dict[str, Any]) -> str:
    """JSON with one line per matrix row, so that the file stays small and readable in a diff."""
    lines = ["{", f' "header": {json.dumps(doc["header"], indent=1)},'.replace("\n", "\n "), ' "motifs": [']
    for i, m in enumerate(doc["motifs"]):
        meta = {k: v for k, v in m.items() if k != "probabilities"}
        rows = ",\n    ".join(json.dumps(r) for r in m["probabilities"])
        end = "," if i < len(doc["motifs"]) - 1 else ""
        lines.append(f'  {json.dumps(meta)[:-1]}, "probabilities": [\n    {rows}]}}{end}')
    lines += [" ]", "}"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parent.parent / "dashkit" / "data" / "jaspar_motifs.json")
    parser.add_argument("--release", default=RELEASE)
    parser.add_argument("-n", "--n-motifs", type=int, default=N_MOTIFS)
    args = parser.parse_args()
    header = dict(HEADER, release=args.release)
    doc = {"header": header, "motifs": select(args.release, args.n_motifs)}
    text = dumps(doc)
    # Written atomically so that a crash never leaves half a file for the task to read.
    fd, tmp = tempfile.mkstemp(dir=args.out.parent, prefix=args.out.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n")
    os.chmod(tmp, 0o644)  # mkstemp makes the file private; this one is shipped
    os.replace(tmp, args.out)
    print(f"wrote {len(doc['motifs'])} motifs to {args.out} ({len(text) / 1024:.1f} KB)")


if __name__ == "__main__":
    main()
