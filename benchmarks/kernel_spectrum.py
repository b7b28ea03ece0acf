"""How `fft_conv` gets a kernel's spectrum: DFT matmuls over the taps against an FFT of the padded kernel.

    python benchmarks/kernel_spectrum.py [--rounds 7]

Times one forward + backward of ``fft_conv(x, w, dilation=d)`` on the layer shapes of the networks DASH finds
(darcy and spherical_mnist in 2D, ecg_synth and genomics in 1D), with the spectrum path forced each way:
"tables" (`spectral.tap_spectrum`: k taps per axis, at any dilation) and "fft" (the kernel dilated, padded to N,
rolled and transformed, as before the tables existed). The two variants alternate within each round, so both
see the same machine load; medians over the rounds. Also prints which path fft_conv's own rule picks.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Callable
from unittest import mock

import torch

from dashkit import ops, spectral
from dashkit.timing import timed_rounds

# (label, batch, channels, spatial size, kernel, dilation)
SHAPES = [
    ("darcy 9x9", 32, 16, (64, 64), 9, 1),
    ("darcy 7x7 d3", 32, 16, (64, 64), 7, 3),
    ("darcy 9x9 d7", 32, 16, (64, 64), 9, 7),
    ("darcy 3x3", 32, 16, (64, 64), 3, 1),
    ("spherical 7x7", 64, 16, (30, 30), 7, 1),
    ("spherical 5x5 d4", 64, 32, (15, 15), 5, 4),
    ("spherical 7x7 d2", 64, 64, (8, 8), 7, 2),
    ("ecg 19 d7", 64, 32, (1000,), 19, 7),
    ("genomics 15 d3", 64, 64, (250,), 15, 3),
]


def _step(x: torch.Tensor, w: torch.Tensor, d: int, tables: bool) -> Callable[[], None]:
    """One forward + backward of fft_conv with the kernel spectrum forced through the tables or through an FFT."""
    def step() -> None:
        with mock.patch.object(spectral, "tables_cheaper", lambda kk, N: tables):
            ops.fft_conv(x, w, dilation=d).sum().backward()
    return step


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7)
    a = p.parse_args(argv)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), forward + backward, median of {a.rounds}")
    print("| layer | input | fft path (ms) | tables path (ms) | fft / tables | rule picks |")
    print("|---|---|---|---|---|---|")
    for label, B, C, n, k, d in SHAPES:
        x = torch.randn((B, C) + n, requires_grad=True)
        w = torch.randn((C, C) + (k,) * len(n), requires_grad=True)
        times = timed_rounds({"tables": _step(x, w, d, True), "fft": _step(x, w, d, False)}, rounds=a.rounds,
                             warmup=1, progress=False)  # round-robin: both share whatever else the machine does
        t_tab, t_fft = (1e3 * statistics.median(times[v]) for v in ("tables", "fft"))
        kk = [ops.kept_taps(k, d, m)[1] for m in n]
        N = [ops.fft_len_for(m, d * (q - 1) // 2) for m, q in zip(n, kk)]
        rule = "tables" if spectral.tables_cheaper(kk, N) else "fft"
        shape = "x".join(str(m) for m in (B, C) + n)
        print(f"| {label} | {shape} | {t_fft:.1f} | {t_tab:.1f} | {t_fft / t_tab:.2f} | {rule} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
