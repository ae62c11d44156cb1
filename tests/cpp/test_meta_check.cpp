// theria::inspect_graph and theria::check_meta_gradient (include/theria/meta_check.h) on a tiny MAML in float64:
// the exact FULL meta-gradient through theria is found second order and equal to the derivative of the
// meta-loss; each way of silently losing the second-order terms is flagged by the graph walk, fails the
// directional-derivative check, or both (docs/meta_check.md).
#include "ops/ops.h"
#include "test_util.h"

#include <theria/meta_check.h>

#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

namespace {

using at::Tensor;
using theria_test::randn;
using theria_test::SdpaFn;
using Weights = std::vector<Tensor>;

constexpr int64_t kLen = 8, kIn = 6, kHead = 4, kOut = 3;
const double kScale = 1.0 / std::sqrt(static_cast<double>(kHead));

// One fixed task (support and query sets) and an inner loop of SGD steps on the support loss. The model projects
// the input to q, k, v (w[0..2]), attends, and maps the attention output to the targets (w[3]).
struct TinyMaml {
  SdpaFn attention;
  bool create_graph = true;
  int64_t inner_steps = 2;
  double inner_lr = 0.5;
  at::ScalarType dtype = at::kDouble;

  Tensor task_loss(const Weights& w, const Tensor& x, const Tensor& y) const {
    const Tensor out = attention(at::matmul(x, w[0]), at::matmul(x, w[1]), at::matmul(x, w[2]));
    return (at::matmul(out, w[3]) - y).pow(2).mean();
  }

  Tensor meta_loss(const Weights& w) const {
    const Tensor xs = randn({kLen, kIn}, 11, dtype), ys = randn({kLen, kOut}, 12, dtype);
    const Tensor xq = randn({kLen, kIn}, 13, dtype), yq = randn({kLen, kOut}, 14, dtype);
    Weights fast = w;
    for (int64_t step = 0; step < inner_steps; ++step) {
      // allow_unused: a detached attention leaves the projections out of the support loss's graph.
      const auto g = torch::autograd::grad({task_loss(fast, xs, ys)}, fast, {}, /*retain_graph=*/create_graph,
                                           create_graph, /*allow_unused=*/true);
      for (size_t i = 0; i < fast.size(); ++i) {
        if (g[i].defined()) fast[i] = fast[i] - inner_lr * g[i];
      }
    }
    return task_loss(fast, xq, yq);
  }

  theria::MetaLossFn fn() const {
    return [maml = *this](const Weights& w) { return maml.meta_loss(w); };
  }
};

Weights init_weights(at::ScalarType dtype = at::kDouble) {
  Weights w;
  uint64_t seed = 21;
  for (auto [rows, cols] : {std::pair{kIn, kHead}, {kIn, kHead}, {kIn, kHead}, {kHead, kOut}}) {
    w.push_back((randn({rows, cols}, seed++, dtype) / std::sqrt(static_cast<double>(rows))).requires_grad_(true));
  }
  return w;
}

SdpaFn theria_attention(theria::Backend backend) {
  return [backend](const Tensor& q, const Tensor& k, const Tensor& v) {
    return theria::sdpa(q, k, v, theria::SdpaOptions().backend(backend));
  };
}

SdpaFn detached_attention() {
  return [](const Tensor& q, const Tensor& k, const Tensor& v) { return theria::sdpa(q, k, v).detach(); };
}

SdpaFn no_grad_attention() {
  return [](const Tensor& q, const Tensor& k, const Tensor& v) {
    at::NoGradGuard no_grad;
    return theria::sdpa(q, k, v);
  };
}

// A user's custom function around theria's forward and backward ops whose backward runs under no_grad: the first
// derivative is right, the gradients it returns have no history, so a create_graph inner loop differentiates
// nothing through it: once_differentiable made silent.
struct NoGradBackwardAttention : torch::autograd::Function<NoGradBackwardAttention> {
  static Tensor forward(torch::autograd::AutogradContext* ctx, const Tensor& q, const Tensor& k, const Tensor& v) {
    auto [out, lse] = theria::ops::sdpa_fwd(q, k, v, /*is_causal=*/false, kScale, "explicit");
    ctx->save_for_backward({q, k, v, out, lse});
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    at::NoGradGuard no_grad;
    auto [dq, dk, dv, dmask] = theria::ops::sdpa_bwd(saved[0], saved[1], saved[2], saved[3], saved[4], grads[0],
                                                     /*is_causal=*/false, kScale, "explicit");
    return {dq, dk, dv};
  }
};

SdpaFn no_grad_backward_attention() {
  return [](const Tensor& q, const Tensor& k, const Tensor& v) { return NoGradBackwardAttention::apply(q, k, v); };
}

// Attention written out by hand, P = exp(S - lse(S)); with detach_lse the row statistic is a constant to autograd
// (the forward is unchanged, every derivative through the normalisation is gone).
SdpaFn hand_written_attention(bool detach_lse) {
  return [detach_lse](const Tensor& q, const Tensor& k, const Tensor& v) {
    const Tensor s = at::matmul(q, k.mT()) * kScale;
    Tensor lse = at::logsumexp(s, -1, /*keepdim=*/true);
    if (detach_lse) lse = lse.detach();
    return at::matmul(at::exp(s - lse), v);
  };
}

TinyMaml maml_with(SdpaFn attention) {
  TinyMaml m;
  m.attention = std::move(attention);
  return m;
}

// THERIA_TEST_VERBOSE=1 prints every report, as a user would see it.
template <typename Report>
const Report& shown(const Report& r) {
  static const bool verbose = std::getenv("THERIA_TEST_VERBOSE") != nullptr;
  if (verbose) std::printf("%s", r.describe().c_str());
  return r;
}

bool any_warning_contains(const theria::GraphReport& r, const std::string& words) {
  return std::any_of(r.warnings.begin(), r.warnings.end(),
                     [&](const std::string& w) { return w.find(words) != std::string::npos; });
}

TEST(MetaCheck, ExactFullThroughExplicitIsSecondOrderThroughTheriaAndPasses) {
  const auto maml = maml_with(theria_attention(theria::Backend::Explicit));
  const auto w = init_weights();
  const auto graph = shown(theria::inspect_graph(maml.meta_loss(w)));
  // One attention call per support loss (2 inner steps) and one in the query loss; each support call's backward
  // is differentiated once.
  EXPECT_EQ(graph.sdpa_nodes, 3);
  EXPECT_EQ(graph.sdpa_double_backward_nodes, 2);
  EXPECT_EQ(graph.softmax_nodes, 0);
  EXPECT_TRUE(graph.second_order_through_attention());
  EXPECT_TRUE(graph.ok()) << graph.describe();
  EXPECT_EQ(graph.second_order_node_names, std::vector<std::string>{"theria::SdpaBwdBackward"});

  const auto check = shown(theria::check_meta_gradient(maml.fn(), w));
  EXPECT_TRUE(check.passed) << check.describe();
  EXPECT_LT(check.relative_error, 1e-7) << check.describe();
  EXPECT_EQ(check.directions.size(), 4u);
  EXPECT_EQ(check.dtype, at::kDouble);
}

TEST(MetaCheck, ExactFullThroughReferenceShowsPyTorchsDoubleBackwardAndPasses) {
  const auto maml = maml_with(theria_attention(theria::Backend::Reference));
  const auto w = init_weights();
  const auto graph = shown(theria::inspect_graph(maml.meta_loss(w)));
  EXPECT_EQ(graph.sdpa_nodes, 0);
  EXPECT_EQ(graph.softmax_nodes, 3);
  EXPECT_EQ(graph.softmax_double_backward_nodes, 2);
  EXPECT_EQ(graph.aten_double_backward_nodes, 2);
  EXPECT_EQ(graph.second_order_node_names, std::vector<std::string>{"SoftmaxBackwardDataBackward0"});
  EXPECT_TRUE(graph.ok()) << graph.describe();

  const auto check = shown(theria::check_meta_gradient(maml.fn(), w));
  EXPECT_TRUE(check.passed) << check.describe();
}

TEST(MetaCheck, TwentyInnerStepsAreWalkedNodeByNode) {
  auto maml = maml_with(theria_attention(theria::Backend::Explicit));
  maml.inner_steps = 20;
  maml.inner_lr = 0.05;
  const auto graph = shown(theria::inspect_graph(maml.meta_loss(init_weights())));
  EXPECT_EQ(graph.sdpa_nodes, 21);
  EXPECT_EQ(graph.sdpa_double_backward_nodes, 20);
  EXPECT_TRUE(graph.ok()) << graph.describe();
}

TEST(MetaCheck, InnerGradientsWithoutCreateGraphAreFlaggedAndFail) {
  auto maml = maml_with(theria_attention(theria::Backend::Explicit));
  maml.create_graph = false;
  const auto w = init_weights();
  const auto graph = shown(theria::inspect_graph(maml.meta_loss(w)));
  EXPECT_EQ(graph.sdpa_nodes, 1);  // the query loss's attention only
  EXPECT_EQ(graph.sdpa_double_backward_nodes, 0);
  EXPECT_TRUE(any_warning_contains(graph, "no differentiated attention backward")) << graph.describe();

  const auto check = shown(theria::check_meta_gradient(maml.fn(), w));
  EXPECT_FALSE(check.passed) << check.describe();
}

TEST(MetaCheck, AttentionOutsideTheGraphIsFlaggedAndFails) {
  const auto w = init_weights();
  for (const auto& [pattern, attention] : {std::pair{"detached output", detached_attention()},
                                           std::pair{"under no_grad", no_grad_attention()}}) {
    SCOPED_TRACE(pattern);
    const auto maml = maml_with(attention);
    const auto graph = shown(theria::inspect_graph(maml.meta_loss(w)));
    EXPECT_FALSE(graph.attention_in_graph());
    EXPECT_TRUE(any_warning_contains(graph, "no attention node reaches the loss")) << graph.describe();

    const auto check = shown(theria::check_meta_gradient(maml.fn(), w));
    EXPECT_FALSE(check.passed) << check.describe();
  }
}

TEST(MetaCheck, CustomFunctionWithANoGradBackwardIsFlaggedAndFails) {
  const auto maml = maml_with(no_grad_backward_attention());
  const auto w = init_weights();
  // First order is right: the support-loss gradient equals theria's own.
  const auto exact = maml_with(theria_attention(theria::Backend::Explicit));
  const Tensor x = randn({kLen, kIn}, 11), y = randn({kLen, kOut}, 12);
  const auto g = torch::autograd::grad({maml.task_loss(w, x, y)}, w);
  const auto g_exact = torch::autograd::grad({exact.task_loss(w, x, y)}, w);
  EXPECT_LT(theria::max_relative_error(g, g_exact), 1e-12);

  const auto graph = shown(theria::inspect_graph(maml.meta_loss(w)));
  ASSERT_EQ(graph.custom_function_names.size(), 1u);
  EXPECT_NE(graph.custom_function_names[0].find("NoGradBackwardAttention"), std::string::npos);
  EXPECT_EQ(graph.sdpa_double_backward_nodes, 0);
  EXPECT_TRUE(any_warning_contains(graph, "custom autograd functions reach the loss")) << graph.describe();

  const auto check = shown(theria::check_meta_gradient(maml.fn(), w));
  EXPECT_FALSE(check.passed) << check.describe();
}

TEST(MetaCheck, DetachedSoftmaxStatisticsFailTheNumericalCheck) {
  const auto w = init_weights();
  // The same hand-written attention without the detach is exact: the check passes, so the failure below is the
  // detached statistic's.
  const auto exact = shown(theria::check_meta_gradient(maml_with(hand_written_attention(false)).fn(), w));
  EXPECT_TRUE(exact.passed) << exact.describe();

  const auto maml = maml_with(hand_written_attention(true));
  const auto check = shown(theria::check_meta_gradient(maml.fn(), w));
  EXPECT_FALSE(check.passed) << check.describe();
  // The walk cannot tell the two apart: it knows no node of a hand-written attention, and says so for both.
  const auto graph = shown(theria::inspect_graph(maml.meta_loss(w)));
  const auto graph_exact = shown(theria::inspect_graph(maml_with(hand_written_attention(false)).meta_loss(w)));
  EXPECT_FALSE(graph.attention_in_graph());
  EXPECT_EQ(graph.warnings, graph_exact.warnings);
}

TEST(MetaCheck, Float32UsesItsCoarserDefaults) {
  auto maml = maml_with(theria_attention(theria::Backend::Explicit));
  maml.dtype = at::kFloat;
  const auto w = init_weights(at::kFloat);
  const auto check = shown(theria::check_meta_gradient(maml.fn(), w));
  EXPECT_EQ(check.dtype, at::kFloat);
  EXPECT_DOUBLE_EQ(check.eps, 1e-3);
  EXPECT_DOUBLE_EQ(check.tolerance, 5e-2);
  EXPECT_TRUE(check.passed) << check.describe();
  maml.create_graph = false;
  const auto first_order = shown(theria::check_meta_gradient(maml.fn(), w));
  EXPECT_FALSE(first_order.passed) << first_order.describe();
}

TEST(MetaCheck, EachNodeIsVisitedOnceAndTheWalkIsIterative) {
  const Tensor p = at::ones({3}, at::kDouble).requires_grad_(true);
  const Tensor y = p * 2.0;
  // Sum <- Add <- Mul (reached twice, one node) <- AccumulateGrad
  const auto diamond = shown(theria::inspect_graph((y + y).sum()));
  EXPECT_EQ(diamond.nodes, 4);
  int64_t counted = 0;
  for (const auto& [name, count] : diamond.node_names) counted += count;
  EXPECT_EQ(counted, 4);

  // A chain far deeper than a recursive walk could go on an 8 MiB stack.
  constexpr int64_t depth = 200000;
  Tensor x = p;
  for (int64_t i = 0; i < depth; ++i) x = x * 1.0;
  const auto chain = shown(theria::inspect_graph(x.sum()));
  EXPECT_EQ(chain.nodes, depth + 2);
}

TEST(MetaCheck, ALossWithoutGraphIsFlagged) {
  const auto graph = shown(theria::inspect_graph(at::ones({}, at::kDouble)));
  EXPECT_FALSE(graph.has_graph);
  EXPECT_TRUE(any_warning_contains(graph, "the loss has no grad_fn")) << graph.describe();
}

TEST(MetaCheck, DescriptionsNameTheCountsAndTheVerdict) {
  auto maml = maml_with(theria_attention(theria::Backend::Explicit));
  const auto w = init_weights();
  const auto full = theria::inspect_graph(maml.meta_loss(w)).describe();
  EXPECT_NE(full.find("3 theria::SdpaBackward"), std::string::npos) << full;
  EXPECT_NE(full.find("2 theria::SdpaBwdBackward"), std::string::npos) << full;
  EXPECT_NE(full.find("verdict: second-order terms reach the loss through attention"), std::string::npos) << full;
  maml.create_graph = false;
  const auto fo = theria::inspect_graph(maml.meta_loss(w)).describe();
  EXPECT_NE(fo.find("warning: attention's first derivative is in the graph"), std::string::npos) << fo;
  const auto check = theria::check_meta_gradient(maml.fn(), w, theria::MetaGradientCheckOptions().directions(2));
  const auto text = check.describe();
  EXPECT_NE(text.find("check_meta_gradient: FAILED (float64)"), std::string::npos) << text;
  EXPECT_NE(text.find("a term is dropped"), std::string::npos) << text;
}

TEST(MetaCheck, BadInputsAreErrorsNamingTheProblem) {
  const auto w = init_weights();
  const theria::MetaLossFn not_scalar = [](const Weights& p) { return p[0] * 2.0; };
  EXPECT_THROW(theria::check_meta_gradient(not_scalar, w), c10::Error);
  EXPECT_THROW(theria::check_meta_gradient(not_scalar, {}), c10::Error);
  const Weights half{w[0].detach().to(at::kHalf)};
  // Summed in float64: the check's dtype is still the parameters' float16.
  const theria::MetaLossFn sum = [](const Weights& p) { return p[0].to(at::kDouble).sum(); };
  try {
    theria::check_meta_gradient(sum, half);
    ADD_FAILURE() << "float16 without eps and tolerance must be refused";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find("float16 is too coarse"), std::string::npos) << e.what();
  }
  // With both given it runs: the sum is linear, so its central difference is exact up to rounding.
  const auto check =
      theria::check_meta_gradient(sum, half, theria::MetaGradientCheckOptions().eps(1e-2).tolerance(1e-6));
  EXPECT_EQ(check.dtype, at::kHalf);
  EXPECT_TRUE(check.passed) << check.describe();
}

TEST(MetaCheck, ParametersAreLeftUntouched) {
  const auto maml = maml_with(theria_attention(theria::Backend::Explicit));
  const auto w = init_weights();
  std::vector<Tensor> before;
  for (const auto& p : w) before.push_back(p.detach().clone());
  theria::check_meta_gradient(maml.fn(), w, theria::MetaGradientCheckOptions().directions(1));
  for (size_t i = 0; i < w.size(); ++i) {
    EXPECT_TRUE(at::equal(w[i], before[i]));
    EXPECT_FALSE(w[i].grad().defined());
  }
}

// A meta-loss through ReLU jumps where a ReLU switches inside the inner loop. A jump just outside the smallest
// step but inside the first one must not be read as a wrong gradient: the step shrinks until h and h/2 agree.
TEST(MetaCheck, AJumpNearThetaShrinksTheStepInsteadOfFailing) {
  const auto w = at::linspace(-1.0, 1.0, 10, at::kDouble);
  const double jump_at = 1.0 + 2e-7;  // theta[0] = 1; the first step is 1e-6 * ||theta|| = 3.2e-6
  const theria::MetaLossFn f = [&](const std::vector<at::Tensor>& p) {
    const auto smooth = (p[0] * w).sum() + p[0].pow(2).sum() * 0.5;
    return smooth + (p[0][0] > jump_at).to(at::kDouble) * 10.0;  // a step function: derivative 0 where defined
  };
  const auto check = theria::check_meta_gradient(f, {at::ones({10}, at::kDouble)});
  EXPECT_TRUE(check.passed) << check.describe();
  EXPECT_TRUE(std::any_of(check.directions.begin(), check.directions.end(),
                          [&](const theria::DirectionalDerivative& d) { return d.step < check.step / 2; }))
      << check.describe();
  // A jump at theta itself is crossed at every step: no direction is smooth, and the check fails saying so.
  const theria::MetaLossFn at_theta = [&](const std::vector<at::Tensor>& p) {
    return (p[0] * w).sum() + (p[0][0] > 1.0).to(at::kDouble) * 10.0;
  };
  const auto fails = theria::check_meta_gradient(at_theta, {at::ones({10}, at::kDouble)});
  EXPECT_FALSE(fails.passed);
  EXPECT_EQ(fails.nonsmooth_directions, 12) << fails.describe();
  EXPECT_NE(fails.describe().find("not smooth"), std::string::npos);
}

}  // namespace
