#!/usr/bin/env bash
# Session 2026-12-06 (10th), call 2: prebuilt = call 1's stacked Q and Q_dot in the backward-JVP plus K and K_dot
# stacked in the tangent pass (S with Q K_dot^T as one product of N = 128); variants: main_d1e3863 (main's build) and
# stack_q (call 1's build). In order of need, each step skipped once 540 s have gone: every GPU test less the fuzz,
# verify; issue 18's floors in one process with this build; the HVP's kernels (this build) at 2·16·8192·128 and
# causal 32K; alternating rounds of the three builds (dense D=128, causal 32K); memcheck, racecheck.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s10c2; mkdir -p "$o"
left() { [ "$SECONDS" -lt 540 ] || { echo "skipped (time): $1"; return 1; }; }
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee "$o/gpu.txt"
timeout 110 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider \
  --deselect tests/python/test_fuzz.py::test_fuzz_cuda 2>&1 | tail -n 8 > "$o/tests.txt"
echo "tests: $(tail -n 1 "$o/tests.txt")"
timeout 60 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
left floors && {
  timeout 80 "$T" bench --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 \
    --shape 2,16,8192,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 \
    --json "$o/floors_dense.json" > "$o/floors_dense.txt" 2>/dev/null
  timeout 50 "$T" bench --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash \
    --iters 10 --warmup 2 --json "$o/floors_causal.json" > "$o/floors_causal.txt" 2>/dev/null
  grep -E " (hvp|fwd_bwd|jvp|fwd) " "$o/floors_dense.txt" "$o/floors_causal.txt" | grep -v error | cut -c1-110; }
left timeline && {
  timeout 40 python3 scripts/device/hvp_timeline.py --shapes 2,16,8192,128 --iters 5 2>&1 | grep -v -i warn > "$o/timeline.txt"
  timeout 40 python3 scripts/device/hvp_timeline.py --causal --shapes 1,16,32768,128 --iters 3 2>&1 | grep -v -i warn \
    >> "$o/timeline.txt"
  grep -E "wall|_wg_kernel" "$o/timeline.txt" | cut -c1-150; }
archives=(.device/variants/main_d1e3863.tar.xz .device/variants/stack_q.tar.xz .device/prebuilt.tar.xz)
left rounds && {
  bash scripts/device/rounds.sh "${archives[@]}" 2 dense --dtype bf16 --shape 8,16,2048,128 --shape 2,16,8192,128 \
    --mode fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 > "$o/rounds_dense.txt" 2>&1
  python3 scripts/device/rounds_summary.py "$o/rounds_dense.txt" dense main_d1e3863 stack_q prebuilt \
    > "$o/summary_dense.txt" 2>&1
  cat "$o/summary_dense.txt"; }
left causal && {
  bash scripts/device/rounds.sh "${archives[@]}" 2 causal --dtype bf16 --causal --shape 1,16,32768,128 \
    --mode fwd_bwd,hvp --impl theria,flash --iters 10 --warmup 2 > "$o/rounds_causal.txt" 2>&1
  python3 scripts/device/rounds_summary.py "$o/rounds_causal.txt" causal main_d1e3863 stack_q prebuilt \
    > "$o/summary_causal.txt" 2>&1
  cat "$o/summary_causal.txt"; }
mv "$out"/rounds_*.json "$o/" 2>/dev/null
for tool in memcheck racecheck; do left $tool || continue
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 1 "$(command -v python3)" \
    scripts/device/sanitizer_case.py > "$o/$tool.txt" 2>&1
  echo "compute-sanitizer $tool: rc=$? $(tail -n 1 "$o/$tool.txt")"
done
echo "elapsed ${SECONDS} s"
tar -C "$out" -czf "$out/s10c2.tar.gz" s10c2 && rm -rf "$o"
