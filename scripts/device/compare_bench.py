"""Two builds' `theria bench --json` files side by side: per shape, mode and causal flag, theria's median ms before
and after, after / before speed, and each build's speed against flash from its own process.
    python3 scripts/device/compare_bench.py --before BEFORE.json ... --after AFTER.json ... [--markdown]
"""
import argparse
import json


def rows(paths):
    table = {}
    for path in paths:
        data = json.load(open(path))
        for r in data["results"]:
            if r["impl"] != "theria":
                continue
            key = (r["batch"], r["heads"], r["len"], r["dim"], data["causal"], r["mode"])
            table[key] = r
    return table


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", nargs="+", required=True)
    ap.add_argument("--after", nargs="+", required=True)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    before, after = rows(args.before), rows(args.after)
    head = ["shape B·H·L·D", "causal", "mode", "before ms", "after ms", "after / before speed", "before vs flash",
            "after vs flash"]
    lines = []
    for key in sorted(after, key=lambda k: (k[4], k[2], k[3], k[5])):
        if key not in before:
            continue
        b, a = before[key], after[key]
        if b["ms"] is None or a["ms"] is None:
            lines.append(["·".join(map(str, key[:4])), str(key[4]), key[5], "error", "error", "", "", ""])
            continue
        flash = lambda r: f"{r['vs_flash']:.2f}x" if r["vs_flash"] is not None else "—"
        lines.append(["·".join(map(str, key[:4])), "yes" if key[4] else "no", key[5], f"{b['ms']:.3f}", f"{a['ms']:.3f}",
                      f"{b['ms'] / a['ms']:.3f}x", flash(b), flash(a)])
    if args.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for line in lines:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(x) for x in col) for col in zip(head, *lines)]
        for line in [head] + lines:
            print("  ".join(x.rjust(w) for x, w in zip(line, widths)))


if __name__ == "__main__":
    main()
