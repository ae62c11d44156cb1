"""Issue 18's floors from `theria bench --json` files (theria and flash in one process each): per file and shape,
theria's forward and forward+backward against flash's (met at >= 1.0x), its JVP against flash's forward and its HVP
against flash's forward+backward (met at <= 2.0x), and a verdict per file: every floor present met or not.
    python3 scripts/device/floors.py BENCH.json ... [--markdown]
"""
import argparse
import json

SPEED = (("fwd", "forward"), ("fwd_bwd", "forward+backward"))  # theria / flash speed, floor >= 1.0
RATIO = (("jvp", "fwd", "JVP / flash forward"), ("hvp", "fwd_bwd", "HVP / flash forward+backward"))  # floor <= 2.0


def table(path):
    data = json.load(open(path))
    ms = {}
    for r in data["results"]:
        if r.get("ms") is not None:
            ms[(f"{r['batch']}·{r['heads']}·{r['len']}·{r['dim']}", r["mode"], r["impl"])] = r["ms"]
    shapes = sorted({k[0] for k in ms}, key=lambda s: [int(x) for x in s.split("·")])
    rows, met = [], True
    for shape in shapes:
        cells = []
        for mode, name in SPEED:
            t, f = ms.get((shape, mode, "theria")), ms.get((shape, mode, "flash"))
            if t and f:
                cells.append(f"{name} {f / t:.2f}x faster")
                met &= f / t >= 1.0
        for mode, base, name in RATIO:
            t, f = ms.get((shape, mode, "theria")), ms.get((shape, base, "flash"))
            if t and f:
                cells.append(f"{name} {t / f:.3f}")
                met &= t / f <= 2.0
        rows.append((shape, cells))
    causal = " causal" if data.get("causal") else ""
    return data.get("device", "?"), causal, rows, met


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    for path in args.files:
        device, causal, rows, met = table(path)
        print(f"{path} ({device}): every floor {'met' if met else 'NOT met'}")
        for shape, cells in rows:
            print(f"| {shape}{causal} | " + " | ".join(cells) + " |" if args.markdown else f"  {shape}{causal}: " + "; ".join(cells))


if __name__ == "__main__":
    main()
