// The inner learning rate chosen on validation tasks, never on the tasks a study reports (docs/sweep.md, "Design"):
// each candidate is meta-trained on the validation split with its own search seeds; the candidate with the best mean
// held-out accuracy wins, and a candidate where any search run diverged is never chosen (it sits at the edge of
// stability). Shared by the sweep and the estimator comparison's meta-training.
#pragma once

#include "train/trainer.h"

#include <cstdint>
#include <vector>

namespace theria::lab {

// The search runs' seeds: never a study seed.
constexpr uint64_t kSearchSeedBase = 1000;

// The score of a run: held-out post-adaptation accuracy at its end (NaN if it diverged).
double final_score(const TrainResult& r);

// `config` as one validation run of candidate lr with search seed k.
TrainConfig search_run(TrainConfig config, double lr, int64_t k, int64_t meta_steps);

struct LrSearchResult {
  double lr = 0.0;                          // NaN when every candidate diverged in some run
  std::vector<double> validation_accuracy;  // per candidate: the mean over its runs, NaN where any run diverged
};
// scores[i]: the search runs' scores of candidate grid[i].
LrSearchResult choose_inner_lr(const std::vector<double>& grid, const std::vector<std::vector<double>>& scores);

}  // namespace theria::lab
