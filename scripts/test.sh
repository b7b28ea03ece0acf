#!/usr/bin/env bash
# Set up a virtual environment (CPU build of PyTorch) and run the whole test suite.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup_venv.sh dev
python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
# Debian's chromium for the JupyterLab browser test (jupyterlab and playwright come with the dev extra); without
# it that test skips, saying why, or fails under CI=true
bash scripts/install_browser.sh || true
set +e
python -m pytest -n "${DASHKIT_TEST_WORKERS:-2}" --durations=15 "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose (a run that tests nothing must not pass)" >&2
  exit 1
fi
exit "$rc"
