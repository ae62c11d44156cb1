#!/usr/bin/env bash
# The evidence of issue 16's grouped-query backward on the device, from a build carried here by
# scripts/device/pack_build.sh (and, for the "before" rows, an earlier build's libtheria.so packed as
# .device/before.tar.xz):   run on the device tool (carry .device):  bash scripts/device/gqa_check.sh [tests|bench|all]
# tests: every GPU test (pytest -m gpu, the CUDA fuzz too) and `theria verify --device cuda`;
# bench: grouped-query attention (H_q 32, H_kv 8) non-causal and causal against PyTorch flash (first order) and
# math (JVP, HVP), the plain problem against flash, and the earlier library's theria on the same work.
source "$(dirname "$0")/device_env.sh" "$@"
gqa=(--shape 4,32,2048,64 --shape 4,32,2048,128 --kv-heads 8)
plain=(--shape 8,16,2048,64 --shape 8,16,2048,128)
if [ "$what" = tests ] || [ "$what" = all ]; then
  run_gpu_tests
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  run() {  # name, library dir, theria bench arguments
    local name=$1 lib=$2
    shift 2
    LD_LIBRARY_PATH=$root/$lib:$LD_LIBRARY_PATH THERIA_LIBRARY=$root/$lib/libtheria.so "$T" bench "$@" \
      --json "$out/bench_$name.json" >"/tmp/bench_$name.txt" 2>&1
    echo "bench $name: rc=$?"
    grep -E '^[0-9]+,' "/tmp/bench_$name.txt" | grep -v error | awk '{print $1, $2, $3, $4, $6, $7, $9}'  # shape mode impl ms peak-MiB vs-flash vs-math
  }
  run gqa build-prebuilt "${gqa[@]}" --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash,math
  run gqa_causal build-prebuilt "${gqa[@]}" --causal --mode fwd,fwd_bwd,hvp --impl theria,flash,math
  run plain build-prebuilt "${plain[@]}" --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash
  if [ -f .device/before.tar.xz ]; then
    mkdir -p build-before
    tar -C build-before -xJf .device/before.tar.xz
    # This program on the earlier library: the public API it calls is unchanged.
    run gqa_before build-before "${gqa[@]}" --mode fwd_bwd,hvp --impl theria
    run gqa_causal_before build-before "${gqa[@]}" --causal --mode fwd_bwd,hvp --impl theria
    run plain_before build-before "${plain[@]}" --mode fwd,fwd_bwd,jvp,hvp --impl theria
  fi
fi
