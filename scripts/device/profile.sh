#!/usr/bin/env bash
# Nsight Compute over the HVP pipeline's tensor-core kernels at the benchmark shapes, with a build made
# here (scripts/device/pack_build.sh; on the device: eval "$(bash scripts/device/use_build.sh)").
#   bash scripts/device/profile.sh sections [THERIA_BINARY] [head dims, default "64 128"]
#     occupancy, launch resources, warp stall reasons and the shared-memory pipe of the forward, backward,
#     JVP/tangent and backward-JVP kernels: a text report per head dim under $OUT;
#   bash scripts/device/profile.sh source [THERIA_BINARY] [head dims]
#     per-SASS-instruction stall samples of the backward and the backward-JVP kernels (--page source, CSV under
#     $OUT); summarise them here with scripts/device/stall_summary.py.
# A fourth argument adds bench options, e.g. "--dtype fp32 --float32-precision high" (the float32 split kernels).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/.device/out}
mkdir -p "$out"
mode=${1:-sections}
bin=${2:-$root/build-prebuilt/theria}
dims=${3:-64 128}
read -r -a extra <<<"${4:-}"
hvp=(bench --preset medium --mode hvp --impl theria --iters 1 --warmup 0 "${extra[@]}")
for d in $dims; do
  if [ "$mode" = source ]; then
    # name:skip -- the warpgroup kernel runs twice in an HVP at D=128: the backward, then the backward-JVP.
    for ks in sdpa_bwd_jvp_tc_kernel:0 sdpa_bwd_tc_kernel:0 sdpa_bwd_wg_kernel:0 sdpa_bwd_wg_kernel:1; do
      k=${ks%:*} skip=${ks#*:}
      ncu --kernel-name regex:$k --launch-skip "$skip" --launch-count 1 --section SourceCounters --section WarpStateStats \
        --page source --csv --print-source sass "$bin" "${hvp[@]}" --head-dim "$d" >"$out/src_${k}_${skip}_$d.csv" 2>/dev/null
      echo "$k (skip $skip) D=$d rc=$?"
    done
    continue
  fi
  ncu --kernel-name regex:'tc_kernel|wg_kernel' --launch-count 4 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
    --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --metrics l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,lts__t_sectors_op_red.sum \
    "$bin" "${hvp[@]}" --head-dim "$d" >"$out/profile_d$d.txt" 2>&1
  echo "==== head dim $d (rc $?)"
  grep -E 'sdpa_|Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Compute \(SM\) Throughput|Issued Ipc|No Eligible|mem_shared|op_red' \
    "$out/profile_d$d.txt" | sed -e 's/(theria::kernels::cuda::[^)]*)//' | cut -c1-150
done
