#!/usr/bin/env bash
# How `theria bench --mode hvp` hands autograd its direction u, measured both ways with one build (carried by
# scripts/device/pack_build.sh): dot (the gradient of the scalar <g, u>: PyTorch's element-wise products, sums and
# their backward around theria's ops, the harness before --hvp-form) and vjp (u as the grad_outputs of g's backward,
# as torch.autograd.functional.hvp and a MAML meta-gradient hand it), in the order dot, vjp, dot, vjp:
#   bf16 at issue 18's shapes, theria's HVP against flash's forward+backward in the same process;
#   float32 at matmul precision "high" at issue 19's shapes, theria's HVP against math's HVP in the same process.
#   run on the device tool (carry .device):  bash scripts/device/hvp_forms.sh
source "$(dirname "$0")/device_env.sh" "$@"
bf16_dense=(--shape 8,16,2048,64 --shape 8,16,2048,128 --shape 2,16,8192,64 --shape 2,16,8192,128)
fp32_shapes=(--shape 32,4,256,64 --shape 8,8,1024,64 --shape 2,8,4096,64 --shape 8,8,1024,128 --shape 8,16,2048,64
             --shape 8,16,2048,128)
for round in 1 2; do
  for form in dot vjp; do
    b=(bench --mode fwd_bwd,hvp --hvp-form "$form" --iters 20 --warmup 3)
    rcs=()
    "$T" "${b[@]}" --dtype bf16 "${bf16_dense[@]}" --impl theria,flash \
      --json "$out/bf16_${form}_$round.json" >"$out/bf16_${form}_$round.txt" 2>&1
    rcs+=($?)
    "$T" "${b[@]}" --dtype bf16 --causal --shape 1,16,32768,128 --impl theria,flash \
      --json "$out/bf16_causal_${form}_$round.json" >"$out/bf16_causal_${form}_$round.txt" 2>&1
    rcs+=($?)
    "$T" "${b[@]}" --dtype fp32 --float32-precision high "${fp32_shapes[@]}" --impl theria,math \
      --json "$out/fp32_${form}_$round.json" >"$out/fp32_${form}_$round.txt" 2>&1
    rcs+=($?)
    echo "round $round, form $form: rc=${rcs[*]}"
  done
done
for round in 1 2; do
  echo "== round $round: bf16, before = dot, after = vjp (HVP / flash forward+backward in the second table)"
  python3 scripts/device/compare_bench.py --before "$out"/bf16_{,causal_}dot_$round.json \
    --after "$out"/bf16_{,causal_}vjp_$round.json
  echo "== round $round: float32 high, before = dot, after = vjp, against math's HVP in the same form"
  python3 scripts/device/compare_bench.py --before "$out/fp32_dot_$round.json" --after "$out/fp32_vjp_$round.json" \
    --against math
done
# The device tool brings back a few files a call: the JSON and text files in one archive.
(cd "$out" && tar -cJf hvp_forms.tar.xz ./*_[12].json ./*_[12].txt && rm -f ./*_[12].json ./*_[12].txt)
