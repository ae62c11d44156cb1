#!/usr/bin/env bash
# Before a device call: put what the GPU machine lacks under .device/ (ignored by git, carried by
# the call). Today that is GoogleTest's sources, from this machine's libgtest-dev.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
mkdir -p "$root/.device"
if [ ! -d "$root/.device/googletest" ]; then
  cp -r /usr/src/googletest "$root/.device/googletest"
fi
echo "carry: .device"
