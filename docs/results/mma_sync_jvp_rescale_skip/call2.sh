#!/usr/bin/env bash
# Session 2026-12-05 (7th), call 2: the mma.sync one-pass JVP (head dims 32 and 96; 64 and 128 with a mask or views TMA
# cannot address) with the max from the raw logits and the rescale skipped where no row of a warp moved its max
# (prebuilt), against main's kernels (variants/main_s7: the build of call 1). The mma.sync forward is byte-identical
# between the two. Every GPU test less the fuzz, the CUDA fuzz, verify; three alternating rounds of the JVP and the
# forward, dense, causal and key-padded.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s7c2; mkdir -p "$o"
timeout 200 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider --deselect tests/python/test_fuzz.py::test_fuzz_cuda \
  2>&1 | tail -n 8 > "$o/tests.txt"
echo "tests: $(tail -n 1 "$o/tests.txt")"
timeout 150 python3 -m pytest -q -m gpu tests/python/test_fuzz.py::test_fuzz_cuda -p no:cacheprovider 2>&1 | tail -n 4 > "$o/fuzz.txt"
echo "fuzz: $(tail -n 1 "$o/fuzz.txt")"
timeout 120 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
run_rounds() {  # LABEL BENCH_ARGS...
  local label=$1; shift
  bash scripts/device/rounds.sh .device/variants/main_s7.tar.xz .device/prebuilt.tar.xz 3 "$label" "$@" \
    > "$o/rounds_$label.txt" 2>&1
  mv "$out"/rounds_*.json "$o/" 2>/dev/null
  python3 scripts/device/rounds_summary.py "$o/rounds_$label.txt" "$label" main_s7 prebuilt > "$o/summary_$label.txt" 2>&1
  cat "$o/summary_$label.txt"
}
common=(--dtype bf16 --impl theria,flash --iters 20 --warmup 3)
run_rounds dense "${common[@]}" --shape 8,16,2048,32 --shape 8,16,2048,96 --shape 2,16,8192,32 --shape 2,16,8192,96 \
  --mode jvp,fwd
run_rounds causal "${common[@]}" --causal --shape 8,16,2048,32 --shape 8,16,2048,96 --mode jvp
run_rounds padded "${common[@]}" --mask key-padding --shape 8,16,2048,32 --shape 8,16,2048,64 --shape 8,16,2048,96 \
  --mode jvp
tar -C "$out" -czf "$out/s7c2.tar.gz" s7c2 && rm -rf "$o"
