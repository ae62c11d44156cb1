// The written rules of the sweep (docs/sweep.md, "Rules"), applied to its raw cells: one row per (backend, inner
// depth, mode) with intervals over seeds, the FULL - FO gap paired by seed, and the regime statements. Nothing here is
// measured and nothing is typed by hand.
#pragma once

#include "studies/sweep.h"

#include <string>
#include <vector>

namespace theria::lab {

struct SweepRow {
  std::string backend, mode;
  int64_t inner_steps = 0;
  double inner_lr = 0.0;
  Interval final_accuracy, steps_to_90, area_under_curve;
  int64_t diverged = 0;  // seeds whose run diverged (no metrics)
  double ms_per_meta_step = 0.0, peak_mib = 0.0;
};

// FULL minus FO (or FO_STRICT) at one (backend, depth), paired by seed.
struct SweepGap {
  std::string backend, versus;  // "fo" or "fo_strict"
  int64_t inner_steps = 0;
  Interval final_accuracy, area_under_curve;
  std::string regime;  // rule G: "FULL better", "FO better", "no difference detected"
};

// Does the gap grow with depth? The gap at the deepest depth minus the gap at the shallowest, paired by seed.
struct SweepTrend {
  std::string backend, versus;
  int64_t from_steps = 0, to_steps = 0;
  Interval change;     // of the final-accuracy gap
  std::string verdict;  // rule T: "gap grows with depth", "gap shrinks with depth", "no change detected"
};

struct SweepSummary {
  std::string metric = "accuracy";  // the family's score: accuracy, or r2 (regression)
  std::vector<SweepRow> rows;
  std::vector<SweepGap> gaps;
  std::vector<SweepTrend> trends;
};

SweepSummary summarize_sweep(const SweepConfig& config, const SweepRaw& raw);

// Rule G on a paired interval of FULL - FO.
std::string gap_regime(const Interval& gap);
// Rule T on a paired interval of gap(deepest) - gap(shallowest).
std::string trend_verdict(const Interval& change);

}  // namespace theria::lab
