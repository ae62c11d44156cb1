#!/usr/bin/env bash
# Here, before a device call: pack this machine's build of libtheria.so and the `theria` program
# (same torch 2.11.0+cu130 as the GPU machine) into .device/prebuilt.tar.xz, so that a call which
# only times or profiles skips the build there. On the device: bash scripts/device/use_build.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
mkdir -p "$root/.device"
tar -C "$build" -cJf "$root/.device/prebuilt.tar.xz" libtheria.so theria
ls -la "$root/.device/prebuilt.tar.xz"
echo "carry: .device"
