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
