// The failure taxonomy's parts on CPU (docs/taxonomy.md): every broken attention variant changes the FULL
// meta-gradient where it drops a term, loses the attention double-backward nodes and is flagged by theria's
// detector; `exact` on every CPU backend equals the float64 oracle and passes the detector; the written rules,
// the intervals and the resumable parts.
#include "diagnostics/second_order.h"
#include "output/resume.h"
#include "stats/confidence.h"
#include "studies/taxonomy_rules.h"
#include "train/trainer.h"
#include "variants/attention_variants.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace theria::lab {
namespace {

struct Setup {
  ModelConfig model;
  MamlConfig maml{MamlMode::Full, 2, 0.1};
  Weights w;
  std::vector<Task> tasks;
};

Setup setup(Backend backend, const std::string& variant = "exact", at::ScalarType dtype = at::kDouble) {
  Setup s;
  s.model.attention.backend(backend);
  apply_variant(attention_variant(variant), s.model, s.maml);
  s.w = init_weights(s.model, 11, at::TensorOptions().dtype(dtype));
  const PositionRecallTasks family(TaskConfig{}, 5);
  for (int i = 0; i < 2; ++i) s.tasks.push_back(family.task(i));
  return s;
}

TEST(TaxonomyVariants, ExactOnEveryCpuBackendEqualsTheFloat64Oracle) {
  for (const auto backend : {Backend::Reference, Backend::Explicit, Backend::Auto}) {
    const auto s = setup(backend);
    const auto oracle = oracle_meta_gradient(s.model, s.maml, s.w, s.tasks);
    const auto g = meta_gradient(s.model, s.maml, s.w, s.tasks);
    const auto e = gradient_error(g.grads, oracle.grads);
    EXPECT_LE(e.rel_l2, 1e-9) << backend_name(backend);
    EXPECT_GT(e.cosine, 1.0 - 1e-12) << backend_name(backend);
    // A second-order path through attention, seen both ways: by value and in the graph.
    const auto share = attention_second_order_share(s.model, s.maml, s.w, s.tasks);
    EXPECT_GT(share.share, second_order_path_threshold(at::kDouble)) << backend_name(backend);
    EXPECT_FALSE(attention_second_order_nodes(g.loss_graph).empty()) << backend_name(backend);
    EXPECT_EQ(verdict(true, e.rel_l2, meta_gradient_tolerance(at::kDouble), e.cosine, Interval{}), "safe");
    const auto d = detect(s.model, s.maml, s.w, s.tasks);
    EXPECT_FALSE(d.flagged()) << backend_name(backend) << ": " << d.numerical_relative_error;
    EXPECT_LT(d.numerical_relative_error, 1e-5) << backend_name(backend);
  }
}

TEST(TaxonomyVariants, EveryBrokenVariantChangesTheMetaGradientAndLosesTheAttentionDoubleBackward) {
  const auto exact = setup(Backend::Explicit);
  const auto oracle = oracle_meta_gradient(exact.model, exact.maml, exact.w, exact.tasks);
  for (const auto& v : attention_variants()) {
    if (v.name == "exact") continue;
    const auto s = setup(Backend::Explicit, v.name);
    const auto g = meta_gradient(s.model, s.maml, s.w, s.tasks);
    ASSERT_FALSE(g.divergence.found()) << v.name;
    const auto e = gradient_error(g.grads, oracle.grads);
    EXPECT_GT(e.rel_l2, 1e-3) << v.name << " drops " << v.drops << " but its meta-gradient equals the exact one";
    EXPECT_TRUE(attention_second_order_nodes(g.loss_graph).empty()) << v.name;
    // theria's detector, run on the variant's meta-loss as a user would run it on theirs, flags it: the
    // directional check fails for every variant (the graph walk alone cannot see stats_detach).
    const auto d = detect(s.model, s.maml, s.w, s.tasks);
    EXPECT_TRUE(d.flagged()) << v.name;
    EXPECT_FALSE(d.numerical_passed) << v.name << ": relative error " << d.numerical_relative_error;
    EXPECT_EQ(verdict(attention_second_order_share(s.model, s.maml, s.w, s.tasks).share >
                          second_order_path_threshold(at::kDouble),
                      e.rel_l2, meta_gradient_tolerance(at::kDouble), e.cosine, Interval{}) == "safe",
              false)
        << v.name;
  }
}

TEST(TaxonomyVariants, DetectorPassesExactAcrossTheJumpsOfItsReluMetaLoss) {
  // Seed 1 of the CPU taxonomy (1 inner step at lr 0.2, 8 diagnostic tasks): there the meta-loss jumps within the
  // detector's first step along one direction, and before the detector shrank its step the exact meta-gradient
  // read as wrong (relative error 1.03).
  ModelConfig model;
  model.attention.backend(Backend::Explicit);
  const MamlConfig maml{MamlMode::Full, 1, 0.2};
  const PositionRecallTasks family(TaskConfig{}, 1 + 1000);
  std::vector<Task> tasks;
  for (int i = 0; i < 8; ++i) tasks.push_back(family.task(i));
  const auto d = detect(model, maml, init_weights(model, 1, at::TensorOptions().dtype(at::kFloat)), tasks);
  EXPECT_FALSE(d.flagged()) << d.numerical_relative_error;
}

TEST(TaxonomyVariants, SecondOrderShareSeparatesThePatterns) {
  // The variants that drop attention's double backward have no share; those that keep a differentiable
  // (if wrong) backward keep one; and no variant has one in FO or FO_STRICT.
  const double threshold = second_order_path_threshold(at::kDouble);
  for (const auto& v : attention_variants()) {
    auto s = setup(Backend::Explicit, v.name);
    const bool keeps = v.name == "exact" || v.name == "stats_detach" || v.name == "logits_detach";
    EXPECT_EQ(attention_second_order_share(s.model, s.maml, s.w, s.tasks).share > threshold, keeps) << v.name;
    for (const auto mode : {MamlMode::FirstOrder, MamlMode::FirstOrderStrict}) {
      s.maml.mode = mode;
      EXPECT_EQ(attention_second_order_share(s.model, s.maml, s.w, s.tasks).share, 0.0) << v.name;
    }
  }
}

TEST(TaxonomyVariants, OnceDifferentiableHasTheExactFirstDerivative) {
  // The silent kind: first order exact, so nothing looks wrong until the double backward.
  const auto o = SdpaOptions().backend(Backend::Explicit);
  auto q = at::randn({2, 3, 5, 8}, at::kDouble).requires_grad_();
  auto k = at::randn({2, 3, 6, 8}, at::kDouble).requires_grad_();
  auto v = at::randn({2, 3, 6, 8}, at::kDouble).requires_grad_();
  const auto& variant = attention_variant("once_differentiable");
  const auto dout = at::randn({2, 3, 5, 8}, at::kDouble);
  const auto g1 = torch::autograd::grad({variant.attend(q, k, v, o)}, {q, k, v}, {dout});
  const auto g0 = torch::autograd::grad({sdpa(q, k, v, o)}, {q, k, v}, {dout});
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(at::allclose(g1[i], g0[i], 1e-12, 1e-12)) << i;
}

TEST(TaxonomyVariants, UnknownNameIsAnErrorNamingTheChoices) {
  try {
    attention_variant("detach");
    FAIL() << "no error";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("detach_attention_output"), std::string::npos);
  }
}

TEST(TaxonomyStats, IntervalsUseStudentT) {
  EXPECT_DOUBLE_EQ(t_quantile_975(2), 4.303);
  EXPECT_NEAR(t_quantile_975(1000), 1.962, 1e-3);
  const auto i = mean_interval({1.0, 2.0, 3.0});
  EXPECT_DOUBLE_EQ(i.mean, 2.0);
  EXPECT_NEAR(i.high - i.mean, 4.303 * 1.0 / std::sqrt(3.0), 1e-12);
  const auto nan = std::nan("");
  const auto d = paired_interval({1.0, 2.0, nan, 4.0}, {0.5, 1.0, 1.0, 3.0});
  EXPECT_EQ(d.n, 3);
  EXPECT_EQ(d.non_finite, 1);
  EXPECT_NEAR(d.mean, (0.5 + 1.0 + 1.0) / 3.0, 1e-12);
  EXPECT_TRUE(std::isnan(mean_interval({nan}).mean));
}

Interval interval(double low, double high) {
  Interval i;
  i.mean = (low + high) / 2;
  i.low = low;
  i.high = high;
  i.n = 3;
  return i;
}

TEST(TaxonomyRules, BehaviouralEffectFollowsTheTwoPairedIntervals) {
  EXPECT_EQ(behavioural_effect(interval(-0.1, 0.1), interval(0.2, 0.4)), "as exact FULL");
  EXPECT_EQ(behavioural_effect(interval(-0.1, 0.1), interval(-0.1, 0.1)),
            "undetermined (interval covers exact FULL and exact FO)");
  EXPECT_EQ(behavioural_effect(interval(-0.6, -0.4), interval(-0.1, 0.1)), "FO collapse");
  EXPECT_EQ(behavioural_effect(interval(-0.6, -0.4), interval(-0.3, -0.1)), "worse than exact FO");
  EXPECT_EQ(behavioural_effect(interval(-0.6, -0.4), interval(0.1, 0.3)), "between exact FO and FULL");
  EXPECT_EQ(behavioural_effect(interval(0.1, 0.2), interval(0.3, 0.4)), "better than exact FULL");
  EXPECT_EQ(behavioural_effect(Interval{}, Interval{}), "not trained");
}

TEST(TaxonomyRules, VerdictNeedsAPathAndTheTolerance) {
  const double tol = meta_gradient_tolerance(at::kFloat);
  EXPECT_EQ(verdict(true, tol / 2, tol, 1.0, interval(-0.1, 0.1)), "safe");
  EXPECT_EQ(verdict(false, tol / 2, tol, 1.0, interval(-0.1, 0.1)), "unsafe");  // no path: FO in disguise
  EXPECT_EQ(verdict(true, 0.2, tol, 0.95, interval(-0.1, 0.1)), "conditional");
  EXPECT_EQ(verdict(true, 0.2, tol, 0.95, interval(-0.3, -0.1)), "unsafe");  // significantly worse behaviour
  EXPECT_EQ(verdict(true, 0.2, tol, 0.5, interval(-0.1, 0.1)), "unsafe");    // direction lost
  EXPECT_LT(meta_gradient_tolerance(at::kDouble), meta_gradient_tolerance(at::kFloat));
  EXPECT_LT(meta_gradient_tolerance(at::kFloat), meta_gradient_tolerance(at::kBFloat16));
}

TEST(TaxonomyParts, ResumeReadsOnlyPartsOfTheSameConfiguration) {
  // (std::filesystem::remove_all is not used: the symbol resolves into libtorch's copy, which crashes.)
  const auto dir = std::filesystem::temp_directory_path() / ("theria_parts_test_" + std::to_string(::getpid()));
  int computed = 0;
  bool resumed = false;
  const std::function<double()> compute = [&] {
    ++computed;
    return 0.5;
  };
  const PartStore a(dir, Json{{"seeds", 3}});
  EXPECT_EQ(a.get_or_compute<double>("unit", compute, &resumed), 0.5);
  EXPECT_FALSE(resumed);
  EXPECT_EQ(a.get_or_compute<double>("unit", compute, &resumed), 0.5);
  EXPECT_TRUE(resumed);
  EXPECT_EQ(computed, 1);
  const PartStore b(dir, Json{{"seeds", 4}});  // another configuration: computed again
  b.get_or_compute<double>("unit", compute, &resumed);
  EXPECT_FALSE(resumed);
  EXPECT_EQ(computed, 2);
  {
    std::ofstream cut(dir / "unit.json");  // a part cut off mid-write is run again, not an error
    cut << "{\"fingerprint\": {\"seeds\": 4}, \"val";
  }
  b.get_or_compute<double>("unit", compute, &resumed);
  EXPECT_FALSE(resumed);
  // A diverged run's NaN score is stored (as JSON null) and read back as NaN, by a resumed run and by a shard
  // waiting for another's part.
  const std::function<double()> diverged = [] { return std::nan(""); };
  EXPECT_TRUE(std::isnan(b.get_or_compute<double>("nan", diverged, &resumed)));
  EXPECT_TRUE(std::isnan(b.get_or_compute<double>("nan", diverged, &resumed)));
  EXPECT_TRUE(resumed);
  Progress quiet("test", 2.0);
  const PartStore other_shard(dir, Json{{"seeds", 4}}, Shard{1, 2});  // unit 0 is shard 0's: read, not computed
  const auto values = other_shard.run_phase<double>({{"nan", 1.0, compute}, {"unit", 1.0, compute}}, quiet);
  EXPECT_TRUE(std::isnan(values[0]));
  EXPECT_EQ(values[1], 0.5);
  for (const char* part : {"unit.json", "nan.json"}) std::remove((dir / part).c_str());
  ::rmdir(dir.c_str());
}

}  // namespace
}  // namespace theria::lab
