#!/usr/bin/env bash
# Before a device call: put what the GPU machine lacks under .device/ (ignored by git, carried by
# the call): GoogleTest's sources (libgtest-dev) and the nlohmann/json and CLI11 headers.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$root/.device"
if [ ! -d "$root/.device/googletest" ]; then
  cp -r /usr/src/googletest "$root/.device/googletest"
fi
# The header-only libraries of the `theria` program (nlohmann/json, CLI11), from this machine's
# nlohmann-json3-dev and libcli11-dev (scripts/setup.sh installs them); the build finds them through
# -DTHERIA_THIRD_PARTY_INCLUDE=$root/.device/include.
mkdir -p "$root/.device/include"
for lib in nlohmann CLI; do
  if [ ! -d "$root/.device/include/$lib" ]; then
    [ -d "/usr/include/$lib" ] || { echo "prepare: /usr/include/$lib missing: run scripts/setup.sh first" >&2; exit 1; }
    cp -r "/usr/include/$lib" "$root/.device/include/$lib"
  fi
done
echo "carry: .device"
