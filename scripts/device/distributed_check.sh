#!/usr/bin/env bash
# On the device (one GPU): the lab's NCCL path (docs/distributed.md) through torchrun with a group of one rank, beside
# the same run with no process group — same weights? what does the group cost per meta-step? — and the Python example
# on NCCL. Needs the prebuilt program (pack_build.sh) and, for the GPU unit tests, .device/theria_tests_gpu.
#   bash scripts/device/distributed_check.sh OUT_DIR
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?OUT_DIR}
mkdir -p "$out"
eval "$(bash "$root/scripts/device/use_build.sh")"
export PYTHONPATH=$root/python
T=$root/build-prebuilt/theria
if [ -f "$root/.device/theria_tests_gpu" ]; then
  "$root/.device/theria_tests_gpu" 2>&1 | tail -3
fi
# Fused backend, bf16, T = 1024: the meta-step the multi-GPU run would share; deterministic, so that the two runs
# may be compared bit for bit (the fused backward adds in a fixed order).
args=(maml --device cuda --backend fused --dtype bfloat16 --task position_recall --seq-len 1024 --classes 8 --dim 128
      --heads 2 --support 16 --query 16 --meta-batch 8 --meta-steps 120 --eval-every 60 --eval-tasks 16 --inner-steps 2
      --inner-lr 0.1 --no-plot --diagnose-steps 1 --checkpoint-every 120 --deterministic)
"$T" "${args[@]}" --out "$out/alone" 2> "$out/alone.log"
python -m torch.distributed.run --standalone --nproc-per-node 1 --no-python "$T" "${args[@]}" --check-replicas \
  --out "$out/nccl1" 2> "$out/nccl1.log"
grep -h "ranks\|rank (" "$out/nccl1.log" || true
python - "$out" <<'PY'
import json, sys, torch
out = sys.argv[1]
def ck(name):
    magic, state, weights, *_ = torch.load(f"{out}/{name}/checkpoint.pt")
    return json.loads(state), weights
sa, wa = ck("alone"); sb, wb = ck("nccl1")
num = sum(float((x.double() - y.double()).pow(2).sum()) for x, y in zip(wa, wb)) ** 0.5
den = sum(float(x.double().pow(2).sum()) for x in wa) ** 0.5
summary = json.load(open(f"{out}/nccl1/summary.json"))
print(json.dumps({"rel_diff_weights": num / den, "steps": [sa["step"], sb["step"]],
                  "seconds_alone": sa["seconds"], "seconds_nccl1": sb["seconds"],
                  "post_accuracy_alone": sa["curve"][-1]["held_out"]["post_accuracy"],
                  "post_accuracy_nccl1": sb["curve"][-1]["held_out"]["post_accuracy"],
                  "distributed": summary["distributed"]}, indent=1))
PY
# The Python example on NCCL (one rank) and alone.
python "$root/examples/distributed_maml.py" --device cuda --meta-steps 5 --out "$out/example_alone.pt"
python -m torch.distributed.run --standalone --nproc-per-node 1 "$root/examples/distributed_maml.py" --device cuda \
  --meta-steps 5 --out "$out/example_nccl1.pt"
python - "$out" <<'PY'
import sys, torch
out = sys.argv[1]
a, b = torch.load(f"{out}/example_alone.pt"), torch.load(f"{out}/example_nccl1.pt")
num = sum(float((a["state_dict"][k] - b["state_dict"][k]).double().pow(2).sum()) for k in a["state_dict"]) ** 0.5
den = sum(float(a["state_dict"][k].double().pow(2).sum()) for k in a["state_dict"]) ** 0.5
print("example: rel diff", num / den, "losses", a["losses"][-1], b["losses"][-1])
PY
