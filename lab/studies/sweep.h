// Signal -> behaviour (docs/sweep.md): meta-training over inner depth x MAML mode x backend x seed, the inner
// learning rate of every (depth, mode) chosen on validation tasks first (never on the test tasks), then held-out
// accuracy, convergence and cost per cell, and the FULL - FO gap paired by seed. The regime statements come from
// the rules of studies/sweep_rules.h.
#pragma once

#include "diagnostics/step_cost.h"
#include "output/json_file.h"
#include "output/resume.h"
#include "stats/confidence.h"
#include "train/trainer.h"

#include <filesystem>
#include <string>
#include <vector>

namespace theria::lab {

struct SweepConfig {
  TrainConfig train;  // model, task family, budget, device, dtype; its inner steps, mode, lr and backend are swept
  std::vector<int64_t> inner_steps{1, 5, 10, 20};
  std::vector<MamlMode> modes{MamlMode::Full, MamlMode::FirstOrder, MamlMode::FirstOrderStrict};
  std::vector<Backend> backends{Backend::Reference, Backend::Explicit};
  int64_t seeds = 5;
  // The inner-lr search: every candidate meta-trained for search_meta_steps on search_seeds seeds of their own
  // (1000 + i, never a study seed) and scored on validation tasks (the family's validation split).
  std::vector<double> lr_grid{0.4, 0.2, 0.1, 0.05, 0.025, 0.0125};
  int64_t search_meta_steps = 100;
  int64_t search_seeds = 2;
};

// Held-out accuracy along one meta-training run (the curve's post-adaptation points, the test split).
struct CurveMetrics {
  double final_accuracy = 0.0;    // at the last evaluation; NaN if the run diverged
  double steps_to_90 = 0.0;       // first evaluated meta-step 90 % of the way from the first accuracy to the final
                                  // one; NaN when the run gained nothing (or diverged)
  double area_under_curve = 0.0;  // trapezoid of accuracy over meta-steps, divided by the meta-steps: in [0, 1]
};
CurveMetrics curve_metrics(const std::vector<CurvePoint>& curve);

// The chosen inner lr of one (depth, mode): the candidate with the best mean validation accuracy.
struct LrChoice {
  int64_t inner_steps = 0;
  MamlMode mode = MamlMode::Full;
  double lr = 0.0;
  std::vector<double> candidates, validation_accuracy;  // per candidate; NaN where every search run diverged
};

struct SweepCell {
  int64_t inner_steps = 0;
  MamlMode mode = MamlMode::Full;
  Backend backend = Backend::Reference;
  uint64_t seed = 0;
  double inner_lr = 0.0;
  CurveMetrics metrics;
  std::vector<double> curve_steps, curve_accuracy;  // the held-out post-adaptation curve
  std::string status = "ok";                         // or the divergence
  double seconds = 0.0;
};

struct SweepCost {
  int64_t inner_steps = 0;
  MamlMode mode = MamlMode::Full;
  Backend backend = Backend::Reference;
  StepCost cost;
};

struct SweepRaw {
  std::vector<LrChoice> lr;
  std::vector<SweepCell> cells;
  std::vector<SweepCost> costs;
};

// Sharded (output/resume.h), a run computes its share of the lr search and of the cells and returns without the
// costs; the unsharded run after the shards reads their parts, measures the costs alone and has every result. With
// comm (the ranks of a torchrun launch) the ranks share the search and the cells, rank 0 times the costs, and every
// rank returns every result.
SweepRaw run_sweep(const SweepConfig& config, const std::filesystem::path& parts_dir, Shard shard = {},
                   const Communicator* comm = nullptr);
Json sweep_config_json(const SweepConfig& config);
// The fingerprint of the lr-search parts: the configuration less what a search run does not depend on.
Json sweep_search_fingerprint(const SweepConfig& config);

}  // namespace theria::lab
