#!/usr/bin/env bash
# GPU runs of `theria study sweep` (docs/sweep.md), several at once: each argument is NAME:ARGS, one study of its
# own in $OUT/sweep_NAME (ARGS are the sweep's options, commas kept, words split on '+'), all started together
# (the lab's small models leave the GPU mostly idle: studies side by side use it better than one after another).
# A study's parts carried in from an earlier, cut-off call (.device/sweep_NAME/parts) are resumed; every study
# stops after THERIA_STUDY_TIMEOUT seconds (default 540) and packs its parts as parts.tgz (the device tool brings
# back few files); the figures are drawn afterwards from sweep.json (the machine has no matplotlib).
# Uses the build carried in .device/prebuilt.tar.xz (scripts/device/pack_build.sh) when there is one.
#   run on the device tool:  bash scripts/device/sweep.sh 'mqar:--task+mqar+--seeds+5' ...
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/.device/out}
mkdir -p "$out"
if [ -f .device/prebuilt.tar.xz ]; then
  eval "$(bash scripts/device/use_build.sh)"
  theria=build-prebuilt/theria
else
  export THERIA_BUILD_DIR=build-gpu THERIA_JOBS=${THERIA_JOBS:-16}
  export THERIA_CMAKE_ARGS="-DTHERIA_THIRD_PARTY_INCLUDE=$root/.device/include -DTHERIA_BUILD_TESTS=OFF"
  [ -x build-gpu/theria ] || bash scripts/setup.sh >"$out/setup.log" 2>&1 || { tail -n 40 "$out/setup.log"; exit 1; }
  theria=build-gpu/theria
fi
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
pids=()
for spec in "$@"; do
  name=${spec%%:*}
  args=${spec#*:}
  dir="$out/sweep_$name"
  mkdir -p "$dir"
  [ -d ".device/sweep_$name/parts" ] && cp -r ".device/sweep_$name/parts" "$dir/"
  (
    start=$SECONDS
    # shellcheck disable=SC2086
    timeout "${THERIA_STUDY_TIMEOUT:-540}" "$theria" study sweep --device cuda --no-plot ${args//+/ } --out "$dir" \
      >"$dir/stdout.txt" 2>"$dir/progress.txt"
    echo "sweep $name: rc=$? in $((SECONDS - start)) s" >>"$out/summary.txt"
    tar czf "$dir/parts.tgz" -C "$dir" parts && rm -rf "$dir/parts"
  ) &
  pids+=($!)
done
wait "${pids[@]}"
cat "$out/summary.txt"
for spec in "$@"; do
  dir="$out/sweep_${spec%%:*}"
  echo "---- ${spec%%:*}"; tr '\r' '\n' <"$dir/progress.txt" | tail -n 2; grep -E '^\|' "$dir/stdout.txt" | head -40
done
