#!/usr/bin/env bash
# Session 2026-12-06 (9th), call 5, on the machine call 4 left warm (the same H200, the same prebuilt = main at
# d1e3863): the causal 32K forward+backward and HVP beside flash in three more processes.
source scripts/device/device_env.sh tests >/dev/null; o=$OUT/s9c5; mkdir -p $o; nvidia-smi --query-gpu=name --format=csv,noheader; for r in 1 2 3; do timeout 40 "$T" bench --dtype bf16 --causal --shape 1,16,32768,128 --mode fwd_bwd,hvp --impl theria,flash --iters 10 --warmup 2 --json $o/causal_$r.json > $o/causal_$r.txt 2>/dev/null; grep -E " (fwd_bwd|hvp) " $o/causal_$r.txt | grep -v error | cut -c1-80; done; tar -C $OUT -czf $OUT/s9c5.tar.gz s9c5 && rm -rf $o
