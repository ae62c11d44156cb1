#!/usr/bin/env bash
# Session 2026-12-05 (6th), call 4: the build with the tangent pass's W rounded once (3827dd3), the online softmax's
# running max from the raw logits (one multiply a row) and its rescale skipped where no row of a warp moved (prebuilt),
# against main's kernels before this session (variants/base):
# every GPU test less the CUDA fuzz, verify, memcheck over sanitizer_case.py; three alternating rounds of the
# issue's bench; each HVP's kernels (hvp_timeline.py) at the two L = 8192 shapes for both builds.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s6c4; mkdir -p "$o"
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader | tee "$o/gpu.txt"
timeout 330 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider --deselect tests/python/test_fuzz.py::test_fuzz_cuda \
  2>&1 | tail -n 15 > "$o/tests.txt"
echo "tests: $(tail -n 1 "$o/tests.txt")"
timeout 120 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
timeout 150 compute-sanitizer --tool memcheck --error-exitcode 1 "$(command -v python3)" scripts/device/sanitizer_case.py \
  > "$o/memcheck.txt" 2>&1
echo "compute-sanitizer memcheck: rc=$? $(tail -n 1 "$o/memcheck.txt")"
timeout 150 compute-sanitizer --tool racecheck --error-exitcode 1 "$(command -v python3)" scripts/device/sanitizer_case.py \
  > "$o/racecheck.txt" 2>&1
echo "compute-sanitizer racecheck: rc=$? $(tail -n 1 "$o/racecheck.txt")"
bash scripts/device/rounds.sh .device/variants/base.tar.xz .device/prebuilt.tar.xz 3 dense \
  --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 --shape 2,16,8192,128 \
  --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 > "$o/rounds.txt" 2>&1
bash scripts/device/rounds.sh .device/variants/base.tar.xz .device/prebuilt.tar.xz 2 causal \
  --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 10 --warmup 2 \
  > "$o/rounds_causal.txt" 2>&1
mv "$out"/rounds_*.json "$o/" 2>/dev/null
python3 scripts/device/rounds_summary.py "$o/rounds.txt" dense base prebuilt > "$o/summary.txt" 2>&1
python3 scripts/device/rounds_summary.py "$o/rounds_causal.txt" causal base prebuilt > "$o/summary_causal.txt" 2>&1
cat "$o/summary.txt" "$o/summary_causal.txt"
for b in base prebuilt; do
  echo "## $b"
  LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so \
    python3 scripts/device/hvp_timeline.py --shapes 2,16,8192,64 2,16,8192,128 --iters 5 2>&1 | grep -v -i warn
done > "$o/timeline.txt"
grep -E "wall|tangent_wg|fwd_wg|dq_finish" "$o/timeline.txt" | cut -c1-110
"$T" bench --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 --shape 2,16,8192,128 \
  --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 --json "$o/floors_dense.json" > "$o/floors_dense.txt" 2>/dev/null
"$T" bench --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 10 \
  --warmup 2 --json "$o/floors_causal.json" > "$o/floors_causal.txt" 2>/dev/null
tar -C "$out" -czf "$out/s6c4.tar.gz" s6c4 && rm -rf "$o"
