#!/usr/bin/env bash
# Builds packed by `scripts/device/variants.sh objects NAME FLAGS SOURCES...` (.device/variants/NAME.tar.xz), compared
# in alternating rounds (scripts/device/rounds.sh): bf16 forward, forward+backward and HVP beside flash at issue 18's
# shapes (B8 H16 L2048 and B2 H16 L8192 at D64/D128, B1 H16 L32768 D128 causal), and with FP32=1 float32 at "high"
# beside math (B8 H8 L1024 and B8 H16 L2048, D64/D128); BF16=0 leaves the bf16 rows out. What it prints is what
# rounds_summary.py reads:
#   device:  bash scripts/device/variant_rounds.sh ROUNDS NAME [NAME ...] > $OUT/rounds.txt   (device tool, carry .device)
#   here:    python3 scripts/device/rounds_summary.py rounds.txt {dense|causal|fp32} NAME [NAME ...]
here=$(dirname "$0")
rounds=$1
shift
builds=()
# "prebuilt": .device/prebuilt.tar.xz (scripts/device/pack_build.sh), which the device scripts unpack anyway.
for name in "$@"; do
  if [ "$name" = prebuilt ]; then builds+=(.device/prebuilt.tar.xz); else builds+=(".device/variants/$name.tar.xz"); fi
done
if [ "${BF16:-1}" = 1 ]; then
  bash "$here/rounds.sh" "${builds[@]}" "$rounds" dense --dtype bf16 --shape 8,16,2048,64 --shape 2,16,8192,64 \
    --shape 8,16,2048,128 --shape 2,16,8192,128 --mode fwd,fwd_bwd,hvp --impl theria,flash --iters 20 --warmup 3
  bash "$here/rounds.sh" "${builds[@]}" "$rounds" causal --dtype bf16 --causal --shape 1,16,32768,128 \
    --mode fwd,fwd_bwd,hvp --impl theria,flash --iters 10 --warmup 2
fi
if [ "${FP32:-0}" = 1 ]; then
  bash "$here/rounds.sh" "${builds[@]}" "$rounds" fp32 --dtype fp32 --float32-precision high --shape 8,8,1024,64 \
    --shape 8,8,1024,128 --shape 8,16,2048,64 --shape 8,16,2048,128 --mode fwd,fwd_bwd,hvp --impl theria,math \
    --iters 10 --warmup 2
fi
