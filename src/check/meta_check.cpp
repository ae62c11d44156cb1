// The two checks of a meta-loss (include/theria/meta_check.h, docs/meta_check.md). python/theria/meta_check.py
// is the same in Python: the node rules, the warnings and the report's words must stay equal in both.
#include <theria/meta_check.h>
#include <theria/tolerances.h>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <cstdio>
#include <limits>
#include <map>
#include <sstream>
#include <unordered_set>

namespace theria {
namespace {

// ---- Node names (the same rules in meta_check.py) ----

constexpr const char* kSdpaNode = "theria::SdpaBackward";
constexpr const char* kSdpaDoubleBackwardNode = "theria::SdpaBwdBackward";

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }
bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// A PyTorch node that differentiates a backward op names that op, then "Backward": MseLossBackwardBackward0,
// SoftmaxBackwardDataBackward0 (of _softmax_backward_data). theria's and autograd's own nodes are not ATen's.
bool is_aten_double_backward(const std::string& name) {
  if (starts_with(name, "theria::") || starts_with(name, "torch::autograd::")) return false;
  const auto first = name.find("Backward");
  return first != std::string::npos && name.find("Backward", first + 1) != std::string::npos;
}
// Softmax of an ATen-composed attention; log_softmax (a classifier's loss) is not attention.
bool is_softmax(const std::string& name) {
  return name == "SoftmaxBackward0" || name == "SafeSoftmaxBackward0" || name == "MaskedSoftmaxBackward0";
}
bool is_softmax_double_backward(const std::string& name) {
  return is_aten_double_backward(name) && contains(name, "SoftmaxBackward") && !contains(name, "LogSoftmax");
}
// PyTorch's fused SDPA kernels (flash, efficient, cuDNN, flash for CPU): no derivative of their backward.
bool is_torch_sdpa(const std::string& name) {
  return contains(name, "ScaledDotProduct") && !is_aten_double_backward(name);
}
bool is_custom_function(const std::string& name) { return starts_with(name, "torch::autograd::CppNode<"); }
// What @once_differentiable leaves under create_graph (DelayedError outputs have an Error node).
bool is_delayed_error(const std::string& name) {
  return name == "torch::autograd::Error" || name == "torch::autograd::DelayedError";
}
bool is_not_implemented(const std::string& name) { return name == "torch::autograd::NotImplemented"; }

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// The warnings, in the order a reader should act on them (the same words in meta_check.py).
std::vector<std::string> graph_warnings(const GraphReport& r, const std::vector<std::string>& delayed_errors,
                                        const std::vector<std::string>& not_implemented,
                                        const std::vector<std::string>& torch_sdpa) {
  std::vector<std::string> w;
  if (!r.has_graph) {
    w.push_back("the loss has no grad_fn: nothing that requires grad reaches it (computed under no_grad, or "
                "detached)");
    return w;
  }
  if (!delayed_errors.empty()) {
    w.push_back(join(delayed_errors) + " reaches the loss: a backward marked @once_differentiable ran under "
                "create_graph, so its derivative is not in the graph; autograd.grad(loss, params) skips it "
                "silently (it leads to no parameter), loss.backward() raises");
  }
  if (!not_implemented.empty()) {
    w.push_back(join(not_implemented) + " reaches the loss: a backward that PyTorch cannot differentiate ran "
                "under create_graph; computing the meta-gradient raises");
  }
  if (!torch_sdpa.empty()) {
    w.push_back("PyTorch's fused SDPA reaches the loss (" + join(torch_sdpa) + "): it has no double backward, "
                "so second-order terms cannot pass through it (theria.sdpa has one)");
  }
  const bool second_order = r.second_order_through_attention();
  if (!r.attention_in_graph()) {
    w.push_back("no attention node reaches the loss: attention outputs were detached or computed under no_grad, "
                "or attention runs inside a custom autograd function or through ops this walk does not know "
                "(check_meta_gradient tells)");
  } else if (!second_order) {
    w.push_back("attention's first derivative is in the graph but no differentiated attention backward: inner "
                "gradients were taken without create_graph, or a custom backward is not differentiable (a "
                "first-order MAML reads this way)");
  }
  if (!second_order && !r.custom_function_names.empty()) {
    w.push_back("custom autograd functions reach the loss (" + join(r.custom_function_names) + "): whether their "
                "backward is itself differentiable cannot be seen in the graph; one that computes attention with "
                "a backward run under no_grad drops the second-order terms silently (check_meta_gradient tells)");
  }
  if (!second_order && !r.second_order_node_names.empty()) {
    w.push_back("second-order nodes found only outside attention (" + join(r.second_order_node_names) +
                "): the inner loop was differentiated, but not through attention");
  }
  return w;
}

std::string format(const char* fmt, double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, x);
  return buf;
}

}  // namespace

bool GraphReport::attention_in_graph() const { return sdpa_nodes + softmax_nodes + torch_sdpa_nodes > 0; }

bool GraphReport::second_order_through_attention() const {
  return sdpa_double_backward_nodes + softmax_double_backward_nodes > 0;
}

GraphReport inspect_graph(const at::Tensor& loss) {
  TORCH_CHECK(loss.defined(), "inspect_graph: the loss is an undefined tensor");
  GraphReport r;
  std::map<std::string, int64_t> counts;
  // Depth-first with an explicit stack: no recursion depth to run out of on a long inner loop.
  std::vector<torch::autograd::Node*> stack;
  std::unordered_set<torch::autograd::Node*> seen;
  if (const auto& root = loss.grad_fn()) stack.push_back(root.get());
  r.has_graph = !stack.empty();
  while (!stack.empty()) {
    auto* node = stack.back();
    stack.pop_back();
    if (!seen.insert(node).second) continue;
    ++counts[node->name()];
    for (const auto& edge : node->next_edges()) {
      if (edge.function && !seen.count(edge.function.get())) stack.push_back(edge.function.get());
    }
  }
  r.nodes = static_cast<int64_t>(seen.size());

  std::vector<std::string> delayed_errors, not_implemented, torch_sdpa;
  for (const auto& [name, count] : counts) {
    r.node_names.emplace_back(name, count);
    if (name == kSdpaNode) r.sdpa_nodes += count;
    if (name == kSdpaDoubleBackwardNode) r.sdpa_double_backward_nodes += count;
    if (is_softmax(name)) r.softmax_nodes += count;
    if (is_softmax_double_backward(name)) r.softmax_double_backward_nodes += count;
    if (is_aten_double_backward(name)) r.aten_double_backward_nodes += count;
    if (name == kSdpaDoubleBackwardNode || is_aten_double_backward(name)) r.second_order_node_names.push_back(name);
    if (is_torch_sdpa(name)) {
      r.torch_sdpa_nodes += count;
      torch_sdpa.push_back(name);
    }
    if (is_custom_function(name)) r.custom_function_names.push_back(name);
    if (is_delayed_error(name)) delayed_errors.push_back(name);
    if (is_not_implemented(name)) not_implemented.push_back(name);
  }
  r.warnings = graph_warnings(r, delayed_errors, not_implemented, torch_sdpa);
  return r;
}

std::string GraphReport::describe() const {
  std::ostringstream s;
  s << "inspect_graph: " << nodes << " autograd nodes reach the loss\n";
  s << "  attention, first derivative: " << sdpa_nodes << " theria::SdpaBackward, " << softmax_nodes
    << " ATen softmax, " << torch_sdpa_nodes << " PyTorch fused SDPA\n";
  s << "  attention, differentiated backward (second order): " << sdpa_double_backward_nodes
    << " theria::SdpaBwdBackward, " << softmax_double_backward_nodes << " ATen softmax double backward\n";
  s << "  PyTorch double-backward nodes (...Backward...Backward0): " << aten_double_backward_nodes << "\n";
  s << "  second-order node names: " << (second_order_node_names.empty() ? "none" : join(second_order_node_names))
    << "\n";
  s << "  custom autograd functions: " << (custom_function_names.empty() ? "none" : join(custom_function_names))
    << "\n";
  if (warnings.empty()) {
    s << "  verdict: second-order terms reach the loss through attention\n";
  } else {
    for (const auto& w : warnings) s << "  warning: " << w << "\n";
  }
  return s.str();
}

namespace {

// ---- Finite differences ----
//
// The central difference (f(θ + h u) - f(θ - h u)) / 2h errs by truncation, h² |f'''| / 6, and by rounding,
// about ε_mach |f| / h. With h = eps · ||θ||, relative to the derivative these are ~eps² and ~ε_mach / eps, times
// a conditioning factor |f| / (||θ|| |<g, u>|) that a random direction makes large (|<g, u>| ~ ||g|| / √n) and a
// loss computed through many rounded ops makes larger still.
//   float64 (ε_mach 1.1e-16): eps 1e-6 gives ~1e-12 truncation and ~1e-10 rounding; the tolerance 1e-5 leaves
//     five orders of magnitude for conditioning and still sees a dropped term worth 1e-5 of the derivative.
//   float32 (ε_mach 6e-8): the optimum eps is near ε_mach^(1/3) ≈ 4e-3; at 1e-3 truncation is ~1e-6 but
//     rounding ~6e-5 grows with conditioning to 1e-3..1e-2 on a small MAML: the tolerance 5e-2 only catches a
//     dropped term worth a few per cent. float64 is the trustworthy setting.
//   float16, bfloat16: rounding of the loss alone exceeds any useful tolerance; no defaults.
// These bound a finite difference, not a kernel's error: they are not part of theria::tolerance's table.
struct StepDefaults {
  double eps;
  double tolerance;
};

std::optional<StepDefaults> step_defaults(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kDouble: return StepDefaults{1e-6, 1e-5};
    case at::kFloat: return StepDefaults{1e-3, 5e-2};
    default: return std::nullopt;
  }
}

// The least precise of two floating dtypes (by the size of their mantissa).
c10::ScalarType less_precise(c10::ScalarType a, c10::ScalarType b) {
  auto digits = [](c10::ScalarType t) {
    switch (t) {
      case at::kDouble: return 53;
      case at::kFloat: return 24;
      case at::kHalf: return 11;
      default: return 8;  // bfloat16 and anything coarser
    }
  };
  return digits(a) <= digits(b) ? a : b;
}

// Fresh leaves that require grad: the meta-loss may differentiate its inner loop with respect to them.
std::vector<at::Tensor> fresh_leaves(const std::vector<at::Tensor>& values) {
  std::vector<at::Tensor> leaves;
  for (const auto& v : values) leaves.push_back(v.detach().clone().requires_grad_(true));
  return leaves;
}

double evaluate(const MetaLossFn& meta_loss, const std::vector<at::Tensor>& values) {
  const at::Tensor loss = meta_loss(fresh_leaves(values));
  TORCH_CHECK(loss.defined() && loss.numel() == 1, "check_meta_gradient: the meta-loss must be a scalar tensor");
  return loss.item<double>();
}

double dot(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i].to(at::kDouble) * b[i].to(at::kDouble)).sum().item<double>();
  return s;
}

}  // namespace

MetaGradientCheck check_meta_gradient(const MetaLossFn& meta_loss, const std::vector<at::Tensor>& params,
                                      const MetaGradientCheckOptions& options) {
  TORCH_CHECK(!params.empty(), "check_meta_gradient: no parameters");
  TORCH_CHECK(options.directions_ >= 1, "check_meta_gradient: directions must be at least 1, got ",
              options.directions_);
  for (size_t i = 0; i < params.size(); ++i) {
    TORCH_CHECK(params[i].defined() && at::isFloatingType(params[i].scalar_type()),
                "check_meta_gradient: parameter ", i, " must be a defined floating-point tensor");
  }
  // The meta-loss differentiates its inner loop even when the caller runs under no_grad.
  at::AutoGradMode grad_mode(true);

  MetaGradientCheck r;
  std::vector<at::Tensor> theta;
  for (const auto& p : params) theta.push_back(p.detach());
  const auto leaves = fresh_leaves(theta);
  const at::Tensor loss = meta_loss(leaves);
  TORCH_CHECK(loss.defined() && loss.numel() == 1, "check_meta_gradient: the meta-loss must be a scalar tensor");
  r.loss = loss.item<double>();
  r.dtype = loss.scalar_type();
  for (const auto& p : params) r.dtype = less_precise(r.dtype, p.scalar_type());

  // A parameter the graph does not reach (detached, no_grad) has a zero gradient: that is what autograd says.
  std::vector<at::Tensor> g(leaves.size());
  if (loss.requires_grad()) {
    g = torch::autograd::grad({loss}, leaves, {}, /*retain_graph=*/false, /*create_graph=*/false,
                              /*allow_unused=*/true);
  }
  for (size_t i = 0; i < g.size(); ++i) {
    if (!g[i].defined()) g[i] = at::zeros_like(theta[i]);
  }
  r.gradient_norm = std::sqrt(dot(g, g));

  const auto defaults = step_defaults(r.dtype);
  TORCH_CHECK(defaults || (options.eps_ && options.tolerance_), "check_meta_gradient: ", dtype_name(r.dtype),
              " is too coarse for finite differences with default settings; check float64 copies of the "
              "parameters and inputs (or give eps and tolerance)");
  r.eps = options.eps_ ? *options.eps_ : defaults->eps;
  r.tolerance = options.tolerance_ ? *options.tolerance_ : defaults->tolerance;
  r.step = r.eps * std::max(std::sqrt(dot(theta, theta)), 1.0);

  // Directions in float64 on the CPU from one seeded generator: the same numbers on any device and in Python.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(options.seed_);
  // The directional derivatives along unit direction u at step h.
  const auto along = [&](const std::vector<at::Tensor>& u, double norm, double h) {
    std::vector<at::Tensor> plus, minus, moved;
    for (size_t i = 0; i < theta.size(); ++i) {
      const auto shift = (u[i] * (h / norm)).to(theta[i].options());
      plus.push_back(theta[i] + shift);
      minus.push_back(theta[i] - shift);
      moved.push_back(plus.back().to(at::kDouble) - minus.back().to(at::kDouble));
    }
    // <g, u> along the step actually taken, (θ+ − θ−) / 2h after rounding to the parameters' dtype, so that
    // rounding the perturbed parameters does not count as an error of the meta-gradient.
    return DirectionalDerivative{dot(g, moved) / (2.0 * h),
                                 (evaluate(meta_loss, plus) - evaluate(meta_loss, minus)) / (2.0 * h), h};
  };
  constexpr int kShrinks = 3;
  double err2 = 0.0, fd2 = 0.0;
  for (int64_t drawn = 0; static_cast<int64_t>(r.directions.size()) < options.directions_ &&
                          drawn < 3 * options.directions_;
       ++drawn) {
    std::vector<at::Tensor> u;
    for (const auto& t : theta) u.push_back(at::randn(t.sizes(), gen, at::TensorOptions().dtype(at::kDouble)));
    const double norm = std::sqrt(dot(u, u));
    std::optional<DirectionalDerivative> smooth;
    double h = r.step;
    for (int s = 0; s <= kShrinks && !smooth; ++s, h /= 10.0) {
      const auto half = along(u, norm, h / 2.0), full = along(u, norm, h);
      const double scale = std::max(std::abs(full.finite_difference), std::abs(half.finite_difference));
      if (std::abs(full.finite_difference - half.finite_difference) <= r.tolerance * scale) smooth = half;
    }
    if (!smooth) {
      ++r.nonsmooth_directions;
      continue;
    }
    const auto& d = *smooth;
    err2 += (d.autograd - d.finite_difference) * (d.autograd - d.finite_difference);
    fd2 += d.finite_difference * d.finite_difference;
    r.directions.push_back(d);
  }
  const double inf = std::numeric_limits<double>::infinity();
  r.relative_error = r.directions.empty() ? inf : fd2 > 0.0 ? std::sqrt(err2 / fd2) : (err2 == 0.0 ? 0.0 : inf);
  r.passed = std::isfinite(r.loss) && std::isfinite(r.relative_error) && r.relative_error <= r.tolerance;
  return r;
}

std::string MetaGradientCheck::describe() const {
  std::ostringstream s;
  s << "check_meta_gradient: " << (passed ? "passed" : "FAILED") << " (" << dtype_name(dtype)
    << "): relative error " << format("%.3e", relative_error) << (passed ? " <= " : " > ") << "tolerance "
    << format("%.1e", tolerance) << " over " << directions.size() << " directions\n";
  s << "  f(theta) = " << format("%.10g", loss) << ", ||g|| = " << format("%.6g", gradient_norm) << ", eps "
    << format("%.1e", eps) << " (step " << format("%.3e", step) << ")\n";
  s << "  direction  autograd <g,u>       finite difference    step\n";
  for (size_t k = 0; k < directions.size(); ++k) {
    char line[112];
    std::snprintf(line, sizeof line, "  %-9zu  %-19.10e  %-19.10e  %.3e\n", k, directions[k].autograd,
                  directions[k].finite_difference, directions[k].step);
    s << line;
  }
  if (nonsmooth_directions > 0) {
    s << "  " << nonsmooth_directions << " direction(s) left out: the meta-loss is not smooth along them at any step "
      << "tried (a ReLU switching inside the inner loop makes it jump)\n";
  }
  if (!passed) {
    s << "  the autograd meta-gradient is not the derivative of the meta-loss: a term is dropped (attention "
         "output or softmax statistics detached, attention under no_grad, a backward that is not "
         "differentiable, inner gradients without create_graph; inspect_graph names the structural ones), or "
         "the meta-loss is not a pure function of the parameters\n";
  }
  if (dtype != at::kDouble) {
    s << "  note: a " << dtype_name(dtype) << " check is coarse; float64 is the trustworthy setting\n";
  }
  return s.str();
}

}  // namespace theria
