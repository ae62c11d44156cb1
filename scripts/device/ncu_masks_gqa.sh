#!/usr/bin/env bash
# Nsight Compute behind docs/performance.md's masks and grouped-query sections (issue 16), on a build carried by
# scripts/device/pack_build.sh:   bash scripts/device/ncu_masks_gqa.sh [gqa|masks|all]
# gqa: the backward kernel (sdpa_bwd_tc_kernel) at 4·32·2048·64 with 8 key/value heads against 32 (the same work),
#      causal and not: duration, compute throughput, spills (local loads), atomics, occupancy;
# masks: the forward kernel at 8·16·2048·64 without a mask, with an all-True (B, 1, L, S) mask and an all-visible
#      key-padding mask: warp instructions executed, cycles per instruction, stall reasons.
source "$(dirname "$0")/device_env.sh" "$@"
if [ "$what" = gqa ] || [ "$what" = all ]; then
  for kv in 8 32; do
    for causal in "" --causal; do
      ncu --kernel-name regex:sdpa_bwd_tc_kernel --launch-count 1 --section SpeedOfLight --section LaunchStats \
        --section Occupancy --section WarpStateStats \
        --metrics lts__t_sectors_op_red.sum,l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum,smsp__cycles_active.avg \
        "$T" bench --shape 4,32,2048,64 --kv-heads "$kv" $causal --mode fwd_bwd --impl theria --iters 1 --warmup 0 \
        >/tmp/ncu_gqa_$kv$causal.txt 2>&1
      echo "==== kv heads $kv $causal"
      grep -E 'Duration|Compute \(SM\) Throughput|No Eligible|local_op_ld|op_red|Registers Per|Waves Per SM|Achieved Occ' \
        /tmp/ncu_gqa_$kv$causal.txt | cut -c1-110
    done
  done
fi
if [ "$what" = masks ] || [ "$what" = all ]; then
  cat >/tmp/fwd_once.py <<'PY'
import sys, torch, theria
B, H, L, D = 8, 16, 2048, 64
q, k, v = (torch.randn(B, H, L, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
masks = {"none": None, "all-true": torch.ones(B, 1, L, L, dtype=torch.bool, device="cuda"),
         "key-padding": torch.ones(B, 1, 1, L, dtype=torch.bool, device="cuda")}
theria.sdpa(q, k, v, attn_mask=masks[sys.argv[1]], backend="fused")
torch.cuda.synchronize()
PY
  stalls=barrier,branch_resolving,dispatch_stall,long_scoreboard,math_pipe_throttle,mio_throttle,no_instruction,not_selected,selected,short_scoreboard,wait
  metrics=smsp__inst_executed.sum,smsp__sass_inst_executed_op_global_ld.sum
  for s in ${stalls//,/ }; do metrics+=",smsp__average_warp_latency_issue_stalled_$s.ratio"; done
  for kind in none all-true key-padding; do
    ncu --kernel-name regex:sdpa_fwd_tc_kernel --launch-count 1 --section SpeedOfLight --section LaunchStats \
      --section WarpStateStats --metrics "$metrics" python3 /tmp/fwd_once.py "$kind" >/tmp/ncu_fwd_$kind.txt 2>&1
    echo "==== forward, mask $kind"
    grep -E 'Duration|Registers Per|Warp Cycles Per Issued|inst_executed|stalled' /tmp/ncu_fwd_$kind.txt |
      sed -E 's/smsp__average_warp_latency_issue_stalled_//' | cut -c1-110
  done
fi
