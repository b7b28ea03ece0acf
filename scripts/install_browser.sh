#!/usr/bin/env bash
# Debian's chromium for the browser test (tests/test_jupyterlab_browser.py), which drives it through Playwright
# (Playwright's own browser download is not used). Called by scripts/test.sh; safe to run again.
# Does nothing when chromium is there; installs it with apt-get when run as root on a system with apt (about
# 290 MB); otherwise says why. It never stops the caller: without chromium the browser test skips, saying why
# (or fails under CI=true or DASHKIT_BROWSER_TEST=required). Exit status: 0 when chromium is there afterwards.
set -u
CHROMIUM=${DASHKIT_CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
why=""
if [ "$(id -u)" -ne 0 ]; then
  why="not root (as root: apt-get install chromium)"
elif ! command -v apt-get >/dev/null 2>&1; then
  why="no apt-get on this system (install Chromium and set DASHKIT_CHROMIUM to its path)"
fi
if [ -z "$why" ]; then
  echo "install_browser.sh: installing Debian's chromium with apt-get (about 290 MB) for the browser test" >&2
  log=$(mktemp)
  if { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
         chromium fonts-dejavu-core; } >"$log" 2>&1 && [ -x "$CHROMIUM" ]; then
    rm -f "$log"
    exit 0
  fi
  tail -n 15 "$log" >&2
  rm -f "$log"
  why="apt-get could not install it (output above)"
fi
echo "install_browser.sh: no chromium at $CHROMIUM: $why; the JupyterLab browser test will skip" \
     "(and fail under CI=true or DASHKIT_BROWSER_TEST=required)" >&2
exit 1
