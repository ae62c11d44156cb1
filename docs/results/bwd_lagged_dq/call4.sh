#!/usr/bin/env bash
# Session 2026-12-05 (5th), call 4: the new GPU test over many query steps on main's kernels (variants/main), and the
# D=128 backward with lagged dQ (variants/lag128) against main's, alternating.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/call4; mkdir -p "$o"
mkdir -p build-main && tar -C build-main -xJf .device/variants/main.tar.xz
LD_LIBRARY_PATH=$PWD/build-main:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-main/libtheria.so timeout 300 \
  python3 -m pytest -q -m gpu tests/python/test_fused_gpu.py -p no:cacheprovider -k "many_query_steps or last_wave" \
  2>&1 | tail -n 5 > "$o/tests_main.txt"
echo "tests on main's build: $(tail -n 1 "$o/tests_main.txt")"
bash scripts/device/rounds.sh .device/variants/main.tar.xz .device/variants/lag128.tar.xz 2 d128 --dtype bf16 \
  --shape 8,16,2048,128 --shape 2,16,8192,128 --mode fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 \
  > "$o/lag128.txt" 2>&1
mv "$out"/rounds_*.json "$o/" 2>/dev/null
python3 scripts/device/rounds_summary.py "$o/lag128.txt" d128 main lag128 > "$o/lag128_summary.txt" 2>&1
cat "$o/lag128_summary.txt"
tar -C "$out" -czf "$out/call4.tar.gz" call4 && rm -rf "$o"
