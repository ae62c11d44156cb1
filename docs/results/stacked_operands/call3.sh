#!/usr/bin/env bash
# Session 2026-12-06 (10th), call 3: prebuilt = main's build with Q and Q_dot stacked in the backward-JVP (the
# tangent pass's K stacking of call 2 reverted: every kernel SASS-identical to call 1's build or to main's). Every GPU
# test less the fuzz, verify, memcheck and racecheck; issue 18's floors in one process, then in a second.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s10c3; mkdir -p "$o"
left() { [ "$SECONDS" -lt 540 ] || { echo "skipped (time): $1"; return 1; }; }
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee "$o/gpu.txt"
timeout 110 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider \
  --deselect tests/python/test_fuzz.py::test_fuzz_cuda 2>&1 | tail -n 8 > "$o/tests.txt"
echo "tests: $(tail -n 1 "$o/tests.txt")"
timeout 60 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
for run in 1 2; do left "floors $run" || continue
  timeout 80 "$T" bench --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 \
    --shape 2,16,8192,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 \
    --json "$o/floors_dense_$run.json" > "$o/floors_dense_$run.txt" 2>/dev/null
  timeout 50 "$T" bench --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash \
    --iters 10 --warmup 2 --json "$o/floors_causal_$run.json" > "$o/floors_causal_$run.txt" 2>/dev/null
  grep -E " (hvp|fwd_bwd) " "$o/floors_dense_$run.txt" "$o/floors_causal_$run.txt" | grep -v error | cut -c1-100
done
for tool in memcheck racecheck; do left $tool || continue
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 1 "$(command -v python3)" \
    scripts/device/sanitizer_case.py > "$o/$tool.txt" 2>&1
  echo "compute-sanitizer $tool: rc=$? $(tail -n 1 "$o/$tool.txt")"
done
echo "elapsed ${SECONDS} s"
tar -C "$out" -czf "$out/s10c3.tar.gz" s10c3 && rm -rf "$o"
