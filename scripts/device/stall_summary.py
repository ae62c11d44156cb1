"""Summarises an Nsight Compute source-page CSV (scripts/device/profile.sh source): the share of warp stall
samples per SASS opcode with its leading stall reasons, then the instructions that hold the most samples.
    python3 scripts/device/stall_summary.py src_sdpa_bwd_jvp_tc_kernel_64.csv [--top 25]
"""
import argparse
import collections
import csv


def number(text):
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args()
    rows = list(csv.reader(open(args.csv)))
    start = next(i for i, r in enumerate(rows) if r and r[0] == "Address")
    header = rows[start]
    col = {h: j for j, h in enumerate(header)}
    data = [r for r in rows[start + 1:] if len(r) == len(header)]
    samples = "Warp Stall Sampling (All Samples)"
    stalls = [h for h in header if h.startswith("stall_") and "Not Issued" not in h]
    total = sum(number(r[col[samples]]) for r in data) or 1.0

    def opcode(source):
        words = source.split()
        if words and words[0].startswith("@"):
            words = words[1:]
        return words[0].split(".")[0] if words else "?"

    share, reasons = collections.Counter(), collections.defaultdict(collections.Counter)
    for r in data:
        op = opcode(r[col["Source"]])
        share[op] += number(r[col[samples]])
        for s in stalls:
            reasons[op][s] += number(r[col[s]])
    print(f"{len(data)} instructions, {total:.0f} stall samples")
    for op, n in share.most_common(12):
        lead = ", ".join(f"{k[6:]} {v / total * 100:.1f}%" for k, v in reasons[op].most_common(3))
        print(f"  {op:8s} {n / total * 100:5.1f}%  [{lead}]")
    print("instructions with the most samples:")
    for r in sorted(data, key=lambda r: -number(r[col[samples]]))[: args.top]:
        lead = max(stalls, key=lambda s: number(r[col[s]]))
        print(f"  {number(r[col[samples]]) / total * 100:5.2f}%  {r[col['Source']][:64]:64s} [{lead[6:]}]")


if __name__ == "__main__":
    main()
