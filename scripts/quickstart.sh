#!/usr/bin/env bash
# Set up a virtual environment (CPU build of PyTorch) and run DASH end to end on MNIST-1D, headless.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${DASHKIT_TORCH:-2.13.0}"
python -m pip install -q -e ".[notebooks]"
python -m dashkit run mnist1d --preset smoke --out runs/quickstart "$@"
