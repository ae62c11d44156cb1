// Diagnostics of the meta-gradient (docs/maml.md): whether the meta-loss graph differentiates a backward
// (the second-order path), and how far the FULL meta-gradient is from the first-order one.
#pragma once

#include "meta/maml.h"

#include <string>
#include <vector>

namespace theria::lab {

// Diagnostics of one meta-batch.
struct SecondOrderPath {
  bool reaches_backward_nodes = false;  // the meta-loss graph contains a derivative of a backward
  std::vector<std::string> nodes;        // the names of those nodes (distinct)
  double second_order_norm = 0.0;        // ||g_FULL - g_FO||: the size of the second-order part
  Divergence divergence;                 // of the FULL or FO run; second_order_norm is NaN then
};
// Runs `maml` once and reuses it for the norm: a FULL run is not repeated, nor an FO one.
SecondOrderPath second_order_path(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                  const std::vector<Task>& tasks);

double flat_norm(const std::vector<at::Tensor>& g);
double flat_distance(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b);
// <a, b> / (||a|| ||b||) over all parts, in float64 (NaN when either is zero).
double flat_cosine(const std::vector<at::Tensor>& a, const std::vector<at::Tensor>& b);

// ||g_FULL - g_FO|| / ||g_FULL|| for each inner-step count; NaN with the divergence that made it so
// when a loss or gradient was non-finite (a diverging inner loop, docs/maml.md).
struct RelDiff {
  int64_t inner_steps = 0;
  double value = 0.0;   // ||g_FULL - g_FO|| / ||g_FULL||: above 1 when g_FO points partly against g_FULL
  double cosine = 0.0;  // cos(g_FULL, g_FO): the direction alone
  Divergence divergence;  // of the FULL run, else of the FO run
};
std::vector<RelDiff> rel_diff_full_vs_fo(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                         const std::vector<Task>& tasks, const std::vector<int64_t>& inner_steps);

// theria's detector (include/theria/meta_check.h) run on the lab's own meta-loss, as a user would run it on
// theirs: the graph walk of the meta-loss, and the directional check of its meta-gradient against central
// differences, in float64 on the weights' device with 4 directions. flagged: either one complains.
struct Detection {
  std::vector<std::string> graph_warnings;
  double numerical_relative_error = 0.0;
  bool numerical_passed = false;
  bool flagged() const { return !graph_warnings.empty() || !numerical_passed; }
};
Detection detect(const ModelConfig& model, const MamlConfig& maml, const Weights& w, const std::vector<Task>& tasks);

// How far a meta-gradient is from a reference one, over all weights together, in float64.
struct GradientError {
  double rel_l2 = 0.0;  // ||g - ref|| / ||ref||
  double cosine = 0.0;  // cos(g, ref)
};
GradientError gradient_error(const std::vector<at::Tensor>& g, const std::vector<at::Tensor>& ref);

// A problem moved to the oracles' setting: float64 on the CPU, exact attention through the reference backend
// (the model's attention variant dropped), the weights rounded to their dtype first, as fresh leaves.
struct Float64Problem {
  ModelConfig model;
  Weights w;
  std::vector<Task> tasks;
};
// On another device or backend: the same float64 problem, e.g. on the GPU through the fused kernels' float64 path,
// which holds no L x S buffer (oracles at long sequences).
Float64Problem float64_reference(const ModelConfig& model, const Weights& w, const std::vector<Task>& tasks,
                                 const at::Device& device = at::kCPU, Backend backend = Backend::Reference);

// The oracle of the taxonomy: the exact FULL meta-gradient (theria::sdpa, reference backend, inner gradients
// with create_graph) in float64 on the CPU, at `w` rounded to the run's dtype and moved to the CPU, on the
// same tasks. `model` and `maml` give the shapes, inner steps and inner lr; their variant and mode are not used.
MetaGradient oracle_meta_gradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                  const std::vector<Task>& tasks, const at::Device& device = at::kCPU,
                                  Backend backend = Backend::Reference);

// The share of the meta-gradient that comes through attention's second derivative:
// ||g - g1|| / ||g||, with g the meta-gradient of (model, maml) and g1 the same with the model's attention
// wrapped in first_order_only (lab/variants): only attention's double backward differs between the two.
// 0 for FO and FO_STRICT, whatever the attention; NaN (with the divergence) when either run diverged.
struct AttentionSecondOrder {
  double share = 0.0;
  Divergence divergence;
};
AttentionSecondOrder attention_second_order_share(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                                  const std::vector<Task>& tasks);
// The same with g, the meta-gradient of (model, maml) on (w, tasks), already computed by the caller.
AttentionSecondOrder attention_second_order_share(const ModelConfig& model, const MamlConfig& maml, const Weights& w,
                                                  const std::vector<Task>& tasks, const MetaGradient& g);

}  // namespace theria::lab
