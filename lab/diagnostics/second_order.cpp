#include "diagnostics/second_order.h"

#include "variants/attention_variants.h"

#include <theria/meta_check.h>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/function.h>

#include <algorithm>
#include <cmath>

namespace theria::lab {
namespace {

// In float64 on the CPU: a gradient and the oracle's may live on different devices.
at::Tensor host64(const at::Tensor& t) { return t.detach().to(at::kCPU, at::kDouble); }

}  // namespace

double flat_norm(const std::vector<at::Tensor>& g) {
  double s = 0.0;
  for (const auto& t : g) s += t.to(at::kDouble).pow(2).sum().item<double>();
  return std::sqrt(s);
}

double flat_distance(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i) s += (host64(a[i]) - host64(b[i])).pow(2).sum().item<double>();
  return std::sqrt(s);
}

double flat_cosine(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b) {
  double dot = 0.0;
  for (size_t i = 0; i < a.size(); ++i) dot += (host64(a[i]) * host64(b[i])).sum().item<double>();
  const double norms = flat_norm(a) * flat_norm(b);
  return norms > 0.0 ? dot / norms : std::nan("");
}

namespace {

}  // namespace

SecondOrderPath second_order_path(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                  const std::vector<Task>& tasks) {
  SecondOrderPath r;
  const auto run = meta_gradient(model, maml, w, tasks);
  if (run.loss_graph.defined()) {
    r.nodes = inspect_graph(run.loss_graph).second_order_node_names;
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


Detection detect(const ModelConfig& model, const MamlConfig& maml, const Weights& w, const std::vector<Task>& tasks) {
  Detection d;
  // The meta-loss as the user's code computes it, as a function of the initial weights, in float64 on their device.
  const MetaLossFn meta_loss = [&](const std::vector<at::Tensor>& params) {
    at::Tensor total;
    for (const auto& task : tasks) {
      const auto loss = task_loss(model, adapt(model, maml, params, task), task.query_x, task.query_y) /
                        static_cast<double>(tasks.size());
      total = total.defined() ? total + loss : loss;
    }
    return total;
  };
  std::vector<at::Tensor> w64;
  for (const auto& t : w) w64.push_back(t.detach().to(at::kDouble).requires_grad_());
  const GraphReport graph = inspect_graph(meta_loss(w64));
  d.graph_warnings = graph.warnings;
  const MetaGradientCheck check = check_meta_gradient(meta_loss, w64);
  d.numerical_relative_error = check.relative_error;
  d.numerical_passed = check.passed;
  return d;
}

GradientError gradient_error(const std::vector<at::Tensor>& g, const std::vector<at::Tensor>& ref) {
  return {flat_distance(g, ref) / std::max(flat_norm(ref), 1e-300), flat_cosine(g, ref)};
}

Float64Problem float64_reference(const ModelConfig& model, const Weights& w, const std::vector<Task>& tasks,
                                 const at::Device& device, Backend backend) {
  Float64Problem p{model, {}, {}};
  p.model.attend = {};
  p.model.attention.backend(backend);
  for (const auto& t : w) p.w.push_back(t.detach().to(device, at::kDouble).requires_grad_());
  for (const auto& t : tasks) p.tasks.push_back(t.to(device));
  return p;
}

MetaGradient oracle_meta_gradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                  const std::vector<Task>& tasks, const at::Device& device, Backend backend) {
  const auto p = float64_reference(model, w, tasks, device, backend);
  MamlConfig full = maml;
  full.mode = MamlMode::Full;
  full.inner_create_graph = true;
  return meta_gradient(p.model, full, p.w, p.tasks);
}

AttentionSecondOrder attention_second_order_share(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                                  const std::vector<Task>& tasks) {
  return attention_second_order_share(model, maml, w, tasks, meta_gradient(model, maml, w, tasks));
}

AttentionSecondOrder attention_second_order_share(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                                  const std::vector<Task>& tasks, const MetaGradient& g) {
  ModelConfig first_order = model;
  first_order.attend = first_order_only(model.attend ? model.attend : AttentionFn([](const at::Tensor& q,
                                                                                    const at::Tensor& k,
                                                                                    const at::Tensor& v,
                                                                                    const SdpaOptions& o) {
    return sdpa(q, k, v, o);
  }));
  const auto g1 = meta_gradient(first_order, maml, w, tasks);
  AttentionSecondOrder r;
  r.divergence = g.divergence.found() ? g.divergence : g1.divergence;
  r.share = r.divergence.found() ? std::nan("") : flat_distance(g.grads, g1.grads) / std::max(flat_norm(g.grads), 1e-300);
  return r;
}

}  // namespace theria::lab
