#!/usr/bin/env bash
# Set up a virtual environment (CPU build of PyTorch) and run the quickstart notebook headless: DASH end to end on
# MNIST-1D (search, tuning, retraining, and the default-kernel backbone and random architectures beside it) on a
# 150-second budget: about 3 minutes on a laptop CPU, after the environment is set up.
# Extra arguments go to papermill, e.g. -p preset standard -p seed 1
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_venv.sh notebooks
out=runs/quickstart
mkdir -p "$out"
python -m papermill notebooks/00_quickstart.ipynb "$out/00_quickstart.ipynb" -k python3 --cwd . \
  -p out "$out/run" -p results_path "$out/results.json" "$@"
echo
echo "Done. Executed notebook (with figures): $out/00_quickstart.ipynb"
echo "      Run directory: $out/run  (archcard.json, metrics.json, figures/, weights as safetensors)"
echo "      Key results:   $out/results.json"
echo "      Summary again: python -m dashkit show $out/run"
