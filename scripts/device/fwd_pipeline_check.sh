#!/usr/bin/env bash
# Issue 18, item 1 on the device: the warp-specialised warpgroup forward (src/fused/sdpa_fwd_wg.cuh), from the build
# carried here (scripts/device/pack_build.sh):
#   device:  bash scripts/device/fwd_pipeline_check.sh [tests|sanitize|bench|all]   (device tool, carry .device)
# tests:    every GPU test and `theria verify --device cuda`;
# sanitize: compute-sanitizer memcheck and racecheck over scripts/device/sanitizer_case.py (odd sizes, causal,
#           grouped heads, every order);
# bench:    bf16 forward and forward+backward, theria beside flash in one process, at the issue's shapes (B8 H16
#           L2048 and B2 H16 L8192 at D64/D128, B1 H16 L32768 D128 causal, and B8 H16 L2048 causal), and the JVP and
#           HVP at B8 H16 L2048: the build before the change (.device/before_fwd.tar.xz, packed as
#           scripts/device/pack_build.sh packs) and after it, in the order before, after, before, after; round 2
#           side by side (scripts/device/compare_bench.py).
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
# The build before the change (its forward on mma.sync) and after it, each beside flash.
bench_build() {
  "$dir/theria" bench --dtype bf16 --shape 8,16,2048,64 --shape 8,16,2048,128 --shape 2,16,8192,64 \
    --shape 2,16,8192,128 --mode fwd,fwd_bwd --impl theria,flash --json "$out/dense_${build}_$round.json" \
    >"$out/dense_${build}_$round.txt" 2>&1
  "$dir/theria" bench --dtype bf16 --causal --shape 8,16,2048,64 --shape 8,16,2048,128 --shape 1,16,32768,128 \
    --mode fwd,fwd_bwd --impl theria,flash --json "$out/causal_${build}_$round.json" >"$out/causal_${build}_$round.txt" 2>&1
  "$dir/theria" bench --dtype bf16 --shape 8,16,2048,64 --shape 8,16,2048,128 --mode jvp,hvp --impl theria \
    --iters 20 --warmup 3 --json "$out/higher_${build}_$round.json" >"$out/higher_${build}_$round.txt" 2>&1
  echo "bench $build $round: rc=$?"
}
if [ "$what" = bench ] || [ "$what" = all ]; then
  each_build_twice .device/before_fwd.tar.xz bench_build
  python3 scripts/device/compare_bench.py --before "$out"/{dense,causal,higher}_before_2.json \
    --after "$out"/{dense,causal,higher}_after_2.json
fi
