"""Plots a `theria study metagrad` result: metagrad.json -> metagrad_error.png, metagrad_cost.png and
metagrad_accuracy.png in OUT_DIR.

metagrad_error.png  relative error of each estimator's meta-gradient against the exact implicit oracle (left) and
                    the exact unrolled one (right), against the inner depth, mean over seeds (log scale)
                    (not drawn for a run without oracles, --no-oracle)
metagrad_cost.png   time (left) and peak memory (right) of one meta-step against the inner depth, seed 0; a depth
                    where the estimator ran out of device memory is marked by a dotted line
metagrad_accuracy.png  held-out accuracy after meta-training with each estimator, mean and 95 % interval over
                    seeds, with each seed's run (when the study meta-trained)

usage: python scripts/plot_metagrad.py METAGRAD_JSON OUT_DIR
"""
import argparse
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def num(x):
    return float("nan") if x is None else float(x)


def mean(values):
    values = [v for v in values if not math.isnan(v)]
    return sum(values) / len(values) if values else float("nan")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("metagrad")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    with open(args.metagrad) as f:
        data = json.load(f)
    cells, config = data["cells"], data["config"]
    estimators = []
    for c in cells:
        if c["estimator"] not in estimators:
            estimators.append(c["estimator"])
    depths = config["inner_steps"]
    title = "theria study metagrad: %s backend, %s, %s" % (config["backend"], config["dtype"], data["device_name"])

    def series(estimator, key, seed=None):
        out = []
        for d in depths:
            values = [num(c[key]) for c in cells if c["estimator"] == estimator and c["inner_steps"] == d
                      and (seed is None or c["seed"] == seed)]
            out.append(mean(values))
        return out

    if config["oracle"].get("computed", True):
        plot_errors(args.out_dir, title, estimators, depths, series)
    plot_cost(args.out_dir, title, estimators, depths, series, cells)
    if data.get("training"):
        plot_accuracy(args.out_dir, title, data)


def plot_errors(out_dir, title, estimators, depths, series):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for ax, key, name in ((axes[0], "rel_error_vs_implicit_oracle", "exact implicit"),
                          (axes[1], "rel_error_vs_unrolled_oracle", "exact unrolled")):
        for e in estimators:
            ax.plot(depths, [max(v, 1e-17) for v in series(e, key)], marker="o", label=e)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("inner steps")
        ax.set_ylabel("relative L2 error")
        ax.set_title("against the %s meta-gradient (float64)" % name)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "metagrad_error.png"), dpi=120)


def plot_cost(out_dir, title, estimators, depths, series, cells):
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for i, e in enumerate(estimators):
        color = "C%d" % i
        axes[0].plot(depths, series(e, "ms", seed=0), marker="o", label=e, color=color)
        axes[1].plot(depths, series(e, "peak_mib", seed=0), marker="o", label=e, color=color)
        oom = [c["inner_steps"] for c in cells if c["estimator"] == e and c["seed"] == 0
               and c["status"] == "out of memory"]
        for ax in axes:
            for depth in oom:
                ax.axvline(depth, color=color, linestyle=":", alpha=0.8)
                ax.text(depth, 0.5, "%s: out of memory" % e, transform=ax.get_xaxis_transform(), rotation=90,
                        ha="right", va="center", fontsize=7, color=color)
    kind = next((c["memory_kind"] for c in cells if c["memory_kind"]), "")
    for ax, label in ((axes[0], "ms per meta-step"), (axes[1], "peak memory, MiB (%s)" % kind)):
        ax.set_xlabel("inner steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "metagrad_cost.png"), dpi=120)


def plot_accuracy(out_dir, title, data):
    summary, runs, training = data["accuracy"], data["training"], data["config"]["training"]
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(summary)), 4.8))
    for i, a in enumerate(summary):
        acc = a["post_accuracy"]
        m, lo, hi = num(acc["mean"]), num(acc["low"]), num(acc["high"])
        ax.bar(i, m, color="C%d" % i, alpha=0.6)
        ax.errorbar(i, m, yerr=[[m - lo], [hi - m]], color="black", capsize=5)
        seeds = [num(r["post_accuracy"]) for r in runs if r["estimator"] == a["estimator"]]
        ax.plot([i] * len(seeds), seeds, "k.", alpha=0.6)
        ax.text(i, 0.02, a["verdict"], ha="center", fontsize=7, rotation=90, va="bottom")
    ax.set_xticks(range(len(summary)))
    ax.set_xticklabels([a["estimator"] for a in summary], rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("held-out accuracy after adaptation")
    ax.set_ylim(0, 1.05)
    ax.set_title("%s\n%d inner steps, %d meta-steps, %d seeds (95 %% intervals)" % (
        title, training["inner_steps"], training["meta_steps"], training["seeds"]), fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "metagrad_accuracy.png"), dpi=120)


if __name__ == "__main__":
    main()
