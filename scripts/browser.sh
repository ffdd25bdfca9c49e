#!/usr/bin/env bash
# Install Debian's chromium (for the report's browser test, tests/test_report_browser.py) where it is
# missing. Needs root and apt-get; prints why and exits 1 where it cannot install (the test then skips
# with that message). Playwright for Python drives it (a test dependency in pyproject.toml); it never
# downloads a browser of its own.
set -uo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser: no $CHROMIUM and no apt-get to install Debian's chromium package" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "browser: no $CHROMIUM, and installing Debian's chromium package needs root (or sudo)" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
if ! $SUDO apt-get install -y --no-install-recommends chromium >"$log" 2>&1; then
  $SUDO apt-get update >>"$log" 2>&1
  if ! $SUDO apt-get install -y --no-install-recommends chromium >>"$log" 2>&1; then
    echo "browser: apt-get could not install chromium:" >&2
    tail -5 "$log" >&2
    rm -f "$log"
    exit 1
  fi
fi
rm -f "$log"
[ -x "$CHROMIUM" ] || { echo "browser: chromium installed but $CHROMIUM is missing" >&2; exit 1; }
echo "browser: installed $("$CHROMIUM" --version 2>/dev/null | head -1)"
