#!/usr/bin/env bash
# Set up a virtual environment (CPU build of PyTorch) and run the quickstart notebook headless: DASH end to end on
# MNIST-1D (search, tuning, retraining, and the default-kernel backbone beside it), about 2 minutes on a laptop CPU.
# Extra arguments go to papermill, e.g. -p preset standard -p seed 1
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build, pinned: an unpinned torch can pull a multi-GB CUDA build. GPU users install their own torch first.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${DASHKIT_TORCH:-2.13.0}"
python -m pip install -q -e ".[notebooks]"
out=runs/quickstart
mkdir -p "$out"
python -m papermill notebooks/00_quickstart.ipynb "$out/00_quickstart.ipynb" -k python3 --cwd . \
  -p out "$out/run" -p results_path "$out/results.json" "$@"
echo
echo "Done. Executed notebook (with figures): $out/00_quickstart.ipynb"
echo "      Run directory: $out/run  (archcard.json, metrics.json, figures/, weights as safetensors)"
echo "      Key results:   $out/results.json"
echo "      Summary again: python -m dashkit show $out/run"
