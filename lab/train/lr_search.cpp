#include "train/lr_search.h"

#include "stats/confidence.h"

#include <algorithm>
#include <cmath>

namespace theria::lab {

double final_score(const TrainResult& r) { return r.divergence.found() ? std::nan("") : r.after.post_accuracy; }

TrainConfig search_run(TrainConfig t, double lr, int64_t k, int64_t meta_steps) {
  t.maml.inner_lr = lr;
  t.seed = kSearchSeedBase + static_cast<uint64_t>(k);
  t.meta_steps = meta_steps;
  t.eval_every = meta_steps;
  t.eval_split = TaskSplit::Validation;
  return t;
}

LrSearchResult choose_inner_lr(const std::vector<double>& grid, const std::vector<std::vector<double>>& scores) {
  LrSearchResult r{std::nan(""), {}};
  double best = -INFINITY;
  for (size_t i = 0; i < grid.size(); ++i) {
    const auto& runs = scores.at(i);
    const bool stable = std::all_of(runs.begin(), runs.end(), [](double x) { return std::isfinite(x); });
    const double mean = mean_interval(runs).mean;
    r.validation_accuracy.push_back(stable ? mean : std::nan(""));
    if (stable && mean > best) {
      best = mean;
      r.lr = grid[i];
    }
  }
  return r;
}

}  // namespace theria::lab
