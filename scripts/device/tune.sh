#!/usr/bin/env bash
# Tile-shape variants of the tensor-core kernels, built side by side and timed in one device call:
#   bash scripts/device/tune.sh "4 1 4" "8 1 8" ...   (forward warps, forward m-tiles per warp, backward warps)
# Each variant gets its own build directory; the first variant is also timed against PyTorch flash.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/.device/out}
mkdir -p "$out"
py=$(command -v python3)
prefix=$("$py" -c 'import torch; print(torch.utils.cmake_prefix_path)')
impls="theria,flash"
for variant in "$@"; do
  set -- $variant
  dir=build-tune-$1-$2-$3
  flags="-DTHERIA_FWD_WARPS=$1 -DTHERIA_FWD_MTILES=$2 -DTHERIA_BWD_WARPS=$3"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTHERIA_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_CUDA_FLAGS="$flags" >"$out/tune_$1-$2-$3.log" 2>&1
  cmake --build "$dir" -j 16 --target theria_cli >>"$out/tune_$1-$2-$3.log" 2>&1 || { tail -20 "$out/tune_$1-$2-$3.log"; continue; }
  echo "==== variant fwd ${1}x${2} bwd ${3}"
  for preset in ${THERIA_TUNE_PRESETS:-medium:64,128 large:64}; do
    "$dir/theria" bench --preset "${preset%%:*}" --head-dim "${preset##*:}" --impl "$impls" --iters 30 \
      ${THERIA_TUNE_ARGS:-} 2>/dev/null | grep -E '^[0-9]'
  done
  impls=theria
done
