#!/usr/bin/env bash
# Session 2026-12-05 (5th), call 3: (1) the lagged-dQ variants: main, prebuilt (lagged dQ at D=64), pingpong (and the
# warpgroups' score products in turn), lag128 (the D=128 backward lagged too), alternating rounds; (2) the issue's
# floors on main's build, theria beside flash in one process, two rounds; (3) the SM clock and power in steady state:
# theria's HVP and flash's forward+backward run for about 3.5 s each, nvidia-smi every 50 ms.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/call3; mkdir -p "$o"
fields=timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active
nvidia-smi --query-gpu=$fields --format=csv,noheader >/dev/null 2>&1 || fields=timestamp,clocks.sm,power.draw,temperature.gpu
nvidia-smi --query-gpu=$fields --format=csv,noheader -lms 50 > "$o/smi.csv" 2>&1 &
smi=$!
mark() { echo "$(date '+%Y/%m/%d %H:%M:%S.%N') $*" >> "$o/marks.txt"; }
mark variants
bash scripts/device/rounds.sh .device/variants/main.tar.xz .device/prebuilt.tar.xz .device/variants/pingpong.tar.xz \
  .device/variants/lag128.tar.xz 2 var --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 \
  --shape 2,16,8192,128 --mode fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3 > "$o/variants.txt" 2>&1
mv "$out"/rounds_*.json "$o/" 2>/dev/null
M=build-main
run_main() { LD_LIBRARY_PATH=$PWD/$M:$LD_LIBRARY_PATH THERIA_LIBRARY=$PWD/$M/libtheria.so "$M/theria" "$@"; }
for r in 1 2; do
  mark "floors dense round $r"
  run_main bench --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 --shape 8,16,2048,128 --shape 2,16,8192,128 \
    --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash --iters 20 --warmup 3 --json "$o/floors_dense_$r.json" \
    > "$o/floors_dense_$r.txt" 2>/dev/null
  mark "floors causal round $r"
  run_main bench --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd,fwd_bwd,jvp,hvp --impl theria,flash \
    --iters 10 --warmup 2 --json "$o/floors_causal_$r.json" > "$o/floors_causal_$r.txt" 2>/dev/null
done
for r in 1 2; do
  for what in "hvp theria 250 2,16,8192,64" "fwd_bwd flash 500 2,16,8192,64" "hvp theria 36 1,16,32768,128 --causal" \
              "fwd_bwd flash 72 1,16,32768,128 --causal"; do
    set -- $what
    mark "steady $4 $1 $2 round $r"
    run_main bench --dtype bf16 --shape "$4" ${5:-} --mode "$1" --impl "$2" --iters "$3" --warmup 5 2>/dev/null \
      | grep -E "^[12],16" >> "$o/steady_bench.txt"
  done
done
mark end
kill $smi
python3 scripts/device/clock_summary.py "$o/smi.csv" "$o/marks.txt" > "$o/clocks.txt" 2>&1
python3 scripts/device/rounds_summary.py "$o/variants.txt" var main prebuilt pingpong lag128 > "$o/variants_summary.txt" 2>&1
cat "$o/variants_summary.txt" "$o/clocks.txt" "$o/steady_bench.txt"
grep -E "hvp|fwd_bwd|jvp" "$o"/floors_*_1.txt | cut -c1-110
tar -C "$out" -czf "$out/call3.tar.gz" call3 && rm -rf "$o"
