#!/usr/bin/env bash
# Session 2026-12-05 (6th), call 5: the build of call 4 (48eb6f7's kernels): the new test of the forward and the JVP
# with negative, zero and positive scales, and the CUDA fuzz.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s6c5; mkdir -p "$o"
timeout 200 python3 -m pytest -q -m gpu tests/python/test_fused_gpu.py -k any_scale -p no:cacheprovider 2>&1 | tail -n 8 > "$o/scale_tests.txt"
echo "scale tests: $(tail -n 1 "$o/scale_tests.txt")"
timeout 240 python3 -m pytest -q -m gpu tests/python/test_fuzz.py::test_fuzz_cuda -p no:cacheprovider 2>&1 | tail -n 8 > "$o/fuzz.txt"
echo "fuzz: $(tail -n 1 "$o/fuzz.txt")"
tar -C "$out" -czf "$out/s6c5.tar.gz" s6c5 && rm -rf "$o"
