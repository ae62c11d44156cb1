#!/usr/bin/env bash
# Session 2026-12-05 (5th), call 2: lagged dQ v2 (no wait or branch with a wgmma in flight; prebuilt) against main's
# kernels (variants/main): targeted GPU tests, alternating bench rounds, per-kernel timelines, and the SM clock and
# power while theria's HVP and flash's forward+backward run. Everything under $OUT/call2.tar.gz.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/call2; mkdir -p "$o"; out=$o
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,power.limit,temperature.gpu --format=csv > "$o/smi_start.txt" 2>&1
fields=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active
nvidia-smi --query-gpu=$fields --format=csv,noheader >/dev/null 2>&1 || fields=timestamp,clocks.sm,power.draw,temperature.gpu
nvidia-smi --query-gpu=$fields --format=csv,noheader -lms 50 > "$o/smi.csv" 2>&1 &
smi=$!
mark() { echo "$(date '+%Y/%m/%d %H:%M:%S.%N') $*" >> "$o/marks.txt"; }
mark tests
timeout 300 python3 -m pytest -q -m gpu tests/python/test_fused_gpu.py -p no:cacheprovider \
  -k "many_query_steps or double_backward or forward_backward_match or last_wave" 2>&1 | tail -n 8 > "$o/tests.txt"
echo "tests: $(tail -n 1 "$o/tests.txt")"
mark rounds
bash scripts/device/rounds.sh .device/variants/main.tar.xz .device/prebuilt.tar.xz 3 dense --dtype bf16 \
  --shape 8,16,2048,64 --shape 2,16,8192,64 --mode fwd,fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 \
  > "$o/rounds.txt" 2>&1
bash scripts/device/rounds.sh .device/variants/main.tar.xz .device/prebuilt.tar.xz 2 causal --dtype bf16 --causal \
  --shape 8,16,2048,64 --mode fwd,fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 > "$o/rounds_causal.txt" 2>&1
echo "rounds rc=$?"
mv "$OUT"/rounds_*.json "$o/" 2>/dev/null
for b in main prebuilt; do
  mark "timeline $b"
  echo "## $b"
  LD_LIBRARY_PATH=$PWD/build-$b:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$b/libtheria.so \
    python3 scripts/device/hvp_timeline.py --shapes 2,16,8192,64 --iters 5 2>&1 | grep -v -i warn
done > "$o/timeline.txt"
for r in 1 2; do
  for what in "main hvp theria 60" "main fwd_bwd flash 120" "prebuilt hvp theria 60"; do
    set -- $what
    mark "clock $1 $2 $3 round $r"
    LD_LIBRARY_PATH=$PWD/build-$1:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/build-$1/libtheria.so "build-$1/theria" bench \
      --dtype bf16 --shape 2,16,8192,64 --mode "$2" --impl "$3" --iters "$4" --warmup 5 2>/dev/null \
      | grep -E "^2,16" | sed "s/^/$1 /" >> "$o/clock_bench.txt"
  done
done
mark end
kill $smi
python3 scripts/device/clock_summary.py "$o/smi.csv" "$o/marks.txt" > "$o/clocks.txt" 2>&1
python3 scripts/device/rounds_summary.py "$o/rounds.txt" dense main prebuilt > "$o/summary.txt" 2>&1
python3 scripts/device/rounds_summary.py "$o/rounds_causal.txt" causal main prebuilt >> "$o/summary.txt" 2>&1
cat "$o/clocks.txt" "$o/summary.txt"
grep -E "wall|sdpa_bwd_wg_kernel" "$o/timeline.txt" | cut -c1-120
tar -C "$OUT" -czf "$OUT/call2.tar.gz" call2 && rm -rf "$o"
