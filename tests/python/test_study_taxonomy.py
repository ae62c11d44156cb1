"""`theria study taxonomy --quick` on CPU (docs/taxonomy.md): its files parse, its verdicts follow the written
rules from its own measurements, exact is safe and the silent patterns are not, and a second run with the same
configuration resumes from the parts instead of running them again.

The program is found as in test_cli_outputs.py ($THERIA_BUILD_DIR, default `build`)."""
import csv

import pytest

from test_cli_outputs import THERIA, strict_json, theria

pytestmark = pytest.mark.skipif(not THERIA.exists(), reason=f"{THERIA} not built")

SILENT = ["detach_attention_output", "no_grad_attention", "once_differentiable", "no_create_graph"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("taxonomy")
    r = theria("study", "taxonomy", "--quick", "--backend", "explicit", "--out", out, threads=None)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r


def rows_by_key(data):
    return {(row["variant"], row["mode"]): row for row in data["rows"]}


def test_files_parse_and_hold_every_variant_in_every_mode(quick_run):
    out, r = quick_run
    data = strict_json(out / "taxonomy.json")
    rows = rows_by_key(data)
    variants = {row["variant"] for row in data["rows"]}
    assert {"exact", "stats_detach", "logits_detach", *SILENT} <= variants
    assert all((v, m) in rows for v in variants for m in ("full", "fo", "fo_strict"))
    assert data["command"].startswith("theria study taxonomy --quick")
    with open(out / "taxonomy.csv") as f:
        assert len(list(csv.DictReader(f))) == len(data["rows"])
    assert "| exact | full |" in (out / "taxonomy.md").read_text()
    assert (out / "taxonomy.png").stat().st_size > 0
    assert "[taxonomy]" in r.stderr and "ETA" in r.stderr  # the progress bar


def test_exact_is_safe_and_every_silent_pattern_unsafe(quick_run):
    rows = rows_by_key(strict_json(quick_run[0] / "taxonomy.json"))
    exact = rows[("exact", "full")]
    assert exact["verdict"] == "safe" and exact["second_order_path"] is True
    assert exact["meta_gradient_error_rel_l2"]["mean"] < 1e-3
    assert exact["detector"] == "passes"
    for v in SILENT:
        row = rows[(v, "full")]
        assert row["second_order_path"] is False, v
        assert row["verdict"] == "unsafe", v
    for v in [*SILENT, "stats_detach", "logits_detach"]:
        assert rows[(v, "full")]["detector"] == "flagged", v
    # The negative control: no mode but FULL has a path, whatever the pattern.
    assert not any(row["second_order_path"] for (v, m), row in rows.items() if m != "full")


def test_verdicts_follow_the_written_rules_from_the_rows_own_numbers(quick_run):
    data = strict_json(quick_run[0] / "taxonomy.json")
    rules = data["rules"]
    cells = data["cells"]
    for row in data["rows"]:
        if row["mode"] != "full":
            assert row["verdict"] == "first order by design"
            continue
        mine = [c for c in cells if c["variant"] == row["variant"] and c["mode"] == "full"]
        errors = [c["error_rel_l2"] if c["error_rel_l2"] is not None else float("inf") for c in mine]
        cosines = [c["error_cosine"] if c["error_cosine"] is not None else float("-inf") for c in mine]
        shares = [c["second_order_share"] for c in mine]
        path = all(s is not None and s > rules["second_order_path_threshold"] for s in shares)
        assert row["second_order_path"] == path, row["variant"]
        worse = row["post_accuracy_minus_exact_full"]
        significantly_worse = worse["n"] >= 2 and worse["high"] < 0
        if path and max(errors) <= rules["meta_gradient_tolerance"]:
            expected = "safe"
        elif path and min(cosines) >= rules["conditional_min_cosine"] and not significantly_worse:
            expected = "conditional"
        else:
            expected = "unsafe"
        assert row["verdict"] == expected, row["variant"]


def test_a_rerun_with_the_same_configuration_reads_every_unit_back(quick_run):
    out = quick_run[0]
    before = rows_by_key(strict_json(out / "taxonomy.json"))
    units = len(list((out / "parts").glob("*.json")))
    r = theria("study", "taxonomy", "--quick", "--backend", "explicit", "--out", out, "--no-plot", threads=None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{units} units read back from an earlier run" in r.stderr
    assert rows_by_key(strict_json(out / "taxonomy.json")) == before
    # Another configuration runs again: one seed fewer is not the same study.
    r = theria("study", "taxonomy", "--quick", "--backend", "explicit", "--seeds", "1", "--variants", "exact",
               "--out", out, "--no-plot", threads=None)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "read back" not in r.stderr
