// MAML's meta-gradient (meta_gradient) with its device work captured once as a CUDA graph and replayed after
// (issue 18, item 2): the inner loop, the query losses and their gradient are hundreds of small kernels whose launches
// the GPU would otherwise wait on (docs/performance.md, "The lab's GPU meta-step"). Shapes must stay fixed (the same
// model and number of tasks every call); the weights are read where they lie, so they must be updated in place
// between calls (the trainer's Adam does), and each call's tasks are copied into the graph's input buffers. The
// divergence checks run after each replay on the graph's outputs, as meta_gradient's do on its own. At the first call
// no autograd graph made on another stream may still hold the weights (a MetaGradient's loss_graph, say): its
// gradient accumulators would tie that stream to the capture, which CUDA refuses (cudaErrorStreamCaptureImplicit).
#pragma once

#include "meta/maml.h"

#include <memory>
#include <vector>

namespace theria::lab {

class GraphedMetaGradient {
 public:
  // `w`: the leaves the meta-gradient is taken with respect to, on a CUDA device. `maml.task_group` is ignored: the
  // whole meta-batch is one capture.
  GraphedMetaGradient(const ModelConfig& model, const MamlConfig& maml, const Weights& w);
  ~GraphedMetaGradient();
  GraphedMetaGradient(const GraphedMetaGradient&) = delete;
  GraphedMetaGradient& operator=(const GraphedMetaGradient&) = delete;

  // The first call captures (after warm-up calls on the capture stream); every call replays. The result's grads are
  // copies (the graph overwrites its outputs on the next replay); loss_graph is left empty (no autograd graph
  // survives a replay).
  MetaGradient operator()(const std::vector<Task>& tasks);

 private:
  struct Captured;
  ModelConfig model_;
  MamlConfig maml_;
  Weights w_;
  std::unique_ptr<Captured> captured_;
};

}  // namespace theria::lab
