"""Plots a `theria study robustness` result: robustness.json -> PNG (matplotlib), two panels.

Left: the map. One row per (precision, backend), one column per (T, head dim); each cell coloured by its verdict
(docs/robustness.md) and labelled with FULL's largest meta-gradient error against float64 (or what failed).
Right: FULL's error (mean over seeds; the intervals are in robustness.md) against T for each precision (colour) and
backend (marker) at the largest head dim, with each precision's tolerance as a dotted line: where a dtype stops
resolving the exact meta-gradient.

usage: python scripts/plot_robustness.py ROBUSTNESS_JSON OUT_PNG
"""
import argparse
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import ListedColormap  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

# Verdict classes, in the colours of the map (a colour-blind-safe set).
CLASSES = [("FULL safe", "#1a9850"), ("FULL safe, second order below rounding", "#91cf60"),
           ("inaccurate", "#fee08b"), ("impractical", "#fdae61"), ("unstable", "#d73027"),
           ("no second-order path", "#f46d43"), ("FULL raises", "#762a83"), ("out of memory", "#5e3c99"),
           ("not judged", "#bababa")]


def verdict_class(verdict):
    for i, (name, _) in enumerate(CLASSES):
        if verdict == name or (verdict.startswith(name) and name != "FULL safe"):
            return i
    return len(CLASSES) - 1


def num(x):
    return float("nan") if x is None else float(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("robustness")
    parser.add_argument("out")
    args = parser.parse_args()
    with open(args.robustness) as f:
        data = json.load(f)
    rows = data["rows"]
    cols = sorted({(r["cell"]["seq_len"], r["cell"]["head_dim"]) for r in rows})
    lines = []
    for r in rows:
        key = (r["cell"]["precision"], r["cell"]["backend"])
        if key not in lines:
            lines.append(key)
    grid = [[math.nan] * len(cols) for _ in lines]
    labels = [[""] * len(cols) for _ in lines]
    for r in rows:
        i = lines.index((r["cell"]["precision"], r["cell"]["backend"]))
        j = cols.index((r["cell"]["seq_len"], r["cell"]["head_dim"]))
        grid[i][j] = verdict_class(r["verdict"])
        if r["runs"]:
            labels[i][j] = f"{num(r['max_error_full']):.1g}"
        else:
            labels[i][j] = "OOM" if "memory" in r["verdict"] else "raises" if "raises" in r["verdict"] else "—"

    fig, (left, right) = plt.subplots(1, 2, figsize=(7 + 0.9 * len(cols), 1.2 + 0.38 * len(lines)),
                                      gridspec_kw={"width_ratios": [max(len(cols), 2), 3]})
    cmap = ListedColormap([c for _, c in CLASSES])
    left.imshow(grid, cmap=cmap, vmin=-0.5, vmax=len(CLASSES) - 0.5, aspect="auto")
    for i in range(len(lines)):
        for j in range(len(cols)):
            left.text(j, i, labels[i][j], ha="center", va="center", fontsize=7)
    left.set_xticks(range(len(cols)), [f"T={t}\nD={d}" for t, d in cols], fontsize=8)
    left.set_yticks(range(len(lines)), [f"{p} · {b}" for p, b in lines], fontsize=8)
    left.set_title("verdict (label: FULL's max error)", fontsize=9)
    used = sorted({int(v) for row in grid for v in row if not math.isnan(v)})
    left.legend(handles=[Patch(color=CLASSES[k][1], label=CLASSES[k][0]) for k in used], fontsize=7,
                loc="upper left", bbox_to_anchor=(0, -0.12 - 0.4 / max(len(lines), 1)), ncol=2, frameon=False)

    widest = max(d for _, d in cols)
    seq_lens = sorted({t for t, d in cols if d == widest})
    precisions = list(dict.fromkeys(p for p, _ in lines))
    backends = list(dict.fromkeys(b for _, b in lines))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    markers = ["o", "s", "^", "D", "v"]
    tolerances = {}
    for precision, backend in lines:
        pts = [r for r in rows if r["cell"]["precision"] == precision and r["cell"]["backend"] == backend
               and r["cell"]["head_dim"] == widest and r["runs"]]
        pts.sort(key=lambda r: r["cell"]["seq_len"])
        if not pts:
            continue
        colour = colours[precisions.index(precision) % len(colours)]
        right.plot([r["cell"]["seq_len"] for r in pts], [num(r["error_full"]["mean"]) for r in pts], lw=1.0,
                   color=colour, marker=markers[backends.index(backend) % len(markers)], ms=5, mfc="none",
                   label=f"{precision} · {backend}")
        tolerances[precision] = (pts[0]["tolerance"], colour)
    by_value = {}  # precisions with the same tolerance share one line and one label
    for precision, (tol, colour) in tolerances.items():
        by_value.setdefault(tol, (colour, []))[1].append(precision)
    for tol, (colour, names) in by_value.items():
        right.axhline(tol, color=colour, ls=":", lw=0.8)
        right.text(seq_lens[-1], tol, "τ " + ", ".join(names) + " ", fontsize=7, va="bottom", ha="right",
                   color=colour)
    right.set_xscale("log", base=2)
    right.set_yscale("log")
    right.set_xlabel("sequence length T")
    right.set_ylabel("FULL meta-gradient error vs float64 (rel. L2)")
    right.set_title(f"FULL's error at head dim {widest}, mean over seeds", fontsize=9)
    right.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.suptitle(f"Robustness map · {data['device_name']} · {data['config']['seeds']} seeds", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out, dpi=130, bbox_inches="tight")


if __name__ == "__main__":
    main()
