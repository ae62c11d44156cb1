#include "studies/taxonomy_rules.h"

#include <theria/tolerances.h>

#include <algorithm>
#include <cmath>
#include <set>

namespace theria::lab {

double meta_gradient_tolerance(c10::ScalarType dtype) {
  switch (dtype) {
    case at::kDouble: return 1e-9;
    case at::kFloat: return 1e-3;
    case at::kHalf: return 3e-2;
    case at::kBFloat16: return 1e-1;
    default: TORCH_CHECK(false, "taxonomy: no meta-gradient tolerance for dtype ", dtype);
  }
}

double second_order_path_threshold(c10::ScalarType dtype) {
  return tolerance(dtype, Derivative::FirstOrder).max_rel_error;
}

std::string behavioural_effect(const Interval& full, const Interval& fo) {
  if (full.n == 0) return "not trained";
  if (full.n < 2) return "one seed: no interval";
  if (full.above(0.0)) return "better than exact FULL";
  if (!full.below(0.0)) {
    return fo.n >= 2 && !fo.above(0.0) && !fo.below(0.0) ? "undetermined (interval covers exact FULL and exact FO)"
                                                          : "as exact FULL";
  }
  if (fo.n < 2) return "worse than exact FULL";
  if (fo.below(0.0)) return "worse than exact FO";
  if (fo.above(0.0)) return "between exact FO and FULL";
  return "FO collapse";
}

std::string verdict(bool path, double max_error, double tol, double min_cosine, const Interval& vs_full) {
  if (path && max_error <= tol) return "safe";
  if (path && min_cosine >= kConditionalMinCosine && !vs_full.below(0.0)) return "conditional";
  return "unsafe";
}

std::string detector_summary(int64_t flagged, int64_t seeds) {
  if (flagged == 0) return "passes";
  if (flagged == seeds) return "flagged";
  return "flagged in " + std::to_string(flagged) + " of " + std::to_string(seeds) + " seeds";
}

namespace {

bool is(const TaxonomyCell& c, const std::string& variant, MamlMode mode) {
  return c.variant == variant && c.mode == mode;
}

// The post-training accuracies of (variant, mode) by seed (NaN where a seed was not trained or diverged).
std::vector<double> accuracies(const TaxonomyRaw& raw, const std::string& variant, MamlMode mode, int64_t seeds) {
  std::vector<double> out(seeds, std::nan(""));
  for (const auto& c : raw.cells) {
    if (is(c, variant, mode) && c.trained && static_cast<int64_t>(c.seed) < seeds) out[c.seed] = c.post_accuracy;
  }
  return out;
}

std::string agreement(const std::string& expected, const std::string& measured) {
  return expected == measured ? "agrees" : "disagrees: expected " + expected + ", measured " + measured;
}

}  // namespace

std::vector<TaxonomyRow> taxonomy_rows(const TaxonomyConfig& config, const TaxonomyRaw& raw) {
  const auto dtype = config.train.dtype;
  const double tol = meta_gradient_tolerance(dtype), path_threshold = second_order_path_threshold(dtype);
  const auto exact_full = accuracies(raw, "exact", MamlMode::Full, config.seeds);
  const auto exact_fo = accuracies(raw, "exact", MamlMode::FirstOrder, config.seeds);
  std::vector<std::string> names;  // in the catalogue's order, exact always
  for (const auto& v : attention_variants()) {
    if (config.variants.empty() || v.name == "exact" ||
        std::find(config.variants.begin(), config.variants.end(), v.name) != config.variants.end()) {
      names.push_back(v.name);
    }
  }
  std::vector<TaxonomyRow> rows;
  for (const auto& name : names) {
    const auto& variant = attention_variant(name);
    for (const auto mode : config.modes) {
      TaxonomyRow row;
      row.variant = name;
      row.mode = maml_mode_name(mode);
      row.drops = variant.drops;
      std::vector<double> share, error, cosine, detector_error;
      int64_t flagged = 0;
      std::set<std::string> nodes;
      bool trained = false;
      for (const auto& c : raw.cells) {
        if (!is(c, name, mode)) continue;
        share.push_back(c.second_order_share);
        error.push_back(c.error_rel_l2);
        cosine.push_back(c.error_cosine);
        detector_error.push_back(c.detector_numerical_error);
        flagged += c.detector_flagged ? 1 : 0;
        nodes.insert(c.graph_nodes.begin(), c.graph_nodes.end());
        trained = trained || c.trained;
      }
      row.graph_nodes.assign(nodes.begin(), nodes.end());
      row.share = mean_interval(share);
      row.error = mean_interval(error);
      row.cosine = mean_interval(cosine);
      row.detector_error = mean_interval(detector_error);
      row.detector = detector_summary(flagged, static_cast<int64_t>(share.size()));
      // A path in every seed (a diverged seed has no share: it cannot show one).
      row.second_order_path = !share.empty() && std::all_of(share.begin(), share.end(), [&](double s) {
        return std::isfinite(s) && s > path_threshold;
      });
      if (trained) {
        const auto acc = accuracies(raw, name, mode, config.seeds);
        row.post_accuracy = mean_interval(acc);
        row.vs_exact_full = paired_interval(acc, exact_full);
        row.vs_exact_fo = paired_interval(acc, exact_fo);
      }
      for (const auto steps : config.rel_diff_steps) {
        std::vector<double> value, cos;
        for (const auto& r : raw.rel_diff) {
          if (r.variant != name) continue;
          for (const auto& p : r.points) {
            if (p.inner_steps == steps) {
              value.push_back(p.value);
              cos.push_back(p.cosine);
            }
          }
        }
        row.rel_diff_steps.push_back(static_cast<double>(steps));
        row.rel_diff.push_back(mean_interval(value));
        row.rel_diff_cosine.push_back(mean_interval(cos));
      }
      row.behaviour = behavioural_effect(row.vs_exact_full, row.vs_exact_fo);
      if (mode == MamlMode::Full) {
        // Every seed counts: the largest error and the smallest cosine (a NaN, from a diverged seed, fails).
        double max_error = 0.0, min_cosine = 1.0;
        for (size_t i = 0; i < error.size(); ++i) {
          max_error = std::isfinite(error[i]) ? std::max(max_error, error[i]) : INFINITY;
          min_cosine = std::isfinite(cosine[i]) ? std::min(min_cosine, cosine[i]) : -INFINITY;
        }
        if (error.empty()) max_error = INFINITY;
        row.verdict = verdict(row.second_order_path, max_error, tol, min_cosine, row.vs_exact_full);
        row.expected = verdict_name(variant.expected);
        row.agreement = agreement(row.expected, row.verdict);
      } else {
        row.verdict = "first order by design";
      }
      rows.push_back(row);
    }
  }
  return rows;
}

}  // namespace theria::lab
