#!/usr/bin/env bash
# Issue 18, item 1 on the device: the warp-specialised warpgroup forward (src/fused/sdpa_fwd_wg.cuh), from the build
# carried here (scripts/device/pack_build.sh):
#   device:  bash scripts/device/fwd_pipeline_check.sh [tests|sanitize|ops|bench|all]   (device tool, carry .device)
# tests:    every GPU test and `theria verify --device cuda`;
# ops:      each pass alone before and after (op_times.py), and in a variant of the change where .device/alt.tar.xz
#           holds one;
# sanitize: compute-sanitizer memcheck and racecheck over scripts/device/sanitizer_case.py (odd sizes, causal,
#           grouped heads, every order);
# bench:    bf16 forward and forward+backward, theria beside flash in one process, at the issue's shapes (B8 H16
#           L2048 and B2 H16 L8192 at D64/D128, B1 H16 L32768 D128 causal, and B8 H16 L2048 causal), and the JVP and
#           HVP at the issue's shapes (each build's JVP against flash's forward and HVP against flash's forward+backward
#           from its own run, compare_bench.py's second table): the build before the change (.device/before_fwd.tar.xz, packed as
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
  "$dir/theria" bench --dtype bf16 --shape 8,16,2048,64 --shape 8,16,2048,128 --shape 2,16,8192,64 \
    --shape 2,16,8192,128 --mode jvp,hvp --impl theria --iters 20 --warmup 3 --json "$out/higher_${build}_$round.json" \
    >"$out/higher_${build}_$round.txt" 2>&1
  "$dir/theria" bench --dtype bf16 --causal --shape 1,16,32768,128 --mode jvp,hvp --impl theria --iters 10 --warmup 2 \
    --json "$out/higher_causal_${build}_$round.json" >"$out/higher_causal_${build}_$round.txt" 2>&1
  echo "bench $build $round: rc=$?"
}
# Each pass alone (scripts/device/op_times.py: checked against float64 first, then timed), before and after.
op_times_build() {
  [ "$round" = 1 ] || return 0
  echo "op_times $build:"
  python3 scripts/device/op_times.py --shapes 8,16,2048,64 8,16,2048,128 2>&1 | grep -E "check worst|times|FAIL|Error"
}
if [ "$what" = ops ] || [ "$what" = all ]; then
  each_build_twice .device/before_fwd.tar.xz op_times_build
  # A variant of the change, where one is carried (.device/alt.tar.xz, packed the same way).
  if [ -f .device/alt.tar.xz ]; then
    mkdir -p build-alt && tar -C build-alt -xJf .device/alt.tar.xz
    (export LD_LIBRARY_PATH="$root/build-alt:$LD_LIBRARY_PATH" THERIA_LIBRARY="$root/build-alt/libtheria.so"
     build=alt round=1 op_times_build)
  fi
fi
if [ "$what" = bench ] || [ "$what" = all ]; then
  each_build_twice .device/before_fwd.tar.xz bench_build
  python3 scripts/device/compare_bench.py --before "$out"/{dense,causal,higher,higher_causal}_before_2.json \
    --after "$out"/{dense,causal,higher,higher_causal}_after_2.json
fi
