#!/usr/bin/env bash
# A change to one backward, measured where one call's drift is as large as the change: the build before it
# (.device/before_fwd.tar.xz) and after it (.device/prebuilt.tar.xz) in ROUNDS alternating rounds (default 4,
# scripts/device/rounds.sh), each timing forward and forward+backward at the given head dim (theria, and theria_det:
# the deterministic build), non-causal and causal, with the backward alone (forward+backward − forward) per row.
# MASK (theria bench --mask: key-padding, causal-padding, bias-grad) times the masked builds instead.
#   device:  bash scripts/device/bwd_rounds.sh [HEAD_DIM] [ROUNDS] [MASK]        (device tool, carry .device)
here=$(dirname "$0")
dim=${1:-64}
rounds=${2:-4}
causals=("" "--causal")
[ -n "${3:-}" ] && causals=("--mask $3")  # a mask and is_causal do not go together
for causal in "${causals[@]}"; do
  label=d$dim${causal:+_$(echo "$causal" | tr -d ' -')}
  # shellcheck disable=SC2086  # $causal: zero, one or two words
  bash "$here/rounds.sh" .device/before_fwd.tar.xz .device/prebuilt.tar.xz "$rounds" "$label" --dtype bf16 $causal \
    --shape "8,16,2048,$dim" --shape "2,16,8192,$dim" --mode fwd,fwd_bwd --impl theria,theria_det --iters 30 --warmup 5
done
