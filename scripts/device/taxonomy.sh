#!/usr/bin/env bash
# The committed GPU run of the failure taxonomy (docs/taxonomy.md): `theria study taxonomy` on the fused
# backend for each dtype given (default: bfloat16 float32), 3 seeds, head dim 32 (--dim 64 --heads 2: the
# tensor-core kernels' smallest head dim). Builds first when build-gpu has no `theria` (gpu_check.sh builds it).
# Each study's folder lands in $OUT/taxonomy_<dtype> (its parts packed as parts.tgz: the device tool brings back
# few files; the figure is drawn afterwards from taxonomy.json, the machine has no matplotlib); a study cut off by the time limit resumes from its parts when they are carried back.
#   run on the device tool:  bash scripts/device/taxonomy.sh [dtype ...]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/.device/out}
mkdir -p "$out"
if [ ! -x build-gpu/theria ]; then
  export THERIA_BUILD_DIR=build-gpu THERIA_JOBS=${THERIA_JOBS:-16}
  if [ -d .device/googletest ]; then
    export THERIA_CMAKE_ARGS="-DTHERIA_GTEST_SOURCE=$root/.device/googletest -DTHERIA_THIRD_PARTY_INCLUDE=$root/.device/include -DTHERIA_BUILD_TESTS=OFF"
  fi
  bash scripts/setup.sh >"$out/setup.log" 2>&1 || { tail -n 40 "$out/setup.log"; exit 1; }
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
for dtype in "${@:-bfloat16 float32}"; do
  for d in $dtype; do
    dir="$out/taxonomy_$d"
    mkdir -p "$dir"
    # Parts carried in from an earlier, cut-off call (.device/taxonomy_<dtype>/parts) are resumed.
    [ -d ".device/taxonomy_$d/parts" ] && cp -r ".device/taxonomy_$d/parts" "$dir/"
    start=$SECONDS
    timeout "${THERIA_STUDY_TIMEOUT:-540}" build-gpu/theria study taxonomy --device cuda --backend fused --dtype "$d" \
      --dim 64 --heads 2 --seeds "${THERIA_SEEDS:-3}" --fo-for-exact-only --no-plot --out "$dir" >"$dir/stdout.txt" 2>"$dir/progress.txt"
    echo "taxonomy $d: rc=$? in $((SECONDS - start)) s" | tee -a "$out/summary.txt"
    tail -n 3 "$dir/progress.txt"
    tar czf "$dir/parts.tgz" -C "$dir" parts && rm -rf "$dir/parts"
  done
done
