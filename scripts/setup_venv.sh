# Sourced by scripts/test.sh and scripts/quickstart.sh: make and activate .venv, with the CPU build of PyTorch.
# Usage: . scripts/setup_venv.sh EXTRAS      (e.g. "dev" or "notebooks")
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build, pinned: an unpinned torch can pull a multi-GB CUDA build. GPU users install their own torch first.
python -c "import torch" 2>/dev/null || python -m pip install -q "torch==${DASHKIT_TORCH:-2.13.0}"
python -m pip install -q -e ".[$1]"
