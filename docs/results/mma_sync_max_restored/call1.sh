#!/usr/bin/env bash
# Session 2026-12-05 (7th), call 1: the mma.sync forward family (head dims 32 and 96, and the views TMA cannot address) with the max as before
# (pairs scaled) and the rescale unconditional, as before the sixteenth pass (prebuilt, branch wip/mma-sync-max 5d7fa6d), against main's kernels before this session
# (variants/base): every GPU test less the fuzz, the CUDA fuzz, verify; three alternating rounds of the forward and the
# JVP at head dims 32 and 96 (the mma.sync kernels) and 64 (the warpgroup ones, unchanged by this step).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s7c1; mkdir -p "$o"
timeout 200 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider --deselect tests/python/test_fuzz.py::test_fuzz_cuda \
  2>&1 | tail -n 8 > "$o/tests.txt"
echo "tests: $(tail -n 1 "$o/tests.txt")"
timeout 150 python3 -m pytest -q -m gpu tests/python/test_fuzz.py::test_fuzz_cuda -p no:cacheprovider 2>&1 | tail -n 4 > "$o/fuzz.txt"
echo "fuzz: $(tail -n 1 "$o/fuzz.txt")"
timeout 120 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
bash scripts/device/rounds.sh .device/variants/base.tar.xz .device/prebuilt.tar.xz 3 mmasync \
  --dtype bf16 --shape 8,16,2048,32 --shape 8,16,2048,96 --shape 2,16,8192,96 --shape 8,16,2048,64 \
  --mode fwd,jvp --impl theria,flash --iters 20 --warmup 3 > "$o/rounds.txt" 2>&1
mv "$out"/rounds_*.json "$o/" 2>/dev/null
python3 scripts/device/rounds_summary.py "$o/rounds.txt" mmasync base prebuilt > "$o/summary.txt" 2>&1
cat "$o/summary.txt"
tar -C "$out" -czf "$out/s7c1.tar.gz" s7c1 && rm -rf "$o"
