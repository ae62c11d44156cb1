"""Plots a `theria study metagrad` result: metagrad.json -> metagrad_error.png and metagrad_cost.png in OUT_DIR.

metagrad_error.png  relative error of each estimator's meta-gradient against the exact implicit oracle (left) and
                    the exact unrolled one (right), against the inner depth, mean over seeds (log scale)
metagrad_cost.png   time (left) and peak memory (right) of one meta-step against the inner depth, seed 0

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
    fig.savefig(os.path.join(args.out_dir, "metagrad_error.png"), dpi=120)

    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    for e in estimators:
        axes[0].plot(depths, series(e, "ms", seed=0), marker="o", label=e)
        axes[1].plot(depths, series(e, "peak_mib", seed=0), marker="o", label=e)
    kind = next((c["memory_kind"] for c in cells if c["memory_kind"]), "")
    for ax, label in ((axes[0], "ms per meta-step"), (axes[1], "peak memory, MiB (%s)" % kind)):
        ax.set_xscale("log")
        ax.set_xlabel("inner steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out_dir, "metagrad_cost.png"), dpi=120)


if __name__ == "__main__":
    main()
