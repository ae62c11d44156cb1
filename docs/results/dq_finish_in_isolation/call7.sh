#!/usr/bin/env bash
# Session 2026-12-05 (6th), call 7: as call 6 with --cache-control none --clock-control none (the caches as the HVP left them, the clocks free): Nsight Compute on dQ's finishing kernel (theria, the HVP at 2·16·8192·128: its
# two launches) and on flash's conversion of the same buffer (flash forward+backward), main's kernels (a36f433).
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/device/device_env.sh tests >/dev/null
o=$out/s6c7; mkdir -p "$o"
sec="--section SpeedOfLight"
m="--metrics dram__bytes_read.sum,dram__bytes_write.sum,lts__t_sector_hit_rate.pct,gpu__time_duration.sum"
timeout 150 ncu --cache-control none --clock-control none --kernel-name regex:dq_finish --launch-count 2 $sec $m "$T" bench --dtype bf16 --shape 2,16,8192,128 \
  --mode hvp --impl theria --iters 1 --warmup 0 > "$o/theria_finish.txt" 2>&1
echo "theria rc=$?"
timeout 150 ncu --cache-control none --clock-control none --kernel-name regex:"convert_dq|dot_do_o" --launch-count 2 $sec $m "$T" bench --dtype bf16 \
  --shape 2,16,8192,128 --mode fwd_bwd --impl flash --iters 1 --warmup 0 > "$o/flash_convert.txt" 2>&1
echo "flash rc=$?"
for f in "$o"/*.txt; do
  echo "== $(basename "$f")"
  grep -E "dq_finish|convert_dq|dot_do_o|Duration|DRAM Throughput|dram__bytes|lts__t_sector_hit|Memory Throughput|Achieved Occupancy|Block Size|Grid Size|Registers Per|L2 Hit|Mem Busy|Max Bandwidth" "$f" | cut -c1-140
done
tar -C "$out" -czf "$out/s6c7.tar.gz" s6c7 && rm -rf "$o"
