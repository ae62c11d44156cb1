"""`theria study sweep` on CPU (docs/sweep.md): the quick tier writes every file; the inner lr is chosen on the
validation split; and a run interrupted part-way, then run again, gives the same results as an uninterrupted run.

The program is found as in test_cli_outputs.py ($THERIA_BUILD_DIR, default `build`)."""
import csv
import os
import signal
import subprocess
import time

import pytest

from test_cli_outputs import THERIA, strict_json, theria

pytestmark = pytest.mark.skipif(not THERIA.exists(), reason=f"{THERIA} not built")

# A small sweep: two depths, two modes, two seeds, a two-value lr grid; a few seconds.
SMALL = ["study", "sweep", "--backends", "explicit", "--inner-steps", "1,2", "--modes", "full,fo", "--seeds", "2",
         "--meta-steps", "12", "--eval-every", "4", "--meta-batch", "2", "--eval-tasks", "8", "--lr-grid", "0.4,0.1",
         "--search-meta-steps", "6", "--search-seeds", "1", "--no-plot"]


def results(out):
    """sweep.json without what may differ between two runs of the same study: times and the command line."""
    data = strict_json(out / "sweep.json")
    for cell in data["cells"]:
        cell.pop("seconds")
    for row in data["summary"]["rows"]:
        row.pop("ms_per_meta_step")
        row.pop("peak_mib")
    return {k: data[k] for k in ("config", "lr_choice", "summary", "cells")}


def test_quick_writes_every_file_and_chooses_the_lr_on_validation_tasks(tmp_path):
    r = theria("study", "sweep", "--quick", "--out", tmp_path, threads=None)
    assert r.returncode == 0, r.stdout + r.stderr
    data = strict_json(tmp_path / "sweep.json")
    assert data["config"]["lr_search"]["split"] == "validation"
    grid = data["config"]["lr_search"]["grid"]
    for choice in data["lr_choice"]:
        assert choice["chosen_lr"] in grid and len(choice["validation_accuracy"]) == len(grid)
        best = max(v for v in choice["validation_accuracy"] if v is not None)
        assert choice["validation_accuracy"][grid.index(choice["chosen_lr"])] == best
    for cell in data["cells"]:  # FO_STRICT takes FO's lr; every cell its (depth, mode)'s choice
        mode = "fo" if cell["mode"] == "fo_strict" else cell["mode"]
        chosen = [c["chosen_lr"] for c in data["lr_choice"] if c["inner_steps"] == cell["inner_steps"]
                  and c["mode"] == mode]
        assert chosen == [cell["inner_lr"]]
    with open(tmp_path / "sweep.csv") as f:
        assert len(list(csv.DictReader(f))) == len(data["summary"]["rows"])
    for figure in ("sweep_accuracy.png", "sweep_convergence.png", "sweep_gap.png"):
        assert (tmp_path / figure).stat().st_size > 0
    assert "ETA" in r.stderr


def test_an_interrupted_run_resumes_to_the_same_results(tmp_path):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    r = theria(*SMALL, "--out", whole)
    assert r.returncode == 0, r.stdout + r.stderr
    units = len(list((whole / "parts").glob("*.json")))

    # Interrupt a second run once a third of its units are on disk.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([str(THERIA), *SMALL, "--out", str(cut)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while proc.poll() is None and time.monotonic() < deadline:
        if (cut / "parts").exists() and len(list((cut / "parts").glob("*.json"))) >= units // 3:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    done = len(list((cut / "parts").glob("*.json")))
    assert 0 < done < units, "the run was not cut part-way; make SMALL slower"
    assert not (cut / "sweep.json").exists()

    r = theria(*SMALL, "--out", cut)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{done} units read back from an earlier run" in r.stderr
    assert results(cut) == results(whole)


def test_shards_side_by_side_then_one_unsharded_run_give_the_unsharded_results(tmp_path):
    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    r = theria(*SMALL, "--out", whole)
    assert r.returncode == 0, r.stdout + r.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    shards = [subprocess.Popen([str(THERIA), *SMALL, "--shard", f"{i}/3", "--out", str(sharded)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(3)]
    for i, proc in enumerate(shards):
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert f"shard {i}/3 done" in err
    assert not (sharded / "sweep.json").exists()  # a shard writes parts only
    # Every lr-search run and cell is on disk, each computed once; the costs are left to the unsharded run.
    parts = {p.name for p in (sharded / "parts").glob("*.json")}
    assert parts == {p.name for p in (whole / "parts").glob("*.json") if not p.name.startswith("cost_")}
    r = theria(*SMALL, "--out", sharded)
    assert r.returncode == 0, r.stdout + r.stderr
    assert results(sharded) == results(whole)
    for bad in ("2/2", "1", "a/b", "-1/2"):
        r = theria(*SMALL, "--shard", bad, "--out", tmp_path / "bad")
        assert r.returncode != 0 and "--shard" in r.stderr, r.stderr
