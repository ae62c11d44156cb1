#!/usr/bin/env bash
# Session 2026-12-06 (9th), call 2: prebuilt = wip/dq-pairs with the wgmma descriptors' start address masked to its
# 14-bit field (a cluster's rank-1 CTA sees its shared memory with the rank in the address's top byte, which spilled
# into the leading byte offset); main's build (variants/main_s8) the baseline. In order of need, each step skipped once
# 500 s have gone: pair_diag.py; the pairs' tests; every GPU test less the fuzz and verify (if the pairs' tests pass);
# issue 18's floors with this build; the HVP's kernels for both builds; alternating rounds against main; memcheck and
# racecheck over sanitizer_case.py (with paired cases); each D=128 pass's energy at the power cap, both builds.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s9c2; mkdir -p "$o"
left() { [ "$SECONDS" -lt 500 ] || { echo "skipped (time): $1"; return 1; }; }
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee "$o/gpu.txt"
mkdir -p build-main && tar -C build-main -xJf .device/variants/main_s8.tar.xz
timeout 60 python3 .device/pair_diag.py 2>&1 | grep -v -i warn | tee "$o/diag_pairs.txt"
timeout 60 python3 -m pytest -q -m gpu tests/python/test_fused_gpu.py -k "cta_pairs" -p no:cacheprovider 2>&1 \
  | tail -n 15 > "$o/smoke.txt"
echo "pairs' tests: $(tail -n 1 "$o/smoke.txt")"
if grep -q " passed" "$o/smoke.txt" && ! grep -q "failed\|error" "$o/smoke.txt"; then
  timeout 100 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider \
    --deselect tests/python/test_fuzz.py::test_fuzz_cuda 2>&1 | tail -n 8 > "$o/tests.txt"
  echo "tests: $(tail -n 1 "$o/tests.txt")"
  timeout 60 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
  sane=1
fi
left floors && {
  timeout 80 "$T" bench --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 \
    --shape 2,16,8192,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 \
    --json "$o/floors_dense.json" > "$o/floors_dense.txt" 2>/dev/null
  timeout 50 "$T" bench --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash \
    --iters 10 --warmup 2 --json "$o/floors_causal.json" > "$o/floors_causal.txt" 2>/dev/null
  grep -E " (hvp|fwd_bwd) " "$o/floors_dense.txt" "$o/floors_causal.txt" | grep -v error | cut -c1-110; }
left timeline && { for b in main prebuilt; do echo "## $b"
    LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so timeout 40 \
      python3 scripts/device/hvp_timeline.py --shapes 2,16,8192,128 --iters 5 2>&1 | grep -v -i warn
  done > "$o/timeline.txt"
  grep -E "^##|wall|sdpa_bwd_wg" "$o/timeline.txt" | cut -c1-150; }
left rounds && {
  bash scripts/device/rounds.sh .device/variants/main_s8.tar.xz .device/prebuilt.tar.xz 2 pairs --dtype bf16 \
    --shape 8,16,2048,128 --shape 2,16,8192,128 --mode fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 \
    > "$o/rounds.txt" 2>&1
  mv "$out"/rounds_*.json "$o/" 2>/dev/null
  python3 scripts/device/rounds_summary.py "$o/rounds.txt" pairs main_s8 prebuilt > "$o/summary.txt" 2>&1
  cat "$o/summary.txt"; }
if [ -n "${sane:-}" ]; then for tool in memcheck racecheck; do left $tool || continue
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 1 "$(command -v python3)" \
    scripts/device/sanitizer_case.py > "$o/$tool.txt" 2>&1
  echo "compute-sanitizer $tool: rc=$? $(tail -n 1 "$o/$tool.txt")"
done; fi
for b in prebuilt main; do left "energy $b" || continue; echo "## $b"
  LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so timeout 45 \
    python3 scripts/device/pass_energy.py --shape 2,16,8192,128 --seconds 3 \
    --passes "theria backward,theria tangent,theria HVP,flash forward+backward" 2>&1
done > "$o/energy.txt"
cat "$o/energy.txt"
echo "elapsed ${SECONDS} s"
tar -C "$out" -czf "$out/s9c2.tar.gz" s9c2 && rm -rf "$o"
