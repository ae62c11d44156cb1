#!/usr/bin/env bash
# Tile-shape variants of the tensor-core kernels, built side by side and timed in one device call:
#   bash scripts/device/tune.sh "4 2 8 1 64" ...
#   (forward warps, forward m-tiles per warp, backward warps, backward key tiles per warp,
#    backward queries per step; the backward ones override the per-head-dim choice for all dims)
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
  name=$(echo "$variant" | tr ' ' '-')
  dir=build-tune-$name
  flags="-DTHERIA_FWD_WARPS=$1 -DTHERIA_FWD_MTILES=$2 -DTHERIA_BWD_WARPS=$3 -DTHERIA_BWD_KTILES=$4"
  flags="$flags -DTHERIA_BWD_BLOCK_M=$5"
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTHERIA_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$prefix" \
    -DCMAKE_CUDA_FLAGS="$flags" >"$out/tune_$name.log" 2>&1
  cmake --build "$dir" -j 16 --target theria_cli >>"$out/tune_$name.log" 2>&1 || { tail -20 "$out/tune_$name.log"; continue; }
  echo "==== variant $variant"
  for preset in ${THERIA_TUNE_PRESETS:-medium:64,128 large:64}; do
    "$dir/theria" bench --preset "${preset%%:*}" --head-dim "${preset##*:}" --impl "$impls" --iters 30 \
      ${THERIA_TUNE_ARGS:-} 2>/dev/null | grep -E '^[0-9]'
  done
  impls=theria
done
