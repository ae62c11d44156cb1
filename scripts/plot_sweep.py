"""Plots a `theria study sweep` result: sweep.json -> three PNGs in OUT_DIR (matplotlib).

sweep_accuracy.png     held-out accuracy after meta-training against inner depth, per mode (one panel per
                       backend), mean and 95 % interval over seeds as a band
sweep_convergence.png  the held-out accuracy curves during meta-training, mean over seeds, per mode (one panel per
                       depth, first backend)
sweep_gap.png          FULL minus FO (and FO_STRICT) against inner depth, paired 95 % interval, zero as a line

usage: python scripts/plot_sweep.py SWEEP_JSON OUT_DIR
"""
import argparse
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"full": "tab:blue", "fo": "tab:orange", "fo_strict": "tab:green"}


def num(x):
    return float("nan") if x is None else float(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("sweep")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    with open(args.sweep) as f:
        data = json.load(f)
    config, summary, cells = data["config"], data["summary"], data["cells"]
    backends, modes, depths = config["backends"], config["modes"], config["inner_steps"]
    task = config.get("task", {"family": "position_recall", "metric": "accuracy"})
    metric = task["metric"]  # accuracy, or r2 for regression
    title = "theria study sweep: %s, %s, %s, %d seeds" % (task["family"], config["dtype"], data["device_name"],
                                                          config["seeds"])

    fig, axes = plt.subplots(1, len(backends), figsize=(6 * len(backends), 4.5), squeeze=False)
    for ax, backend in zip(axes[0], backends):
        for mode in modes:
            rows = sorted((r for r in summary["rows"] if r["backend"] == backend and r["mode"] == mode),
                          key=lambda r: r["inner_steps"])
            x = [r["inner_steps"] for r in rows]
            mean = [num(r["final_accuracy"]["mean"]) for r in rows]
            ax.plot(x, mean, marker="o", color=COLORS.get(mode), label=mode,
                    linestyle="--" if mode == "fo_strict" else "-")
            ax.fill_between(x, [num(r["final_accuracy"]["low"]) for r in rows],
                            [num(r["final_accuracy"]["high"]) for r in rows], color=COLORS.get(mode), alpha=0.15)
        ax.set_xticks(depths)
        ax.set_xlabel("inner steps")
        ax.set_ylabel("held-out %s after adaptation" % metric)
        ax.set_ylim(0 if metric == "accuracy" else None, 1.05)
        ax.set_title("%s backend" % backend)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out_dir, "sweep_accuracy.png"), dpi=120)

    fig, axes = plt.subplots(1, len(depths), figsize=(4.5 * len(depths), 4), squeeze=False)
    for ax, depth in zip(axes[0], depths):
        for mode in modes:
            curves = [c for c in cells if c["backend"] == backends[0] and c["inner_steps"] == depth
                      and c["mode"] == mode]
            if not curves:
                continue
            steps = curves[0]["curve_steps"]
            mean = []
            for i in range(len(steps)):
                values = [num(c["curve_accuracy"][i]) for c in curves if i < len(c["curve_accuracy"])]
                values = [v for v in values if not math.isnan(v)]
                mean.append(sum(values) / len(values) if values else float("nan"))
            ax.plot(steps, mean, color=COLORS.get(mode), label=mode, linestyle="--" if mode == "fo_strict" else "-")
        ax.set_title("%d inner steps (%s)" % (depth, backends[0]))
        ax.set_xlabel("meta-step")
        ax.set_ylim(0 if metric == "accuracy" else None, 1.05)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("held-out %s (mean over seeds)" % metric)
    axes[0][0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out_dir, "sweep_convergence.png"), dpi=120)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for backend in backends:
        for versus in ("fo", "fo_strict"):
            gaps = sorted((g for g in summary["gaps"] if g["backend"] == backend and g["versus"] == versus),
                          key=lambda g: g["inner_steps"])
            if not gaps:
                continue
            x = [g["inner_steps"] for g in gaps]
            gap = [g["full_minus_versus_final_accuracy"] for g in gaps]
            line, = ax.plot(x, [num(v["mean"]) for v in gap], marker="o", label="%s: FULL - %s" % (backend, versus),
                            linestyle="--" if versus == "fo_strict" else "-")
            ax.fill_between(x, [num(v["low"]) for v in gap], [num(v["high"]) for v in gap], color=line.get_color(),
                            alpha=0.12)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(depths)
    ax.set_xlabel("inner steps")
    ax.set_ylabel("held-out %s gap (paired 95 %% interval)" % metric)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out_dir, "sweep_gap.png"), dpi=120)


if __name__ == "__main__":
    main()
