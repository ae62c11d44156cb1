// The meta-gradient estimators (lab/meta/estimators.h) on CPU in float64: truncated(N) is unrolled and
// truncated(0) first order; the implicit estimator converges to a dense-solve oracle as CG iterations grow; CG stops
// at its tolerance and reports a solve that did not converge; the spec parser.
#include "meta/estimators.h"
#include "diagnostics/second_order.h"
#include "tasks/position_recall.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>

namespace theria::lab {
namespace {

struct Problem {
  ModelConfig model;
  MamlConfig maml{MamlMode::Full, 3, 0.1};
  Weights w;
  std::vector<Task> tasks;
};

// A model small enough for a dense Hessian (164 weights), in float64 through theria's explicit backend.
Problem tiny(int64_t tasks = 1) {
  Problem p;
  p.model.seq_len = 4;
  p.model.classes = 2;
  p.model.dim = 4;
  p.model.heads = 1;
  p.model.attention.backend(Backend::Explicit);
  p.w = init_weights(p.model, 3, at::TensorOptions().dtype(at::kDouble));
  TaskConfig tc;
  tc.seq_len = 4;
  tc.classes = 2;
  tc.support = 8;
  tc.query = 8;
  const PositionRecallTasks family(tc, 9);
  for (int64_t i = 0; i < tasks; ++i) p.tasks.push_back(family.task(i));
  return p;
}

double rel(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  return gradient_error(a, b).rel_l2;
}

TEST(Estimators, TruncatedOverEveryStepIsUnrolledAndOverNoneIsFirstOrder) {
  auto p = tiny(2);
  const auto unrolled = estimate_meta_gradient(p.model, p.maml, parse_estimator("unrolled"), p.w, p.tasks);
  const auto all = estimate_meta_gradient(p.model, p.maml, parse_estimator("truncated:3"), p.w, p.tasks);
  const auto none = estimate_meta_gradient(p.model, p.maml, parse_estimator("truncated:0"), p.w, p.tasks);
  const auto fo = estimate_meta_gradient(p.model, p.maml, parse_estimator("first_order"), p.w, p.tasks);
  const auto some = estimate_meta_gradient(p.model, p.maml, parse_estimator("truncated:1"), p.w, p.tasks);
  EXPECT_LE(rel(all.grads, unrolled.grads), 1e-14);
  EXPECT_LE(rel(none.grads, fo.grads), 1e-14);
  EXPECT_GT(rel(some.grads, unrolled.grads), 1e-6);  // a real truncation is neither
  EXPECT_GT(rel(some.grads, fo.grads), 1e-6);
  // The same as the lab's MAML modes.
  p.maml.mode = MamlMode::Full;
  EXPECT_LE(rel(unrolled.grads, meta_gradient(p.model, p.maml, p.w, p.tasks).grads), 1e-14);
  p.maml.mode = MamlMode::FirstOrder;
  EXPECT_LE(rel(fo.grads, meta_gradient(p.model, p.maml, p.w, p.tasks).grads), 1e-14);
}

// The oracle: the same proximal inner solution, then (I + H / lambda) x = grad L_query by a dense solve, with H built
// row by row from the support gradient (not through the estimator's Hessian-vector products).
std::vector<at::Tensor> dense_implicit(const Problem& p, double lambda) {
  std::vector<at::Tensor> theta, phi;
  for (const auto& t : p.w) {
    theta.push_back(t.detach());
    phi.push_back(t.detach().clone().requires_grad_());
  }
  const auto& task = p.tasks[0];
  for (int64_t s = 0; s < p.maml.inner_steps; ++s) {
    at::Tensor loss = task_loss(p.model, phi, task.support_x, task.support_y);
    for (size_t i = 0; i < phi.size(); ++i) loss = loss + 0.5 * lambda * (phi[i] - theta[i]).pow(2).sum();
    const auto g = torch::autograd::grad({loss}, phi, {}, false, false, true);
    for (size_t i = 0; i < phi.size(); ++i) phi[i] = (phi[i] - p.maml.inner_lr * g[i]).detach().requires_grad_();
  }
  std::vector<at::Tensor> flat_parts;
  const auto b_parts = torch::autograd::grad({task_loss(p.model, phi, task.query_x, task.query_y)}, phi, {}, false,
                                             false, true);
  for (const auto& t : b_parts) flat_parts.push_back(t.reshape(-1));
  const at::Tensor b = at::cat(flat_parts);
  const auto g = torch::autograd::grad({task_loss(p.model, phi, task.support_x, task.support_y)}, phi, {}, true, true,
                                       true);
  std::vector<at::Tensor> g_parts;
  for (const auto& t : g) g_parts.push_back(t.reshape(-1));
  const at::Tensor g_flat = at::cat(g_parts);
  const int64_t n = g_flat.numel();
  at::Tensor h = at::zeros({n, n}, at::kDouble);
  for (int64_t i = 0; i < n; ++i) {
    const auto row = torch::autograd::grad({g_flat[i]}, phi, {}, true, false, true);
    std::vector<at::Tensor> parts;
    for (size_t j = 0; j < row.size(); ++j) parts.push_back(row[j].defined() ? row[j].reshape(-1) : at::zeros_like(phi[j]).reshape(-1));
    h[i] = at::cat(parts);
  }
  const at::Tensor x = at::linalg_solve(at::eye(n, at::kDouble) + h / lambda, b);
  std::vector<at::Tensor> out;
  int64_t offset = 0;
  for (const auto& t : p.w) {
    out.push_back(x.slice(0, offset, offset + t.numel()).view(t.sizes()));
    offset += t.numel();
  }
  return out;
}

TEST(Estimators, ImplicitConvergesToTheDenseSolveAsCgIterationsGrow) {
  const auto p = tiny();
  const double lambda = 2.0;
  const auto oracle = dense_implicit(p, lambda);
  double previous = INFINITY;
  for (const int cg : {1, 3, 10, 60}) {
    const auto spec = parse_estimator("implicit:lambda=2,cg=" + std::to_string(cg) + ",tol=1e-13");
    const auto r = estimate_meta_gradient(p.model, p.maml, spec, p.w, p.tasks);
    ASSERT_EQ(r.solves.size(), 1u);
    const double error = rel(r.grads, oracle);
    EXPECT_LE(error, previous * 1.0001) << cg << " CG iterations";  // no worse with more iterations
    previous = error;
    if (cg == 60) {
      EXPECT_LE(error, 1e-8);
      EXPECT_TRUE(r.solves[0].converged) << r.solves[0].relative_residual;
    }
  }
}

TEST(Estimators, NeumannApproachesTheSameSolutionWhereTheSeriesConverges) {
  const auto p = tiny();
  const auto oracle = dense_implicit(p, 20.0);  // a large lambda: ||H / lambda|| < 1, the series converges
  const double few = rel(estimate_meta_gradient(p.model, p.maml, parse_estimator("neumann:1,lambda=20"), p.w, p.tasks).grads, oracle);
  const auto many = estimate_meta_gradient(p.model, p.maml, parse_estimator("neumann:30,lambda=20"), p.w, p.tasks);
  EXPECT_LT(rel(many.grads, oracle), few);
  EXPECT_LE(rel(many.grads, oracle), 1e-6);
  EXPECT_FALSE(many.solves[0].converged);  // a truncated series never claims convergence
}

TEST(Estimators, CgStopsAtItsToleranceAndReportsASolveThatDidNotConverge) {
  // A known SPD system, diagonal with 100 eigenvalues in [1, 2]: CG's error falls geometrically.
  const at::Tensor d = 1.0 + at::linspace(0.0, 1.0, 100, at::kDouble);
  const LinearOperator a = [&](const std::vector<at::Tensor>& v) { return std::vector<at::Tensor>{d * v[0]}; };
  const std::vector<at::Tensor> b{at::ones({100}, at::kDouble)};
  const auto solved = conjugate_gradient(a, b, 100, 1e-12);
  EXPECT_TRUE(solved.solve.converged);
  EXPECT_LE(solved.solve.relative_residual, 1e-12);
  EXPECT_TRUE(at::allclose(solved.x[0], 1.0 / d, 1e-10, 1e-12));
  const auto loose = conjugate_gradient(a, b, 100, 1e-2);
  EXPECT_TRUE(loose.solve.converged);
  EXPECT_LT(loose.solve.iterations, solved.solve.iterations);  // stops at its tolerance
  const auto cut = conjugate_gradient(a, b, 2, 1e-12);
  EXPECT_FALSE(cut.solve.converged);
  EXPECT_EQ(cut.solve.iterations, 2);
  EXPECT_GT(cut.solve.relative_residual, 1e-12);
  // Not positive definite: CG stops and says it did not converge.
  const LinearOperator indefinite = [&](const std::vector<at::Tensor>& v) { return std::vector<at::Tensor>{-v[0]}; };
  EXPECT_FALSE(conjugate_gradient(indefinite, b, 10, 1e-12).solve.converged);
}

TEST(Estimators, SpecsParseAndBadOnesNameTheForms) {
  EXPECT_EQ(estimator_name(parse_estimator("truncated:5")), "truncated:5");
  const auto s = parse_estimator("implicit:lambda=2,cg=5,tol=1e-10");
  EXPECT_EQ(s.kind, EstimatorSpec::Kind::Implicit);
  EXPECT_EQ(s.lambda, 2.0);
  EXPECT_EQ(s.cg_iterations, 5);
  EXPECT_EQ(parse_estimator(estimator_name(s)).cg_tolerance, 1e-10);
  EXPECT_EQ(parse_estimator("neumann:4,lambda=3").k, 4);
  for (const char* bad : {"unroled", "truncated", "truncated:x", "truncated:-1", "implicit:cg=0", "implicit:lambda=-1",
                          "first_order:3", "implicit:foo=1"}) {
    try {
      parse_estimator(bad);
      ADD_FAILURE() << bad << " parsed";
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what()).find("truncated:K"), std::string::npos) << bad;
    }
  }
}

}  // namespace
}  // namespace theria::lab
