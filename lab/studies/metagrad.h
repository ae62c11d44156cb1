// Unrolled vs truncated vs implicit meta-gradients (docs/metagrad.md): for each estimator spec and inner depth, on
// each seed's initial weights, the error and cosine of the meta-gradient against two float64 oracles (the exact
// implicit meta-gradient, CG to a tight tolerance on the reference backend; and the exact unrolled one), the
// linear solves' residuals, and the time and peak memory of one meta-step as the depth grows (a step that runs out
// of memory says so); then held-out accuracy after meta-training with each estimator, over seeds, paired against
// the first one (unrolled by default).
#pragma once

#include "diagnostics/second_order.h"
#include "diagnostics/step_cost.h"
#include "meta/estimators.h"
#include "output/json_file.h"
#include "train/trainer.h"

#include <filesystem>
#include <string>
#include <vector>

namespace theria::lab {

struct MetagradConfig {
  TrainConfig train;  // model, tasks, inner lr, backend, device, dtype
  std::vector<std::string> estimators{"unrolled", "first_order", "truncated:5", "implicit:lambda=2,cg=5",
                                      "neumann:5,lambda=2"};
  std::vector<int64_t> inner_steps{1, 5, 10, 25, 50, 100};
  int64_t seeds = 3;
  int64_t diagnostic_tasks = 4;
  double oracle_tolerance = 1e-12;  // CG of the implicit oracle, float64
  int64_t oracle_cg_iterations = 1000;
  bool oracle = true;  // false: no float64 oracle (long sequences on the GPU: the cost of a meta-step only)
  // Where the float64 oracles run: the CPU with the reference backend, or a GPU with the fused backend's float64
  // kernels (exact float64 arithmetic, no L x S buffer; `theria verify` checks them against the reference), for
  // sequences whose float64 oracles the CPU cannot compute in time.
  at::Device oracle_device = at::kCPU;
  // Empty: every seed's cells start from that seed's initial weights. A path: from the weights of a `theria maml`
  // checkpoint (meta-trained weights, where the support Hessian differs from the initialisation's), for every seed
  // (the seeds then vary the tasks only). The meta-training runs start from their seeds as always.
  std::string init_weights;
  // Meta-training with each estimator (train_seeds 0: none), train.meta_steps steps at train_inner_steps.
  std::vector<std::string> train_estimators{"unrolled", "first_order", "truncated:5", "implicit:lambda=2,cg=5"};
  int64_t train_inner_steps = 10;
  int64_t train_seeds = 3;
  // Empty: every estimator meta-trains at train.maml.inner_lr. Otherwise each estimator's inner lr is chosen from this
  // grid on validation tasks (train/lr_search.h: train_search_seeds runs of train_search_meta_steps per candidate).
  std::vector<double> train_lr_grid;
  int64_t train_search_seeds = 1;
  int64_t train_search_meta_steps = 100;
};

// An estimator's inner lr for meta-training, as chosen on validation tasks.
struct MetagradLrChoice {
  std::string estimator;
  double lr = 0.0;  // NaN: every candidate diverged in some search run (the estimator is then not meta-trained)
  std::vector<double> candidates, validation_accuracy;
};

struct MetagradCell {
  std::string estimator;
  int64_t inner_steps = 0;
  uint64_t seed = 0;
  GradientError vs_implicit, vs_unrolled;  // NaN when either side diverged
  double max_residual = 0.0;               // implicit / neumann: the largest relative residual of its solves
  bool solves_converged = true;
  double ms = std::nan(""), peak_mib = std::nan("");  // seed 0 only
  std::string memory_kind;
  std::vector<std::string> hvp_attention_nodes;  // implicit / neumann: what the Hessian-vector products go through
  std::string status = "ok";
};

// One meta-training run with one estimator, scored on the test split.
struct MetagradTraining {
  std::string estimator;
  uint64_t seed = 0;
  double pre_accuracy = std::nan(""), post_accuracy = std::nan("");  // held-out, at the end; NaN if it diverged
  std::vector<double> curve_steps, curve_accuracy;
  std::string status = "ok";
  double seconds = 0.0;
  double inner_lr = 0.0;
};

struct MetagradRaw {
  std::vector<MetagradCell> cells;
  std::vector<MetagradLrChoice> lr_choice;  // empty without a train_lr_grid
  std::vector<MetagradTraining> training;
};

MetagradRaw run_metagrad(const MetagradConfig& config, const std::filesystem::path& parts_dir);
Json metagrad_config_json(const MetagradConfig& config);

}  // namespace theria::lab
