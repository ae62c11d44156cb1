"""`theria study metagrad` on CPU (docs/metagrad.md): its files parse, every (estimator, depth, seed) has a cell,
truncated over every step is the unrolled meta-gradient, the unrolled estimator agrees with its float64 oracle, and a
linear solve that did not reach its tolerance is reported as such; meta-training with each estimator gives one run
per (estimator, seed) and an accuracy summary paired against the first estimator; --no-oracle measures cost only.

The program is found as in test_cli_outputs.py ($THERIA_BUILD_DIR, default `build`)."""
import csv

import pytest

from test_cli_outputs import THERIA, strict_json, theria

pytestmark = pytest.mark.skipif(not THERIA.exists(), reason=f"{THERIA} not built")


def test_small_comparison_files_and_invariants(tmp_path):
    r = theria("study", "metagrad", "--backend", "explicit", "--inner-steps", "1,3", "--seeds", "2", "--tasks", "1",
               "--estimators", "unrolled;truncated:3;first_order;implicit:lambda=2,cg=3",
               "--train-estimators", "unrolled;truncated:2;first_order;implicit:lambda=2,cg=3", "--train-seeds", "2",
               "--train-inner-steps", "2", "--meta-steps", "8", "--eval-every", "4", "--eval-tasks", "4",
               "--meta-batch", "2", "--out", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    data = strict_json(tmp_path / "metagrad.json")
    cells = data["cells"]
    assert len(cells) == 4 * 2 * 2
    by = {(c["estimator"], c["inner_steps"], c["seed"]): c for c in cells}
    for depth in (1, 3):
        for seed in (0, 1):
            unrolled = by[("unrolled", depth, seed)]
            assert unrolled["rel_error_vs_unrolled_oracle"] < 1e-4  # float32 against float64
            assert by[("truncated:3", depth, seed)]["rel_error_vs_unrolled_oracle"] == pytest.approx(
                unrolled["rel_error_vs_unrolled_oracle"], rel=1e-6)
            implicit = [c for c in cells if c["estimator"].startswith("implicit") and c["inner_steps"] == depth
                        and c["seed"] == seed][0]
            assert implicit["solves_converged"] == (implicit["max_residual"] <= 1e-10)
            # Its Hessian-vector products differentiate theria's backward (the double backward through attention).
            assert implicit["hvp_attention_nodes"] == ["theria::SdpaBwdBackward"]
            assert unrolled["hvp_attention_nodes"] == []
    assert all(c["ms"] is not None and c["peak_mib"] is not None for c in cells if c["seed"] == 0)
    with open(tmp_path / "metagrad.csv") as f:
        assert len(list(csv.DictReader(f))) == 4 * 2
    for figure in ("metagrad_error.png", "metagrad_cost.png", "metagrad_accuracy.png"):
        assert (tmp_path / figure).stat().st_size > 0

    runs = {(r["estimator"], r["seed"]): r for r in data["training"]}
    names = ["unrolled", "truncated:2", "first_order", "implicit:lambda=2,cg=3,tol=1e-10"]
    assert set(runs) == {(e, s) for e in names for s in (0, 1)}
    for seed in (0, 1):  # truncated over every inner step meta-trains exactly as unrolled
        assert runs[("truncated:2", seed)]["curve_accuracy"] == runs[("unrolled", seed)]["curve_accuracy"]
        assert runs[("truncated:2", seed)]["curve_steps"] == [0, 4, 8]
    summary = {a["estimator"]: a for a in data["accuracy"]}
    assert list(summary) == names and summary["unrolled"]["verdict"] == "reference"
    assert summary["truncated:2"]["minus_reference"]["mean"] == 0.0
    for a in summary.values():
        assert a["verdict"] in ("reference", "better than unrolled", "worse than unrolled", "no difference detected")
        accuracies = [runs[(a["estimator"], s)]["post_accuracy"] for s in (0, 1)]
        assert a["post_accuracy"]["mean"] == pytest.approx(sum(accuracies) / 2)
    assert "Held-out accuracy after meta-training" in (tmp_path / "metagrad.md").read_text()


def test_no_oracle_measures_the_cost_only(tmp_path):
    r = theria("study", "metagrad", "--backend", "explicit", "--inner-steps", "1,2", "--seeds", "1", "--tasks", "1",
               "--estimators", "unrolled;implicit:lambda=2,cg=2", "--train-seeds", "0", "--no-oracle", "--no-plot",
               "--out", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    data = strict_json(tmp_path / "metagrad.json")
    assert data["config"]["oracle"]["computed"] is False and data["training"] == []
    for c in data["cells"]:
        assert c["rel_error_vs_unrolled_oracle"] is None and c["rel_error_vs_implicit_oracle"] is None
        assert c["ms"] > 0 and c["peak_mib"] is not None


def test_meta_training_takes_each_estimators_inner_lr_chosen_on_validation_tasks(tmp_path):
    r = theria("study", "metagrad", "--backend", "explicit", "--inner-steps", "1", "--seeds", "1", "--tasks", "1",
               "--estimators", "unrolled", "--train-estimators", "unrolled;first_order", "--train-seeds", "2",
               "--train-inner-steps", "2", "--meta-steps", "6", "--eval-every", "3", "--eval-tasks", "4",
               "--meta-batch", "2", "--train-lr-grid", "0.4,0.05", "--train-search-seeds", "2",
               "--train-search-meta-steps", "4", "--out", tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    data = strict_json(tmp_path / "metagrad.json")
    search = data["config"]["training"]["lr_search"]
    assert search["split"] == "validation" and search["grid"] == [0.4, 0.05]
    assert [c["estimator"] for c in data["lr_choice"]] == ["unrolled", "first_order"]
    for choice in data["lr_choice"]:
        stable = [(v, lr) for v, lr in zip(choice["validation_accuracy"], choice["candidates"]) if v is not None]
        assert choice["chosen_lr"] == max(stable)[1]  # the best stable candidate (a tie goes to the first, 0.4)
        runs = [t for t in data["training"] if t["estimator"] == choice["estimator"]]
        assert len(runs) == 2 and all(t["inner_lr"] == choice["chosen_lr"] for t in runs)
    assert "inner lr chosen per estimator on validation tasks" in (tmp_path / "metagrad.md").read_text()


def test_init_weights_compares_the_estimators_at_a_checkpoints_weights(tmp_path):
    """--init-weights: the cells start from a `theria maml` checkpoint's weights (not each seed's initialisation),
    and a checkpoint of another model is refused with an error naming the mismatch."""
    r = theria("maml", "--meta-steps", "3", "--eval-every", "3", "--meta-batch", "2", "--eval-tasks", "2",
               "--checkpoint-every", "3", "--no-plot", "--diagnose-steps", "1", "--out", tmp_path / "trained")
    assert r.returncode == 0, r.stderr
    ckpt = tmp_path / "trained" / "checkpoint.pt"
    small = ["study", "metagrad", "--backend", "explicit", "--inner-steps", "2", "--seeds", "1", "--tasks", "1",
             "--estimators", "unrolled;implicit:lambda=2,cg=3", "--train-seeds", "0", "--no-plot"]
    at_init = theria(*small, "--out", tmp_path / "init")
    at_ckpt = theria(*small, "--init-weights", ckpt, "--out", tmp_path / "ckpt")
    assert at_init.returncode == 0 and at_ckpt.returncode == 0, at_init.stderr + at_ckpt.stderr
    init, trained = strict_json(tmp_path / "init" / "metagrad.json"), strict_json(tmp_path / "ckpt" / "metagrad.json")
    assert init["config"]["init_weights"] == "each seed's initialisation"
    assert trained["config"]["init_weights"] == str(ckpt)
    # The same tasks, other weights: other meta-gradients, so other CG residuals.
    residual = lambda d: [c["max_residual"] for c in d["cells"]]  # noqa: E731
    assert residual(init) != residual(trained)
    wrong = theria(*small, "--dim", "16", "--init-weights", ckpt, "--out", tmp_path / "wrong")
    assert wrong.returncode == 1 and "give the model options of the run that wrote it" in wrong.stderr, wrong.stderr
