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

}  // namespace theria::lab
