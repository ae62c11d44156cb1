#!/usr/bin/env bash
# Runs every test: set-up and build if needed, then the C++ tests (ctest) and the Python tests
# (pytest). GPU tests (ctest label / pytest mark `gpu`) skip themselves where no CUDA device is.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
build=${THERIA_BUILD_DIR:-build}
bash scripts/setup.sh
py=$(cat "$build/python")

echo "[test] ctest"
(cd "$build" && ctest --output-on-failure ${THERIA_CTEST_ARGS:-})

echo "[test] pytest"
THERIA_LIBRARY="$root/$build/libtheria.so" PYTHONPATH="$root/python" "$py" -m pytest -q ${THERIA_PYTEST_ARGS:-}
