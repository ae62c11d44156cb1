// The meta-learning lab on CPU: MAML modes, diagnostics, backends, and the task family's properties.
#include "maml.h"
#include "trainer.h"

#include <theria/tolerances.h>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>

namespace theria::lab {
namespace {

TrainConfig small_config(Backend backend = Backend::Explicit, at::ScalarType dtype = at::kFloat) {
  TrainConfig c;
  c.model.attention.backend(backend);
  c.dtype = dtype;
  c.meta_steps = 0;
  c.eval_tasks = 8;
  return c;
}

std::vector<Task> tasks_of(const TrainConfig& c, int64_t n, uint64_t seed = 7) {
  const PositionRecallTasks family(c.tasks, seed);
  std::vector<Task> tasks;
  for (int64_t i = 0; i < n; ++i) tasks.push_back(family.task(i));
  return tasks;
}

Weights weights_of(const TrainConfig& c, uint64_t seed = 3) {
  return init_weights(c.model, seed, at::TensorOptions().dtype(c.dtype));
}

TEST(MamlSmoke, EveryModeRunsAMetaStepAndAShortTraining) {
  auto c = small_config();
  const auto w = weights_of(c);
  const auto tasks = tasks_of(c, 2);
  for (const auto mode : {MamlMode::Full, MamlMode::FirstOrder, MamlMode::FirstOrderStrict}) {
    const auto mg = meta_gradient(c.model, {mode, 2, 0.2}, w, tasks);
    ASSERT_EQ(mg.grads.size(), w.size());
    EXPECT_TRUE(std::isfinite(mg.query_loss));
    EXPECT_GT(flat_norm(mg.grads), 0.0) << maml_mode_name(mode);
  }
  c.meta_steps = 3;
  c.eval_every = 1;
  const auto r = meta_train(c);
  EXPECT_EQ(r.curve.size(), 4u);
}

// Small steps from the random init (whose gradients are large), the configured steps once meta-trained.
void expect_inner_loop_decreases_support_loss(const ModelConfig& model, const Weights& w,
                                              const std::vector<Task>& tasks, double lr) {
  for (const auto& task : tasks) {
    const double before = task_loss(model, w, task.support_x, task.support_y).item<double>();
    const auto fast = adapt(model, w, task, 3, lr, /*keep_graph=*/false);
    const double after = task_loss(model, fast, task.support_x, task.support_y).item<double>();
    EXPECT_LT(after, before) << "task with position " << task.position << ", inner lr " << lr;
  }
}

TEST(MamlInner, LoopDecreasesTheSupportLossFromTheInit) {
  const auto c = small_config();
  expect_inner_loop_decreases_support_loss(c.model, weights_of(c), tasks_of(c, 4), 0.02);
}

TEST(MamlModes, FullDiffersFromFirstOrderThroughTheriasDoubleBackward) {
  const auto c = small_config(Backend::Explicit, at::kDouble);
  const auto w = weights_of(c);
  const auto tasks = tasks_of(c, 3);
  const auto rel = rel_diff_full_vs_fo(c.model, 0.2, w, tasks, {1, 3});
  for (const double r : rel) EXPECT_GT(r, 1e-3);
  const auto full = second_order_path(c.model, {MamlMode::Full, 2, 0.2}, w, tasks);
  EXPECT_TRUE(full.reaches_backward_nodes);
  EXPECT_NE(std::find(full.nodes.begin(), full.nodes.end(), "theria::SdpaBwdBackward"), full.nodes.end());
  EXPECT_GT(full.second_order_norm, 0.0);
  for (const auto mode : {MamlMode::FirstOrder, MamlMode::FirstOrderStrict}) {
    EXPECT_FALSE(second_order_path(c.model, {mode, 2, 0.2}, w, tasks).reaches_backward_nodes) << maml_mode_name(mode);
  }
}

TEST(MamlModes, FirstOrderEqualsFirstOrderStrict) {
  const auto c = small_config(Backend::Explicit, at::kDouble);
  const auto w = weights_of(c);
  const auto tasks = tasks_of(c, 3);
  for (const int64_t steps : {1, 3}) {
    const auto fo = meta_gradient(c.model, {MamlMode::FirstOrder, steps, 0.2}, w, tasks).grads;
    const auto strict = meta_gradient(c.model, {MamlMode::FirstOrderStrict, steps, 0.2}, w, tasks).grads;
    EXPECT_LE(flat_distance(fo, strict) / flat_norm(fo), 1e-12) << steps << " inner steps";
  }
}

TEST(MamlBackends, ExplicitMetaGradientEqualsReferenceInFloat64) {
  auto c = small_config(Backend::Explicit, at::kDouble);
  const auto w = weights_of(c);
  const auto tasks = tasks_of(c, 2);
  auto reference = c.model;
  reference.attention.backend(Backend::Reference);
  for (const int64_t steps : {1, 2, 4}) {
    const MamlConfig full{MamlMode::Full, steps, 0.2};
    const auto got = meta_gradient(c.model, full, w, tasks).grads;
    const auto want = meta_gradient(reference, full, w, tasks).grads;
    EXPECT_LE(flat_distance(got, want) / flat_norm(want), 1e-9) << steps << " inner steps";
  }
}

// One meta-trained attention model and one mean-pooling model, shared by the property tests.
struct Trained {
  TrainResult attention, mean_pool;
  TrainConfig config;
};

const Trained& trained() {
  static const Trained t = [] {
    Trained r;
    r.config = small_config();
    r.config.meta_steps = 300;
    r.config.eval_every = 300;
    r.config.eval_tasks = 32;
    r.attention = meta_train(r.config);
    auto pooled = r.config;
    pooled.model.pooling = Pooling::Mean;
    r.mean_pool = meta_train(pooled);
    return r;
  }();
  return t;
}

TEST(TaskFamily, NearChanceBeforeAdaptation) {
  const auto& t = trained();
  const double chance = 1.0 / t.config.tasks.classes;
  EXPECT_NEAR(t.attention.after.pre_accuracy, chance, 0.1);
  EXPECT_NEAR(t.attention.before.pre_accuracy, chance, 0.1);
}

TEST(TaskFamily, ClearlyAboveChanceAfterAFewInnerSteps) {
  const auto& t = trained();
  EXPECT_GT(t.attention.after.post_accuracy, 1.0 / t.config.tasks.classes + 0.5);
}

TEST(TaskFamily, MeanPoolingInsteadOfAttentionIsClearlyWorse) {
  const auto& t = trained();
  EXPECT_LT(t.mean_pool.after.post_accuracy, t.attention.after.post_accuracy - 0.3);
  EXPECT_NEAR(t.mean_pool.after.post_accuracy, 1.0 / t.config.tasks.classes, 0.1);
}

TEST(MamlInner, LoopDecreasesTheSupportLossOnceMetaTrained) {
  const auto& t = trained();
  Weights w;
  for (const auto& x : t.attention.weights) w.push_back(x.detach().requires_grad_());
  expect_inner_loop_decreases_support_loss(t.config.model, w, tasks_of(t.config, 4), t.config.maml.inner_lr);
}

TEST(MamlTraining, ImprovesPostAdaptationAccuracyOverTheUntrainedInit) {
  const auto& t = trained();
  EXPECT_GT(t.attention.after.post_accuracy, t.attention.before.post_accuracy + 0.3);
}

}  // namespace
}  // namespace theria::lab
