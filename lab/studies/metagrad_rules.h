// The estimator comparison's rule on accuracy (docs/metagrad.md): held-out accuracy after meta-training with each
// estimator, and its difference from the first estimator of the list (the reference, unrolled by default) paired by
// seed: interval above 0 -> "better than <reference>", below -> "worse than <reference>", otherwise "no difference
// detected" ("too few seeds" under 2 pairs).
#pragma once

#include "stats/confidence.h"
#include "studies/metagrad.h"

#include <string>
#include <vector>

namespace theria::lab {

struct EstimatorAccuracy {
  std::string estimator;
  Interval accuracy;         // over seeds; a diverged seed is counted in accuracy.non_finite
  Interval minus_reference;  // paired by seed
  std::string verdict;
  double seconds = 0.0;      // mean time of a run
};

std::vector<EstimatorAccuracy> summarize_training(const MetagradConfig& config,
                                                  const std::vector<MetagradTraining>& training);
std::string accuracy_verdict(const Interval& minus_reference, const std::string& reference);

}  // namespace theria::lab
