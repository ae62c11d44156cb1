#include "studies/sweep_rules.h"

#include "tasks/families.h"

#include <algorithm>
#include <cmath>

namespace theria::lab {

std::string gap_regime(const Interval& gap) {
  if (gap.n < 2) return "too few seeds";
  if (gap.above(0.0)) return "FULL better";
  if (gap.below(0.0)) return "FO better";
  return "no difference detected";
}

std::string trend_verdict(const Interval& change) {
  if (change.n < 2) return "too few seeds";
  if (change.above(0.0)) return "gap grows with depth";
  if (change.below(0.0)) return "gap shrinks with depth";
  return "no change detected";
}

namespace {

// One value per study seed (NaN where that seed's run is missing or diverged), for pairing. A run that diverged
// anywhere counts as diverged, also one that stopped there with a finite last evaluation (its cell keeps that
// accuracy and says where it stopped): a run cut short is not compared with complete ones.
std::vector<double> by_seed(const SweepConfig& c, const SweepRaw& raw, Backend backend, int64_t steps, MamlMode mode,
                            double CurveMetrics::*metric) {
  std::vector<double> out(c.seeds, std::nan(""));
  for (const auto& cell : raw.cells) {
    if (cell.backend == backend && cell.inner_steps == steps && cell.mode == mode &&
        static_cast<int64_t>(cell.seed) < c.seeds) {
      out[cell.seed] = cell.status == "ok" ? cell.metrics.*metric : std::nan("");
    }
  }
  return out;
}

std::vector<double> difference(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> d(a.size());
  for (size_t i = 0; i < a.size(); ++i) d[i] = a[i] - b[i];  // NaN where either is
  return d;
}

}  // namespace

SweepSummary summarize_sweep(const SweepConfig& c, const SweepRaw& raw) {
  SweepSummary s;
  s.metric = make_task_family(c.train.tasks, c.train.seed)->io().metric();
  for (const auto backend : c.backends) {
    for (const auto steps : c.inner_steps) {
      for (const auto mode : c.modes) {
        SweepRow row;
        row.backend = backend_name(backend);
        row.mode = maml_mode_name(mode);
        row.inner_steps = steps;
        const auto acc = by_seed(c, raw, backend, steps, mode, &CurveMetrics::final_accuracy);
        row.final_accuracy = mean_interval(acc);
        row.steps_to_90 = mean_interval(by_seed(c, raw, backend, steps, mode, &CurveMetrics::steps_to_90));
        row.area_under_curve = mean_interval(by_seed(c, raw, backend, steps, mode, &CurveMetrics::area_under_curve));
        row.diverged = row.final_accuracy.non_finite;
        for (const auto& cell : raw.cells) {
          if (cell.backend == backend && cell.inner_steps == steps && cell.mode == mode) row.inner_lr = cell.inner_lr;
        }
        for (const auto& cost : raw.costs) {
          if (cost.backend == backend && cost.inner_steps == steps && cost.mode == mode) {
            row.ms_per_meta_step = cost.cost.ms;
            row.peak_mib = cost.cost.peak_mib;
          }
        }
        s.rows.push_back(row);
      }
      if (std::find(c.modes.begin(), c.modes.end(), MamlMode::Full) == c.modes.end()) continue;
      for (const auto versus : {MamlMode::FirstOrder, MamlMode::FirstOrderStrict}) {
        if (std::find(c.modes.begin(), c.modes.end(), versus) == c.modes.end()) continue;
        SweepGap gap;
        gap.backend = backend_name(backend);
        gap.versus = maml_mode_name(versus);
        gap.inner_steps = steps;
        gap.final_accuracy = paired_interval(by_seed(c, raw, backend, steps, MamlMode::Full, &CurveMetrics::final_accuracy),
                                             by_seed(c, raw, backend, steps, versus, &CurveMetrics::final_accuracy));
        gap.area_under_curve =
            paired_interval(by_seed(c, raw, backend, steps, MamlMode::Full, &CurveMetrics::area_under_curve),
                            by_seed(c, raw, backend, steps, versus, &CurveMetrics::area_under_curve));
        gap.regime = gap_regime(gap.final_accuracy);
        s.gaps.push_back(gap);
      }
    }
    // Rule T between the shallowest and the deepest depth swept.
    if (c.inner_steps.size() < 2 || std::find(c.modes.begin(), c.modes.end(), MamlMode::Full) == c.modes.end()) continue;
    const auto [lo, hi] = std::minmax_element(c.inner_steps.begin(), c.inner_steps.end());
    for (const auto versus : {MamlMode::FirstOrder, MamlMode::FirstOrderStrict}) {
      if (std::find(c.modes.begin(), c.modes.end(), versus) == c.modes.end()) continue;
      const auto gap_at = [&](int64_t steps) {
        return difference(by_seed(c, raw, backend, steps, MamlMode::Full, &CurveMetrics::final_accuracy),
                          by_seed(c, raw, backend, steps, versus, &CurveMetrics::final_accuracy));
      };
      SweepTrend t{backend_name(backend), maml_mode_name(versus), *lo, *hi, {}, ""};
      t.change = paired_interval(gap_at(*hi), gap_at(*lo));
      t.verdict = trend_verdict(t.change);
      s.trends.push_back(t);
    }
  }
  return s;
}

}  // namespace theria::lab
