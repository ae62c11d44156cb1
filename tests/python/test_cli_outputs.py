"""The `theria` program's output files: every JSON it writes parses with Python's `json` (no NaN, no
Infinity, escaped strings), a diverged `theria maml` run says so and where, and the plot step takes a
user's path as data (a space or a `;` in `--out` runs nothing).

The program is found in the build directory: $THERIA_BUILD_DIR (default `build`), relative to the
repository unless absolute."""
import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("THERIA_BUILD_DIR", "build"))
THERIA = (BUILD if BUILD.is_absolute() else REPO / BUILD) / "theria"

pytestmark = pytest.mark.skipif(not THERIA.exists(), reason=f"{THERIA} not built")

# A tiny `theria maml` run on CPU: a few seconds, every output file written.
TINY_MAML = ["maml", "--device", "cpu", "--meta-steps", "2", "--eval-every", "1", "--meta-batch", "2",
             "--eval-tasks", "2", "--support", "4", "--query", "4", "--dim", "16", "--diagnose-steps", "1,2"]


def theria(*args, cwd=None, threads=1):
    """Runs the program on `threads` CPU threads (one by default, as the tests that compare two runs need; None: all
    of the machine's, for the long runs that compare with no other)."""
    env = dict(os.environ)
    if threads is None:
        env.pop("OMP_NUM_THREADS", None)
    else:
        env["OMP_NUM_THREADS"] = str(threads)
    return subprocess.run([str(THERIA), *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def strict_json(path):
    """json.load that refuses NaN and Infinity, which Python's json module accepts by default."""
    def refuse(constant):
        raise ValueError(f"{path}: {constant} is not JSON")
    with open(path) as f:
        return json.load(f, parse_constant=refuse)


def test_verify_json_parses_and_has_a_row_per_check(tmp_path):
    out = tmp_path / "verify.json"
    r = theria("verify", "--quick", "--device", "cpu", "--json", out)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = strict_json(out)
    assert rows and all(row["device"] == "cpu" for row in rows)
    for row in rows:
        assert set(row) == {"device", "backend", "derivative", "dtype", "max_rel_error", "tolerance", "pass",
                            "status"}
        assert isinstance(row["max_rel_error"], float) and row["pass"] is True and row["status"] == "pass"


def test_maml_outputs_parse_and_the_plot_lands_in_a_path_with_a_space_and_a_semicolon(tmp_path):
    # Through a shell, `.../a b; touch PWNED; x/curve.csv` would run `touch PWNED` in the working directory.
    out = tmp_path / "a b; touch PWNED; x"
    r = theria(*TINY_MAML, "--out", out, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = strict_json(out / "summary.json")
    assert summary["status"] == "ok" and summary["divergence"] is None
    assert summary["plot"] == {"status": "written", "file": "curve.png", "exit_status": 0}
    assert (out / "curve.png").stat().st_size > 0
    # Nothing ran but the plotting script: no PWNED in the working directory, tmp_path or the repository.
    assert not list(tmp_path.rglob("PWNED"))
    assert not (REPO / "PWNED").exists() and not (Path.cwd() / "PWNED").exists()

    rel = summary["diagnostics"]["rel_diff_full_vs_fo"]
    assert rel["inner_steps"] == [1, 2] and len(rel["value"]) == len(rel["status"]) == 2
    for value, status in zip(rel["value"], rel["status"]):
        assert (value is None) == (status != "ok")
    cosine = summary["diagnostics"]["cosine_full_fo"]
    assert cosine["inner_steps"] == [1, 2] and cosine["status"] == rel["status"]
    for value, status in zip(cosine["value"], cosine["status"]):
        assert (value is None) == (status != "ok") and (value is None or -1.0 <= value <= 1.0)

    with open(out / "curve.csv") as f:
        curve = list(csv.DictReader(f))
    assert [int(p["step"]) for p in curve] == [0, 1, 2]
    assert curve[0]["meta_loss"] == ""  # no meta-step before step 1: empty, not "nan"
    assert all(float(p["meta_loss"]) > 0 for p in curve[1:])
    assert all(p["status"] == "ok" for p in curve)


@pytest.mark.parametrize("mode,path", [("full", True), ("fo", False), ("fo_strict", False)])
def test_second_order_path_describes_the_runs_own_mode(tmp_path, mode, path):
    r = theria(*TINY_MAML, "--mode", mode, "--no-plot", "--out", tmp_path / mode)
    assert r.returncode == 0, r.stdout + r.stderr
    diagnostics = strict_json(tmp_path / mode / "summary.json")["diagnostics"]
    assert diagnostics["second_order_path"] is path
    assert (diagnostics["second_order_nodes"] != []) is path


def test_a_diverging_run_exits_non_zero_and_says_where(tmp_path):
    r = theria(*TINY_MAML, "--inner-lr", "1e30", "--no-plot", "--out", tmp_path / "stopped")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "diverged" in r.stderr and "nan" not in r.stdout.lower()
    summary = strict_json(tmp_path / "stopped" / "summary.json")
    assert summary["status"] == "diverged"
    d = summary["divergence"]
    assert isinstance(d["meta_step"], int) and isinstance(d["inner_step"], int) and d["inner_step"] >= 1
    assert "inner loop diverged at step" in d["message"] and d["continued"] is False
    assert summary["held_out"]["after_training"]["post_accuracy"] is None
    assert summary["held_out"]["after_training"]["status"] != "ok"
    assert summary["diagnostics"]["second_order_norm"] is None
    assert summary["diagnostics"]["second_order_norm_status"] != "ok"

    r = theria(*TINY_MAML, "--inner-lr", "1e30", "--no-plot", "--continue-on-divergence", "--out", tmp_path / "on")
    assert r.returncode == 0, r.stdout + r.stderr
    summary = strict_json(tmp_path / "on" / "summary.json")
    assert summary["status"] == "diverged" and summary["divergence"]["continued"] is True
    assert summary["divergence"]["skipped_meta_steps"] == 2


def test_inner_gradient_clipping_keeps_the_same_run_finite(tmp_path):
    r = theria(*TINY_MAML, "--inner-lr", "1e3", "--inner-grad-clip", "1e-4", "--no-plot", "--out", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = strict_json(tmp_path / "summary.json")
    assert summary["status"] == "ok" and summary["config"]["inner_grad_clip"] == 1e-4


@pytest.mark.parametrize("options,seq_len", [(["--pairs", "5"], 10), (["--pairs", "3", "--seq-len", "14"], 14)])
def test_mqar_sequence_length_is_two_per_pair_unless_given(tmp_path, options, seq_len):
    r = theria(*TINY_MAML, "--task", "mqar", "--smeared-keys", *options, "--no-plot", "--out", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert strict_json(tmp_path / "summary.json")["config"]["task"]["seq_len"] == seq_len


@pytest.mark.parametrize("task,knobs", [
    ("position_recall", {"seq_len": 8, "classes": 4}),
    ("mqar", {"seq_len": 8, "keys": 8, "values": 8, "pairs": 4}),
    ("induction", {"seq_len": 8, "markers": 2, "fillers": 4}),
    ("sinusoid", {"seq_len": 8, "amplitude_min": 0.1, "amplitude_max": 5.0, "phase_min": 0.0, "input_min": -5.0,
                  "input_max": 5.0}),
])
def test_maml_records_the_task_family_and_its_knobs(tmp_path, task, knobs):
    r = theria(*TINY_MAML, "--task", task, "--smeared-keys", "--out", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    summary = strict_json(tmp_path / "summary.json")
    family = summary["config"]["task"]
    assert family["family"] == task and family["support"] == 4 and family["query"] == 4
    for name, value in knobs.items():
        assert family[name] == value and type(family[name]) is type(value), name
    assert summary["config"]["smeared_keys"] is True
    held = summary["held_out"]
    assert held["metric"] == ("r2" if task == "sinusoid" else "accuracy")
    assert held["chance"] == {"position_recall": 0.25, "mqar": 0.25, "induction": 0.5, "sinusoid": 0.0}[task]
    assert isinstance(held["after_training"]["pre_loss"], float)
    assert summary["plot"]["status"] == "written"


def test_a_family_refuses_knobs_it_cannot_use(tmp_path):
    r = theria(*TINY_MAML, "--task", "induction", "--markers", "3", "--seq-len", "8", "--out", tmp_path)
    assert r.returncode == 1 and "induction: seq_len (8) must be >= 3 x markers (3)" in r.stderr, r.stderr
    assert theria(*TINY_MAML, "--task", "no_such_family", "--out", tmp_path).returncode == 2


def test_help_is_generated_and_bad_options_are_refused():
    r = theria("maml", "--help")
    assert r.returncode == 0 and "--inner-grad-clip" in r.stdout and "--continue-on-divergence" in r.stdout
    assert theria("verify", "--device", "gpu").returncode == 2
    assert theria("maml", "--no-such-option").returncode == 2
    assert theria("no-such-command").returncode == 2
