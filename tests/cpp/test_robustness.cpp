// The robustness map's parts on CPU (docs/robustness.md): PyTorch's math SDPA as the lab model's attention gives the
// exact meta-gradient and PyTorch's flash raises on it, the precisions' dtypes, and the written rules
// (every verdict from the flags, NaN never passes a rule, the first failure names the cell's verdict).
#include "diagnostics/second_order.h"
#include "studies/robustness.h"
#include "studies/robustness_rules.h"
#include "studies/taxonomy_rules.h"
#include "variants/pytorch_attention.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <gtest/gtest.h>

#include <cmath>

namespace theria::lab {
namespace {

struct Problem {
  ModelConfig model;
  MamlConfig maml{MamlMode::Full, 2, 0.1};
  Weights w;
  std::vector<Task> tasks;
};

Problem problem(at::ScalarType dtype = at::kDouble) {
  Problem p;
  p.w = init_weights(p.model, 3, at::TensorOptions().dtype(dtype));
  const PositionRecallTasks family(TaskConfig{}, 7);
  for (int i = 0; i < 2; ++i) p.tasks.push_back(family.task(i));
  return p;
}

TEST(RobustnessAttention, PytorchMathGivesTheExactMetaGradientAndFlashRaisesOnIt) {
  auto p = problem();
  const auto oracle = oracle_meta_gradient(p.model, p.maml, p.w, p.tasks);
  p.model.attend = pytorch_attention(PytorchSdpa::Math);
  const auto g = meta_gradient(p.model, p.maml, p.w, p.tasks);
  EXPECT_LE(gradient_error(g.grads, oracle.grads).rel_l2, 1e-10);
  EXPECT_GT(attention_second_order_share(p.model, p.maml, p.w, p.tasks, g).share, 1e-3);

  // Flash exists on the CPU too (float32); its backward has no derivative: FO works, FULL raises.
  auto f = problem(at::kFloat);
  f.model.attend = pytorch_attention(PytorchSdpa::Flash);
  MamlConfig fo = f.maml;
  fo.mode = MamlMode::FirstOrder;
  EXPECT_FALSE(meta_gradient(f.model, fo, f.w, f.tasks).divergence.found());
  try {
    meta_gradient(f.model, f.maml, f.w, f.tasks);
    FAIL() << "FULL through PyTorch's flash SDPA was expected to raise";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("not implemented"), std::string::npos) << e.what();
  }
  // The guard restored PyTorch's backend flags.
  EXPECT_TRUE(at::globalContext().userEnabledMathSDP());
  EXPECT_TRUE(at::globalContext().userEnabledFlashSDP());
}

TEST(RobustnessPrecision, NamesAndComputeDtypes) {
  EXPECT_EQ(parse_precision("bfloat16").weights, at::kBFloat16);
  EXPECT_FALSE(parse_precision("bfloat16").autocast.has_value());
  EXPECT_EQ(parse_precision("autocast_bfloat16").weights, at::kFloat);
  EXPECT_EQ(parse_precision("autocast_bfloat16").compute(), at::kBFloat16);
  EXPECT_EQ(parse_precision("autocast_float16").compute(), at::kHalf);
  EXPECT_EQ(parse_precision("attention_bfloat16").weights, at::kFloat);
  EXPECT_EQ(parse_precision("attention_bfloat16").compute(), at::kBFloat16);
  EXPECT_THROW(parse_precision("int8"), c10::Error);
  EXPECT_EQ(backends_on(at::kCPU), (std::vector<std::string>{"reference", "explicit", "pytorch_math", "pytorch_flash"}));
}

RobustnessMeasure ok_measure(const RobustnessCellKey& key, uint64_t seed, double error_full, double error_fo) {
  RobustnessMeasure m;
  m.cell = key;
  m.seed = seed;
  m.second_order_share = 0.5;
  m.rel_diff_full_vs_fo = 0.9;
  m.error_full = error_full;
  m.cosine_full = 1.0;
  m.error_fo = error_fo;
  return m;
}

RobustnessCost cost_of(const RobustnessCellKey& key, double full_ms, double fo_ms) {
  RobustnessCost c;
  c.cell = key;
  c.full.ms = full_ms;
  c.fo.ms = fo_ms;
  return c;
}

// One cell (T 32, D 16, bfloat16 compute: tolerance 0.1, path threshold 4e-2) and its rows under the rules.
struct OneCell {
  RobustnessConfig config;
  RobustnessCellKey key{32, 16, "bfloat16", "reference"};
  OneCell() {
    config.seq_lens = {32};
    config.head_dims = {16};
    config.precisions = {"bfloat16"};
    config.backends = {"reference"};
    config.seeds = 3;
  }
  RobustnessRow row(const std::vector<RobustnessMeasure>& measures, const RobustnessCost& cost) const {
    return robustness_rows(config, RobustnessRaw{measures, {cost}}).at(0);
  }
};

TEST(RobustnessRules, EveryVerdictComesFromTheWrittenRules) {
  const OneCell c;
  const auto k = c.key;
  const auto good = [&](double e_full) {
    return std::vector<RobustnessMeasure>{ok_measure(k, 0, e_full, 0.9), ok_measure(k, 1, e_full, 0.9),
                                          ok_measure(k, 2, e_full, 0.9)};
  };
  auto r = c.row(good(0.05), cost_of(k, 30, 10));
  EXPECT_TRUE(r.works && r.stable && r.practical && r.resolves_second_order);
  EXPECT_EQ(r.tolerance, meta_gradient_tolerance(at::kBFloat16));
  EXPECT_EQ(r.verdict, "FULL safe");

  // Rule T: FULL no closer to the exact meta-gradient than half FO's distance in one seed.
  auto m = good(0.05);
  m[1].error_fo = 0.08;
  EXPECT_EQ(c.row(m, cost_of(k, 30, 10)).verdict, "FULL safe, second order below rounding");

  // Rule A: the largest error over seeds decides.
  m = good(0.05);
  m[2].error_full = 0.2;
  r = c.row(m, cost_of(k, 30, 10));
  EXPECT_FALSE(r.accurate);
  EXPECT_DOUBLE_EQ(r.max_error_full, 0.2);
  EXPECT_EQ(r.verdict, "inaccurate (error 0.2 > 0.1)");

  // Rule C: a FULL step above 4x an FO step.
  EXPECT_EQ(c.row(good(0.05), cost_of(k, 50, 10)).verdict, "impractical (FULL 5.0x FO)");

  // Rule P: a share at or below the path threshold in one seed; a NaN share fails it too.
  m = good(0.05);
  m[0].second_order_share = second_order_path_threshold(at::kBFloat16);
  EXPECT_EQ(c.row(m, cost_of(k, 30, 10)).verdict, "no second-order path");
  m[0].second_order_share = std::nan("");
  EXPECT_FALSE(c.row(m, cost_of(k, 30, 10)).second_order_path);

  // Rule S: a diverged seed.
  m = good(0.05);
  m[1].status = "inner loop diverged at step 2 of 2 (task 0): fast weights non-finite after the update";
  m[1].non_finite = true;
  m[1].error_full = std::nan("");
  r = c.row(m, cost_of(k, 30, 10));
  EXPECT_TRUE(r.runs);
  EXPECT_FALSE(r.stable);
  EXPECT_EQ(r.verdict, "unstable (non-finite in 1 of 3 seeds)");

  // Rule R: what raised or ran out of memory is the verdict, before anything else.
  m = good(0.05);
  m[0].status = "raises: derivative for aten::_scaled_dot_product_flash_attention_backward is not implemented";
  r = c.row(m, cost_of(k, 30, 10));
  EXPECT_FALSE(r.runs || r.works);
  EXPECT_EQ(r.verdict, "FULL raises");
  m[0].status = "out of memory";
  EXPECT_EQ(c.row(m, cost_of(k, 30, 10)).verdict, "out of memory");
  RobustnessCost oom = cost_of(k, std::nan(""), std::nan(""));
  oom.status = "out of memory";
  EXPECT_EQ(c.row(good(0.05), oom).verdict, "out of memory (cost)");
  m = good(0.05);
  m[2].status = "oracle: out of memory";
  EXPECT_EQ(c.row(m, cost_of(k, 30, 10)).verdict, "not judged (oracle: out of memory)");
}

}  // namespace
}  // namespace theria::lab
