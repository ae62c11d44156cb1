// Meta-gradient estimators behind one interface (docs/metagrad.md): what a study asks for is an estimator spec,
// and every one returns the meta-gradient of the mean query loss with respect to the initial weights.
//   unrolled      differentiate through every inner step (MAML FULL)
//   first_order   inner gradients detached (MAML FO)
//   truncated:K   differentiate through the last K of the N inner steps only (Shaban et al. 2019): the first N - K
//                 steps take detached gradients, as FO; truncated:N is unrolled, truncated:0 is first_order
//   implicit      implicit MAML (Rajeswaran et al. 2019): the inner problem is L_support(phi) + lambda/2 ||phi - theta||^2,
//                 solved by N gradient steps from theta with no graph; the meta-gradient solves
//                 ((1 + damping) I + H / lambda) x = grad L_query(phi), H the support loss's Hessian at phi, by
//                 conjugate gradient on Hessian-vector products (theria's double backward through attention)
//   neumann:K     the same linear system, x by the truncated Neumann series sum_{j<=K} (I - A)^j b
#pragma once

#include "meta/maml.h"

#include <functional>
#include <string>
#include <vector>

namespace theria::lab {

struct EstimatorSpec {
  enum class Kind { Unrolled, FirstOrder, Truncated, Implicit, Neumann };
  Kind kind = Kind::Unrolled;
  int64_t k = 0;             // truncated: steps differentiated; neumann: terms after the first
  double lambda = 2.0;       // implicit, neumann: the proximal strength (iMAML's reference point: 2)
  int64_t cg_iterations = 5;  // implicit (iMAML's reference point: 5)
  double cg_tolerance = 1e-10;  // implicit: stop when ||r|| <= tolerance * ||b||
  double damping = 0.0;      // implicit, neumann: added to the identity
};

// "unrolled", "first_order", "truncated:K", "implicit" or "implicit:lambda=2,cg=5,tol=1e-10,damping=0",
// "neumann:K" or "neumann:K,lambda=2"; an error naming the forms otherwise.
EstimatorSpec parse_estimator(const std::string& text);
std::string estimator_name(const EstimatorSpec& spec);  // the canonical text, parse_estimator's inverse

// One conjugate-gradient (or Neumann) solve, one task.
struct LinearSolve {
  int64_t iterations = 0;
  double relative_residual = 0.0;  // ||b - A x|| / ||b|| at the end
  bool converged = false;          // relative_residual <= the tolerance (Neumann: never claimed)
};

struct EstimatedMetaGradient {
  std::vector<at::Tensor> grads;   // one per weight, detached
  double query_loss = 0.0;         // mean over tasks, at the adapted weights
  std::vector<LinearSolve> solves;  // implicit / neumann: one per task
  // implicit / neumann: the attention double-backward nodes that every Hessian-vector product differentiates
  // (theria::SdpaBwdBackward for theria's attention, on every backend: one autograd layer).
  std::vector<std::string> hvp_attention_nodes;
  Divergence divergence;
};

// The meta-gradient of the mean query loss over `tasks` with respect to `w` (leaves that require grad).
// maml.inner_steps and maml.inner_lr set the inner loop; maml.mode is ignored (the spec says what is computed).
EstimatedMetaGradient estimate_meta_gradient(const ModelConfig& model, const MamlConfig& maml, const EstimatorSpec& spec,
                                             const Weights& w, const std::vector<Task>& tasks);

// Conjugate gradient on A x = b for a symmetric A given as a product: at most max_iterations steps, stopping when
// ||b - A x|| <= tolerance ||b||. A flat list of tensors is one vector.
struct CgResult {
  std::vector<at::Tensor> x;
  LinearSolve solve;
};
using LinearOperator = std::function<std::vector<at::Tensor>(const std::vector<at::Tensor>&)>;
CgResult conjugate_gradient(const LinearOperator& a, const std::vector<at::Tensor>& b, int64_t max_iterations,
                            double tolerance);

}  // namespace theria::lab
