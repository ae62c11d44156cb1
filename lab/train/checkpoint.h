// A meta-training run's checkpoint (docs/distributed.md, "Checkpoints"): everything that the rest of the run depends
// on, so that a run restarted from it ends where the uninterrupted run ends — the weights, Adam's moments and step
// count, the meta-step, the position in the task stream (the lab's randomness: every task is drawn from a generator
// seeded by its index, lab/tasks), torch's default CPU generator state, and the results so far (curve, divergence,
// counters). One file, written beside its final name and renamed into place (a checkpoint on disk is always whole),
// in torch.save's format: torch.load reads it in Python.
#pragma once

#include "train/adam.h"
#include "train/trainer.h"

#include <optional>
#include <string>

namespace theria::lab {

struct TrainCheckpoint {
  std::string fingerprint;  // the run's configuration: a checkpoint of another one is refused
  int64_t step = 0;         // meta-steps done
  uint64_t next_task = 0;   // index of the next training task
  Weights weights;
  Adam adam;
  TrainResult so_far;  // curve, before/after, divergence, counters and seconds up to `step` (weights unused)
};

void save_checkpoint(const std::string& path, const TrainCheckpoint& c);
// The checkpoint at `path`, or nothing when there is no file; an error when it belongs to another configuration
// (fingerprint) or does not parse. Tensors come back on `options`' device and dtype.
std::optional<TrainCheckpoint> load_checkpoint(const std::string& path, const std::string& fingerprint,
                                               const at::TensorOptions& options);

// The weights alone of the checkpoint at `path` (any configuration; the caller checks that they fit its model): a
// study run at meta-trained weights (theria study metagrad --init-weights).
Weights load_checkpoint_weights(const std::string& path, const at::TensorOptions& options);

}  // namespace theria::lab
