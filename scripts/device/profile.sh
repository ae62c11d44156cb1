#!/usr/bin/env bash
# Nsight Compute over the HVP pipeline's tensor-core kernels (forward, backward, JVP pass,
# backward-JVP) at the benchmark shapes: occupancy, launch resources, warp stall reasons and the
# shared-memory pipe, one text report per head dim under $OUT.
#   bash scripts/device/profile.sh [THERIA_BINARY] [head dims, default "64 128"]
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/.device/out}
mkdir -p "$out"
bin=${1:-$root/build-gpu/theria}
for d in ${2:-64 128}; do
  ncu --kernel-name regex:'tc_kernel' --launch-count 4 \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section WarpStateStats \
    --section SchedulerStats --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
    --metrics smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio,smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio,smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_wait_per_issue_active.ratio,smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio,smsp__average_warps_issue_stalled_not_selected_per_issue_active.ratio,smsp__average_warps_issue_stalled_selected_per_issue_active.ratio,smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio,smsp__average_warps_issue_stalled_membar_per_issue_active.ratio,smsp__average_warps_issue_stalled_drain_per_issue_active.ratio,smsp__average_warps_issue_stalled_imc_miss_per_issue_active.ratio,smsp__average_warps_issue_stalled_no_instruction_per_issue_active.ratio,smsp__average_warps_issue_stalled_branch_resolving_per_issue_active.ratio,smsp__average_warps_issue_stalled_sleeping_per_issue_active.ratio,smsp__average_warps_issue_stalled_tex_throttle_per_issue_active.ratio,smsp__inst_executed_pipe_tensor_op_hmma.avg.pct_of_peak_sustained_active,l1tex__data_pipe_lsu_wavefronts_mem_shared.sum,l1tex__data_bank_conflicts_pipe_lsu_mem_shared.sum,lts__t_sectors_op_red.sum \
    "$bin" bench --preset medium --head-dim "$d" --mode hvp --impl theria --iters 1 --warmup 1 \
    >"$out/profile_d$d.txt" 2>&1
  echo "==== head dim $d (rc $?)"
  grep -E 'sdpa_|Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Compute \(SM\) Throughput|Memory Throughput|stalled_|hmma|mem_shared|op_red|Issued Ipc|No Eligible|Block Limit' \
    "$out/profile_d$d.txt" | sed -e 's/(theria::kernels::cuda::[^)]*)//' | cut -c1-150
done
