#!/usr/bin/env bash
# Session 2026-12-06 (9th), call 4: prebuilt = main at d1e3863 (the wgmma descriptors' start address masked; every
# kernel SASS-identical to the unpaired kernels call 3 checked). Issue 18's floors in one process, then the
# 2·16·8192·128 forward+backward and HVP beside flash in two more processes.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s9c4; mkdir -p "$o"
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee "$o/gpu.txt"
timeout 80 "$T" bench --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 \
  --shape 2,16,8192,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 \
  --json "$o/floors_dense.json" > "$o/floors_dense.txt" 2>/dev/null
timeout 50 "$T" bench --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash \
  --iters 10 --warmup 2 --json "$o/floors_causal.json" > "$o/floors_causal.txt" 2>/dev/null
grep -E " (fwd|fwd_bwd|jvp|hvp) " "$o/floors_dense.txt" "$o/floors_causal.txt" | grep -v error | cut -c1-110
for r in 2 3; do
  timeout 40 "$T" bench --dtype bf16 --shape 2,16,8192,128 --mode fwd_bwd,hvp --impl theria,flash --iters 20 \
    --warmup 3 --json "$o/repeat_$r.json" > "$o/repeat_$r.txt" 2>/dev/null
  grep -E " (fwd_bwd|hvp) " "$o/repeat_$r.txt" | grep -v error | cut -c1-80
done
tar -C "$out" -czf "$out/s9c4.tar.gz" s9c4 && rm -rf "$o"
