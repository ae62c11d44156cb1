#!/usr/bin/env bash
# Two or more builds timed in alternating rounds, for a change smaller than one device call's drift: `theria bench
# BENCH_ARGS` with build A, then build B (then C ...), ROUNDS times (each build packed as scripts/device/pack_build.sh
# packs it), one line per round, build and result row (ms), and for a forward+backward row beside its forward the
# backward alone.
#   device:  bash scripts/device/rounds.sh A.tar.xz B.tar.xz [C.tar.xz ...] ROUNDS LABEL BENCH_ARGS...
#            (device tool, carry .device)
# LABEL names the JSON files under $OUT (rounds_LABEL_<build>_<round>.json); the builds print as their archives'
# file names without .tar.xz.
# (device_env.sh reads a part name from its first argument; "tests" keeps it from reading this script's)
source "$(dirname "$0")/device_env.sh" tests
archives=()
while [[ "${1:-}" == *.tar.xz ]]; do
  archives+=("$1")
  shift
done
rounds=$1 label=$2
shift 2
for archive in "${archives[@]}"; do
  name=$(basename "$archive" .tar.xz)
  mkdir -p "build-$name" && tar -C "build-$name" -xJf "$archive"
done
for round in $(seq 1 "$rounds"); do
  for archive in "${archives[@]}"; do
    name=$(basename "$archive" .tar.xz)
    dir=build-$name
    json="$out/rounds_${label}_${name}_$round.json"
    LD_LIBRARY_PATH="$root/$dir:$LD_LIBRARY_PATH" THERIA_LIBRARY="$root/$dir/libtheria.so" "$dir/theria" bench "$@" \
      --json "$json" >/dev/null 2>&1
    python3 - "$json" "$label $name $round" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))["results"]
ms = {("{batch}·{heads}·{len}·{dim}".format(**r), r["impl"], r["mode"]): r["ms"] for r in rows if r.get("ms") is not None}
for (shape, impl, mode), t in sorted(ms.items()):
    alone = f"  backward {t - ms[(shape, impl, 'fwd')]:7.3f}" if mode == "fwd_bwd" and (shape, impl, "fwd") in ms else ""
    print(f"{sys.argv[2]:28s} {shape:18s} {impl:11s} {mode:8s} {t:8.3f}{alone}")
EOF
  done
done
