#!/usr/bin/env bash
# Issue 18, item 1 on the device: the warp-specialised warpgroup forward (src/fused/sdpa_fwd_wg.cuh), from the build
# carried here (scripts/device/pack_build.sh):
#   device:  bash scripts/device/fwd_pipeline_check.sh [tests|sanitize|bench|all]   (device tool, carry .device)
# tests:    every GPU test and `theria verify --device cuda`;
# sanitize: compute-sanitizer memcheck and racecheck over scripts/device/sanitizer_case.py (odd sizes, causal,
#           grouped heads, every order);
# bench:    bf16 forward and forward+backward, theria beside flash in one process, at the issue's shapes (B8 H16
#           L2048 and B2 H16 L8192 at D64/D128, B1 H16 L32768 D128 causal, and B8 H16 L2048 causal), twice.
source "$(dirname "$0")/device_env.sh" "$@"
if [ "$what" = tests ] || [ "$what" = all ]; then
  run_gpu_tests
fi
if [ "$what" = sanitize ] || [ "$what" = all ]; then
  py=$(command -v python3)
  for tool in memcheck racecheck; do
    timeout 240 compute-sanitizer --tool "$tool" --error-exitcode 1 "$py" scripts/device/sanitizer_case.py \
      >"$out/$tool.txt" 2>&1
    echo "compute-sanitizer $tool: rc=$? $(tail -n 1 "$out/$tool.txt")"
  done
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  for round in 1 2; do
    "$T" bench --dtype bf16 --shape 8,16,2048,64 --shape 8,16,2048,128 --shape 2,16,8192,64 --shape 2,16,8192,128 \
      --mode fwd,fwd_bwd --impl theria,flash --json "$out/bench_dense_$round.json" >"$out/bench_dense_$round.txt" 2>&1
    echo "bench dense $round: rc=$?"
    "$T" bench --dtype bf16 --causal --shape 8,16,2048,64 --shape 8,16,2048,128 --shape 1,16,32768,128 \
      --mode fwd,fwd_bwd --impl theria,flash --json "$out/bench_causal_$round.json" >"$out/bench_causal_$round.txt" 2>&1
    echo "bench causal $round: rc=$?"
  done
  cat "$out/bench_dense_2.txt" "$out/bench_causal_2.txt"
fi
