#include "meta/graphed_meta_gradient.h"

#include <ATen/ATen.h>
#include <ATen/core/grad_mode.h>

#ifdef THERIA_WITH_FUSED
#include <ATen/cuda/CUDAContext.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#endif

namespace theria::lab {

#ifdef THERIA_WITH_FUSED
// The graph with its input buffers (the stacked tasks) and outputs (the losses, the inner loop's finiteness trace,
// the meta-gradient), all in the graph's memory pool.
struct GraphedMetaGradient::Captured {
  at::cuda::CUDAGraph graph;
  TaskStack inputs;
  InnerLoopTrace trace;
  GroupMetaGradient outputs;
};
#else
struct GraphedMetaGradient::Captured {};
#endif

GraphedMetaGradient::GraphedMetaGradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w)
    : model_(model), maml_(maml), w_(w) {
  TORCH_CHECK(!w.empty() && w.front().is_cuda(), "GraphedMetaGradient: CUDA graphs need the weights on a CUDA device");
  maml_.task_group = 0;
}

GraphedMetaGradient::~GraphedMetaGradient() = default;

MetaGradient GraphedMetaGradient::operator()(const std::vector<Task>& tasks) {
  TORCH_CHECK(!tasks.empty(), "GraphedMetaGradient: no tasks");
  const auto stack = stack_tasks(tasks, 0, tasks.size());
#ifdef THERIA_WITH_FUSED
  const double weight = 1.0 / static_cast<double>(tasks.size());
  if (!captured_) {
    captured_ = std::make_unique<Captured>();
    auto& c = *captured_;
    c.inputs = {stack.support_x.clone(), stack.support_y.clone(), stack.query_x.clone(), stack.query_y.clone(), 0};
    // Capture on a side stream (CUDA captures no work of the legacy default stream), after warm-up calls there, so
    // that the allocator's blocks and the libraries' handles exist before the capture (as torch.cuda.graph asks).
    const auto caller = at::cuda::getCurrentCUDAStream();
    const auto side = at::cuda::getStreamFromPool();
    caller.synchronize();
    const c10::cuda::CUDAStreamGuard on_side(side);
    for (int i = 0; i < 2; ++i) group_meta_gradient(model_, maml_, w_, c.inputs, weight);
    side.synchronize();
    c.graph.capture_begin();
    c.outputs = group_meta_gradient(model_, maml_, w_, c.inputs, weight, &c.trace);
    c.graph.capture_end();
    side.synchronize();
  }
  auto& c = *captured_;
  TORCH_CHECK(stack.support_x.sizes() == c.inputs.support_x.sizes() &&
                  stack.query_x.sizes() == c.inputs.query_x.sizes(),
              "GraphedMetaGradient: the tasks' shapes changed since the capture (", stack.support_x.sizes(), " vs ",
              c.inputs.support_x.sizes(), "): a graph replays fixed shapes");
  {
    at::AutoGradMode no_grad(false);
    c.inputs.support_x.copy_(stack.support_x);
    c.inputs.support_y.copy_(stack.support_y);
    c.inputs.query_x.copy_(stack.query_x);
    c.inputs.query_y.copy_(stack.query_y);
  }
  c.graph.replay();
  MetaGradient out;
  std::vector<double> values;
  out.divergence = first_divergence(c.trace, c.outputs.losses, 0, &values);
  for (const double v : values) out.query_loss += v * weight;
  std::vector<at::Tensor> finite;
  for (const auto& g : c.outputs.grads) {
    out.grads.push_back(g.clone());
    finite.push_back(at::isfinite(g).all());
  }
  if (!out.divergence.found() && !at::stack(finite).all().item<bool>()) {
    out.divergence.where = Divergence::Where::MetaGradient;
    out.divergence.inner_steps = maml_.inner_steps;
  }
  return out;
#else
  (void)stack;
  TORCH_CHECK(false, "GraphedMetaGradient: this build has no CUDA");
#endif
}

}  // namespace theria::lab
