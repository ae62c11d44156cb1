#!/usr/bin/env bash
# The evidence of issue 16's float-mask gradient in the kernels, on the device, from a build carried here by
# scripts/device/pack_build.sh:
#   run on the device tool (carry .device):  bash scripts/device/mask_grad_check.sh [tests|bench|all]
# tests: every GPU test (pytest -m gpu, the CUDA fuzz too; the float-mask gradient at every order among them) and
# `theria verify --device cuda`;
# bench: an additive (1, H, L, S) bias that requires grad (--mask bias-grad), theria beside PyTorch's efficient
# (first order: it writes the bias gradient too) and math (JVP, HVP) backends; and the masked build without a mask
# gradient (key padding, causal padding), to set beside docs/performance.md's rows of the build before the change.
source "$(dirname "$0")/device_env.sh" "$@"
shapes=(--shape 8,16,2048,64 --shape 8,16,2048,128)
if [ "$what" = tests ] || [ "$what" = all ]; then
  run_gpu_tests
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  "$T" bench "${shapes[@]}" --mask bias-grad --mode fwd,fwd_bwd,jvp,hvp --impl theria,efficient,math \
    --json "$out/bench_bias_grad.json" >"$out/bench_bias_grad.txt" 2>&1
  echo "bench bias-grad: rc=$?"
  for mask in key-padding causal-padding; do
    "$T" bench --shape 8,16,2048,64 --mask $mask --mode fwd,fwd_bwd,hvp --impl theria \
      --json "$out/bench_${mask}.json" >"$out/bench_${mask}.txt" 2>&1
    echo "bench $mask: rc=$?"
  done
fi
