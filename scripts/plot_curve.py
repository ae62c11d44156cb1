"""Plots a `theria maml` learning curve: curve.csv -> PNG (matplotlib).

usage: python scripts/plot_curve.py CURVE_CSV OUT_PNG [--chance P] [--metric NAME] [--title TEXT]
"""
import argparse
import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("curve")
    parser.add_argument("out")
    parser.add_argument("--chance", type=float, default=None)
    parser.add_argument("--metric", default="accuracy", help="what pre/post_accuracy hold: accuracy, or R^2")
    parser.add_argument("--title", default="theria maml")
    args = parser.parse_args()

    with open(args.curve) as f:
        rows = list(csv.DictReader(f))
    # An empty field has no number: no meta-step yet (step 0), or a loss that was not finite (the
    # status column says where). NaN leaves a gap in the line.
    def value(r, key):
        return float(r[key]) if r.get(key) not in (None, "", "nan") else float("nan")

    step = [int(r["step"]) for r in rows]
    pre = [value(r, "pre_accuracy") for r in rows]
    post = [value(r, "post_accuracy") for r in rows]
    loss = [(int(r["step"]), value(r, "meta_loss")) for r in rows if r["meta_loss"] not in ("", "nan")]

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    ax_acc.plot(step, post, marker="o", label="after inner loop")
    ax_acc.plot(step, pre, marker="s", label="before inner loop")
    if args.chance is not None:
        label = "chance" if args.metric == "accuracy" else "0: the query mean"
        ax_acc.axhline(args.chance, color="gray", linestyle="--", label=label)
    ax_acc.set_xlabel("meta-step")
    ax_acc.set_ylabel(f"held-out query {args.metric}")
    if args.metric == "accuracy":
        ax_acc.set_ylim(0, 1.02)
    else:  # R^2 is at most 1 and unbounded below: show from the chance line (0) or the lowest point
        finite = [v for v in pre + post if v == v]
        ax_acc.set_ylim(min([0.0] + finite) - 0.05, 1.02)
    ax_acc.legend()
    ax_acc.grid(alpha=0.3)
    if loss:
        ax_loss.plot([s for s, _ in loss], [v for _, v in loss], color="tab:red")
    ax_loss.set_xlabel("meta-step")
    ax_loss.set_ylabel("meta-batch query loss (after adaptation)")
    ax_loss.set_yscale("log")
    ax_loss.grid(alpha=0.3)
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)


if __name__ == "__main__":
    main()
