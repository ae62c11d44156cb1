#!/usr/bin/env bash
# Session 2026-12-05 (5th), call 1: the lagged-dQ D=64 backward kernels (prebuilt) against main's (variants/main):
# targeted GPU tests, alternating bench rounds, per-kernel timelines; the SM clock and power sampled throughout.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu --format=csv > "$out/smi_start.txt" 2>&1
fields=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active
nvidia-smi --query-gpu=$fields --format=csv,noheader >/dev/null 2>&1 || fields=timestamp,clocks.sm,power.draw,temperature.gpu
nvidia-smi --query-gpu=$fields --format=csv,noheader -lms 100 > "$out/smi.csv" 2>&1 &
smi=$!
mark() { echo "$(date '+%Y/%m/%d %H:%M:%S.%N') $*" >> "$out/marks.txt"; }
mark tests
timeout 300 python3 -m pytest -q -m gpu tests/python/test_fused_gpu.py -p no:cacheprovider \
  -k "many_query_steps or double_backward or forward_backward_match or last_wave" 2>&1 | tail -n 8 > "$out/tests.txt"
echo "tests: $(tail -n 1 "$out/tests.txt")"
mark rounds
bash scripts/device/rounds.sh .device/variants/main.tar.xz .device/prebuilt.tar.xz 3 dense --dtype bf16 \
  --shape 8,16,2048,64 --shape 2,16,8192,64 --mode fwd,fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 \
  > "$out/rounds.txt" 2>&1
echo "rounds rc=$?"
for b in main prebuilt; do
  mark "timeline $b"
  echo "## $b"
  LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so \
    python3 scripts/device/hvp_timeline.py --shapes 8,16,2048,64 2,16,8192,64 --iters 5 2>&1 | grep -v Warn
done > "$out/timeline.txt"
for r in 1 2; do
  for what in "hvp theria 100" "fwd_bwd flash 200"; do
    set -- $what
    mark "clock $1 $2 round $r"
    "$T" bench --dtype bf16 --shape 2,16,8192,64 --mode "$1" --impl "$2" --iters "$3" --warmup 5 2>/dev/null \
      | grep -E "^2,16" >> "$out/clock_bench.txt"
  done
done
mark end
kill $smi
python3 scripts/device/clock_summary.py "$out/smi.csv" "$out/marks.txt" > "$out/clocks.txt" 2>&1
cat "$out/clocks.txt"
tail -n 40 "$out/rounds.txt"
