#!/usr/bin/env bash
# Session 2026-12-06 (10th), call 1: prebuilt = the backward-JVP with Q and Q_dot stacked (S^T and K Q_dot^T as one
# product of N = 64 at 32-query steps); variants/main_d1e3863 = main's build, the baseline. In order of need, each step
# skipped once 540 s have gone: every GPU test less the fuzz, verify; the HVP's kernels for both builds at
# 2·16·8192·128 and causal 32K; alternating rounds against main (dense D=128, then causal 32K); memcheck, racecheck.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s10c1; mkdir -p "$o"
left() { [ "$SECONDS" -lt 540 ] || { echo "skipped (time): $1"; return 1; }; }
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee "$o/gpu.txt"
mkdir -p build-main && tar -C build-main -xJf .device/variants/main_d1e3863.tar.xz
timeout 110 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider \
  --deselect tests/python/test_fuzz.py::test_fuzz_cuda 2>&1 | tail -n 8 > "$o/tests.txt"
echo "tests: $(tail -n 1 "$o/tests.txt")"
timeout 60 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
left timeline && { for b in main prebuilt; do echo "## $b"
    LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so timeout 40 \
      python3 scripts/device/hvp_timeline.py --shapes 2,16,8192,128 --iters 5 2>&1 | grep -v -i warn
    LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so timeout 40 \
      python3 scripts/device/hvp_timeline.py --causal --shapes 1,16,32768,128 --iters 3 2>&1 | grep -v -i warn
  done > "$o/timeline.txt"
  grep -E "^##|wall|sdpa_bwd_wg" "$o/timeline.txt" | cut -c1-150; }
left rounds && {
  bash scripts/device/rounds.sh .device/variants/main_d1e3863.tar.xz .device/prebuilt.tar.xz 3 dense --dtype bf16 \
    --shape 8,16,2048,128 --shape 2,16,8192,128 --mode fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 \
    > "$o/rounds_dense.txt" 2>&1
  python3 scripts/device/rounds_summary.py "$o/rounds_dense.txt" dense main_d1e3863 prebuilt > "$o/summary_dense.txt" 2>&1
  cat "$o/summary_dense.txt"; }
left causal && {
  bash scripts/device/rounds.sh .device/variants/main_d1e3863.tar.xz .device/prebuilt.tar.xz 2 causal --dtype bf16 \
    --causal --shape 1,16,32768,128 --mode fwd_bwd,hvp --impl theria,flash --iters 10 --warmup 2 \
    > "$o/rounds_causal.txt" 2>&1
  python3 scripts/device/rounds_summary.py "$o/rounds_causal.txt" causal main_d1e3863 prebuilt > "$o/summary_causal.txt" 2>&1
  cat "$o/summary_causal.txt"; }
mv "$out"/rounds_*.json "$o/" 2>/dev/null
for tool in memcheck racecheck; do left $tool || continue
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 1 "$(command -v python3)" \
    scripts/device/sanitizer_case.py > "$o/$tool.txt" 2>&1
  echo "compute-sanitizer $tool: rc=$? $(tail -n 1 "$o/$tool.txt")"
done
echo "elapsed ${SECONDS} s"
tar -C "$out" -czf "$out/s10c1.tar.gz" s10c1 && rm -rf "$o"
