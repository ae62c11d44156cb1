#include "meta/maml.h"

#include <ATen/ATen.h>
#include <theria/meta_check.h>
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
  if (x.dim() == 2) {
    if (model.target == TargetKind::Regression) return at::mse_loss(wide.squeeze(1), y.to(wide.scalar_type()));
    return at::cross_entropy_loss(wide, y);
  }
  // Grouped: each task's mean over its own examples.
  if (model.target == TargetKind::Regression) return (wide.squeeze(-1) - y.to(wide.scalar_type())).pow(2).mean(1);
  const int64_t classes = wide.size(-1);
  return at::cross_entropy_loss(wide.reshape({-1, classes}), y.reshape(-1), {}, at::Reduction::None)
      .view(y.sizes())
      .mean(1);
}

std::vector<at::Tensor> clip_by_global_norm(const std::vector<at::Tensor>& g, double max_norm, bool grouped) {
  if (max_norm <= 0.0 || g.empty()) return g;
  // The squared norm accumulates in float at least (bfloat16 squares lose the small entries); grouped, per task.
  const auto squares = [&](const at::Tensor& t) {
    const auto wide = t.to(at::promote_types(t.scalar_type(), at::kFloat)).pow(2);
    return grouped ? wide.reshape({t.size(0), -1}).sum(1) : wide.sum();
  };
  at::Tensor squared = squares(g[0]);
  for (size_t i = 1; i < g.size(); ++i) squared = squared + squares(g[i]);
  // clamp_max, not a branch on the norm's value: no device sync, and the same graph either side.
  const at::Tensor factor = at::clamp_max(max_norm / (squared.sqrt() + 1e-6), 1.0);
  std::vector<at::Tensor> out;
  for (const auto& t : g) {
    auto f = factor.to(t.scalar_type());
    if (grouped) {
      std::vector<int64_t> shape(t.dim(), 1);
      shape[0] = t.size(0);
      f = f.view(shape);
    }
    out.push_back(t * f);
  }
  return out;
}

TaskStack stack_tasks(const std::vector<Task>& tasks, size_t begin, size_t end) {
  TORCH_CHECK(begin < end && end <= tasks.size(), "stack_tasks: bad range [", begin, ", ", end, ") of ",
              tasks.size(), " tasks");
  std::vector<at::Tensor> sx, sy, qx, qy;
  for (size_t i = begin; i < end; ++i) {
    sx.push_back(tasks[i].support_x), sy.push_back(tasks[i].support_y);
    qx.push_back(tasks[i].query_x), qy.push_back(tasks[i].query_y);
  }
  return {at::stack(sx), at::stack(sy), at::stack(qx), at::stack(qy), static_cast<int64_t>(begin)};
}

Weights per_task_weights(const Weights& w, int64_t tasks) {
  Weights out;
  for (const auto& t : w) {
    auto shape = t.sizes().vec();
    shape.insert(shape.begin(), tasks);
    out.push_back(t.unsqueeze(0).expand(shape));
  }
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

// [tasks] bools: every entry of task g's slice of every tensor is finite.
at::Tensor all_finite_per_task(const std::vector<at::Tensor>& ts) {
  at::AutoGradMode no_grad(false);
  std::vector<at::Tensor> each;
  for (const auto& t : ts) each.push_back(at::isfinite(t).reshape({t.size(0), -1}).all(1));
  return at::stack(each).all(0);
}

// The inner loop on support inputs x: ungrouped (x [n, T], fast weights as w) or grouped (x [tasks, n, T], fast
// weights with a leading tasks dim). Grouped, the loss differentiated is the sum of the tasks' losses, so that
// each task's slice of the gradient is its own loss's gradient.
Weights inner_loop(const ModelConfig& model, const MamlConfig& maml, const Weights& w, const at::Tensor& x,
                   const at::Tensor& y, InnerLoopTrace* trace) {
  const bool grouped = x.dim() == 3;
  const bool keep_graph = maml.mode == MamlMode::Full;
  const bool strict = maml.mode == MamlMode::FirstOrderStrict;
  Weights fast = grouped ? per_task_weights(w, x.size(0)) : w;
  if (strict) {
    for (auto& t : fast) t = t.detach().clone().requires_grad_();
  }
  const Weights start = fast;
  for (int64_t s = 0; s < maml.inner_steps; ++s) {
    const auto losses = task_loss(model, fast, x, y);
    if (trace) trace->support_loss_finite.push_back(at::isfinite(losses.detach()));
    at::Tensor objective = grouped ? losses.sum() : losses;
    if (maml.proximal > 0.0) {
      // Summed over the tasks too: each task's slice of its gradient is proximal * (its phi - its phi_0).
      for (size_t i = 0; i < fast.size(); ++i) {
        objective = objective + 0.5 * maml.proximal * (fast[i] - start[i]).pow(2).sum().to(objective.scalar_type());
      }
    }
    auto g = gradients(objective, fast, /*retain_graph=*/keep_graph,
                       /*create_graph=*/keep_graph && maml.inner_create_graph);
    if (!keep_graph) {
      for (auto& t : g) t = t.detach();
    }
    g = clip_by_global_norm(g, maml.inner_grad_clip, grouped);
    if (strict) {
      at::AutoGradMode no_grad(false);
      for (size_t i = 0; i < fast.size(); ++i) fast[i] = (fast[i] - maml.inner_lr * g[i]).detach().requires_grad_();
    } else {
      for (size_t i = 0; i < fast.size(); ++i) fast[i] = fast[i] - maml.inner_lr * g[i];
    }
    if (trace) trace->weights_finite.push_back(grouped ? all_finite_per_task(fast) : all_finite(fast));
  }
  return fast;
}

int64_t group_size(const MamlConfig& maml, size_t tasks) {
  return maml.task_group > 0 ? std::min<int64_t>(maml.task_group, static_cast<int64_t>(tasks))
                             : static_cast<int64_t>(tasks);
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
  return inner_loop(model, maml, w, task.support_x, task.support_y, trace);
}

Weights adapt(const ModelConfig& model, const MamlConfig& maml, const Weights& w, const TaskStack& tasks,
              InnerLoopTrace* trace) {
  return inner_loop(model, maml, w, tasks.support_x, tasks.support_y, trace);
}

Divergence first_divergence(const InnerLoopTrace& trace, const at::Tensor& query_loss, int64_t first_task,
                            std::vector<double>* values) {
  const auto steps = static_cast<int64_t>(trace.support_loss_finite.size());
  // Rows: support loss finite and weights finite per step, then the query losses; a column per task.
  std::vector<at::Tensor> rows;
  for (int64_t s = 0; s < steps; ++s) {
    rows.push_back(trace.support_loss_finite[s].to(at::kDouble).reshape(-1));
    rows.push_back(trace.weights_finite[s].to(at::kDouble).reshape(-1));
  }
  rows.push_back(query_loss.detach().to(at::kDouble).reshape(-1));
  const auto host = at::stack(rows).cpu().contiguous();
  const int64_t tasks = host.size(1);
  const auto v = host.accessor<double, 2>();
  values->assign(tasks, 0.0);
  Divergence first;
  for (int64_t g = 0; g < tasks; ++g) {
    (*values)[g] = v[2 * steps][g];
    if (first.found()) continue;
    Divergence d;
    d.task = first_task + g;
    d.inner_steps = steps;
    for (int64_t s = 0; s < steps && !d.found(); ++s) {
      d.inner_step = s + 1;
      if (v[2 * s][g] == 0.0) d.where = Divergence::Where::SupportLoss;
      else if (v[2 * s + 1][g] == 0.0) d.where = Divergence::Where::FastWeights;
    }
    d.inner_step = d.found() ? d.inner_step : steps;
    if (!d.found() && !std::isfinite((*values)[g])) d.where = Divergence::Where::QueryLoss;
    if (d.found()) first = d;
  }
  if (!first.found()) first.task = first_task, first.inner_steps = first.inner_step = steps;
  return first;
}

std::vector<std::string> attention_second_order_nodes(const at::Tensor& loss) {
  std::vector<std::string> out;
  for (const auto& name : inspect_graph(loss).second_order_node_names) {
    if (name == "theria::SdpaBwdBackward" || name == "SoftmaxBackwardDataBackward0") out.push_back(name);
  }
  return out;
}

GroupMetaGradient group_meta_gradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                      const TaskStack& stack, double weight, InnerLoopTrace* trace) {
  const bool strict = maml.mode == MamlMode::FirstOrderStrict;
  const Weights fast = adapt(model, maml, w, stack, trace);
  GroupMetaGradient out;
  out.losses = task_loss(model, fast, stack.query_x, stack.query_y);
  out.loss = out.losses.sum() * weight;
  // FO_STRICT: the query gradient at the adapted copies (leaves, one slice per task), applied to the initial
  // weights.
  out.grads = gradients(out.loss, strict ? fast : w, /*retain_graph=*/!strict, /*create_graph=*/false);
  for (auto& t : out.grads) t = strict ? t.sum(0).detach() : t.detach();
  return out;
}

MetaGradient meta_gradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                           const std::vector<Task>& tasks) {
  TORCH_CHECK(!tasks.empty(), "meta_gradient: no tasks");
  MetaGradient out;
  const double inv = 1.0 / static_cast<double>(tasks.size());
  const bool strict = maml.mode == MamlMode::FirstOrderStrict;
  const int64_t group = group_size(maml, tasks.size());
  for (size_t begin = 0; begin < tasks.size(); begin += group) {
    const auto stack = stack_tasks(tasks, begin, std::min(tasks.size(), begin + group));
    InnerLoopTrace trace;
    const auto g = group_meta_gradient(model, maml, w, stack, inv, &trace);
    std::vector<double> values;
    const auto d = first_divergence(trace, g.losses, stack.offset, &values);
    if (d.found() && !out.divergence.found()) out.divergence = d;
    if (!strict) out.loss_graph = g.loss;
    if (out.grads.empty()) {
      out.grads = g.grads;
    } else {
      for (size_t j = 0; j < g.grads.size(); ++j) out.grads[j] = out.grads[j] + g.grads[j];
    }
    for (const double v : values) out.query_loss += v * inv;
  }
  if (!out.divergence.found() && !all_finite(out.grads).item<bool>()) {
    out.divergence.where = Divergence::Where::MetaGradient;
    out.divergence.inner_steps = maml.inner_steps;
  }
  return out;
}

EvaluationSums evaluation_sums(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                const std::vector<Task>& tasks) {
  EvaluationSums e;
  e.tasks = static_cast<double>(tasks.size());
  const bool regression = model.target == TargetKind::Regression;
  MamlConfig no_meta_gradient = maml;
  no_meta_gradient.mode = MamlMode::FirstOrderStrict;
  // Per task of a stack: the share of argmax hits on its query set.
  const auto hits = [&](const Weights& weights, const TaskStack& s) {
    at::AutoGradMode no_grad(false);
    return forward(model, weights, s.query_x).argmax(-1).eq(s.query_y).to(at::kDouble).mean(1).sum().item<double>();
  };
  const int64_t group = group_size(maml, tasks.size());
  for (size_t begin = 0; begin < tasks.size(); begin += group) {
    const auto stack = stack_tasks(tasks, begin, std::min(tasks.size(), begin + group));
    const auto initial = per_task_weights(w, stack.size());
    {
      at::AutoGradMode no_grad(false);
      e.pre_loss += task_loss(model, initial, stack.query_x, stack.query_y).sum().item<double>();
      if (regression) e.variance += stack.query_y.to(at::kDouble).var(1, /*unbiased=*/false).sum().item<double>();
    }
    if (!regression) e.pre_hits += hits(initial, stack);
    InnerLoopTrace trace;
    const Weights fast = adapt(model, no_meta_gradient, w, stack, &trace);
    at::AutoGradMode no_grad(false);
    std::vector<double> losses;
    const auto d = first_divergence(trace, task_loss(model, fast, stack.query_x, stack.query_y), stack.offset, &losses);
    if (d.found() && !e.divergence.found()) e.divergence = d;
    for (const double l : losses) e.post_loss += l;
    if (!regression) e.post_hits += hits(fast, stack);
  }
  return e;
}

Evaluation evaluation_from(const EvaluationSums& sums, TargetKind target) {
  Evaluation e;
  const double inv = 1.0 / sums.tasks;
  e.pre_loss = sums.pre_loss * inv;
  e.post_loss = sums.post_loss * inv;
  e.divergence = sums.divergence;
  if (target == TargetKind::Regression) {
    // R^2 pooled over the tasks: one task's own R^2 is ill-conditioned where its targets hardly vary (a small
    // amplitude), and its mean over tasks would follow those tasks rather than the loss.
    e.pre_accuracy = 1.0 - sums.pre_loss / sums.variance;
    e.post_accuracy = 1.0 - sums.post_loss / sums.variance;
  } else {
    e.pre_accuracy = sums.pre_hits * inv;
    e.post_accuracy = sums.post_hits * inv;
  }
  if (e.divergence.found()) e.post_accuracy = e.post_loss = std::nan("");
  return e;
}

Evaluation evaluate(const ModelConfig& model, const MamlConfig& maml, const Weights& w, const std::vector<Task>& tasks) {
  return evaluation_from(evaluation_sums(model, maml, w, tasks), model.target);
}

}  // namespace theria::lab
