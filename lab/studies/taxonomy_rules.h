// The written rules of the taxonomy (docs/taxonomy.md, "Rules"), applied to the raw measurements: one row
// per variant and mode with intervals over seeds, the behavioural effect and the verdict. Nothing here is
// measured and nothing is typed by hand: change a rule here and in docs/taxonomy.md together.
#pragma once

#include "studies/taxonomy.h"

#include <c10/core/ScalarType.h>

#include <string>
#include <vector>

namespace theria::lab {

// Largest relative L2 error of an exact FULL meta-gradient against the float64 oracle for the run's dtype:
// a whole model and its inner loop in that dtype, so looser than the operator's table (include/theria/tolerances.h).
double meta_gradient_tolerance(c10::ScalarType dtype);
// A second-order share at or below this is rounding, not a path: theria's first-order tolerance for the dtype.
double second_order_path_threshold(c10::ScalarType dtype);
constexpr double kConditionalMinCosine = 0.9;

struct TaxonomyRow {
  std::string variant, mode;
  std::string drops;            // from the variant
  bool second_order_path = false;  // share above the threshold in every seed
  Interval share, error, cosine, post_accuracy;
  Interval vs_exact_full, vs_exact_fo;  // paired differences of post_accuracy (same seeds); n == 0 if not trained
  std::vector<double> rel_diff_steps;        // inner depths
  std::vector<Interval> rel_diff, rel_diff_cosine;  // FULL vs FO of this variant per depth
  std::string behaviour;    // "as FULL", "FO collapse", ... (rule B)
  std::string verdict;      // "safe" / "conditional" / "unsafe" for FULL rows; "first order by design" otherwise
  std::string expected;     // the research plan's expectation (FULL rows)
  std::string agreement;    // "agrees", "disagrees: ..." or "" (not a FULL row)
  std::vector<std::string> graph_nodes;  // union over seeds
  std::string detector;      // "flagged" (every seed), "passes" (no seed), or "flagged in k of n seeds"
  Interval detector_error;   // the detector's numerical relative error
};

// "flagged", "passes", or "flagged in k of n seeds".
std::string detector_summary(int64_t flagged, int64_t seeds);

std::vector<TaxonomyRow> taxonomy_rows(const TaxonomyConfig& config, const TaxonomyRaw& raw);

// Rule B on the two paired intervals (either may have n == 0: not trained).
std::string behavioural_effect(const Interval& vs_exact_full, const Interval& vs_exact_fo);
// Rule V.
std::string verdict(bool second_order_path, double max_error, double tolerance, double min_cosine,
                    const Interval& vs_exact_full);

}  // namespace theria::lab
