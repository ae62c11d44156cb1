#include "diagnostics/graphed_step.h"

#include "meta/graphed_meta_gradient.h"

#include <ATen/ATen.h>

#ifdef THERIA_WITH_FUSED
#include <ATen/cuda/CUDAContext.h>
#endif

#include <algorithm>
#include <chrono>
#include <functional>
#include <vector>

namespace theria::lab {
namespace {

// Median of 3 timed calls of `run` (each followed by a synchronize of the current stream), after one untimed call.
double median_ms(const std::function<void()>& run) {
  std::vector<double> ms;
  for (int i = 0; i < 4; ++i) {
    const auto start = std::chrono::steady_clock::now();
    run();
#ifdef THERIA_WITH_FUSED
    at::cuda::getCurrentCUDAStream().synchronize();
#endif
    if (i > 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[1];
}

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
  out.eager_ms = median_ms([&] { eager = eager_step(); });
  eager_again = eager_step();
  out.graph_ms = median_ms([&] { replayed = graphed(tasks); });
  out.max_rel_diff = max_rel_diff(replayed.grads, eager.grads);
  out.eager_repeat_rel_diff = max_rel_diff(eager_again.grads, eager.grads);
  return out;
}

}  // namespace theria::lab
