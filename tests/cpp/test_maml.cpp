// The meta-learning lab on CPU: MAML modes, diagnostics, backends, and the task family's properties.
#include "diagnostics/second_order.h"
#include "train/trainer.h"

#include <theria/tolerances.h>

#include <ATen/ATen.h>
#include <ATen/record_function.h>
#include <torch/csrc/autograd/autograd.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>

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
  EXPECT_FALSE(r.curve[0].meta_loss.has_value());  // no meta-step before step 1
  EXPECT_TRUE(r.curve[3].meta_loss.has_value());
  EXPECT_FALSE(r.divergence.found());
  EXPECT_EQ(r.applied_meta_steps, 3);
}

// Small steps from the random init (whose gradients are large), the configured steps once meta-trained.
void expect_inner_loop_decreases_support_loss(const ModelConfig& model, const Weights& w,
                                              const std::vector<Task>& tasks, double lr) {
  for (const auto& task : tasks) {
    const double before = task_loss(model, w, task.support_x, task.support_y).item<double>();
    const auto fast = adapt(model, {MamlMode::FirstOrder, 3, lr}, w, task);
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
  const auto rel = rel_diff_full_vs_fo(c.model, {MamlMode::Full, 2, 0.2}, w, tasks, {1, 3});
  for (const auto& r : rel) EXPECT_GT(r.value, 1e-3);
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

// A model and tasks small enough for finite differences in float64.
TrainConfig tiny_config() {
  auto c = small_config(Backend::Explicit, at::kDouble);
  c.tasks = {/*seq_len=*/4, /*classes=*/2, /*support=*/6, /*query=*/6};
  c.model.seq_len = 4;
  c.model.classes = 2;
  c.model.dim = 8;
  return c;
}

TEST(MamlClip, ClippedGradientNormIsAtMostTheLimit) {
  at::manual_seed(0);
  const std::vector<at::Tensor> g{at::randn({5, 7}, at::kDouble) * 3, at::randn({11}, at::kDouble)};
  const double norm = flat_norm(g);
  for (const double limit : {0.5, 0.01 * norm, 0.999 * norm}) {
    const auto clipped = clip_by_global_norm(g, limit);
    EXPECT_LE(flat_norm(clipped), limit) << limit;
    EXPECT_NEAR(flat_norm(clipped), limit, 1e-6) << limit;  // scaled down to the limit, not below
    // A scaling: the direction is kept.
    EXPECT_LE(flat_distance(clipped, {g[0] * (flat_norm(clipped) / norm), g[1] * (flat_norm(clipped) / norm)}), 1e-12);
  }
  for (const double off : {0.0, 2.0 * norm}) EXPECT_EQ(flat_distance(clip_by_global_norm(g, off), g), 0.0) << off;
}

TEST(MamlClip, EveryModeTakesClippedInnerSteps) {
  const auto c = small_config(Backend::Explicit, at::kDouble);
  const auto w = weights_of(c);
  const auto task = tasks_of(c, 1)[0];
  const double limit = 1e-3, lr = 0.2;
  const int64_t steps = 3;
  for (const auto mode : {MamlMode::Full, MamlMode::FirstOrder, MamlMode::FirstOrderStrict}) {
    const auto fast = adapt(c.model, {mode, steps, lr, limit}, w, task);
    // Each step moves the weights by lr * ||clipped g|| <= lr * limit.
    EXPECT_LE(flat_distance(fast, w), steps * lr * limit * (1 + 1e-12)) << maml_mode_name(mode);
    EXPECT_GT(flat_distance(fast, w), 0.5 * steps * lr * limit) << maml_mode_name(mode);
  }
  const auto tasks = tasks_of(c, 2);
  const MamlConfig clipped{MamlMode::FirstOrder, 2, lr, limit};
  const auto fo = meta_gradient(c.model, clipped, w, tasks).grads;
  const auto strict = meta_gradient(c.model, {MamlMode::FirstOrderStrict, 2, lr, limit}, w, tasks).grads;
  EXPECT_LE(flat_distance(fo, strict) / flat_norm(fo), 1e-12);
}

// The clip factor keeps its graph, so FULL differentiates the clipped inner loop exactly: the
// meta-gradient is the derivative of the meta-loss that the clipped loop computes.
TEST(MamlClip, FullMetaGradientOfTheClippedLoopMatchesFiniteDifferences) {
  const auto c = tiny_config();
  const auto w = weights_of(c);
  const auto tasks = tasks_of(c, 2);
  const MamlConfig unclipped{MamlMode::Full, 2, 0.5};
  // A limit well under the inner gradient's norm: every inner step is clipped.
  const double g0 = flat_norm(torch::autograd::grad({task_loss(c.model, w, tasks[0].support_x, tasks[0].support_y)}, w));
  const MamlConfig clipped{MamlMode::Full, 2, 0.5, 0.05 * g0};
  const auto mg = meta_gradient(c.model, clipped, w, tasks);
  ASSERT_FALSE(mg.divergence.found());
  EXPECT_GT(flat_distance(mg.grads, meta_gradient(c.model, unclipped, w, tasks).grads), 1e-3 * flat_norm(mg.grads));

  at::manual_seed(1);
  const double eps = 1e-5;
  for (int direction = 0; direction < 3; ++direction) {
    Weights plus, minus;
    double along = 0.0;  // <g, d>
    for (size_t i = 0; i < w.size(); ++i) {
      const auto d = at::randn_like(w[i]);
      along += (mg.grads[i] * d).sum().item<double>();
      plus.push_back((w[i].detach() + eps * d).requires_grad_());
      minus.push_back((w[i].detach() - eps * d).requires_grad_());
    }
    const double fd = (meta_gradient(c.model, clipped, plus, tasks).query_loss -
                       meta_gradient(c.model, clipped, minus, tasks).query_loss) / (2 * eps);
    EXPECT_NEAR(fd, along, 1e-6 * std::max(1.0, std::abs(along))) << "direction " << direction;
  }
}

// Calls of theria's backward-JVP op (the double backward of FULL MAML), counted through the
// dispatcher's RecordFunction hook on this thread.
std::atomic<int> bwd_jvp_calls{0};

std::unique_ptr<at::ObserverContext> count_bwd_jvp(const at::RecordFunction& fn) {
  if (std::string(fn.name()) == "theria::sdpa_bwd_jvp") ++bwd_jvp_calls;
  return nullptr;
}

int bwd_jvp_calls_of(const std::function<void()>& f) {
  bwd_jvp_calls = 0;
  const auto handle = at::addThreadLocalCallback(at::RecordFunctionCallback(count_bwd_jvp).scopes({at::RecordScope::FUNCTION}));
  f();
  at::removeCallback(handle);
  return bwd_jvp_calls.load();
}

TEST(MamlDiagnostics, SecondOrderPathRunsTheFullMetaGradientOnce) {
  const auto c = small_config(Backend::Explicit, at::kDouble);
  const auto w = weights_of(c);
  const auto tasks = tasks_of(c, 2);
  const MamlConfig full{MamlMode::Full, 2, 0.2}, fo{MamlMode::FirstOrder, 2, 0.2};
  const int one_full = bwd_jvp_calls_of([&] { meta_gradient(c.model, full, w, tasks); });
  ASSERT_GT(one_full, 0);
  EXPECT_EQ(bwd_jvp_calls_of([&] { meta_gradient(c.model, fo, w, tasks); }), 0);
  for (const auto& config : {full, fo}) {
    SecondOrderPath path;
    EXPECT_EQ(bwd_jvp_calls_of([&] { path = second_order_path(c.model, config, w, tasks); }), one_full)
        << maml_mode_name(config.mode);
    const auto want = flat_distance(meta_gradient(c.model, full, w, tasks).grads, meta_gradient(c.model, fo, w, tasks).grads);
    EXPECT_NEAR(path.second_order_norm, want, 1e-12 * want) << maml_mode_name(config.mode);
    EXPECT_FALSE(path.divergence.found());
  }
}

TEST(MamlDivergence, ADivergingInnerLoopIsFoundWithItsTaskAndStep) {
  const auto c = small_config();
  const auto w = weights_of(c);
  const auto tasks = tasks_of(c, 3);
  const MamlConfig huge_lr{MamlMode::Full, 4, 1e30};
  const auto mg = meta_gradient(c.model, huge_lr, w, tasks);
  ASSERT_TRUE(mg.divergence.found());
  EXPECT_EQ(mg.divergence.task, 0);
  EXPECT_GE(mg.divergence.inner_step, 1);
  EXPECT_LE(mg.divergence.inner_step, 4);
  EXPECT_NE(mg.divergence.describe().find("inner loop diverged at step"), std::string::npos) << mg.divergence.describe();

  const auto rel = rel_diff_full_vs_fo(c.model, huge_lr, w, tasks, {1, 4});
  for (const auto& r : rel) {
    EXPECT_TRUE(std::isnan(r.value));
    EXPECT_TRUE(r.divergence.found());
  }
  const auto path = second_order_path(c.model, huge_lr, w, tasks);
  EXPECT_TRUE(std::isnan(path.second_order_norm));
  EXPECT_TRUE(path.divergence.found());

  // Clipping the inner gradient keeps the same loop finite, as long as lr * limit is small.
  EXPECT_FALSE(meta_gradient(c.model, {MamlMode::Full, 4, 1e3, 1e-4}, w, tasks).divergence.found());
}

TEST(MamlDivergence, MetaTrainingStopsAtTheFirstDivergenceOrSkipsItWhenToldToContinue) {
  auto c = small_config();
  c.meta_steps = 3;
  c.eval_every = 1;
  c.eval_tasks = 2;
  c.maml.inner_lr = 1e30;
  const auto stopped = meta_train(c);
  ASSERT_TRUE(stopped.divergence.found());
  EXPECT_EQ(stopped.divergence.meta_step, 0);  // the evaluation before training already diverges
  EXPECT_EQ(stopped.divergence.phase, "held-out evaluation");
  EXPECT_EQ(stopped.applied_meta_steps, 0);
  EXPECT_TRUE(std::isnan(stopped.after.post_accuracy));
  for (const auto& x : stopped.weights) EXPECT_TRUE(at::isfinite(x).all().item<bool>());

  c.continue_on_divergence = true;
  const auto continued = meta_train(c);
  ASSERT_TRUE(continued.divergence.found());
  EXPECT_EQ(continued.skipped_meta_steps, 3);
  EXPECT_EQ(continued.applied_meta_steps, 0);
  EXPECT_EQ(continued.curve.size(), 4u);
  for (const auto& p : continued.curve) EXPECT_FALSE(p.meta_loss.has_value()) << "step " << p.step;
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

TEST(MamlDiagnostics, CosineOfFlatGradients) {
  const std::vector<at::Tensor> a{at::tensor({1.0, 2.0}, at::kDouble), at::tensor({2.0}, at::kDouble)};
  const std::vector<at::Tensor> minus_a{-a[0], -a[1]};
  const std::vector<at::Tensor> orthogonal{at::tensor({2.0, -1.0}, at::kDouble), at::tensor({0.0}, at::kDouble)};
  EXPECT_NEAR(flat_cosine(a, a), 1.0, 1e-15);
  EXPECT_NEAR(flat_cosine(a, minus_a), -1.0, 1e-15);
  EXPECT_NEAR(flat_cosine(a, orthogonal), 0.0, 1e-15);
  EXPECT_TRUE(std::isnan(flat_cosine(a, {at::zeros({2}, at::kDouble), at::zeros({1}, at::kDouble)})));
}

}  // namespace
}  // namespace theria::lab
