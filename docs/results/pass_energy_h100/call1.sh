#!/usr/bin/env bash
# Session 2026-12-06 (8th), call 1: prebuilt = main at 57fc831 with dQ's finishing kernel taking four chunks a thread
# (every other kernel SASS-identical to main's build, variants/main_s8): every GPU test less the fuzz, verify; the JVP
# and forward at head dim 32 beside flash; each HVP's kernels for both builds in alternating rounds and where one HVP
# idles (hvp_timeline --gaps); issue 18's floors, theria beside flash in one process; each pass's energy at the power
# cap (pass_energy.py), and of the D=128 backward passes without their dQ adds (an experiment); compute-sanitizer memcheck and racecheck over scripts/device/sanitizer_case.py (the head-dim-32
# JVP's skipped rescale not sanitized yet).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s8c1; mkdir -p "$o"
nvidia-smi --query-gpu=name,power.limit,clocks.max.sm --format=csv,noheader | tee "$o/gpu.txt"
timeout 100 python3 -m pytest -q -m gpu tests/python -p no:cacheprovider --deselect tests/python/test_fuzz.py::test_fuzz_cuda \
  2>&1 | tail -n 8 > "$o/tests.txt"
echo "tests: $(tail -n 1 "$o/tests.txt")"
timeout 60 "$T" verify --device cuda --json "$o/verify.json" 2>/dev/null | grep -E "verify:|FAIL" | tee "$o/verify.txt"
for tool in memcheck racecheck; do
  timeout 100 compute-sanitizer --tool $tool --error-exitcode 1 "$(command -v python3)" scripts/device/sanitizer_case.py \
    > "$o/$tool.txt" 2>&1
  echo "compute-sanitizer $tool: rc=$? $(tail -n 1 "$o/$tool.txt")"
done
timeout 40 "$T" bench --dtype bf16 --shape 8,16,2048,32 --shape 2,16,8192,32 --mode fwd,jvp --impl theria,flash --iters 20 \
  --warmup 3 --json "$o/bench_d32.json" > "$o/bench_d32.txt" 2>/dev/null
mkdir -p build-main && tar -C build-main -xJf .device/variants/main_s8.tar.xz
for r in 1; do for b in main prebuilt; do echo "## $b round $r"
  LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so timeout 40 \
    python3 scripts/device/hvp_timeline.py --shapes 2,16,8192,128 --iters 5 2>&1 | grep -v -i warn
done; done > "$o/timeline.txt"
grep -E "^##|wall|dq_finish" "$o/timeline.txt" | cut -c1-120
timeout 80 "$T" bench --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 --shape 2,16,8192,128 \
  --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 --json "$o/floors_dense.json" \
  > "$o/floors_dense.txt" 2>/dev/null
timeout 50 "$T" bench --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash \
  --iters 10 --warmup 2 --json "$o/floors_causal.json" > "$o/floors_causal.txt" 2>/dev/null
grep -E " (hvp|fwd_bwd|fwd|jvp) " "$o/floors_dense.txt" "$o/floors_causal.txt" | grep -v error | cut -c1-110
timeout 70 python3 scripts/device/pass_energy.py --shape 2,16,8192,128 --seconds 3 > "$o/energy.txt" 2>&1
cat "$o/energy.txt"
# The experiment (not a candidate): the D=128 backward and backward-JVP without their dQ adds (variants/nodq).
mkdir -p build-nodq && tar -C build-nodq -xJf .device/variants/nodq.tar.xz
LD_LIBRARY_PATH=$PWD/build-nodq:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-nodq/libtheria.so timeout 40 \
  python3 scripts/device/pass_energy.py --shape 2,16,8192,128 --seconds 3 --passes "theria backward,theria tangent" \
  > "$o/energy_nodq.txt" 2>&1
tail -n 3 "$o/energy_nodq.txt"
timeout 50 python3 scripts/device/hvp_timeline.py --shapes 2,16,8192,128 --iters 5 --gaps --host > "$o/gaps.txt" 2>&1
grep -E "wall|total idle|to enqueue" "$o/gaps.txt"
