#!/usr/bin/env bash
# The evidence of issue 16's tile skipping for masks that vary by query, on the device, from a build carried here by
# scripts/device/pack_build.sh (and, for the "before" rows, an earlier build's libtheria.so packed as
# .device/before.tar.xz):
#   run on the device tool (carry .device):  bash scripts/device/mask_tiles_check.sh [tests|bench|all]
# tests: every GPU test (pytest -m gpu, the CUDA fuzz too) and `theria verify --device cuda`;
# bench: a causal mask passed as a (B, 1, L, S) tensor with left padding (--mask causal-padding), theria beside
# PyTorch's efficient (first order) and math (JVP, HVP) backends, the earlier build's theria on the same work, and
# the unmasked causal problem (theria, flash) as the floor a skipping kernel approaches.
source "$(dirname "$0")/device_env.sh" "$@"
shapes=(--shape 8,16,2048,64 --shape 8,16,2048,128)
if [ "$what" = tests ] || [ "$what" = all ]; then
  run_gpu_tests
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  "$T" bench "${shapes[@]}" --mask causal-padding --mode fwd,fwd_bwd,jvp,hvp --impl theria,efficient,math \
    --json "$out/bench_causal_padding.json" >"$out/bench_causal_padding.txt" 2>&1
  echo "bench causal-padding: rc=$?"
  "$T" bench "${shapes[@]}" --causal --mode fwd,fwd_bwd,hvp --impl theria,flash \
    --json "$out/bench_causal.json" >"$out/bench_causal.txt" 2>&1
  echo "bench causal: rc=$?"
  if [ -f .device/before.tar.xz ]; then
    mkdir -p build-before
    tar -C build-before -xJf .device/before.tar.xz
    # This program (its --mask causal-padding) on the earlier library: the public API it calls is unchanged.
    LD_LIBRARY_PATH=$root/build-before:$LD_LIBRARY_PATH THERIA_LIBRARY=$root/build-before/libtheria.so \
      "$T" bench "${shapes[@]}" --mask causal-padding --mode fwd,fwd_bwd,jvp,hvp --impl theria \
      --json "$out/bench_causal_padding_before.json" >"$out/bench_causal_padding_before.txt" 2>&1
    echo "bench causal-padding, before: rc=$?"
  fi
fi
