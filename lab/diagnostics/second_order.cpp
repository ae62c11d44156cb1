#include "diagnostics/second_order.h"

#include "variants/attention_variants.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <unordered_set>

namespace theria::lab {

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

double flat_cosine(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double dot = 0.0;
  for (size_t i = 0; i < a.size(); ++i) dot += (a[i].to(at::kDouble) * b[i].to(at::kDouble)).sum().item<double>();
  const double norms = flat_norm(a) * flat_norm(b);
  return norms > 0.0 ? dot / norms : std::nan("");
}

namespace {

// The distinct names of the nodes of root's graph (an iterative walk: a deep inner loop is a deep graph).
std::set<std::string> node_names(const at::Tensor& root) {
  std::set<std::string> names;
  std::vector<torch::autograd::Node*> stack;
  std::unordered_set<torch::autograd::Node*> seen;
  if (root.grad_fn()) stack.push_back(root.grad_fn().get());
  while (!stack.empty()) {
    auto* node = stack.back();
    stack.pop_back();
    if (!seen.insert(node).second) continue;
    names.insert(node->name());
    for (const auto& edge : node->next_edges()) {
      if (edge.function) stack.push_back(edge.function.get());
    }
  }
  return names;
}

// A node that differentiates a backward: theria's double-backward node, or any of PyTorch's
// "...BackwardBackward" / "...BackwardDataBackward" nodes (the reference backend's path, and the model's).
bool is_second_order_node(const std::string& name) {
  return name == "theria::SdpaBwdBackward" || name.find("BackwardBackward") != std::string::npos ||
         name.find("BackwardDataBackward") != std::string::npos;
}

}  // namespace

SecondOrderPath second_order_path(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                  const std::vector<Task>& tasks) {
  SecondOrderPath r;
  const auto run = meta_gradient(model, maml, w, tasks);
  if (run.loss_graph.defined()) {
    for (const auto& name : node_names(run.loss_graph)) {
      if (is_second_order_node(name)) r.nodes.push_back(name);
    }
    r.reaches_backward_nodes = !r.nodes.empty();
  }
  // The run itself is one side of the norm when its mode is FULL or FO; only the other is computed.
  auto run_in = [&](MamlMode mode) {
    if (maml.mode == mode) return run;
    MamlConfig other = maml;
    other.mode = mode;
    return meta_gradient(model, other, w, tasks);
  };
  const auto full = run_in(MamlMode::Full);
  const auto fo = run_in(MamlMode::FirstOrder);
  r.divergence = full.divergence.found() ? full.divergence : fo.divergence;
  r.second_order_norm = r.divergence.found() ? std::nan("") : flat_distance(full.grads, fo.grads);
  return r;
}

std::vector<RelDiff> rel_diff_full_vs_fo(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                         const std::vector<Task>& tasks, const std::vector<int64_t>& inner_steps) {
  std::vector<RelDiff> out;
  for (const auto steps : inner_steps) {
    MamlConfig config = maml;
    config.inner_steps = steps;
    config.mode = MamlMode::Full;
    const auto full = meta_gradient(model, config, w, tasks);
    config.mode = MamlMode::FirstOrder;
    const auto fo = meta_gradient(model, config, w, tasks);
    RelDiff r{steps, std::nan(""), std::nan(""), full.divergence.found() ? full.divergence : fo.divergence};
    // No number from a diverged run: its NaN would only say "something was not finite", not where.
    if (!r.divergence.found()) {
      r.value = flat_distance(full.grads, fo.grads) / std::max(flat_norm(full.grads), 1e-300);
      r.cosine = flat_cosine(full.grads, fo.grads);
    }
    out.push_back(r);
  }
  return out;
}

std::vector<std::string> attention_second_order_nodes(const at::Tensor& loss) {
  std::vector<std::string> out;
  for (const auto& name : node_names(loss)) {
    const bool softmax =
        name.find("SoftmaxBackwardDataBackward") != std::string::npos && name.find("LogSoftmax") == std::string::npos;
    if (name == "theria::SdpaBwdBackward" || softmax) out.push_back(name);
  }
  return out;
}

GradientError gradient_error(const std::vector<at::Tensor>& g, const std::vector<at::Tensor>& ref) {
  return {flat_distance(g, ref) / std::max(flat_norm(ref), 1e-300), flat_cosine(g, ref)};
}

MetaGradient oracle_meta_gradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                  const std::vector<Task>& tasks) {
  ModelConfig exact = model;
  exact.attend = {};
  exact.attention.backend(Backend::Reference);
  MamlConfig full = maml;
  full.mode = MamlMode::Full;
  full.inner_create_graph = true;
  Weights w64;
  for (const auto& t : w) w64.push_back(t.detach().to(at::kCPU, at::kDouble).requires_grad_());
  std::vector<Task> cpu;
  for (const auto& t : tasks) {
    cpu.push_back({t.position, t.support_x.cpu(), t.support_y.cpu(), t.query_x.cpu(), t.query_y.cpu()});
  }
  return meta_gradient(exact, full, w64, cpu);
}

AttentionSecondOrder attention_second_order_share(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                                  const std::vector<Task>& tasks) {
  ModelConfig first_order = model;
  first_order.attend = first_order_only(model.attend ? model.attend : AttentionFn([](const at::Tensor& q,
                                                                                    const at::Tensor& k,
                                                                                    const at::Tensor& v,
                                                                                    const SdpaOptions& o) {
    return sdpa(q, k, v, o);
  }));
  const auto g = meta_gradient(model, maml, w, tasks);
  const auto g1 = meta_gradient(first_order, maml, w, tasks);
  AttentionSecondOrder r;
  r.divergence = g.divergence.found() ? g.divergence : g1.divergence;
  r.share = r.divergence.found() ? std::nan("") : flat_distance(g.grads, g1.grads) / std::max(flat_norm(g.grads), 1e-300);
  return r;
}

}  // namespace theria::lab
