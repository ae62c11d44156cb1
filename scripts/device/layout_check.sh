#!/usr/bin/env bash
# Issue 18 on the device: the kernel layout change (tile_policy.h, launch_tc.cuh, the kernels' own target) and the
# lab's GPU meta-step, from builds carried here:
#   here:    bash scripts/device/pack_build.sh (the build to check), and the build before the change copied to
#            .device/before_layout.tar.xz (same packing)
#   device:  bash scripts/device/layout_check.sh [tests|bench|busy|all]   (device tool, carry .device)
# tests: every GPU test and `theria verify --device cuda`;
# bench: bf16 (theria beside flash) and float32 at "high" (theria) at B8 H16 T2048 D64/D128, the build before the
#        change and after it, each run twice in the order before, after, before, after;
# busy:  `theria maml --device cuda` for a few meta-steps at the lab's default model and at a larger one (also under
#        --deterministic): the GPU's busy share of a profiled FULL meta-step (summary.json, full_meta_step_gpu_busy)
#        and the FULL meta-gradient replayed as a CUDA graph beside eager (full_meta_gradient_cuda_graph).
source "$(dirname "$0")/device_env.sh" "$@"
shapes=(--shape 8,16,2048,64 --shape 8,16,2048,128)
if [ "$what" = tests ] || [ "$what" = all ]; then
  run_gpu_tests
fi
bench_build() {
  "$dir/theria" bench --dtype bf16 "${shapes[@]}" --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash \
    --json "$out/bench_bf16_${build}_$round.json" >"$out/bench_bf16_${build}_$round.txt" 2>&1
  echo "bench bf16 $build $round: rc=$?"
  "$dir/theria" bench --dtype fp32 --float32-precision high "${shapes[@]}" --mode fwd_bwd,hvp --impl theria \
    --iters 10 --warmup 2 --json "$out/bench_fp32_high_${build}_$round.json" \
    >"$out/bench_fp32_high_${build}_$round.txt" 2>&1
  echo "bench fp32 high $build $round: rc=$?"
}
if [ "$what" = bench ] || [ "$what" = all ]; then
  each_build_twice .device/before_layout.tar.xz bench_build
fi
if [ "$what" = busy ] || [ "$what" = all ]; then
  common=(--device cuda --meta-steps 4 --eval-every 4 --eval-tasks 8 --no-plot)
  "$T" maml "${common[@]}" --out "$out/maml_default" 2>/dev/null | grep -E -A10 "meta-step:"
  "$T" maml "${common[@]}" --seq-len 256 --classes 4 --dim 128 --heads 4 --blocks 2 --inner-lr 0.05 \
    --out "$out/maml_t256" 2>/dev/null | grep -E -A10 "meta-step:"
  "$T" maml "${common[@]}" --seq-len 256 --classes 4 --dim 128 --heads 4 --blocks 2 --inner-lr 0.05 --deterministic \
    --out "$out/maml_t256_deterministic" 2>/dev/null | grep -E "meta-step:|CUDA graph"
fi
