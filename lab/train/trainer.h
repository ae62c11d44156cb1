// Meta-training: Adam on the initial weights over meta-batches of tasks, with periodic evaluation on
// held-out tasks (a family with another seed) before and after the inner loop.
#pragma once

#include "meta/estimators.h"
#include "meta/maml.h"
#include "tasks/families.h"

#include <functional>
#include <optional>
#include <string>

namespace theria::lab {

// Where held-out tasks come from: the test split (the family with seed + 1) reports results; the validation split
// (seed + kValidationSeedOffset) chooses hyper-parameters, so that nothing is tuned on the tasks it is judged on.
enum class TaskSplit { Test, Validation };
constexpr uint64_t kValidationSeedOffset = 500000;

struct TrainConfig {
  ModelConfig model;
  TaskConfig tasks;
  MamlConfig maml;
  double meta_lr = 3e-3;
  int64_t meta_batch = 8;
  int64_t meta_steps = 300;
  int64_t eval_every = 25;
  int64_t eval_tasks = 32;
  TaskSplit eval_split = TaskSplit::Test;  // of the evaluations during and after meta-training
  uint64_t seed = 0;
  at::Device device = at::kCPU;
  at::ScalarType dtype = at::kFloat;
  // What a non-finite loss or meta-gradient does (docs/maml.md): false, meta-training stops there
  // (the weights stay the last finite ones); true, that meta-step is skipped (no update) and
  // training goes on. Either way the run records its first divergence.
  bool continue_on_divergence = false;
  // Empty: the meta-gradient is MAML's, as maml.mode says. Otherwise an estimator spec (lab/meta/estimators.h:
  // unrolled, first_order, truncated:K, implicit:..., neumann:...), maml.mode then unused; implicit and neumann
  // adapt on their proximal inner problem in the evaluations too (the inner loop they were meta-trained for).
  std::string estimator;
  // MAML's meta-gradient as a CUDA graph, captured at the first meta-step and replayed after
  // (meta/graphed_meta_gradient.h): the same numbers, without the launches the GPU waits on. CUDA, no estimator.
  bool cuda_graph = false;
};

// The inner loop of config's evaluations: maml, with the estimator's proximal term where it has one.
MamlConfig evaluation_inner_loop(const TrainConfig& config);

struct CurvePoint {
  int64_t step = 0;
  std::optional<double> meta_loss;  // mean query loss of the meta-batch, after adaptation; none at
                                     // step 0 (no meta-step yet) and for a meta-step that diverged
  Evaluation held_out;               // accuracy before and after the inner loop, on held-out tasks
};

// The first non-finite loss or gradient of a run, in meta-training or in a held-out evaluation.
struct RunDivergence {
  int64_t meta_step = -1;  // 0: the evaluation before training
  std::string phase;       // "meta-training" or "held-out evaluation"
  Divergence at;           // task and inner step
  bool found() const { return at.found(); }
  std::string describe() const;  // "meta-training diverged at meta-step 3: inner loop diverged at step 2 ..."
};

struct TrainResult {
  Weights initial, weights;
  std::vector<CurvePoint> curve;  // one point per evaluation
  Evaluation before, after;       // held-out tasks at step 0 and at the end
  RunDivergence divergence;       // the first one; none found: the run is sound
  int64_t applied_meta_steps = 0;  // meta-steps whose update was applied
  int64_t skipped_meta_steps = 0;  // continue_on_divergence: meta-steps that diverged and were skipped
  double seconds = 0.0;           // of every process of the run (a resumed run adds the earlier ones')
  int64_t resumed_at = -1;        // the meta-step of the checkpoint the run resumed from; -1: started afresh
};

// Held-out tasks of config.eval_split, the same for every run with the same config.
std::vector<Task> held_out_tasks(const TrainConfig& config, int64_t count);

class Communicator;

// How a run is carried out beyond its configuration (docs/distributed.md): the ranks that share every meta-batch,
// and checkpoints to resume from. None of it changes the result.
struct TrainRuntime {
  // The ranks of the run (null: this process alone). Each meta-batch and each held-out evaluation is split into
  // contiguous blocks of tasks, one per rank (block_of); each rank computes the sum of its tasks' meta-gradients,
  // one all-reduce per meta-step adds them, and every rank applies the same update: the union of the ranks' tasks is
  // the single-process run's, and so is the result (to rounding).
  const Communicator* comm = nullptr;
  // After every meta-step, a checksum all-reduce asserts that every rank holds the same weights (a debug mode).
  bool check_replicas = false;
  std::string checkpoint;        // the checkpoint file (train/checkpoint.h); empty: none
  int64_t checkpoint_every = 0;  // meta-steps between checkpoints (and one at the end); 0: only at the end
  bool resume = false;           // start from `checkpoint` where it exists
  std::string fingerprint;       // the configuration a checkpoint belongs to (a resume with another one is refused)
};

TrainResult meta_train(const TrainConfig& config, const std::function<void(const CurvePoint&)>& on_eval = {},
                       const TrainRuntime& runtime = {});

}  // namespace theria::lab
