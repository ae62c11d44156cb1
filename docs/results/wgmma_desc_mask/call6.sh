#!/usr/bin/env bash
# Session 2026-12-06 (9th), call 6: prebuilt = main at d1e3863 (the wgmma descriptors' start address masked), run
# directly: every GPU test less the fuzz, verify, and the forward+backward and HVP beside flash and math.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s9c6; mkdir -p "$o"
nvidia-smi --query-gpu=name --format=csv,noheader | tee "$o/gpu.txt"
timeout 100 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider --deselect tests/python/test_fuzz.py::test_fuzz_cuda \
  2>&1 | tail -n 4 | tee "$o/tests.txt"
timeout 60 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
timeout 60 "$T" bench --dtype bf16 --shape 4,16,1024,128 --shape 4,16,1024,64 --mode fwd_bwd,hvp --impl theria,flash,math \
  --iters 20 --warmup 3 --json "$o/bench.json" 2>/dev/null | tee "$o/bench.txt"
tar -C "$out" -czf "$out/s9c6.tar.gz" s9c6 && rm -rf "$o"
