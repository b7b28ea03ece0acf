#!/usr/bin/env bash
# The GPU checks in one go, for a machine with CUDA and dashkit's environment already installed (installs nothing):
# the CUDA tests, the speed study on the GPU, and the two 2D offline tasks at the standard preset, whose cost ratio
# (search + retrain over the baseline's training) RESULTS.md could only measure on CPU. About 5 minutes on one
# modern GPU. Everything goes under $OUT (default runs/gpu_check).
#
#     bash benchmarks/gpu_check.sh            # or: OUT=/somewhere bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"
status=0

"$PY" - <<'EOF' | tee "$OUT/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print(torch.cuda.get_device_name(0))
EOF
if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: CUDA is not available to $PY (a CPU build of torch, or no GPU): nothing to check" >&2
    exit 2
fi

echo "== CUDA tests" | tee "$OUT/tests.txt"
timeout 180 "$PY" -m pytest -q tests/test_gpu.py -rs 2>&1 | tee -a "$OUT/tests.txt" || status=1

echo "== speed study on cuda"
timeout 240 "$PY" -m dashkit.bench ops --device cuda --out "$OUT/bench" 2>&1 | grep -v "round " | tee "$OUT/bench.txt" \
    || status=1

echo "== standard preset, 2D offline tasks, seed 0"
timeout 420 "$PY" benchmarks/results.py --preset standard --seeds 0 --tasks darcy spherical_mnist --device cuda \
    --out "$OUT/results" 2>&1 | grep -v "^search:\|^tune:\|^retrain:\|^baseline" | tee "$OUT/results.txt" || status=1

echo "gpu_check finished with status $status; outputs in $OUT"
exit $status
