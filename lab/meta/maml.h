// MAML over the lab's functional model (docs/maml.md):
//   FULL       inner steps keep their graph (create_graph): the meta-gradient has every second-order term;
//   FO         inner gradients are detached: the meta-gradient is the query-loss gradient at the adapted
//              weights, passed through the identity to the initial weights;
//   FO_STRICT  the inner loop runs with no graph at all on detached copies, and the query gradient at
//              the adapted weights is applied to the initial weights: equal to FO, with provably no
//              second-order path (the negative control).
#pragma once

#include "model/transformer.h"
#include "tasks/task_family.h"

#include <string>
#include <vector>

namespace theria::lab {

enum class MamlMode { Full, FirstOrder, FirstOrderStrict };
MamlMode parse_maml_mode(const std::string& name);  // "full", "fo", "fo_strict"
const char* maml_mode_name(MamlMode mode);

struct MamlConfig {
  MamlMode mode = MamlMode::Full;
  int64_t inner_steps = 2;
  double inner_lr = 0.2;
  double inner_grad_clip = 0.0;  // > 0: each inner gradient clipped to this global norm (every mode); 0: off
  // false reproduces a user's bug (lab/variants: no_create_graph): FULL takes its inner gradients without
  // create_graph, so they carry no graph and FULL silently computes FO's meta-gradient.
  bool inner_create_graph = true;
  // Tasks whose inner loops run together as one grouped pass (every weight with a leading tasks dim: what
  // torch.func.vmap over tasks does); 0: the whole meta-batch. Peak memory grows with it; 1 is task by task.
  int64_t task_group = 0;
  // > 0: the inner loss adds proximal/2 ||phi - phi_0||^2, phi_0 the weights the inner loop starts from
  // (implicit MAML's inner problem, Rajeswaran et al. 2019; lab/meta/estimators.h).
  double proximal = 0.0;
};

// Global-norm clipping as torch.nn.utils.clip_grad_norm_ does it: g * min(1, max_norm / (||g|| + 1e-6)),
// ||g|| over all tensors together. The factor is computed from g with g's graph, so under
// create_graph (FULL) the clipped step is differentiated exactly, the factor included (docs/maml.md).
// max_norm <= 0 returns g unchanged.
// grouped: every tensor has a leading tasks dim and each task's slice is clipped by its own norm.
std::vector<at::Tensor> clip_by_global_norm(const std::vector<at::Tensor>& g, double max_norm, bool grouped = false);

// Tasks [begin, end) stacked along a leading dim (a family's tasks all have the same shapes): x [tasks, n, T].
struct TaskStack {
  at::Tensor support_x, support_y, query_x, query_y;
  int64_t offset = 0;  // the index of the first task in its batch
  int64_t size() const { return support_x.size(0); }
};
TaskStack stack_tasks(const std::vector<Task>& tasks, size_t begin, size_t end);
// Each weight viewed with a leading tasks dim of `tasks` (no copy): the grouped model's initial fast weights.
Weights per_task_weights(const Weights& w, int64_t tasks);

// Where the losses or weights of a batch of tasks first became non-finite (NaN or infinite).
struct Divergence {
  enum class Where {
    None,
    SupportLoss,   // the support loss of inner step `inner_step` (before its update)
    FastWeights,   // the fast weights after the update of inner step `inner_step`
    QueryLoss,     // the query loss after the inner loop, every step finite
    MetaGradient,  // the meta-gradient, every loss finite
  };
  Where where = Where::None;
  int64_t task = -1;        // index of the task in its batch
  int64_t inner_step = 0;   // 1-based
  int64_t inner_steps = 0;  // length of the inner loop
  bool found() const { return where != Where::None; }
  // e.g. "inner loop diverged at step 8 of 8 (task 6): fast weights non-finite after the update"
  std::string describe() const;
};

// The loss of model.target: cross-entropy of the logits (Classes), or the mean squared error (Regression).
// Grouped (x [tasks, n, T], weights [tasks, ...]): one loss per task, [tasks].
at::Tensor task_loss(const ModelConfig& model, const Weights& w, const at::Tensor& x, const at::Tensor& y);

// d loss / d w, with zeros for the weights the loss does not reach (a model whose attention output is detached
// does not use its attention weights: lab/variants), as PyTorch's materialize_grads does.
std::vector<at::Tensor> gradients(const at::Tensor& loss, const Weights& w, bool retain_graph, bool create_graph);

// The finiteness checks of one inner loop, left on the device so that a group of tasks costs one sync
// (first_divergence reads them with the query loss).
struct InnerLoopTrace {
  std::vector<at::Tensor> support_loss_finite, weights_finite;  // per inner step: a 0-dim bool, or [tasks]
};

// Fast weights after maml.inner_steps steps on the support set, as maml.mode runs them: FULL keeps
// the graph of every step (create_graph), FO detaches the inner gradients, FO_STRICT runs on
// detached copies with no graph at all (the returned weights are fresh leaves).
Weights adapt(const ModelConfig& model, const MamlConfig& maml, const Weights& w, const Task& task,
              InnerLoopTrace* trace = nullptr);
// The same for a stack of tasks in one grouped pass: fast weights with a leading tasks dim.
Weights adapt(const ModelConfig& model, const MamlConfig& maml, const Weights& w, const TaskStack& tasks,
              InnerLoopTrace* trace = nullptr);

// The first non-finite check of the inner loops and query losses of tasks first_task, first_task + 1, ...
// (nothing found: where None); reads the trace and the query losses (0-dim or [tasks]) in one transfer and
// returns the query losses' values in *values.
Divergence first_divergence(const InnerLoopTrace& trace, const at::Tensor& query_loss, int64_t first_task,
                            std::vector<double>* values);

// The nodes of a meta-loss graph that differentiate attention's backward, by name (theria::inspect_graph):
// theria's double backward (theria::SdpaBwdBackward, backends explicit and fused) and the softmax's
// (SoftmaxBackwardDataBackward0, the reference backend's composition); distinct names, sorted.
std::vector<std::string> attention_second_order_nodes(const at::Tensor& loss);

struct MetaGradient {
  std::vector<at::Tensor> grads;  // d(mean query loss)/d(initial weights), one per weight
  double query_loss = 0.0;        // mean over tasks, after adaptation
  at::Tensor loss_graph;          // the last group's query loss with its graph (FULL / FO only)
  Divergence divergence;          // the first non-finite loss or gradient; grads and loss are unusable then
};

// One group of tasks' share of the meta-gradient, all on the device with no host synchronization (what a CUDA graph
// can capture): the adapted query losses per task, their sum times `weight` (with its graph), and its gradient with
// respect to `w` (detached). meta_gradient checks `trace` and `losses` for divergence after it.
struct GroupMetaGradient {
  at::Tensor losses, loss;
  std::vector<at::Tensor> grads;
};
GroupMetaGradient group_meta_gradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                      const TaskStack& stack, double weight, InnerLoopTrace* trace = nullptr);

// The meta-gradient of the mean query loss over `tasks` under `maml`; `w` are leaves requiring grad.
MetaGradient meta_gradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                           const std::vector<Task>& tasks);

// Mean query accuracy and loss over tasks before and after the inner loop (no meta-gradient). Regression: the
// "accuracy" is R^2 pooled over the tasks, 1 - (mean query MSE) / (mean variance of the query targets). A task whose inner loop diverges has no post-adaptation result: post_* are NaN and
// `divergence` says where (the argmax of NaN logits is class 0, an accuracy that means nothing).
struct Evaluation {
  double pre_accuracy = 0.0, post_accuracy = 0.0, post_loss = 0.0;
  Divergence divergence;
  double pre_loss = 0.0;  // the query loss without adaptation
};
Evaluation evaluate(const ModelConfig& model, const MamlConfig& maml, const Weights& w, const std::vector<Task>& tasks);

// What evaluate() computes, as sums over the tasks, which add across sets of tasks (the ranks of a distributed run,
// lab/distributed); evaluation_from turns them into the Evaluation of the union.
struct EvaluationSums {
  double tasks = 0.0, pre_hits = 0.0, post_hits = 0.0, pre_loss = 0.0, post_loss = 0.0;
  double variance = 0.0;  // regression: the query targets' variance, summed over the tasks
  Divergence divergence;  // the first one, task indices within `tasks`
};
EvaluationSums evaluation_sums(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                               const std::vector<Task>& tasks);
Evaluation evaluation_from(const EvaluationSums& sums, TargetKind target);

}  // namespace theria::lab
