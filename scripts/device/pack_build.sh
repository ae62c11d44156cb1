#!/usr/bin/env bash
# Here, before a device call: pack this machine's build of libtheria.so and the `theria` program
# (same torch 2.11.0+cu130 as the GPU machine) into .device/prebuilt.tar.xz, so that a call which
# only times or profiles skips the build there. On the device: bash scripts/device/use_build.sh.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
# A build configured where no GPU was (scripts/setup.sh) holds PTX only: the GPU machine would compile every kernel at
# its first launch, inside the timings.
if grep -q '^THERIA_CUDA_ARCHITECTURES:STRING=.*virtual' "$build/CMakeCache.txt" 2>/dev/null; then
  echo "pack_build: $build compiles the kernels to PTX only; configure with -DTHERIA_CUDA_ARCHITECTURES=90a-real" >&2
  exit 1
fi
# Objects ninja holds no dependencies for would be stale after a header change: refuse such a build.
bash "$root/scripts/device/check_build_deps.sh" "$build" || exit 1
mkdir -p "$root/.device"
tar -C "$build" -cJf "$root/.device/prebuilt.tar.xz" libtheria.so theria
ls -la "$root/.device/prebuilt.tar.xz"
echo "carry: .device"
