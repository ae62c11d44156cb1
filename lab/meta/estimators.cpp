#include "meta/estimators.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <sstream>

namespace theria::lab {
namespace {

using Vec = std::vector<at::Tensor>;

double dot(const Vec& a, const Vec& b) {
  at::Tensor s = at::zeros({}, a[0].options().dtype(at::kDouble));
  for (size_t i = 0; i < a.size(); ++i) s = s + (a[i].to(at::kDouble) * b[i].to(at::kDouble)).sum();
  return s.item<double>();
}

// a + alpha b, detached.
Vec axpy(const Vec& a, double alpha, const Vec& b) {
  Vec out;
  for (size_t i = 0; i < a.size(); ++i) out.push_back((a[i] + alpha * b[i]).detach());
  return out;
}

bool all_finite(const Vec& v) {
  for (const auto& t : v) {
    if (!at::isfinite(t).all().item<bool>()) return false;
  }
  return true;
}

// MAML through the inner loop, differentiating its last `differentiated` steps (unrolled, FO, truncated).
Vec backprop_meta_gradient(const ModelConfig& model, const MamlConfig& maml, int64_t differentiated, const Weights& w,
                           const Task& task, double* query_loss) {
  Vec fast = w;
  for (int64_t s = 0; s < maml.inner_steps; ++s) {
    const bool keep = s >= maml.inner_steps - differentiated;
    auto g = gradients(task_loss(model, fast, task.support_x, task.support_y), fast, keep, keep);
    for (size_t i = 0; i < fast.size(); ++i) fast[i] = fast[i] - maml.inner_lr * (keep ? g[i] : g[i].detach());
  }
  const auto loss = task_loss(model, fast, task.query_x, task.query_y);
  *query_loss = loss.item<double>();
  return gradients(loss, w, false, false);
}

// The implicit meta-gradient of one task: the proximal inner problem solved with no graph, then the linear system
// on Hessian-vector products of the support loss at phi.
Vec implicit_meta_gradient(const ModelConfig& model, const MamlConfig& maml, const EstimatorSpec& spec, const Weights& w,
                           const Task& task, double* query_loss, LinearSolve* solve,
                           std::vector<std::string>* hvp_nodes) {
  // The proximal inner problem, solved with no graph (FO_STRICT's loop: phi are fresh leaves).
  MamlConfig inner = maml;
  inner.mode = MamlMode::FirstOrderStrict;
  inner.proximal = spec.lambda;
  const Weights phi = adapt(model, inner, w, task);
  const auto query = task_loss(model, phi, task.query_x, task.query_y);
  *query_loss = query.item<double>();
  const Vec b = gradients(query, phi, false, false);
  // The support gradient once, with its graph: every product H v differentiates <grad, v> through it (for theria
  // attention, through theria::SdpaBwdBackward: its double backward, which never forms an L x S matrix).
  const Vec support_grad = gradients(task_loss(model, phi, task.support_x, task.support_y), phi, true, true);
  if (hvp_nodes->empty()) {
    // The nodes a product differentiates: the double-backward nodes in the support gradient's graph.
    at::Tensor all = at::zeros({}, support_grad[0].options());
    for (const auto& g : support_grad) all = all + g.sum();
    *hvp_nodes = attention_second_order_nodes(all);
  }
  const LinearOperator a = [&](const Vec& v) {
    at::Tensor inner = at::zeros({}, support_grad[0].options());
    for (size_t i = 0; i < v.size(); ++i) inner = inner + (support_grad[i] * v[i]).sum();
    auto hv = torch::autograd::grad({inner}, phi, {}, /*retain_graph=*/true, /*create_graph=*/false,
                                    /*allow_unused=*/true);
    Vec out;
    for (size_t i = 0; i < v.size(); ++i) {
      const at::Tensor h = hv[i].defined() ? hv[i] : at::zeros_like(v[i]);
      out.push_back(((1.0 + spec.damping) * v[i] + h / spec.lambda).detach());
    }
    return out;
  };
  if (spec.kind == EstimatorSpec::Kind::Implicit) {
    auto r = conjugate_gradient(a, b, spec.cg_iterations, spec.cg_tolerance);
    *solve = r.solve;
    return r.x;
  }
  // Neumann: x = sum_{j=0..K} (I - A)^j b.
  Vec x = b, p = b;
  for (int64_t j = 0; j < spec.k; ++j) {
    p = axpy(p, -1.0, a(p));
    x = axpy(x, 1.0, p);
  }
  const Vec residual = axpy(b, -1.0, a(x));
  solve->iterations = spec.k;
  const double bb = dot(b, b);
  solve->relative_residual = bb > 0.0 ? std::sqrt(dot(residual, residual) / bb) : 0.0;
  solve->converged = false;  // a truncated series claims nothing
  return x;
}

}  // namespace

EstimatorSpec parse_estimator(const std::string& text) {
  const auto colon = text.find(':');
  const std::string name = text.substr(0, colon), args = colon == std::string::npos ? "" : text.substr(colon + 1);
  const auto bad = [&](const std::string& why) {
    TORCH_CHECK(false, "estimator '", text, "': ", why,
                "; expected unrolled, first_order, truncated:K, implicit[:lambda=L,cg=N,tol=T,damping=D] or "
                "neumann:K[,lambda=L,damping=D]");
  };
  EstimatorSpec s;
  if (name == "unrolled" || name == "first_order") {
    if (!args.empty()) bad("takes no arguments");
    s.kind = name == "unrolled" ? EstimatorSpec::Kind::Unrolled : EstimatorSpec::Kind::FirstOrder;
    return s;
  }
  if (name != "truncated" && name != "implicit" && name != "neumann") bad("unknown estimator");
  s.kind = name == "truncated" ? EstimatorSpec::Kind::Truncated
           : name == "implicit" ? EstimatorSpec::Kind::Implicit
                                : EstimatorSpec::Kind::Neumann;
  std::stringstream items(args);
  bool have_k = false;
  for (std::string item; std::getline(items, item, ',');) {
    const auto eq = item.find('=');
    try {
      if (eq == std::string::npos) {
        if (s.kind == EstimatorSpec::Kind::Implicit || have_k) bad("unexpected '" + item + "'");
        s.k = std::stoll(item);
        have_k = true;
        continue;
      }
      const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
      if (s.kind == EstimatorSpec::Kind::Truncated) bad("takes only K");
      if (key == "lambda") s.lambda = std::stod(value);
      else if (key == "damping") s.damping = std::stod(value);
      else if (key == "cg" && s.kind == EstimatorSpec::Kind::Implicit) s.cg_iterations = std::stoll(value);
      else if (key == "tol" && s.kind == EstimatorSpec::Kind::Implicit) s.cg_tolerance = std::stod(value);
      else bad("unknown setting '" + key + "'");
    } catch (const std::invalid_argument&) {
      bad("'" + item + "' is not a number");
    } catch (const std::out_of_range&) {
      bad("'" + item + "' is out of range");
    }
  }
  if (s.kind != EstimatorSpec::Kind::Implicit && !have_k) bad("needs K");
  if (s.k < 0) bad("K must be >= 0");
  if (s.lambda <= 0.0) bad("lambda must be > 0");
  if (s.cg_iterations < 1) bad("cg must be >= 1");
  return s;
}

std::string estimator_name(const EstimatorSpec& s) {
  std::ostringstream o;
  switch (s.kind) {
    case EstimatorSpec::Kind::Unrolled: return "unrolled";
    case EstimatorSpec::Kind::FirstOrder: return "first_order";
    case EstimatorSpec::Kind::Truncated: return "truncated:" + std::to_string(s.k);
    case EstimatorSpec::Kind::Implicit:
      o << "implicit:lambda=" << s.lambda << ",cg=" << s.cg_iterations << ",tol=" << s.cg_tolerance;
      break;
    case EstimatorSpec::Kind::Neumann: o << "neumann:" << s.k << ",lambda=" << s.lambda; break;
  }
  if (s.damping != 0.0) o << ",damping=" << s.damping;
  return o.str();
}

CgResult conjugate_gradient(const LinearOperator& a, const std::vector<at::Tensor>& b, int64_t max_iterations,
                            double tolerance) {
  CgResult out;
  Vec x;
  for (const auto& t : b) x.push_back(at::zeros_like(t));
  const double b_norm = std::sqrt(dot(b, b));
  if (b_norm == 0.0) {
    out.x = x;
    out.solve = {0, 0.0, true};
    return out;
  }
  Vec r = b, p = b;
  double rs = dot(r, r);
  for (int64_t i = 0; i < max_iterations; ++i) {
    const Vec ap = a(p);
    const double curvature = dot(p, ap);
    // A not positive definite along p (a support Hessian with an eigenvalue below -lambda): CG cannot go on.
    if (!(curvature > 0.0)) break;
    const double alpha = rs / curvature;
    x = axpy(x, alpha, p);
    r = axpy(r, -alpha, ap);
    out.solve.iterations = i + 1;
    const double rs_next = dot(r, r);
    if (std::sqrt(rs_next) <= tolerance * b_norm) break;
    p = axpy(r, rs_next / rs, p);
    rs = rs_next;
  }
  // The true residual, not CG's recursive one: one more product, and a solve that did not converge says so.
  const Vec residual = axpy(b, -1.0, a(x));
  out.solve.relative_residual = std::sqrt(dot(residual, residual)) / b_norm;
  out.solve.converged = out.solve.relative_residual <= tolerance;
  out.x = x;
  return out;
}

EstimatedMetaGradient estimate_meta_gradient(const ModelConfig& model, const MamlConfig& maml, const EstimatorSpec& spec,
                                             const Weights& w, const std::vector<Task>& tasks) {
  TORCH_CHECK(!tasks.empty(), "estimate_meta_gradient: no tasks");
  at::AutoGradMode grad_mode(true);
  EstimatedMetaGradient out;
  const double inv = 1.0 / static_cast<double>(tasks.size());
  for (size_t t = 0; t < tasks.size(); ++t) {
    double loss = 0.0;
    Vec g;
    switch (spec.kind) {
      case EstimatorSpec::Kind::Unrolled:
        g = backprop_meta_gradient(model, maml, maml.inner_steps, w, tasks[t], &loss);
        break;
      case EstimatorSpec::Kind::FirstOrder: g = backprop_meta_gradient(model, maml, 0, w, tasks[t], &loss); break;
      case EstimatorSpec::Kind::Truncated:
        g = backprop_meta_gradient(model, maml, std::min(spec.k, maml.inner_steps), w, tasks[t], &loss);
        break;
      case EstimatorSpec::Kind::Implicit:
      case EstimatorSpec::Kind::Neumann: {
        LinearSolve solve;
        g = implicit_meta_gradient(model, maml, spec, w, tasks[t], &loss, &solve, &out.hvp_attention_nodes);
        out.solves.push_back(solve);
        break;
      }
    }
    if (!std::isfinite(loss) && !out.divergence.found()) {
      out.divergence.where = Divergence::Where::QueryLoss;
      out.divergence.task = static_cast<int64_t>(t);
      out.divergence.inner_step = out.divergence.inner_steps = maml.inner_steps;
    }
    if (out.grads.empty()) {
      for (const auto& x : g) out.grads.push_back(x.detach() * inv);
    } else {
      for (size_t i = 0; i < g.size(); ++i) out.grads[i] = out.grads[i] + g[i].detach() * inv;
    }
    out.query_loss += loss * inv;
  }
  if (!out.divergence.found() && !all_finite(out.grads)) {
    out.divergence.where = Divergence::Where::MetaGradient;
    out.divergence.inner_steps = maml.inner_steps;
  }
  return out;
}

}  // namespace theria::lab
