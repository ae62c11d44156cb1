#!/usr/bin/env bash
# A change to one backward, measured where one call's drift is as large as the change: the build before it
# (.device/before_fwd.tar.xz) and after it (.device/prebuilt.tar.xz), alternating for ROUNDS rounds (default 4),
# each timing forward and forward+backward at the given head dim in one process (theria, and theria_det: the
# deterministic build), and the backward alone (forward+backward − forward) printed per round and build.
# MASK (theria bench --mask: key-padding, causal-padding, bias-grad) times the masked builds instead.
#   device:  bash scripts/device/bwd_rounds.sh [HEAD_DIM] [ROUNDS] [MASK]        (device tool, carry .device)
source "$(dirname "$0")/device_env.sh" tests
dim=${1:-64}
rounds=${2:-4}
mask=${3:+--mask $3}
mkdir -p build-before && tar -C build-before -xJf .device/before_fwd.tar.xz
for round in $(seq 1 "$rounds"); do
  for build in before after; do
    dir=build-prebuilt
    [ "$build" = before ] && dir=build-before
    causals=("" "--causal")
    [ -n "$mask" ] && causals=("")  # a mask and is_causal do not go together
    for causal in "${causals[@]}"; do
      name="${build}_${round}${causal:+_causal}"
      LD_LIBRARY_PATH="$root/$dir:$LD_LIBRARY_PATH" THERIA_LIBRARY="$root/$dir/libtheria.so" "$dir/theria" bench \
        --dtype bf16 $causal $mask --shape 8,16,2048,$dim --shape 2,16,8192,$dim --mode fwd,fwd_bwd --impl theria,theria_det \
        --iters 30 --warmup 5 --json "$out/rounds_$name.json" >/dev/null 2>&1
      python3 - "$out/rounds_$name.json" "$name" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))
rows = rows["results"] if isinstance(rows, dict) else rows
ms = {("{batch}·{heads}·{len}·{dim}".format(**r), r["impl"], r["mode"]): r["ms"] for r in rows}
for (shape, impl, mode), t in sorted(ms.items()):
    if mode == "fwd_bwd":
        print(f"{sys.argv[2]:18s} {shape:22s} {impl:11s} fwd+bwd {t:7.3f}  backward {t - ms[(shape, impl, 'fwd')]:7.3f}")
EOF
    done
  done
done
