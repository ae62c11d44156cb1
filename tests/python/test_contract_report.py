"""`theria contract` (docs/contract_report.md): the claims file and the report, checked as a person sees it.

The contract is judged and rendered from the committed GPU results (docs/results/contract_sources: symbolic links to
the studies' result folders), so the test takes seconds; the report is then opened in headless Chromium, which must
find every section and decode every figure. scripts/test.sh installs Chromium and sets THERIA_REQUIRE_BROWSER=1, so
in CI a missing browser fails the test instead of skipping it."""
import json
import os
import pathlib
import re
import shutil
import subprocess

import pytest

from test_cli_outputs import THERIA, theria

pytestmark = pytest.mark.skipif(not THERIA.exists(), reason=f"{THERIA} not built")

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ROOT / "docs" / "results" / "contract_sources"
VERDICTS = {"holds", "fails", "not supported by the data"}
SECTIONS = ["claims", "taxonomy", "signal", "abstraction", "robustness", "timing", "operator", "environment"]


def browser():
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        if os.environ.get("THERIA_REQUIRE_BROWSER") == "1":
            pytest.fail("no headless Chromium: scripts/test.sh installs the Debian package 'chromium'")
        pytest.skip("no Chromium on this machine")
    return path


def chromium(*args):
    return subprocess.run([browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                           "--hide-scrollbars", *args],
                          capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("contract")
    r = theria("contract", "--full", "--from", SOURCES, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r


def test_the_claims_file_judges_every_claim_from_the_studies_files(report):
    out, r = report
    data = json.loads((out / "contract.json").read_text())
    claims = data["claims"]
    assert len(claims) >= 17 and len({c["id"] for c in claims}) == len(claims)
    for c in claims:
        assert c["verdict"] in VERDICTS, c
        assert c["statement"] and c["rule"] and c["reason"], c
        for f in c["evidence"]["files"]:
            assert pathlib.Path(f).exists(), f
        assert f"{c['verdict']:<26} {c['id']}" in r.stdout  # the console lists the same verdicts
    counts = {v: sum(c["verdict"] == v for c in claims) for v in VERDICTS}
    assert data["verdict_counts"] == counts
    env = data["environment"]
    assert env["tier"] == "full" and env["results_from"] == str(SOURCES)
    assert "NVIDIA H200" in env["studies_ran_on"]["robustness"]
    # the plan's claim the GPU data contradicts (frozen statistics measured unsafe) is listed, not dropped
    frozen = next(c for c in claims if c["id"] == "taxonomy.frozen_statistics_are_conditional")
    assert frozen["verdict"] == "fails"


def test_a_study_left_out_leaves_its_claims_unsupported_and_its_section_says_so(tmp_path):
    partial = tmp_path / "from"
    (partial / "robustness").mkdir(parents=True)
    (partial / "robustness" / "run").symlink_to(SOURCES / "robustness" / "T256_T1024")
    r = theria("contract", "--from", partial, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stdout + r.stderr
    claims = json.loads((tmp_path / "out" / "contract.json").read_text())["claims"]
    for c in claims:
        if c["id"].startswith(("taxonomy.", "signal.", "abstraction.", "operator.")):
            assert c["verdict"] == "not supported by the data" and "was not run" in c["reason"], c
    assert any(c["id"].startswith("robustness.") and c["verdict"] != "not supported by the data" for c in claims)
    assert "Not run on this machine" in (tmp_path / "out" / "index.html").read_text()


def test_the_report_in_a_real_browser_has_every_section_and_every_figure(report):
    out, _ = report
    page = (out / "index.html").as_uri()
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr
    status = re.search(r'id="load-status" data-state="(\w+)">([^<]*)<', dom.stdout)
    assert status, "the page's load check did not run"
    assert status.group(1) == "ok", status.group(2)
    figures = int(re.search(r"all (\d+) figures loaded", status.group(2)).group(1))
    assert figures >= 6  # taxonomy, sweeps, metagrad, robustness maps
    for section in SECTIONS:
        assert f'<section id="{section}">' in dom.stdout, section
    assert "Meta-step cost per estimator and inner depth" in dom.stdout  # the timing summary's FULL / FO / implicit
    for claim in json.loads((out / "contract.json").read_text())["claims"]:
        assert f'id="claim-{claim["id"]}"' in dom.stdout
    shot = out / "screenshot.png"
    r = chromium("--window-size=1280,2400", f"--screenshot={shot}", page)
    assert r.returncode == 0 and shot.stat().st_size > 50_000, r.stderr


def test_without_the_reports_python_the_contract_fails_and_says_how_to_render_elsewhere(tmp_path, monkeypatch):
    monkeypatch.setenv("THERIA_PYTHON", "/bin/false")  # a Python that cannot run the report script
    r = theria("contract", "--full", "--from", SOURCES, "--out", tmp_path)
    assert r.returncode == 1
    assert (tmp_path / "contract.json").exists()  # the claims are judged anyway
    assert f"theria contract --full --from {SOURCES} --out DIR" in r.stderr
