#!/usr/bin/env bash
# `theria contract --full` end to end on the GPU machine (issue 13), over as many device calls as it takes: each call
# runs the contract with the sweep and robustness studies sharded (--shards) until THERIA_CONTRACT_TIMEOUT seconds
# (default 540), then packs everything it has (finished studies and the parts of the one it was in) as
# $OUT/contract.tgz. Carry that back as .device/contract.tgz and call again: the contract reuses finished studies and
# every study resumes from its parts. The last call writes contract.json; the report (index.html) is rendered here,
# where its Python is (theria contract --full --from DIR/contract --out DIR).
# Uses the build carried in .device/prebuilt.tar.xz (scripts/device/pack_build.sh).
#   run on the device tool (carry .device):  bash scripts/device/contract_full.sh
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
out=${OUT:-$root/.device/out}
mkdir -p "$out"
eval "$(bash scripts/device/use_build.sh)"
work=/tmp/theria_contract
mkdir -p "$work"
[ -f .device/contract.tgz ] && tar xzf .device/contract.tgz -C "$work"
start=$SECONDS
timeout "${THERIA_CONTRACT_TIMEOUT:-540}" build-prebuilt/theria contract --full --shards "${THERIA_SHARDS:-15}" \
  --no-report --out "$work/contract" >"$out/contract.txt" 2>"$out/progress.txt"
echo "contract: rc=$? in $((SECONDS - start)) s" | tee "$out/summary.txt"
grep -E '^\[contract\]' "$out/progress.txt" | tail -n 12
tr '\r' '\n' <"$out/progress.txt" | grep -v '^$' | tail -n 2
tail -n 22 "$out/contract.txt"
tar czf "$out/contract.tgz" -C "$work" contract
