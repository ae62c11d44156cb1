"""`theria study robustness` on CPU (docs/robustness.md): the quick tier writes every file with the schema the contract
report reads; every verdict follows from the rows' numbers by the written rules (recomputed here); PyTorch's flash
SDPA raises on the FULL meta-gradient while theria's backends and PyTorch's math agree with float64; autocast reaches
the model (its error is bf16's, not float32's); and an interrupted run resumes to the same rows.

The program is found as in test_cli_outputs.py ($THERIA_BUILD_DIR, default `build`)."""
import csv
import math

import pytest

from test_cli_outputs import THERIA, strict_json, theria

pytestmark = pytest.mark.skipif(not THERIA.exists(), reason=f"{THERIA} not built")

SMALL = ["study", "robustness", "--seq-lens", "16", "--head-dims", "8", "--precisions", "float32,autocast_bfloat16",
         "--seeds", "2", "--tasks", "2", "--support", "4", "--query", "4", "--no-plot"]

ROW_KEYS = {"cell", "seeds", "failure", "non_finite_seeds", "runs", "stable", "second_order_path", "accurate",
            "resolves_second_order", "practical", "works", "second_order_share", "rel_diff_full_vs_fo", "error_full",
            "max_error_full", "error_fo", "cosine_full", "tolerance", "path_threshold", "cost_status", "full_ms",
            "fo_ms", "full_peak_mib", "fo_peak_mib", "full_over_fo", "graph_nodes", "verdict"}


def verdict_by_the_rules(row, measures, rules):
    """docs/robustness.md's rules, applied again to the per-seed measures (not to the row's flags)."""
    statuses = [m["status"] for m in measures]
    failure = next((s for s in statuses if s.startswith(("raises", "oracle")) or s == "out of memory"), "")
    if failure.startswith("oracle"):
        return f"not judged ({failure})"
    if failure.startswith("raises"):
        return "FULL raises"
    if failure:
        return "out of memory"
    bad = sum(m["non_finite"] for m in measures)
    if bad:
        return f"unstable (non-finite in {bad} of {len(measures)} seeds)"
    value = lambda m, k: math.nan if m[k] is None else m[k]  # noqa: E731
    if not all(value(m, "second_order_share") > row["path_threshold"] for m in measures):
        return "no second-order path"
    worst = max(value(m, "error_full") for m in measures)
    if not worst <= row["tolerance"]:
        return "inaccurate"
    if row["cost_status"] != "ok":
        return "out of memory (cost)" if row["cost_status"] == "out of memory" else "cost not measured"
    if not row["full_ms"] <= rules["practical_cost_ratio"] * row["fo_ms"]:
        return "impractical"
    resolved = all(value(m, "error_full") <= rules["resolved_factor"] * value(m, "error_fo") for m in measures)
    return "FULL safe" if resolved else "FULL safe, second order below rounding"


def test_every_verdict_follows_from_the_measures_by_the_written_rules(tmp_path):
    r = theria(*SMALL, "--out", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    data = strict_json(tmp_path / "robustness.json")
    assert data["rules"]["document"] == "docs/robustness.md"
    rows = data["rows"]
    backends = {"reference", "explicit", "pytorch_math", "pytorch_flash"}
    assert {r["cell"]["backend"] for r in rows} == backends and len(rows) == 2 * len(backends)
    for row in rows:
        assert set(row) == ROW_KEYS
        measures = [m for m in data["measures"] if m["cell"] == row["cell"]]
        assert len(measures) == 2
        assert row["verdict"].startswith(verdict_by_the_rules(row, measures, data["rules"])), row
    by = {(r["cell"]["precision"], r["cell"]["backend"]): r for r in rows}
    for precision in ("float32", "autocast_bfloat16"):
        flash = by[(precision, "pytorch_flash")]
        assert flash["verdict"] == "FULL raises" and "not implemented" in flash["failure"]
    for backend in backends - {"pytorch_flash"}:
        exact = by[("float32", backend)]
        assert exact["works"] and exact["max_error_full"] < 1e-4, exact
        assert exact["second_order_path"] and exact["second_order_share"]["mean"] > 0.01
        # autocast runs the model's products in bfloat16: its error is bf16's, far above float32's
        assert by[("autocast_bfloat16", backend)]["error_full"]["mean"] > 100 * exact["error_full"]["mean"]
    with open(tmp_path / "robustness.csv") as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    assert "FULL raises" in (tmp_path / "robustness.md").read_text()
    assert "ETA" in r.stderr


def test_quick_tier_writes_the_map_and_its_figure(tmp_path):
    r = theria("study", "robustness", "--quick", "--out", tmp_path, threads=None)
    assert r.returncode == 0, r.stdout + r.stderr
    data = strict_json(tmp_path / "robustness.json")
    assert len(data["rows"]) == 2 * 1 * 4 * 4 and data["config"]["seeds"] == 3
    assert (tmp_path / "robustness.png").stat().st_size > 0


def test_an_interrupted_run_resumes_to_the_same_rows(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert theria(*SMALL, "--out", whole).returncode == 0
    parts = sorted((whole / "parts").glob("measures_*.json"))
    assert len(parts) == 2  # one per (T, D, seed)
    (cut / "parts").mkdir(parents=True)
    (cut / "parts" / parts[0].name).write_text(parts[0].read_text())  # the first seed done, the rest not
    r = theria(*SMALL, "--out", cut)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 units read back" in r.stderr
    strip = lambda d: [{k: v for k, v in row.items() if k not in ("full_ms", "fo_ms", "full_peak_mib", "fo_peak_mib",  # noqa: E731
                                                                   "full_over_fo", "practical", "verdict")}
                       for row in strict_json(d / "robustness.json")["rows"]]
    assert strip(whole) == strip(cut)
