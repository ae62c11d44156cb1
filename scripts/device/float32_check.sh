#!/usr/bin/env bash
# The float32 evidence of issue 19 on the device, from a build carried here by scripts/device/pack_build.sh:
#   run on the device tool (carry .device):  bash scripts/device/float32_check.sh [tests|bench|all|high|compare]
# tests: the GPU tests (pytest -m gpu, the CUDA fuzz left to gpu_check.sh) and `theria verify --device cuda`;
# bench: `theria bench --dtype fp32` at matmul precision "high" and "medium" on the issue's six shapes, theria
# beside PyTorch's efficient and math backends in the same process, "highest" at four of them, and bf16 at two;
# high: the tests, and the bench at "high" alone (what a change to the TF32 kernels needs);
# compare: forward+backward and HVP at "high" on the six shapes, the build before a change (.device/before.tar.xz,
# packed as pack_build.sh packs) and after it in the order before, after, before, after, beside efficient and math in
# each process, then both builds side by side against math (compare_bench.py), and each op's host time to enqueue
# (host_costs.py) with the build after.
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
if [ "$what" = compare ]; then
  high_bench() {
    # One HVP form for both builds: builds from before --hvp-form differentiate <g, u> (hvp_forms.sh has both).
    local form=()
    "$dir/theria" bench --help 2>&1 | grep -q -- --hvp-form && form=(--hvp-form dot)
    "$dir/theria" bench --dtype fp32 --float32-precision high "${shapes[@]}" --mode fwd_bwd,hvp "${form[@]}" \
      --impl theria,efficient,math --iters 10 --warmup 2 --json "$out/compare_${build}_$round.json" \
      >"$out/compare_${build}_$round.txt" 2>&1
    echo "bench $build round $round: rc=$?"
  }
  each_build_twice .device/before.tar.xz high_bench
  for round in 1 2; do
    python3 scripts/device/compare_bench.py --before "$out/compare_before_$round.json" \
      --after "$out/compare_after_$round.json" --against math
  done
  python3 scripts/device/host_costs.py
fi
