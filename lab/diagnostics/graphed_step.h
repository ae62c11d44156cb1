// The FULL meta-gradient eager (meta_gradient) and as a CUDA graph (GraphedMetaGradient, meta/graphed_meta_gradient.h)
// side by side, each a whole meta-step's gradient with its divergence checks: their times and how far apart their
// results are (issue 18, item 2).
#pragma once

#include "train/trainer.h"

#include <optional>
#include <string>

namespace theria::lab {

struct GraphedStep {
  double eager_ms = 0.0;  // meta_gradient, median of 3 after a warm-up
  double graph_ms = 0.0;  // GraphedMetaGradient: the tasks' copy, one replay, the checks; median of 3 after the capture
                          // (the warm-up call captures)
  double max_rel_diff = 0.0;  // max |g_graph - g_eager| / max |g_eager| over the weights
  // The same between two eager calls: the run-to-run noise (fp32 atomics of dQ in the fused backward, unless
  // deterministic algorithms are on) that max_rel_diff is to be read against.
  double eager_repeat_rel_diff = 0.0;
};

// None on a CPU device. Errors (a capture refused by CUDA or by an op) propagate with their message.
std::optional<GraphedStep> time_graphed_meta_step(const TrainConfig& t, const Weights& w,
                                                  const std::vector<Task>& tasks);

}  // namespace theria::lab
