#!/usr/bin/env bash
# The scripted GPU-machine run: build with the machine's own torch, then GPU tests, `theria verify`
# and (when given) extra commands, with every log under $OUT and a short summary printed last.
#   run on the device tool:  bash scripts/device/gpu_check.sh [extra theria subcommand ...]
# It needs GoogleTest sources where the machine has none: scripts/device/prepare.sh copies them
# to .device/googletest here, and the device call carries .device.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/.device/out}
mkdir -p "$out"
export THERIA_BUILD_DIR=build-gpu THERIA_JOBS=${THERIA_JOBS:-16}
if [ -d .device/googletest ]; then
  export THERIA_CMAKE_ARGS="-DTHERIA_GTEST_SOURCE=$root/.device/googletest -DTHERIA_THIRD_PARTY_INCLUDE=$root/.device/include"
fi
summary=()
step() {  # step NAME LOGFILE COMMAND...
  local name=$1 log=$2; shift 2
  local t0=$SECONDS
  "$@" >"$out/$log" 2>&1
  local rc=$?
  summary+=("$(printf '%-14s rc=%-3s %4ss  %s' "$name" "$rc" $((SECONDS - t0)) "$(tail -n 1 "$out/$log")")")
  return $rc
}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv >"$out/gpu.txt" 2>&1
step setup setup.log bash scripts/setup.sh || { tail -n 60 "$out/setup.log"; exit 1; }
py=$(cat build-gpu/python)
step ctest-gpu ctest_gpu.log bash -c "cd build-gpu && ctest --output-on-failure -L gpu"
step pytest-gpu pytest_gpu.log env PYTHONPATH="$root/python" THERIA_LIBRARY="$root/build-gpu/libtheria.so" \
  "$py" -m pytest -q -m gpu tests/python --deselect tests/python/test_fuzz.py::test_fuzz_cuda
step fuzz-gpu fuzz_gpu.log env PYTHONPATH="$root/python" THERIA_LIBRARY="$root/build-gpu/libtheria.so" \
  THERIA_FUZZ_CASES=${THERIA_FUZZ_GPU_CASES:-10000} "$py" -m pytest -q -s tests/python/test_fuzz.py::test_fuzz_cuda
step verify verify.txt build-gpu/theria verify --json "$out/verify.json"
export THERIA_LIBRARY="$root/build-gpu/libtheria.so"
step sanitizer sanitizer.txt compute-sanitizer --tool memcheck --error-exitcode 1 "$py" scripts/device/sanitizer_case.py
step racecheck racecheck.txt compute-sanitizer --tool racecheck --error-exitcode 1 "$py" scripts/device/sanitizer_case.py
for preset in ${THERIA_BENCH_PRESETS-medium:64,128 large:64}; do
  step "bench ${preset}" "bench_${preset%%:*}.txt" build-gpu/theria bench --preset "${preset%%:*}" \
    --head-dim "${preset##*:}" --json "$out/bench_${preset%%:*}.json"
done
if [ "${THERIA_BENCH_EXTRA:-1}" = 1 ]; then
  step "bench causal" bench_causal.txt build-gpu/theria bench --preset medium --head-dim 64,128 --causal \
    --impl theria,flash --json "$out/bench_causal.json"
  step "bench jvp" bench_jvp.txt build-gpu/theria bench --preset medium --head-dim 64,128 --mode fwd,jvp \
    --json "$out/bench_jvp.json"
  step "bench hvp" bench_hvp.txt build-gpu/theria bench --preset medium --head-dim 64,128 --mode fwd_bwd,hvp \
    --iters 20 --warmup 3 --json "$out/bench_hvp.json"
  step "bench large hvp" bench_hvp_large.txt build-gpu/theria bench --preset large --head-dim 64 \
    --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 --json "$out/bench_hvp_large.json"
fi
for backend in reference fused; do
  step "maml $backend" "maml_$backend.txt" build-gpu/theria maml --device cuda --backend "$backend" --dtype bfloat16 \
    --seq-len 1024 --dim 128 --heads 2 --meta-steps 0 --meta-batch 4 --eval-tasks 1 --diagnose-steps 1 --no-plot \
    --out "$out/maml_$backend"
done
if [ $# -gt 0 ]; then
  step "theria $1" extra.txt build-gpu/theria "$@"
fi

cat "$out/gpu.txt"
echo "---- verify (cuda rows)"; grep -E '^cuda|^verify|^note' "$out/verify.txt"
for log in ctest_gpu.log pytest_gpu.log sanitizer.txt racecheck.txt; do echo "---- $log (tail)"; tail -n 12 "$out/$log"; done
echo "---- fuzz"; grep -E '^\[fuzz\]|passed|failed' "$out/fuzz_gpu.log"
for f in "$out"/maml_*.txt; do echo "---- $(basename "$f")"; grep -v '^\[maml' "$f"; done
for f in "$out"/bench_*.txt; do echo "---- $(basename "$f")"; grep -E '^[0-9]|error' "$f"; done
echo "---- summary"; printf '%s\n' "${summary[@]}"
