// The written rules of the robustness map (docs/robustness.md, "Rules"), applied to the raw measurements: one row
// per cell with intervals over seeds and the classification "FULL works? stable? practical?". Nothing here is
// measured and nothing is typed by hand: change a rule here and in docs/robustness.md together.
#pragma once

#include "stats/confidence.h"
#include "studies/robustness.h"

#include <string>
#include <vector>

namespace theria::lab {

// Rule T: FULL's meta-gradient must be at least this much closer to the exact one than FO's (error_full <=
// kResolvedFactor * error_fo in every seed) for the second-order term to count as resolved above the dtype's
// rounding.
constexpr double kResolvedFactor = 0.5;
// Rule C: a FULL meta-step costs at most this multiple of an FO step's time to count as practical.
constexpr double kPracticalCostRatio = 4.0;

struct RobustnessRow {
  RobustnessCellKey cell;
  int64_t seeds = 0;
  std::string failure;          // "" or the first seed's failure: "raises: ...", "out of memory", "oracle: ..."
  int64_t non_finite_seeds = 0;
  bool runs = false;            // rule R
  bool stable = false;          // rule S
  bool second_order_path = false;  // rule P
  bool accurate = false;        // rule A
  bool resolves_second_order = false;  // rule T
  bool practical = false;       // rule C
  bool works = false;           // R and S and P and A
  Interval share, rel_diff, error_full, error_fo, cosine_full;
  double max_error_full = 0.0;
  double tolerance = 0.0, path_threshold = 0.0;  // of the cell's compute dtype
  std::string cost_status = "ok";
  double full_ms = 0.0, fo_ms = 0.0, full_peak_mib = 0.0, fo_peak_mib = 0.0, cost_ratio = 0.0;
  std::vector<std::string> graph_nodes;  // union over seeds
  std::string verdict;
};

// The verdict of a row whose rule flags are set (rule V).
std::string robustness_verdict(const RobustnessRow& row);

std::vector<RobustnessRow> robustness_rows(const RobustnessConfig& config, const RobustnessRaw& raw);

}  // namespace theria::lab
