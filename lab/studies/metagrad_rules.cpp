#include "studies/metagrad_rules.h"

#include "meta/estimators.h"

namespace theria::lab {

std::string accuracy_verdict(const Interval& d, const std::string& reference) {
  if (d.n < 2) return "too few seeds";
  if (d.above(0.0)) return "better than " + reference;
  if (d.below(0.0)) return "worse than " + reference;
  return "no difference detected";
}

std::vector<EstimatorAccuracy> summarize_training(const MetagradConfig& c, const std::vector<MetagradTraining>& runs) {
  std::vector<EstimatorAccuracy> out;
  if (c.train_estimators.empty()) return out;
  // Accuracy by seed (NaN where a run diverged or is missing), so that the pairs line up.
  auto by_seed = [&](const std::string& name) {
    std::vector<double> acc(c.train_seeds, std::nan(""));
    for (const auto& r : runs) {
      if (r.estimator == name && r.seed < acc.size()) acc[r.seed] = r.post_accuracy;
    }
    return acc;
  };
  const std::string reference = estimator_name(parse_estimator(c.train_estimators.front()));
  const auto ref = by_seed(reference);
  for (const auto& e : c.train_estimators) {
    EstimatorAccuracy a;
    a.estimator = estimator_name(parse_estimator(e));
    const auto acc = by_seed(a.estimator);
    a.accuracy = mean_interval(acc);
    a.minus_reference = paired_interval(acc, ref);
    a.verdict = a.estimator == reference ? "reference" : accuracy_verdict(a.minus_reference, reference);
    int64_t n = 0;
    for (const auto& r : runs) {
      if (r.estimator == a.estimator) a.seconds += r.seconds, ++n;
    }
    a.seconds = n > 0 ? a.seconds / static_cast<double>(n) : std::nan("");
    out.push_back(a);
  }
  return out;
}

}  // namespace theria::lab
