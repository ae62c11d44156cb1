#!/usr/bin/env bash
# Session 2026-12-05 (5th), call 7: the final build (prebuilt: lagged dQ v3 at D=64, every other kernel main's) —
# every GPU test (less the CUDA fuzz, as float32_check.sh tests), `theria verify --device cuda`, compute-sanitizer
# memcheck and racecheck over sanitizer_case.py; then alternating rounds against main's build (and variants/ppv3:
# v3 with the warpgroups' score products in turn) at the D=64 shapes, and the issue's floors with the final build.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/call7; mkdir -p "$o"
timeout 300 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider --deselect tests/python/test_fuzz.py::test_fuzz_cuda \
  2>&1 | tail -n 15 > "$o/tests.txt"
echo "tests: $(tail -n 1 "$o/tests.txt")"
timeout 120 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
py=$(command -v python3)
for tool in memcheck racecheck; do
  timeout 150 compute-sanitizer --tool "$tool" --error-exitcode 1 "$py" scripts/device/sanitizer_case.py > "$o/$tool.txt" 2>&1
  echo "compute-sanitizer $tool: rc=$? $(tail -n 1 "$o/$tool.txt")"
done
bash scripts/device/rounds.sh .device/variants/main.tar.xz .device/prebuilt.tar.xz .device/variants/ppv3.tar.xz 2 d64 \
  --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --mode fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 \
  > "$o/rounds.txt" 2>&1
mv "$out"/rounds_*.json "$o/" 2>/dev/null
python3 scripts/device/rounds_summary.py "$o/rounds.txt" d64 main prebuilt ppv3 > "$o/summary.txt" 2>&1
cat "$o/summary.txt"
"$T" bench --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 --shape 2,16,8192,128 \
  --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 --json "$o/floors_dense.json" > "$o/floors_dense.txt" 2>/dev/null
"$T" bench --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 10 \
  --warmup 2 --json "$o/floors_causal.json" > "$o/floors_causal.txt" 2>/dev/null
grep -E "^[0-9]" "$o"/floors_*.txt | grep -v error | cut -c1-100
tar -C "$out" -czf "$out/call7.tar.gz" call7 && rm -rf "$o"
