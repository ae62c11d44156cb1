#!/usr/bin/env bash
# Runs every test: set-up and build if needed, then the C++ tests (ctest) and the Python tests
# (pytest). GPU tests (ctest label / pytest mark `gpu`) skip themselves where no CUDA device is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${THERIA_BUILD_DIR:-build}
bash scripts/setup.sh
py=$(cat "$build/python")

# The contract report is checked in a real browser (tests/python/test_contract_report.py): headless Chromium, the
# Debian package, installed when missing; with THERIA_REQUIRE_BROWSER=1 a missing browser fails that test.
if ! command -v chromium >/dev/null; then
  sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "[test] installing chromium (apt-get) for the report check"
  { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
      $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >/dev/null 2>&1 ||
    echo "[test] could not install chromium: the report check will fail" >&2
fi
export THERIA_REQUIRE_BROWSER=1

echo "[test] ctest"
(cd "$build" && ctest --output-on-failure ${THERIA_CTEST_ARGS:-})

echo "[test] pytest"
THERIA_LIBRARY="$root/$build/libtheria.so" PYTHONPATH="$root/python" "$py" -m pytest -q ${THERIA_PYTEST_ARGS:-}
