#!/usr/bin/env bash
# Session 2026-12-05 (5th), call 9 (owed since 7896aee): the grouped+masked builds the bfloat16 split's removal
# rescheduled, before (variants/before: 3686156, its parent) and after (variants/main: b8f5bb6's kernels), alternating
# rounds of the JVP and HVP with grouped heads and a mask, theria alone.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/call9; mkdir -p "$o"
for mask in key-padding causal-padding; do
  bash scripts/device/rounds.sh .device/variants/before.tar.xz .device/variants/main.tar.xz 2 "gqa_$mask" --dtype bf16 \
    --shape 8,16,2048,64 --shape 8,16,2048,128 --kv-heads 4 --mask "$mask" --mode fwd_bwd,jvp,hvp --impl theria \
    --iters 20 --warmup 3 > "$o/rounds_$mask.txt" 2>&1
  python3 scripts/device/rounds_summary.py "$o/rounds_$mask.txt" "gqa_$mask" before main >> "$o/summary.txt" 2>&1
done
mv "$out"/rounds_*.json "$o/" 2>/dev/null
cat "$o/summary.txt"
tar -C "$out" -czf "$out/call9.tar.gz" call9 && rm -rf "$o"
