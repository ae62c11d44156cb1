#!/usr/bin/env bash
# Session 2026-12-05 (5th), call 6: main's kernels, lagged dQ v3 at D=64 (prebuilt), v3 with the D=128 backward lagged
# too (variants/lag128v3), v3 with the warpgroups' score products in turn (variants/ppv3): alternating rounds, dense
# at the issue's four shapes and causal 32K.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/call6; mkdir -p "$o"
bash scripts/device/rounds.sh .device/variants/main.tar.xz .device/prebuilt.tar.xz .device/variants/lag128v3.tar.xz \
  2 dense --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 \
  --shape 2,16,8192,128 --mode fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 > "$o/rounds.txt" 2>&1
bash scripts/device/rounds.sh .device/variants/main.tar.xz .device/prebuilt.tar.xz .device/variants/lag128v3.tar.xz \
  2 causal --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd_bwd,hvp --impl theria,flash --iters 10 --warmup 2 \
  > "$o/rounds_causal.txt" 2>&1
mv "$out"/rounds_*.json "$o/" 2>/dev/null
python3 scripts/device/rounds_summary.py "$o/rounds.txt" dense main prebuilt lag128v3 > "$o/summary.txt" 2>&1
python3 scripts/device/rounds_summary.py "$o/rounds_causal.txt" causal main prebuilt lag128v3 >> "$o/summary.txt" 2>&1
cat "$o/summary.txt"
tar -C "$out" -czf "$out/call6.tar.gz" call6 && rm -rf "$o"
