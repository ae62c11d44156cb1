"""`theria maml --cuda-graph`: MAML's meta-gradient captured as a CUDA graph at the first meta-step and replayed after
(lab/meta/graphed_meta_gradient.h). Under deterministic algorithms a run with it and one without must train the same
weights bit for bit (the graph replays the same kernels in the same order), and the diagnostic beside it must show a
replayed meta-gradient equal to the eager one; on a CPU, or with an estimator, the option is refused by name."""
import json

import pytest
import torch

from test_cli_outputs import THERIA, theria

pytestmark = pytest.mark.skipif(not THERIA.exists(), reason=f"{THERIA} not built")

# Head dim 32 (the fused float32 kernels at "highest") and the lab's default model (head dim 16: the reference
# backend), a few meta-steps each.
CONFIGS = {
    "fused": ["--seq-len", "64", "--classes", "4", "--dim", "64", "--heads", "2", "--inner-lr", "0.05"],
    "reference": [],
}
COMMON = ["maml", "--device", "cuda", "--meta-steps", "3", "--eval-every", "1", "--eval-tasks", "4", "--meta-batch",
          "4", "--no-plot", "--deterministic", "--diagnose-steps", "1"]


@pytest.mark.gpu
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_a_graphed_run_trains_what_the_eager_run_trains_bit_for_bit(tmp_path, config):
    summaries, curves = {}, {}
    for graph in (False, True):
        out = tmp_path / ("graph" if graph else "eager")
        r = theria(*COMMON, *CONFIGS[config], *(["--cuda-graph"] if graph else []), "--out", out)
        assert r.returncode == 0, r.stderr
        summaries[graph] = json.loads((out / "summary.json").read_text())
        curves[graph] = (out / "curve.csv").read_text()
    eager, graphed = summaries[False], summaries[True]
    assert graphed["config"]["cuda_graph"] is True and eager["config"]["cuda_graph"] is False
    assert eager["status"] == "ok" and graphed["status"] == "ok", (eager["status"], graphed["status"])
    # Every evaluation along the way (meta-loss, held-out accuracy and loss before and after adaptation) and the end.
    assert curves[True] == curves[False]
    assert graphed["held_out"] == eager["held_out"]
    g = graphed["diagnostics"]["full_meta_gradient_cuda_graph"]
    assert g["status"] == "measured", g
    assert g["max_rel_diff"] == 0.0 and g["eager_repeat_rel_diff"] == 0.0, g


def test_cuda_graph_is_refused_on_a_cpu_and_with_an_estimator(tmp_path):
    r = theria("maml", "--device", "cpu", "--cuda-graph", "--meta-steps", "1", "--out", tmp_path / "cpu")
    assert r.returncode != 0 and "--cuda-graph needs --device cuda" in r.stderr, r.stderr
    if torch.cuda.is_available():
        r = theria("maml", "--device", "cuda", "--cuda-graph", "--estimator", "first_order", "--meta-steps", "1",
                   "--out", tmp_path / "est")
        assert r.returncode != 0 and "drop --estimator" in r.stderr, r.stderr
