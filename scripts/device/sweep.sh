#!/usr/bin/env bash
# GPU runs of `theria study sweep` (docs/sweep.md), or of another resumable study named by THERIA_STUDY (robustness:
# docs/robustness.md), several at once: each argument is NAME:ARGS, one study of its own in $OUT/<study>_NAME (ARGS
# are the study's options, commas kept, words split on '+'). Each study runs as
# THERIA_SHARDS processes side by side (--shard I/N: the lab's small models leave the GPU mostly idle), then, if no
# shard was cut off, once unsharded to measure the costs alone and write the files. Studies run together.
# A study's parts carried in from an earlier, cut-off call (.device/<study>_NAME/parts) are resumed; the shards stop
# after THERIA_STUDY_TIMEOUT seconds (default 540); each study's parts are packed as parts.tgz (the device tool
# brings back few files); figures are drawn afterwards from sweep.json (the machine has no matplotlib).
# Uses the build carried in .device/prebuilt.tar.xz (scripts/device/pack_build.sh) when there is one.
#   run on the device tool:  THERIA_SHARDS=6 bash scripts/device/sweep.sh 'ind:--task+induction+--seeds+5' ...
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
export OMP_NUM_THREADS=1  # many processes, few CPU ops each
shards=${THERIA_SHARDS:-1}
kind=${THERIA_STUDY:-sweep}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
study() {  # study NAME ARGS
  local name=$1 dir="$out/${kind}_$1" start=$SECONDS cut=0 pids=() i
  local -a args=(study "$kind" --device "${THERIA_SWEEP_DEVICE:-cuda}" --no-plot ${2//+/ } --out "$dir")
  mkdir -p "$dir"
  [ -d ".device/${kind}_$name/parts" ] && cp -r ".device/${kind}_$name/parts" "$dir/"
  if [ "$shards" -gt 1 ]; then
    for ((i = 0; i < shards; i++)); do
      timeout "${THERIA_STUDY_TIMEOUT:-540}" "$theria" "${args[@]}" --shard "$i/$shards" >/dev/null 2>"$dir/shard$i.txt" &
      pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || cut=1; done
  fi
  if [ "$cut" = 0 ]; then
    timeout "${THERIA_STUDY_TIMEOUT:-540}" "$theria" "${args[@]}" >"$dir/stdout.txt" 2>"$dir/progress.txt"
    echo "$kind $name: rc=$? in $((SECONDS - start)) s" >>"$out/summary.txt"
  else
    echo "$kind $name: a shard was cut off after $((SECONDS - start)) s; $(ls "$dir/parts" | wc -l) parts" >>"$out/summary.txt"
  fi
  tar czf "$dir/parts.tgz" -C "$dir" parts && rm -rf "$dir/parts"
}
pids=()
for spec in "$@"; do
  study "${spec%%:*}" "${spec#*:}" &
  pids+=($!)
done
wait "${pids[@]}"
cat "$out/summary.txt"
for spec in "$@"; do
  dir="$out/${kind}_${spec%%:*}"
  echo "---- ${spec%%:*}"
  for f in "$dir"/shard*.txt "$dir/progress.txt"; do [ -f "$f" ] && tr '\r' '\n' <"$f" | grep -v '^$' | tail -n 1; done
  [ -f "$dir/stdout.txt" ] && grep -E '^\|' "$dir/stdout.txt" | grep -v '^|---' | head -40
done
