#!/usr/bin/env bash
# ctest `package_consumer` (label cpu): installs this build into a fresh prefix (cmake --install), builds
# tests/package/consumer against it with find_package(theria), and runs it (forward, backward, double backward).
#   tests/package/consumer_test.sh BUILD_DIR PYTHON
set -euo pipefail
build=$1 py=$2
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
torch_prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
cmake -S "$root/tests/package/consumer" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$work/prefix;$torch_prefix" >"$work/configure.log" 2>&1 || { cat "$work/configure.log"; exit 1; }
cmake --build "$work/build" >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
"$work/build/consumer"
