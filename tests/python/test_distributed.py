"""Meta-batches and studies across processes on c10d, Gloo on the CPU (docs/distributed.md): `theria maml` under
torchrun ends where the one-process run ends; a rank that dies or stalls ends the others with an error; a run
resumed from its checkpoint ends where the uninterrupted run ends; a study shared by two ranks writes the one-process
study's results; the Python example (torch.distributed + theria) matches its one-process run.

The program is found as in test_cli_outputs.py ($THERIA_BUILD_DIR, default `build`)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from test_cli_outputs import REPO, THERIA, strict_json, theria
from test_study_sweep import SMALL, results

pytestmark = pytest.mark.skipif(not THERIA.exists(), reason=f"{THERIA} not built")

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
MAML = ["maml", "--meta-batch", "4", "--eval-tasks", "8", "--no-plot", "--diagnose-steps", "1"]


def env(**extra):
    return dict(os.environ, OMP_NUM_THREADS="1", **{k: str(v) for k, v in extra.items()})


def torchrun(n, *args, program=(str(THERIA),), timeout=600):
    no_python = ["--no-python"] if program == (str(THERIA),) else []
    return subprocess.run([*TORCHRUN, "--nproc-per-node", str(n), *no_python, *program, *map(str, args)], env=env(),
                          capture_output=True, text=True, timeout=timeout)


def checkpoint(path):
    """(state, weights) of a theria checkpoint: torch.load reads it as it is (tuples, strings, tensors)."""
    magic, state, weights, *_ = torch.load(path)
    assert magic == "theria-checkpoint-1"
    return json.loads(state), weights


def rel_diff(a, b):
    num = sum(float((x.double() - y.double()).pow(2).sum()) for x, y in zip(a, b)) ** 0.5
    return num / sum(float(x.double().pow(2).sum()) for x in a) ** 0.5


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_ranks(world, args, port, **extra):
    """The ranks of a run started by hand (the environment torchrun would set), each with its own stderr file."""
    procs = []
    for rank in range(world):
        e = env(RANK=rank, LOCAL_RANK=rank, WORLD_SIZE=world, MASTER_ADDR="127.0.0.1", MASTER_PORT=port, **extra)
        procs.append(subprocess.Popen([str(THERIA), *map(str, args)], env=e, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True))
    return procs


@pytest.mark.parametrize("ranks", [1, 2, 3])
def test_maml_on_ranks_ends_where_the_one_process_run_ends(tmp_path, ranks):
    args = [*MAML, "--meta-steps", "6", "--eval-every", "3", "--checkpoint-every", "6"]
    one = theria(*args, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    many = torchrun(ranks, *args, "--check-replicas", "--out", tmp_path / "many")
    assert many.returncode == 0, many.stderr
    assert f"{ranks} rank{'' if ranks == 1 else 's'} (gloo)" in many.stderr
    s1, w1 = checkpoint(tmp_path / "one" / "checkpoint.pt")
    s2, w2 = checkpoint(tmp_path / "many" / "checkpoint.pt")
    assert s1["step"] == s2["step"] == 6
    # The same tasks, summed in another order: float32 rounding, nothing more.
    assert rel_diff(w1, w2) <= 1e-6
    summary = strict_json(tmp_path / "many" / "summary.json")
    assert summary["distributed"] == {"world_size": ranks, "process_group": "gloo"}
    a = [p["held_out"]["post_accuracy"] for p in s1["curve"]]
    b = [p["held_out"]["post_accuracy"] for p in s2["curve"]]
    assert a == pytest.approx(b, abs=1e-6)


@pytest.mark.parametrize("estimator", ["truncated:1", "implicit:lambda=2,cg=5"])
def test_estimators_on_ranks_end_where_the_one_process_run_ends(tmp_path, estimator):
    args = [*MAML, "--meta-steps", "4", "--eval-every", "2", "--checkpoint-every", "4", "--estimator", estimator]
    one = theria(*args, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = torchrun(2, *args, "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    assert f"estimator {estimator}" in two.stdout
    assert rel_diff(checkpoint(tmp_path / "one" / "checkpoint.pt")[1],
                    checkpoint(tmp_path / "two" / "checkpoint.pt")[1]) <= 1e-6


def test_a_killed_rank_ends_the_others_and_the_run_resumes_to_the_same_result(tmp_path):
    args = [*MAML, "--meta-steps", "300", "--eval-every", "100", "--checkpoint-every", "1"]
    port = free_port()
    procs = launch_ranks(2, [*args, "--out", tmp_path / "cut"], port, THERIA_DIST_TIMEOUT_S=60)
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    deadline = time.time() + 120
    while time.time() < deadline and not (ckpt.exists() and checkpoint(ckpt)[0]["step"] >= 3):
        assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs]
        time.sleep(0.05)
    procs[1].send_signal(signal.SIGKILL)
    killed_at = time.time()
    _, err = procs[0].communicate(timeout=60)
    procs[1].wait()
    assert procs[0].returncode == 1, err
    assert time.time() - killed_at < 30  # noticed at once: the connections close
    assert "rank 0 of 2: the collective" in err and "another rank has exited" in err, err
    cut_at = checkpoint(ckpt)[0]["step"]
    assert 3 <= cut_at < 300

    # Resumed with both ranks, and uninterrupted: the same weights, bit for bit.
    procs = launch_ranks(2, [*args, "--resume", "--out", tmp_path / "cut"], free_port())
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert f"resumed from {ckpt} at meta-step {cut_at}" in errs[0]
    procs = launch_ranks(2, [*args, "--out", tmp_path / "whole"], free_port())
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    s_cut, w_cut = checkpoint(ckpt)
    s_whole, w_whole = checkpoint(tmp_path / "whole" / "checkpoint.pt")
    assert s_cut["step"] == s_whole["step"] == 300
    assert all(torch.equal(x, y) for x, y in zip(w_cut, w_whole))
    assert s_cut["curve"] == s_whole["curve"]
    assert strict_json(tmp_path / "cut" / "summary.json")["resumed_at_meta_step"] == cut_at


def test_a_stalled_rank_ends_the_others_within_the_timeout(tmp_path):
    args = [*MAML, "--meta-steps", "100000", "--eval-every", "100000", "--out", tmp_path]
    procs = launch_ranks(2, args, free_port(), THERIA_DIST_TIMEOUT_S=3)
    time.sleep(3)
    procs[1].send_signal(signal.SIGSTOP)
    stopped_at = time.time()
    try:
        _, err = procs[0].communicate(timeout=60)
    finally:
        procs[1].kill()
        procs[1].wait()
    assert procs[0].returncode == 1, err
    assert time.time() - stopped_at < 30
    assert "did not join it within 3 s" in err, err


def test_an_error_on_rank_0_ends_the_others_with_an_error_not_a_hang(tmp_path):
    (tmp_path / "file").write_text("")  # --out names a file: rank 0 cannot create its output folder
    # Started by hand, not by torchrun: its agent would stop rank 1 before rank 1 says why.
    procs = launch_ranks(2, [*MAML, "--meta-steps", "4", "--eval-every", "2", "--out", tmp_path / "file"],
                         free_port(), THERIA_DIST_TIMEOUT_S=60)
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [1, 1], errs
    assert "cannot create directories" in errs[0]
    assert "rank 1 of 2: the collective" in errs[1] and "another rank has exited" in errs[1], errs[1]


def test_resume_refuses_a_checkpoint_of_another_configuration(tmp_path):
    r = theria(*MAML, "--meta-steps", "2", "--eval-every", "1", "--checkpoint-every", "1", "--out", tmp_path)
    assert r.returncode == 0, r.stderr
    r = theria(*MAML, "--meta-steps", "2", "--eval-every", "1", "--inner-lr", "0.05", "--resume", "--out", tmp_path)
    assert r.returncode == 1
    assert "belongs to another configuration" in r.stderr


def test_bad_rank_environment_is_an_error_naming_the_variable(tmp_path):
    e = env(RANK=2, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=free_port())
    r = subprocess.run([str(THERIA), *MAML, "--meta-steps", "1", "--out", tmp_path], env=e, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "RANK=2 with WORLD_SIZE=2" in r.stderr, r.stderr
    e = env(WORLD_SIZE=2, RANK=0)
    e.pop("MASTER_ADDR", None)
    r = subprocess.run([str(THERIA), *MAML, "--meta-steps", "1", "--out", tmp_path], env=e, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "needs MASTER_ADDR and MASTER_PORT" in r.stderr, r.stderr


def test_a_sweep_shared_by_two_ranks_writes_the_one_process_results(tmp_path):
    one = theria(*SMALL, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = torchrun(2, *SMALL, "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    assert "2 ranks (gloo) share the study's units" in two.stderr
    assert results(tmp_path / "one") == results(tmp_path / "two")


def test_a_robustness_map_shared_by_two_ranks_measures_what_one_process_measures(tmp_path):
    from test_study_robustness import SMALL as ROBUSTNESS
    one = theria(*ROBUSTNESS, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = torchrun(2, *ROBUSTNESS, "--out", tmp_path / "two")
    assert two.returncode == 0, two.stderr
    # The measures (errors, paths, stability per seed) are the same; costs are timings, measured by rank 0.
    a, b = strict_json(tmp_path / "one" / "robustness.json"), strict_json(tmp_path / "two" / "robustness.json")
    assert a["measures"] == b["measures"]
    assert [c["cell"] for c in a["costs"]] == [c["cell"] for c in b["costs"]]


def test_folder_shards_and_ranks_do_not_combine(tmp_path):
    r = torchrun(2, *SMALL, "--shard", "0/2", "--out", tmp_path)
    assert r.returncode != 0
    assert "--shard and a distributed run (WORLD_SIZE > 1) do not go together" in r.stderr


def test_studies_that_run_in_one_process_say_so_under_several(tmp_path):
    r = torchrun(2, "study", "metagrad", "--quick", "--out", tmp_path)
    assert r.returncode != 0
    assert "runs in one process (WORLD_SIZE=2)" in r.stderr


def test_the_python_example_on_two_ranks_matches_one_process(tmp_path):
    example = str(REPO / "examples" / "distributed_maml.py")
    args = ["--meta-steps", "4", "--meta-batch", "6"]
    one = subprocess.run([sys.executable, example, *args, "--out", str(tmp_path / "one.pt")], env=env(),
                         capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr
    two = torchrun(2, *args, "--out", tmp_path / "two.pt", program=(example,))
    assert two.returncode == 0, two.stderr
    assert "on 2 process(es)" in two.stdout
    a, b = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    assert rel_diff(list(a["state_dict"].values()), list(b["state_dict"].values())) <= 1e-6
    assert a["losses"] == pytest.approx(b["losses"], rel=1e-6)
