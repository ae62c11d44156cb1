#!/usr/bin/env bash
# Nsight Compute over the HVP pipeline's tensor-core kernels at the benchmark shapes, with a build made
# here (scripts/device/pack_build.sh; on the device: eval "$(bash scripts/device/use_build.sh)").
#   bash scripts/device/profile.sh sections [THERIA_BINARY] [head dims, default "64 128"]
#     occupancy, launch resources, warp stall reasons and the shared-memory pipe of the forward, backward,
#     JVP/tangent and backward-JVP kernels: a text report per head dim under $OUT;
#   bash scripts/device/profile.sh source [THERIA_BINARY] [head dims]
#     per-SASS-instruction stall samples of the backward and the backward-JVP (--page source, CSV under
#     $OUT); summarise them here with scripts/device/stall_summary.py.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/.device/out}
mkdir -p "$out"
mode=${1:-sections}
bin=${2:-$root/build-prebuilt/theria}
dims=${3:-64 128}
hvp=(bench --preset medium --mode hvp --impl theria --iters 1 --warmup 0)
for d in $dims; do
  if [ "$mode" = source ]; then
    for k in sdpa_bwd_jvp_tc_kernel sdpa_bwd_tc_kernel; do
      ncu --kernel-name regex:$k --launch-count 1 --section SourceCounters --section WarpStateStats \
        --page source --csv --print-source sass "$bin" "${hvp[@]}" --head-dim "$d" >"$out/src_${k}_$d.csv" 2>/dev/null
      echo "$k D=$d rc=$?"
    done
    continue
  fi
  ncu --kernel-name regex:'tc_kernel' --launch-count 4 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
    --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --metrics l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,lts__t_sectors_op_red.sum \
    "$bin" "${hvp[@]}" --head-dim "$d" >"$out/profile_d$d.txt" 2>&1
  echo "==== head dim $d (rc $?)"
  grep -E 'sdpa_|Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Compute \(SM\) Throughput|Issued Ipc|No Eligible|mem_shared|op_red' \
    "$out/profile_d$d.txt" | sed -e 's/(theria::kernels::cuda::[^)]*)//' | cut -c1-150
done
