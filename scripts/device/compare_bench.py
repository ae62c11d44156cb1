"""Two builds' `theria bench --json` files side by side: per shape, mode and causal flag, theria's median ms before
and after, after / before speed, and each build's speed against flash (or --against efficient|math) from its own
process. Then, where the files
hold them, each build's JVP against flash's forward and HVP against flash's forward+backward at the same shape (flash
serves neither; issue 18 asks for at most 2.0x).
    python3 scripts/device/compare_bench.py --before BEFORE.json ... --after AFTER.json ... [--markdown]
        [--against flash|efficient|math]
"""
import argparse
import json


def rows(paths, impl="theria"):
    table = {}
    for path in paths:
        data = json.load(open(path))
        for r in data["results"]:
            if r["impl"] != impl:
                continue
            key = (r["batch"], r["heads"], r["len"], r["dim"], data["causal"], r["mode"])
            table[key] = r
    return table


def print_table(head, lines, markdown):
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *lines)]
        for line in [head] + lines:
            print("  ".join(x.rjust(w) for x, w in zip(line, widths)))


def higher_vs_flash(paths, build):
    """Lines (build, shape, causal, JVP / flash fwd, HVP / flash fwd+bwd) of one build's files."""
    ours, flash = rows(paths), rows(paths, "flash")
    lines = []
    for key in sorted(ours, key=lambda k: (k[4], k[2], k[3])):
        pair = {"jvp": "fwd", "hvp": "fwd_bwd"}.get(key[5])
        base = flash.get(key[:5] + (pair,)) if pair else None
        if base is None or ours[key]["ms"] is None or base["ms"] is None:
            continue
        lines.append([build, "·".join(map(str, key[:4])), "yes" if key[4] else "no", key[5], f"{ours[key]['ms']:.3f}",
                      f"flash {pair} {base['ms']:.3f}", f"{ours[key]['ms'] / base['ms']:.2f}x"])
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", nargs="+", required=True)
    ap.add_argument("--after", nargs="+", required=True)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--against", default="flash", choices=["flash", "efficient", "math"],
                    help="whose time the last two columns divide by theria's (same process)")
    args = ap.parse_args()
    vs = f"vs_{args.against}"
    before, after = rows(args.before), rows(args.after)
    head = ["shape B·H·L·D", "causal", "mode", "before ms", "after ms", "after / before speed",
            f"before vs {args.against}", f"after vs {args.against}"]
    lines = []
    for key in sorted(after, key=lambda k: (k[4], k[2], k[3], k[5])):
        if key not in before:
            continue
        b, a = before[key], after[key]
        if b["ms"] is None or a["ms"] is None:
            lines.append(["·".join(map(str, key[:4])), str(key[4]), key[5], "error", "error", "", "", ""])
            continue
        flash = lambda r: f"{r[vs]:.2f}x" if r.get(vs) is not None else "—"
        lines.append(["·".join(map(str, key[:4])), "yes" if key[4] else "no", key[5], f"{b['ms']:.3f}", f"{a['ms']:.3f}",
                      f"{b['ms'] / a['ms']:.3f}x", flash(b), flash(a)])
    print_table(head, lines, args.markdown)
    higher = higher_vs_flash(args.before, "before") + higher_vs_flash(args.after, "after")
    if higher:
        print()
        print_table(["build", "shape B·H·L·D", "causal", "mode", "theria ms", "flash ms", "theria / flash"], higher,
                    args.markdown)


if __name__ == "__main__":
    main()
