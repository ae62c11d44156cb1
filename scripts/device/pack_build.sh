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
# An object whose compile left ninja no dependency record (`ninja -t deps`: "#deps 0") is not rebuilt when a header
# it includes changes: six kernel objects stood so for a day, built from an older SdpaFwdParams, and a packed build
# ran them with the new one (wrong double backward under masks and grouped heads; docs/performance.md, "issue 18,
# item 1, tenth pass"). Refuse to pack such a build.
stale=$(ninja -C "$build" -t deps 2>/dev/null | grep -E '^[^ ].*\.o: #deps 0' | cut -d: -f1 || true)
if [ -n "$stale" ]; then
  echo "pack_build: objects with no recorded dependencies (delete them and build again):" >&2
  echo "$stale" >&2
  exit 1
fi
mkdir -p "$root/.device"
tar -C "$build" -cJf "$root/.device/prebuilt.tar.xz" libtheria.so theria
ls -la "$root/.device/prebuilt.tar.xz"
echo "carry: .device"
