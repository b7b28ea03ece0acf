#!/usr/bin/env bash
# Set up a virtual environment (CPU build of PyTorch) and run the quickstart notebook headless: DASH end to end
# (search, tuning, retraining, and the default-kernel backbone and random architectures beside it), first on the
# planted task, whose answer is known (45 s), then on MNIST-1D (105 s): about 2.5 minutes on a laptop CPU, after the
# environment is set up.
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
echo "      The planted task's run: $out/run-planted"
echo "      Key results:   $out/results.json"
echo "      Summary again: python -m dashkit show $out/run"
