#!/usr/bin/env bash
# Session 2026-12-05 (6th), call 1: main's kernels (the final build of the fifteenth pass, SASS = f46497b's) on the
# card this call gets: `theria verify --device cuda`, the issue's floors in one process twice, then three processes
# of forward+backward and HVP at the two L = 8192 shapes; nvidia-smi samples every 100 ms, each part marked.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s6c1; mkdir -p "$o"
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm,driver_version --format=csv > "$o/gpu.txt"
cat "$o/gpu.txt"
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active \
  --format=csv,noheader -lms 100 > "$o/smi.csv" &
smi=$!
mark() { echo "$(date +'%Y/%m/%d %H:%M:%S.%N') $1" >> "$o/marks.txt"; }
mark verify
timeout 120 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
for r in 1 2; do
  mark "floors_dense_$r"
  "$T" bench --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 --shape 2,16,8192,128 \
    --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 --json "$o/floors_dense_$r.json" \
    > "$o/floors_dense_$r.txt" 2>/dev/null
  mark "floors_causal_$r"
  "$T" bench --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 10 \
    --warmup 2 --json "$o/floors_causal_$r.json" > "$o/floors_causal_$r.txt" 2>/dev/null
done
for r in 1 2 3; do
  mark "l8192_$r"
  "$T" bench --dtype bf16 --shape 2,16,8192,64 --shape 2,16,8192,128 --mode fwd_bwd,hvp --impl theria,flash \
    --iters 20 --warmup 3 --json "$o/l8192_$r.json" > "$o/l8192_$r.txt" 2>/dev/null
done
mark end
sleep 0.3; kill $smi
python3 scripts/device/clock_summary.py "$o/smi.csv" "$o/marks.txt" > "$o/clocks.txt" 2>&1
grep -E "^[0-9]" "$o"/floors_*_1.txt | grep -v error | cut -c1-110
tar -C "$out" -czf "$out/s6c1.tar.gz" s6c1 && rm -rf "$o"
