// The failure taxonomy (docs/taxonomy.md): every attention variant (lab/variants) in every MAML mode, over
// seeds: whether second-order signal reaches the meta-parameters through attention, how far the meta-gradient
// is from the exact one (float64 oracle), FULL vs FO, the cost of a meta-step, and what meta-training then
// learns. The verdicts come from the rules of studies/taxonomy_rules.h, never from this file.
#pragma once

#include "diagnostics/second_order.h"
#include "diagnostics/step_cost.h"
#include "output/json_file.h"
#include "stats/confidence.h"
#include "train/trainer.h"
#include "variants/attention_variants.h"

#include <filesystem>
#include <string>
#include <vector>

namespace theria::lab {

struct TaxonomyConfig {
  TrainConfig train;                        // model, tasks, MAML (inner steps, lr), budget, device, dtype
  std::vector<std::string> variants;        // names (lab/variants); every variant when empty
  std::vector<MamlMode> modes{MamlMode::Full, MamlMode::FirstOrder, MamlMode::FirstOrderStrict};
  std::vector<int64_t> rel_diff_steps{1, 5, 10, 20};
  double rel_diff_inner_lr = 0.05;          // for the inner-depth curve: train.maml's lr diverges at depth
  int64_t seeds = 3;                        // seeds 0 .. seeds-1: init, task streams; paired across arms
  int64_t diagnostic_tasks = 8;             // the meta-batch of the diagnostics
  bool train_every_mode = true;             // false (--quick): FO and FO_STRICT are trained for exact only
};

// One variant in one mode with one seed: diagnostics at the seed's initial weights, and the meta-training run.
struct TaxonomyCell {
  std::string variant;
  MamlMode mode = MamlMode::Full;
  uint64_t seed = 0;
  double second_order_share = 0.0;  // attention_second_order_share; NaN if diverged
  double error_rel_l2 = 0.0;        // meta-gradient vs the exact FULL float64 oracle
  double error_cosine = 0.0;
  std::vector<std::string> graph_nodes;  // attention double-backward nodes in the meta-loss graph
  std::string diagnostic_status = "ok";  // or the divergence
  // theria's detector on this arm's meta-loss (diagnostics: detect).
  bool detector_flagged = false;
  std::vector<std::string> detector_graph_warnings;
  double detector_numerical_error = 0.0;
  bool trained = false;
  double pre_accuracy = 0.0, post_accuracy = 0.0;  // held-out, after meta-training; NaN if diverged
  std::string train_status = "ok";
  double train_seconds = 0.0;
};

// What one meta-training run left: held-out accuracy after it, before and after the inner loop.
struct TaxonomyTraining {
  double pre_accuracy = 0.0, post_accuracy = 0.0;  // NaN when the run diverged
  std::string status = "ok";                       // or the divergence
  double seconds = 0.0;
};

// FULL vs FO along the inner depth, one variant and seed.
struct TaxonomyRelDiff {
  std::string variant;
  uint64_t seed = 0;
  std::vector<RelDiff> points;
};

struct TaxonomyCost {
  std::string variant;
  StepCost full, fo;
};

struct TaxonomyRaw {
  std::vector<TaxonomyCell> cells;
  std::vector<TaxonomyRelDiff> rel_diff;
  std::vector<TaxonomyCost> costs;
};

// Runs every unit, reading back the ones a previous run with the same configuration left in parts_dir.
TaxonomyRaw run_taxonomy(const TaxonomyConfig& config, const std::filesystem::path& parts_dir);

// The configuration as the files record it (also the fingerprint of the resumable parts).
Json taxonomy_config_json(const TaxonomyConfig& config);

}  // namespace theria::lab
