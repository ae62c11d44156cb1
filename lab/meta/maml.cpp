#include "meta/maml.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>

#include <cmath>

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
  // At least float32 (bfloat16 outputs lose the loss), float64 for a float64 model (finite differences).
  const auto out = forward(model, w, x);
  const auto wide = out.to(at::promote_types(out.scalar_type(), at::kFloat));
  if (model.target == TargetKind::Regression) return at::mse_loss(wide.squeeze(1), y.to(wide.scalar_type()));
  return at::cross_entropy_loss(wide, y);
}

double accuracy(const ModelConfig& model, const Weights& w, const at::Tensor& x, const at::Tensor& y) {
  at::AutoGradMode no_grad(false);
  const auto out = forward(model, w, x).to(at::kDouble);
  if (model.target == TargetKind::Classes) return out.argmax(1).eq(y).to(at::kDouble).mean().item<double>();
  const auto target = y.to(at::kDouble);
  const auto residual = (out.squeeze(1) - target).pow(2).sum();
  return (1.0 - residual / (target - target.mean()).pow(2).sum()).item<double>();
}

std::vector<at::Tensor> clip_by_global_norm(const std::vector<at::Tensor>& g, double max_norm) {
  if (max_norm <= 0.0 || g.empty()) return g;
  // The squared norm accumulates in float at least (bfloat16 squares lose the small entries).
  const auto acc = [](const at::Tensor& t) { return t.to(at::promote_types(t.scalar_type(), at::kFloat)); };
  at::Tensor squared = acc(g[0]).pow(2).sum();
  for (size_t i = 1; i < g.size(); ++i) squared = squared + acc(g[i]).pow(2).sum();
  // clamp_max, not a branch on the norm's value: no device sync, and the same graph either side.
  const at::Tensor factor = at::clamp_max(max_norm / (squared.sqrt() + 1e-6), 1.0);
  std::vector<at::Tensor> out;
  for (const auto& t : g) out.push_back(t * factor.to(t.scalar_type()));
  return out;
}

std::string Divergence::describe() const {
  const std::string of = " of " + std::to_string(inner_steps) + " (task " + std::to_string(task) + ")";
  switch (where) {
    case Where::None: return "ok";
    case Where::SupportLoss:
      return "inner loop diverged at step " + std::to_string(inner_step) + of + ": support loss non-finite";
    case Where::FastWeights:
      return "inner loop diverged at step " + std::to_string(inner_step) + of +
             ": fast weights non-finite after the update";
    case Where::QueryLoss:
      return "inner loop diverged: query loss non-finite after step " + std::to_string(inner_steps) + of;
    case Where::MetaGradient: return "meta-gradient non-finite (every loss finite)";
  }
  return "?";
}

namespace {

// A 0-dim bool on the device: every entry of every tensor is finite.
at::Tensor all_finite(const std::vector<at::Tensor>& ts) {
  at::AutoGradMode no_grad(false);
  std::vector<at::Tensor> each;
  for (const auto& t : ts) each.push_back(at::isfinite(t).all());
  return at::stack(each).all();
}

}  // namespace

// d loss / d w, with zeros for the weights the loss does not reach (a model whose attention output is
// detached does not use its attention weights: lab/variants), as PyTorch's materialize_grads does.
std::vector<at::Tensor> gradients(const at::Tensor& loss, const Weights& w, bool retain_graph, bool create_graph) {
  auto g = torch::autograd::grad({loss}, w, {}, retain_graph, create_graph, /*allow_unused=*/true);
  for (size_t i = 0; i < g.size(); ++i) {
    if (!g[i].defined()) g[i] = at::zeros_like(w[i]);
  }
  return g;
}

Weights adapt(const ModelConfig& model, const MamlConfig& maml, const Weights& w, const Task& task,
              InnerLoopTrace* trace) {
  const bool keep_graph = maml.mode == MamlMode::Full;
  const bool strict = maml.mode == MamlMode::FirstOrderStrict;
  Weights fast;
  for (const auto& t : w) fast.push_back(strict ? t.detach().clone().requires_grad_() : t);
  for (int64_t s = 0; s < maml.inner_steps; ++s) {
    const auto loss = task_loss(model, fast, task.support_x, task.support_y);
    if (trace) trace->support_loss_finite.push_back(at::isfinite(loss.detach()));
    auto g = gradients(loss, fast, /*retain_graph=*/keep_graph, /*create_graph=*/keep_graph && maml.inner_create_graph);
    if (!keep_graph) {
      for (auto& t : g) t = t.detach();
    }
    g = clip_by_global_norm(g, maml.inner_grad_clip);
    if (strict) {
      at::AutoGradMode no_grad(false);
      for (size_t i = 0; i < fast.size(); ++i) fast[i] = (fast[i] - maml.inner_lr * g[i]).detach().requires_grad_();
    } else {
      for (size_t i = 0; i < fast.size(); ++i) fast[i] = fast[i] - maml.inner_lr * g[i];
    }
    if (trace) trace->weights_finite.push_back(all_finite(fast));
  }
  return fast;
}

Divergence first_divergence(const InnerLoopTrace& trace, const at::Tensor& query_loss, int64_t task,
                            double* value) {
  const auto steps = static_cast<int64_t>(trace.support_loss_finite.size());
  std::vector<at::Tensor> entries;  // support loss finite and weights finite per step, then the query loss
  for (int64_t s = 0; s < steps; ++s) {
    entries.push_back(trace.support_loss_finite[s].to(at::kDouble));
    entries.push_back(trace.weights_finite[s].to(at::kDouble));
  }
  entries.push_back(query_loss.detach().to(at::kDouble));
  const auto host = at::stack(entries).cpu();
  const double* v = host.data_ptr<double>();
  *value = v[2 * steps];
  Divergence d;
  d.task = task;
  d.inner_steps = steps;
  for (int64_t s = 0; s < steps && !d.found(); ++s) {
    d.inner_step = s + 1;
    if (v[2 * s] == 0.0) d.where = Divergence::Where::SupportLoss;
    else if (v[2 * s + 1] == 0.0) d.where = Divergence::Where::FastWeights;
  }
  d.inner_step = d.found() ? d.inner_step : steps;
  if (!d.found() && !std::isfinite(*value)) d.where = Divergence::Where::QueryLoss;
  return d;
}

MetaGradient meta_gradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                           const std::vector<Task>& tasks) {
  TORCH_CHECK(!tasks.empty(), "meta_gradient: no tasks");
  MetaGradient out;
  const double inv = 1.0 / static_cast<double>(tasks.size());
  const bool strict = maml.mode == MamlMode::FirstOrderStrict;
  for (size_t i = 0; i < tasks.size(); ++i) {
    InnerLoopTrace trace;
    const Weights fast = adapt(model, maml, w, tasks[i], &trace);
    const auto loss = task_loss(model, fast, tasks[i].query_x, tasks[i].query_y);
    double loss_value = 0.0;
    const auto d = first_divergence(trace, loss, static_cast<int64_t>(i), &loss_value);
    if (d.found() && !out.divergence.found()) out.divergence = d;
    // FO_STRICT: the query gradient at the adapted copies (leaves), applied to the initial weights.
    const auto g = gradients(loss, strict ? fast : w, /*retain_graph=*/!strict, /*create_graph=*/false);
    if (!strict) out.loss_graph = loss;
    if (out.grads.empty()) {
      for (const auto& t : g) out.grads.push_back(t.detach() * inv);
    } else {
      for (size_t j = 0; j < g.size(); ++j) out.grads[j] = out.grads[j] + g[j].detach() * inv;
    }
    out.query_loss += loss_value * inv;
  }
  if (!out.divergence.found() && !all_finite(out.grads).item<bool>()) {
    out.divergence.where = Divergence::Where::MetaGradient;
    out.divergence.inner_steps = maml.inner_steps;
  }
  return out;
}

Evaluation evaluate(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                    const std::vector<Task>& tasks) {
  Evaluation e;
  const double inv = 1.0 / static_cast<double>(tasks.size());
  const bool regression = model.target == TargetKind::Regression;
  double variance = 0.0;  // regression: the query targets' variance, mean over tasks
  MamlConfig no_meta_gradient = maml;
  no_meta_gradient.mode = MamlMode::FirstOrderStrict;
  for (size_t i = 0; i < tasks.size(); ++i) {
    const auto& task = tasks[i];
    {
      at::AutoGradMode no_grad(false);
      e.pre_loss += task_loss(model, w, task.query_x, task.query_y).item<double>() * inv;
      if (regression) variance += task.query_y.to(at::kDouble).var(/*unbiased=*/false).item<double>() * inv;
    }
    if (!regression) e.pre_accuracy += accuracy(model, w, task.query_x, task.query_y) * inv;
    InnerLoopTrace trace;
    const Weights fast = adapt(model, no_meta_gradient, w, task, &trace);
    at::AutoGradMode no_grad(false);
    double loss = 0.0;
    const auto d = first_divergence(trace, task_loss(model, fast, task.query_x, task.query_y), static_cast<int64_t>(i), &loss);
    if (d.found() && !e.divergence.found()) e.divergence = d;
    e.post_loss += loss * inv;
    if (!regression) e.post_accuracy += accuracy(model, fast, task.query_x, task.query_y) * inv;
  }
  if (regression) {
    // R^2 pooled over the tasks: one task's own R^2 is ill-conditioned where its targets hardly vary (a small
    // amplitude), and its mean over tasks would follow those tasks rather than the loss.
    e.pre_accuracy = 1.0 - e.pre_loss / variance;
    e.post_accuracy = 1.0 - e.post_loss / variance;
  }
  if (e.divergence.found()) e.post_accuracy = e.post_loss = std::nan("");
  return e;
}

}  // namespace theria::lab
