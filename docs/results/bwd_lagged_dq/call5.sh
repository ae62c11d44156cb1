#!/usr/bin/env bash
# Session 2026-12-05 (5th), call 5: lagged dQ v3 (variants/lagv3: dS^T full right after the stores, waited for just
# before the dQ^T products; the next step's copies after the score products) against main's kernels: targeted GPU
# tests on v3, alternating rounds.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/call5; mkdir -p "$o"
mkdir -p build-lagv3 && tar -C build-lagv3 -xJf .device/variants/lagv3.tar.xz
LD_LIBRARY_PATH=$PWD/build-lagv3:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-lagv3/libtheria.so timeout 300 \
  python3 -m pytest -q -m gpu tests/python/test_fused_gpu.py -p no:cacheprovider \
  -k "many_query_steps or double_backward or forward_backward_match or last_wave" 2>&1 | tail -n 5 > "$o/tests_lagv3.txt"
echo "tests on lagv3: $(tail -n 1 "$o/tests_lagv3.txt")"
bash scripts/device/rounds.sh .device/variants/main.tar.xz .device/variants/lagv3.tar.xz 3 dense --dtype bf16 \
  --shape 8,16,2048,64 --shape 2,16,8192,64 --mode fwd,fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 \
  > "$o/rounds.txt" 2>&1
mv "$out"/rounds_*.json "$o/" 2>/dev/null
python3 scripts/device/rounds_summary.py "$o/rounds.txt" dense main lagv3 > "$o/summary.txt" 2>&1
cat "$o/summary.txt"
for b in main lagv3; do
  echo "## $b"
  LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so \
    python3 scripts/device/hvp_timeline.py --shapes 2,16,8192,64 --iters 5 2>&1 | grep -v -i warn
done > "$o/timeline.txt"
grep -E "wall|BwdWgTraits<64, (true|false), false, (64|128)>, false, false, false, false>\(" "$o/timeline.txt" | cut -c1-100
tar -C "$out" -czf "$out/call5.tar.gz" call5 && rm -rf "$o"
