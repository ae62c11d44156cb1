// Meta-training: Adam on the initial weights over meta-batches of tasks, with periodic evaluation on
// held-out tasks (a family with another seed) before and after the inner loop.
#pragma once

#include "maml.h"

#include <functional>

namespace theria::lab {

struct TrainConfig {
  ModelConfig model;
  TaskConfig tasks;
  MamlConfig maml;
  double meta_lr = 3e-3;
  int64_t meta_batch = 8;
  int64_t meta_steps = 300;
  int64_t eval_every = 25;
  int64_t eval_tasks = 32;
  uint64_t seed = 0;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
};

struct CurvePoint {
  int64_t step = 0;
  double meta_loss = 0.0;      // mean query loss of the meta-batch, after adaptation
  double pre_accuracy = 0.0;   // held-out tasks, before the inner loop
  double post_accuracy = 0.0;  // held-out tasks, after it
};

struct TrainResult {
  Weights initial, weights;
  std::vector<CurvePoint> curve;  // one point per evaluation
  Evaluation before, after;       // held-out tasks at step 0 and at the end
  double seconds = 0.0;
};

// Held-out tasks, the same for every run with the same config (family seed + 1).
std::vector<Task> held_out_tasks(const TrainConfig& config, int64_t count);

TrainResult meta_train(const TrainConfig& config, const std::function<void(const CurvePoint&)>& on_eval = {});

}  // namespace theria::lab
