#include "diagnostics/graphed_step.h"

#include "diagnostics/step_cost.h"
#include "meta/graphed_meta_gradient.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

namespace theria::lab {
namespace {

double max_rel_diff(const std::vector<at::Tensor>& x, const std::vector<at::Tensor>& ref) {
  double diff = 0.0, scale = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    diff = std::max(diff, (x[i].to(at::kDouble) - ref[i].to(at::kDouble)).abs().max().item<double>());
    scale = std::max(scale, ref[i].to(at::kDouble).abs().max().item<double>());
  }
  return scale > 0.0 ? diff / scale : diff;
}

}  // namespace

std::optional<GraphedStep> time_graphed_meta_step(const TrainConfig& t, const Weights& w,
                                                  const std::vector<Task>& tasks) {
  if (!t.device.is_cuda()) return std::nullopt;
  MamlConfig maml = t.maml;
  maml.mode = MamlMode::Full;
  maml.task_group = 0;
  GraphedMetaGradient graphed(t.model, maml, w);
  MetaGradient eager, eager_again, replayed;
  // Without their autograd graphs: a live graph holds the weights' gradient accumulators, which remember the stream
  // they were made on (this one), and the capture's backward would make that stream wait on the capturing one
  // (cudaErrorStreamCaptureImplicit).
  const auto eager_step = [&] {
    auto g = meta_gradient(t.model, maml, w, tasks);
    g.loss_graph.reset();
    return g;
  };
  GraphedStep out;
  out.eager_ms = time_step(t.device, [&] { eager = eager_step(); }).ms;
  eager_again = eager_step();
  out.graph_ms = time_step(t.device, [&] { replayed = graphed(tasks); }).ms;
  out.max_rel_diff = max_rel_diff(replayed.grads, eager.grads);
  out.eager_repeat_rel_diff = max_rel_diff(eager_again.grads, eager.grads);
  return out;
}

}  // namespace theria::lab
