#!/usr/bin/env bash
# Session 2026-12-06 (8th), call 2: prebuilt = branch wip/dq-pairs (dQ added in CTA pairs at head dim 128, the D=128
# backward and backward-JVP in clusters of two CTAs), against main's build (variants/main_s8): a smoke test of the
# paired kernels first (stop if it fails or hangs); every GPU test less the fuzz, verify; memcheck and racecheck over
# sanitizer_case.py (with paired cases); each HVP's kernels for both builds; each pass's energy for both builds;
# two alternating rounds of forward+backward and HVP beside flash.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s8c2; mkdir -p "$o"
nvidia-smi --query-gpu=name,power.limit --format=csv,noheader | tee "$o/gpu.txt"
timeout 60 python3 -m pytest -q -x -m gpu tests/python/test_fused_gpu.py -k "cta_pairs" -p no:cacheprovider 2>&1 \
  | tail -n 15 > "$o/smoke.txt"
echo "smoke: $(tail -n 1 "$o/smoke.txt")"
grep -q " passed" "$o/smoke.txt" && ! grep -q "failed\|error" "$o/smoke.txt" || { cat "$o/smoke.txt"; exit 1; }
timeout 100 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider --deselect tests/python/test_fuzz.py::test_fuzz_cuda \
  2>&1 | tail -n 8 > "$o/tests.txt"
echo "tests: $(tail -n 1 "$o/tests.txt")"
timeout 60 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
for tool in memcheck racecheck; do
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 1 "$(command -v python3)" scripts/device/sanitizer_case.py \
    > "$o/$tool.txt" 2>&1
  echo "compute-sanitizer $tool: rc=$? $(tail -n 1 "$o/$tool.txt")"
done
mkdir -p build-main && tar -C build-main -xJf .device/variants/main_s8.tar.xz
for b in main prebuilt; do echo "## $b"
  LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so timeout 40 \
    python3 scripts/device/hvp_timeline.py --shapes 2,16,8192,128 --iters 5 2>&1 | grep -v -i warn
done > "$o/timeline.txt"
grep -E "^##|wall|sdpa_bwd_wg" "$o/timeline.txt" | cut -c1-140
for b in main prebuilt; do echo "## $b"
  LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so timeout 45 \
    python3 scripts/device/pass_energy.py --shape 2,16,8192,128 --seconds 3 \
    --passes "theria backward,theria tangent,theria HVP,flash forward+backward" 2>&1
done > "$o/energy.txt"
cat "$o/energy.txt"
bash scripts/device/rounds.sh .device/variants/main_s8.tar.xz .device/prebuilt.tar.xz 2 pairs --dtype bf16 \
  --shape 8,16,2048,128 --shape 2,16,8192,128 --mode fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 \
  > "$o/rounds.txt" 2>&1
mv "$out"/rounds_*.json "$o/" 2>/dev/null
python3 scripts/device/rounds_summary.py "$o/rounds.txt" pairs main_s8 prebuilt > "$o/summary.txt" 2>&1
cat "$o/summary.txt"
tar -C "$out" -czf "$out/s8c2.tar.gz" s8c2 && rm -rf "$o"
