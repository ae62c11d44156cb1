"""Plots a `theria study taxonomy` result: taxonomy.json -> PNG (matplotlib), two panels.

Left: rel_diff_full_vs_fo = ||g_FULL - g_FO|| / ||g_FULL|| of each pattern against the inner depth (mean
over seeds, 95 % interval as a band). Right: held-out accuracy after meta-training of each pattern and mode
that was trained, mean and 95 % interval over seeds, with chance as a line.

usage: python scripts/plot_taxonomy.py TAXONOMY_JSON OUT_PNG
"""
import argparse
import json
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def num(x):
    return float("nan") if x is None else float(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("taxonomy")
    parser.add_argument("out")
    args = parser.parse_args()
    with open(args.taxonomy) as f:
        data = json.load(f)
    rows = data["rows"]
    config = data["config"]

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [1, 1.3]})
    # Patterns with the same numbers (detach and no_grad drop the same terms) would hide each other: each gets
    # its own marker and dash, drawn in turn.
    styles = [("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", "-"), ("P", "--"), ("X", ":")]
    full_rows = [r for r in rows if r["mode"] == "full"]
    for i, row in enumerate(full_rows):
        points = row["rel_diff_full_vs_fo"]
        steps = [p["inner_steps"] for p in points]
        mean = [num(p["value"]["mean"]) for p in points]
        low = [num(p["value"]["low"]) for p in points]
        high = [num(p["value"]["high"]) for p in points]
        marker, dash = styles[i % len(styles)]
        (line,) = left.plot(steps, mean, marker=marker, linestyle=dash, markersize=7 - 0.6 * (i % 4), label=row["variant"])
        left.fill_between(steps, low, high, color=line.get_color(), alpha=0.15)
    if full_rows:
        left.set_xticks([p["inner_steps"] for p in full_rows[0]["rel_diff_full_vs_fo"]])
    left.set_xlabel("inner steps")
    left.set_ylabel("||g_FULL - g_FO|| / ||g_FULL||")
    left.set_title("FULL vs FO along the inner depth (inner lr %g)" % config["diagnostics"]["rel_diff_inner_lr"])
    left.legend(fontsize=8)
    left.grid(alpha=0.3)

    trained = [r for r in rows if r["post_accuracy"]["n"] > 0]
    labels, means, errs_low, errs_high, colors = [], [], [], [], []
    palette = {"safe": "tab:green", "conditional": "tab:orange", "unsafe": "tab:red"}
    for r in trained:
        acc = r["post_accuracy"]
        m, lo, hi = num(acc["mean"]), num(acc["low"]), num(acc["high"])
        labels.append("%s\n%s" % (r["variant"], r["mode"]))
        means.append(m)
        errs_low.append(0.0 if math.isnan(lo) else m - lo)
        errs_high.append(0.0 if math.isnan(hi) else hi - m)
        colors.append(palette.get(r["verdict"], "tab:gray"))
    x = range(len(trained))
    right.bar(x, means, yerr=[errs_low, errs_high], color=colors, capsize=4)
    right.axhline(1.0 / config["model"]["classes"], color="black", linestyle=":", label="chance")
    right.set_xticks(list(x))
    right.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    right.set_ylim(0, 1.05)
    right.set_ylabel("held-out accuracy after adaptation")
    right.set_title("after %d meta-steps, %d seeds (colour: verdict; grey: FO by design)"
                    % (config["meta_training"]["meta_steps"], config["seeds"]))
    right.legend(fontsize=8)
    fig.suptitle("theria study taxonomy: %s backend (%s), %s, %s" % (
        config["backend"], data["resolved_backend"], config["dtype"], data["device_name"]))
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)


if __name__ == "__main__":
    main()
