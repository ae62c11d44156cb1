#include "maml.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <cmath>
#include <set>
#include <unordered_set>

namespace theria::lab {

MamlMode parse_maml_mode(const std::string& name) {
  if (name == "full") return MamlMode::Full;
  if (name == "fo") return MamlMode::FirstOrder;
  if (name == "fo_strict") return MamlMode::FirstOrderStrict;
  TORCH_CHECK(false, "unknown MAML mode '", name, "': expected full, fo or fo_strict");
}

const char* maml_mode_name(MamlMode mode) {
  switch (mode) {
    case MamlMode::Full: return "full";
    case MamlMode::FirstOrder: return "fo";
    case MamlMode::FirstOrderStrict: return "fo_strict";
  }
  return "?";
}

at::Tensor task_loss(const ModelConfig& model, const Weights& w, const at::Tensor& x, const at::Tensor& y) {
  return at::cross_entropy_loss(forward(model, w, x).to(at::kFloat), y);
}

double accuracy(const ModelConfig& model, const Weights& w, const at::Tensor& x, const at::Tensor& y) {
  at::AutoGradMode no_grad(false);
  return forward(model, w, x).argmax(1).eq(y).to(at::kDouble).mean().item<double>();
}

Weights adapt(const ModelConfig& model, const Weights& w, const Task& task, int64_t steps, double lr,
              bool keep_graph) {
  Weights fast = w;
  for (int64_t s = 0; s < steps; ++s) {
    const auto loss = task_loss(model, fast, task.support_x, task.support_y);
    const auto g = torch::autograd::grad({loss}, fast, {}, /*retain_graph=*/keep_graph, /*create_graph=*/keep_graph);
    for (size_t i = 0; i < fast.size(); ++i) fast[i] = fast[i] - lr * (keep_graph ? g[i] : g[i].detach());
  }
  return fast;
}

namespace {

// FO_STRICT: the inner loop on detached copies, the query gradient taken at the adapted copies.
std::vector<at::Tensor> strict_first_order(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                           const Task& task, double& query_loss) {
  Weights phi;
  for (const auto& t : w) phi.push_back(t.detach().clone().requires_grad_());
  for (int64_t s = 0; s < maml.inner_steps; ++s) {
    const auto g = torch::autograd::grad({task_loss(model, phi, task.support_x, task.support_y)}, phi);
    at::AutoGradMode no_grad(false);
    for (size_t i = 0; i < phi.size(); ++i) phi[i] = (phi[i] - maml.inner_lr * g[i]).detach().requires_grad_();
  }
  const auto loss = task_loss(model, phi, task.query_x, task.query_y);
  query_loss = loss.item<double>();
  return torch::autograd::grad({loss}, phi);
}

}  // namespace

MetaGradient meta_gradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                           const std::vector<Task>& tasks) {
  TORCH_CHECK(!tasks.empty(), "meta_gradient: no tasks");
  MetaGradient out;
  const double inv = 1.0 / static_cast<double>(tasks.size());
  for (const auto& task : tasks) {
    std::vector<at::Tensor> g;
    double loss_value = 0.0;
    if (maml.mode == MamlMode::FirstOrderStrict) {
      g = strict_first_order(model, maml, w, task, loss_value);
    } else {
      const Weights fast = adapt(model, w, task, maml.inner_steps, maml.inner_lr, maml.mode == MamlMode::Full);
      const auto loss = task_loss(model, fast, task.query_x, task.query_y);
      loss_value = loss.item<double>();
      g = torch::autograd::grad({loss}, w, {}, /*retain_graph=*/true);
      out.loss_graph = loss;
    }
    if (out.grads.empty()) {
      for (const auto& t : g) out.grads.push_back(t.detach() * inv);
    } else {
      for (size_t i = 0; i < g.size(); ++i) out.grads[i] = out.grads[i] + g[i].detach() * inv;
    }
    out.query_loss += loss_value * inv;
  }
  return out;
}

double flat_norm(const std::vector<at::Tensor>& g) {
  double s = 0.0;
  for (const auto& t : g) s += t.to(at::kDouble).pow(2).sum().item<double>();
  return std::sqrt(s);
}

double flat_distance(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += (a[i].to(at::kDouble) - b[i].to(at::kDouble)).pow(2).sum().item<double>();
  return std::sqrt(s);
}

namespace {

// A node that differentiates a backward: theria's double-backward node, or any of PyTorch's
// "...BackwardBackward" nodes (the reference backend's path).
bool is_second_order_node(const std::string& name) {
  return name == "theria::SdpaBwdBackward" || name.find("BackwardBackward") != std::string::npos;
}

void collect_second_order_nodes(const at::Tensor& root, std::set<std::string>& found) {
  std::vector<torch::autograd::Node*> stack;
  std::unordered_set<torch::autograd::Node*> seen;
  if (root.grad_fn()) stack.push_back(root.grad_fn().get());
  while (!stack.empty()) {
    auto* node = stack.back();
    stack.pop_back();
    if (!seen.insert(node).second) continue;
    if (is_second_order_node(node->name())) found.insert(node->name());
    for (const auto& edge : node->next_edges()) {
      if (edge.function) stack.push_back(edge.function.get());
    }
  }
}

}  // namespace

SecondOrderPath second_order_path(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                  const std::vector<Task>& tasks) {
  SecondOrderPath r;
  const auto run = meta_gradient(model, maml, w, tasks);
  if (run.loss_graph.defined()) {
    std::set<std::string> found;
    collect_second_order_nodes(run.loss_graph, found);
    r.nodes.assign(found.begin(), found.end());
    r.reaches_backward_nodes = !found.empty();
  }
  MamlConfig fo = maml;
  fo.mode = MamlMode::FirstOrder;
  MamlConfig full = maml;
  full.mode = MamlMode::Full;
  r.second_order_norm = flat_distance(meta_gradient(model, full, w, tasks).grads, meta_gradient(model, fo, w, tasks).grads);
  return r;
}

std::vector<double> rel_diff_full_vs_fo(const ModelConfig& model, double inner_lr, const Weights& w,
                                        const std::vector<Task>& tasks, const std::vector<int64_t>& inner_steps) {
  std::vector<double> out;
  for (const auto steps : inner_steps) {
    const auto full = meta_gradient(model, {MamlMode::Full, steps, inner_lr}, w, tasks).grads;
    const auto fo = meta_gradient(model, {MamlMode::FirstOrder, steps, inner_lr}, w, tasks).grads;
    out.push_back(flat_distance(full, fo) / std::max(flat_norm(full), 1e-300));
  }
  return out;
}

Evaluation evaluate(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                    const std::vector<Task>& tasks) {
  Evaluation e;
  const double inv = 1.0 / static_cast<double>(tasks.size());
  for (const auto& task : tasks) {
    e.pre_accuracy += accuracy(model, w, task.query_x, task.query_y) * inv;
    const Weights fast = adapt(model, w, task, maml.inner_steps, maml.inner_lr, /*keep_graph=*/false);
    e.post_accuracy += accuracy(model, fast, task.query_x, task.query_y) * inv;
    at::AutoGradMode no_grad(false);
    e.post_loss += task_loss(model, fast, task.query_x, task.query_y).item<double>() * inv;
  }
  return e;
}

}  // namespace theria::lab
