#!/usr/bin/env bash
# The float32 evidence of issue 19 on the device, from a build carried here by scripts/device/pack_build.sh:
#   run on the device tool (carry .device):  bash scripts/device/float32_check.sh [tests|bench|all|high]
# tests: the GPU tests (pytest -m gpu, the CUDA fuzz left to gpu_check.sh) and `theria verify --device cuda`;
# bench: `theria bench --dtype fp32` at matmul precision "high" and "medium" on the issue's six shapes, theria
# beside PyTorch's efficient and math backends in the same process, "highest" at four of them, and bf16 at two;
# high: the tests, and the bench at "high" alone (what a change to the TF32 kernels needs).
source "$(dirname "$0")/device_env.sh" "$@"
shapes=(--shape 32,4,256,64 --shape 8,8,1024,64 --shape 2,8,4096,64 --shape 8,8,1024,128 --shape 8,16,2048,64
        --shape 8,16,2048,128)
precisions=(high medium)
if [ "$what" = high ]; then
  precisions=(high)
fi
if [ "$what" = tests ] || [ "$what" = all ] || [ "$what" = high ]; then
  python3 -m pytest -q -m gpu tests/python -p no:cacheprovider --deselect tests/python/test_fuzz.py::test_fuzz_cuda \
    2>&1 | tail -n 15
  "$T" verify --device cuda --json "$out/verify.json" 2>/dev/null | grep -E "float32|verify:|FAIL"
fi
if [ "$what" = bench ] || [ "$what" = all ] || [ "$what" = high ]; then
  for precision in "${precisions[@]}"; do
    "$T" bench --dtype fp32 --float32-precision "$precision" "${shapes[@]}" --mode fwd,fwd_bwd,jvp,hvp \
      --impl theria,theria_auto,efficient,math --iters 10 --warmup 2 --json "$out/bench_fp32_$precision.json" \
      >"$out/bench_fp32_$precision.txt" 2>&1
    echo "bench fp32 $precision: rc=$?"
  done
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  # "highest": the three-part kernels serve head dims 32 and 64 only (the SIMT kernels, minutes, the rest).
  "$T" bench --dtype fp32 --float32-precision highest --shape 32,4,256,64 --shape 8,8,1024,64 --shape 2,8,4096,64 \
    --shape 8,16,2048,64 --mode fwd,fwd_bwd,jvp,hvp --impl theria,efficient,math --iters 10 --warmup 2 \
    --json "$out/bench_fp32_highest.json" >"$out/bench_fp32_highest.txt" 2>&1
  echo "bench fp32 highest: rc=$?"
  "$T" bench --dtype bf16 --shape 8,16,2048,64 --shape 8,16,2048,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash \
    --iters 10 --warmup 2 --json "$out/bench_bf16.json" >"$out/bench_bf16.txt" 2>&1
  echo "bench bf16: rc=$?"
fi
