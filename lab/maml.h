// MAML over the lab's functional model (docs/maml.md):
//   FULL       inner steps keep their graph (create_graph): the meta-gradient has every second-order term;
//   FO         inner gradients are detached: the meta-gradient is the query-loss gradient at the adapted
//              weights, passed through the identity to the initial weights;
//   FO_STRICT  the inner loop runs with no graph at all on detached copies, and the query gradient at
//              the adapted weights is applied to the initial weights: equal to FO, with provably no
//              second-order path (the negative control).
#pragma once

#include "model.h"
#include "task_family.h"

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
};

at::Tensor task_loss(const ModelConfig& model, const Weights& w, const at::Tensor& x, const at::Tensor& y);
double accuracy(const ModelConfig& model, const Weights& w, const at::Tensor& x, const at::Tensor& y);

// Fast weights after the inner loop on the support set. keep_graph: FULL (true) or FO (false).
Weights adapt(const ModelConfig& model, const Weights& w, const Task& task, int64_t steps, double lr,
              bool keep_graph);

struct MetaGradient {
  std::vector<at::Tensor> grads;  // d(mean query loss)/d(initial weights), one per weight
  double query_loss = 0.0;        // mean over tasks, after adaptation
  at::Tensor loss_graph;          // the last task's query loss with its graph (FULL / FO only)
};

// The meta-gradient of the mean query loss over `tasks` under `maml`; `w` are leaves requiring grad.
MetaGradient meta_gradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                           const std::vector<Task>& tasks);

// Diagnostics of one meta-batch.
struct SecondOrderPath {
  bool reaches_backward_nodes = false;  // the meta-loss graph contains a derivative of a backward
  std::vector<std::string> nodes;        // the names of those nodes (distinct)
  double second_order_norm = 0.0;        // ||g_FULL - g_FO||: the size of the second-order part
};
SecondOrderPath second_order_path(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                  const std::vector<Task>& tasks);

double flat_norm(const std::vector<at::Tensor>& g);
double flat_distance(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b);

// ||g_FULL - g_FO|| / ||g_FULL|| for each inner-step count.
std::vector<double> rel_diff_full_vs_fo(const ModelConfig& model, double inner_lr, const Weights& w,
                                        const std::vector<Task>& tasks, const std::vector<int64_t>& inner_steps);

// Mean query accuracy over tasks before and after the inner loop (no meta-gradient).
struct Evaluation {
  double pre_accuracy = 0.0, post_accuracy = 0.0, post_loss = 0.0;
};
Evaluation evaluate(const ModelConfig& model, const MamlConfig& maml, const Weights& w, const std::vector<Task>& tasks);

}  // namespace theria::lab
