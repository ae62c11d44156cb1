#!/usr/bin/env bash
# Sourced by the device check scripts (float32_check.sh, gqa_check.sh, mask_tiles_check.sh, mask_grad_check.sh) with
# their arguments: the build carried by scripts/device/pack_build.sh unpacked and on the library path, the program in
# $T, results under $out ($OUT on the device tool), the part to run in $what (tests, bench or all), and the working
# directory the repository's root.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
eval "$(bash scripts/device/use_build.sh)"
export PYTHONPATH=$root/python
T=build-prebuilt/theria
out=${OUT:-$root/.device/out}
mkdir -p "$out"
what=${1:-all}

# Every GPU test (pytest -m gpu, the CUDA fuzz too) and `theria verify --device cuda` (table in $out/verify.json),
# their summaries printed.
run_gpu_tests() {
  python3 -m pytest -q -m gpu tests/python -p no:cacheprovider 2>&1 | tail -n 15
  "$T" verify --device cuda --json "$out/verify.json" 2>/dev/null | grep -E "verify:|FAIL"
}

# Before/after comparisons of a change: `each_build_twice ARCHIVE FUNCTION` unpacks the build before the change from
# ARCHIVE (packed as scripts/device/pack_build.sh packs) and calls FUNCTION in the order before, after, before, after,
# each time in a subshell with that build on the library path and $dir (its folder), $build (before / after) and
# $round (1, 2) set.
each_build_twice() {
  local archive=$1 fn=$2
  mkdir -p build-before && tar -C build-before -xJf "$archive"
  for round in 1 2; do
    for build in before after; do
      dir=build-prebuilt
      [ "$build" = before ] && dir=build-before
      (
        export LD_LIBRARY_PATH="$root/$dir:$LD_LIBRARY_PATH" THERIA_LIBRARY="$root/$dir/libtheria.so"
        "$fn"
      )
    done
  done
}
