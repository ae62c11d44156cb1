"""What scripts/device/rounds.sh measured, summarised: per label, shape and mode, each build's theria ms in every
round and their median, the change of each build's median against the first build named, and per round the HVP
against the same process's flash forward+backward (issue 18 asks for at most 2.0x) or math HVP against theria's
(issue 19 asks for 3x at float32 "high"). SOURCE is the folder of its JSON files (rounds_LABEL_BUILD_ROUND.json) or
the text it printed.
    python3 scripts/device/rounds_summary.py SOURCE LABEL BUILD [BUILD ...]
"""
import collections
import glob
import json
import os
import statistics
import sys


def runs_from_json(folder, label, build):
    runs = []
    for path in sorted(glob.glob(f"{folder}/rounds_{label}_{build}_*.json")):
        data = json.load(open(path))
        runs.append({(f"{r['batch']}·{r['heads']}·{r['len']}·{r['dim']}", r["impl"], r["mode"]): r["ms"]
                     for r in data["results"] if r.get("ms") is not None})
    return runs


def runs_from_text(path, label, build):
    by_round = collections.defaultdict(dict)
    for line in open(path):
        p = line.split()  # LABEL BUILD ROUND SHAPE IMPL MODE MS [backward MS]
        if len(p) >= 7 and p[0] == label and p[1] == build and p[3].count("·") == 3:
            by_round[int(p[2])][(p[3], p[4], p[5])] = float(p[6])
    return [by_round[r] for r in sorted(by_round)]


def main():
    source, label, builds = sys.argv[1], sys.argv[2], sys.argv[3:]
    load = runs_from_json if os.path.isdir(source) else runs_from_text
    runs = {b: load(source, label, b) for b in builds}
    keys = sorted({k for b in builds for run in runs[b] for k in run if k[1] == "theria"})
    print(f"## {label}: theria ms per round (median); change of the median against {builds[0]}")
    for shape, impl, mode in keys:
        cells, base = [], None
        for b in builds:
            ts = [run[(shape, impl, mode)] for run in runs[b] if (shape, impl, mode) in run]
            if not ts:
                cells.append(f"{b}: -")
                continue
            med = statistics.median(ts)
            base = med if base is None else base
            change = f" {100 * (med / base - 1):+.1f}%" if b != builds[0] else ""
            cells.append(f"{b}: {' '.join(f'{t:.3f}' for t in ts)} ({med:.3f}{change})")
        print(f"{shape:16s} {mode:8s} " + " | ".join(cells))
    for shape in sorted({k[0] for k in keys}):
        for against, mode in (("flash", "fwd_bwd"), ("math", "hvp")):
            cells = []
            for b in builds:
                ratios = []
                for run in runs[b]:
                    hvp, ref = run.get((shape, "theria", "hvp")), run.get((shape, against, mode))
                    if hvp and ref:
                        ratios.append(hvp / ref if against == "flash" else ref / hvp)
                if ratios:
                    cells.append(f"{b}: {' '.join(f'{x:.2f}' for x in ratios)}")
            if cells:
                what = "HVP / flash fwd+bwd" if against == "flash" else "math HVP / theria HVP"
                print(f"{shape:16s} {what}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
