#include "studies/robustness_rules.h"

#include "output/format.h"
#include "studies/taxonomy_rules.h"

#include <cmath>
#include <set>

namespace theria::lab {
namespace {

bool failed(const std::string& status) {
  return status.rfind("raises", 0) == 0 || status == "out of memory" || status.rfind("oracle", 0) == 0;
}

RobustnessRow row_of(const RobustnessCellKey& key, const std::vector<const RobustnessMeasure*>& measures,
                     const RobustnessCost* cost) {
  RobustnessRow r;
  r.cell = key;
  r.seeds = static_cast<int64_t>(measures.size());
  const auto dtype = parse_precision(key.precision).compute();
  r.tolerance = meta_gradient_tolerance(dtype);
  r.path_threshold = second_order_path_threshold(dtype);
  std::vector<double> share, rel_diff, error_full, error_fo, cosine;
  std::set<std::string> nodes;
  r.runs = r.second_order_path = r.accurate = r.resolves_second_order = !measures.empty();
  r.max_error_full = std::nan("");
  for (const auto* m : measures) {
    if (failed(m->status)) {
      if (r.failure.empty()) r.failure = m->status;
      r.runs = false;
    }
    if (m->non_finite) ++r.non_finite_seeds;
    share.push_back(m->second_order_share);
    rel_diff.push_back(m->rel_diff_full_vs_fo);
    error_full.push_back(m->error_full);
    // The largest finite error (NaN only when no seed has one: !(x <= NaN) holds for every x).
    if (!std::isnan(m->error_full) && !(m->error_full <= r.max_error_full)) r.max_error_full = m->error_full;
    error_fo.push_back(m->error_fo);
    cosine.push_back(m->cosine_full);
    nodes.insert(m->graph_nodes.begin(), m->graph_nodes.end());
    // Comparisons with NaN are false: a seed without a measurement fails every rule that needs one.
    r.second_order_path = r.second_order_path && m->second_order_share > r.path_threshold;
    r.accurate = r.accurate && m->error_full <= r.tolerance;
    r.resolves_second_order = r.resolves_second_order && m->error_full <= kResolvedFactor * m->error_fo;
  }
  r.stable = r.runs && r.non_finite_seeds == 0;
  r.share = mean_interval(share);
  r.rel_diff = mean_interval(rel_diff);
  r.error_full = mean_interval(error_full);
  r.error_fo = mean_interval(error_fo);
  r.cosine_full = mean_interval(cosine);
  r.graph_nodes.assign(nodes.begin(), nodes.end());
  r.works = r.runs && r.stable && r.second_order_path && r.accurate;
  if (cost != nullptr) {
    r.cost_status = cost->status;
    r.full_ms = cost->full.ms;
    r.fo_ms = cost->fo.ms;
    r.full_peak_mib = cost->full.peak_mib;
    r.fo_peak_mib = cost->fo.peak_mib;
    r.cost_ratio = cost->status == "ok" && cost->fo.ms > 0.0 ? cost->full.ms / cost->fo.ms : std::nan("");
    r.practical = cost->status == "ok" && r.cost_ratio <= kPracticalCostRatio;
  } else {
    r.cost_status = "not measured";
    r.full_ms = r.fo_ms = r.full_peak_mib = r.fo_peak_mib = r.cost_ratio = std::nan("");
  }
  r.verdict = robustness_verdict(r);
  return r;
}

}  // namespace

std::string robustness_verdict(const RobustnessRow& r) {
  if (r.failure.rfind("oracle", 0) == 0) return "not judged (" + r.failure + ")";
  if (r.failure.rfind("raises", 0) == 0) return "FULL raises";
  if (r.failure == "out of memory") return "out of memory";
  if (!r.stable) return "unstable (non-finite in " + std::to_string(r.non_finite_seeds) + " of " +
                        std::to_string(r.seeds) + " seeds)";
  if (!r.second_order_path) return "no second-order path";
  if (!r.accurate) return "inaccurate (error " + fmt(r.max_error_full, "%.2g") + " > " + fmt(r.tolerance, "%.0g") + ")";
  if (r.cost_status != "ok") return r.cost_status == "out of memory" ? "out of memory (cost)" : "cost not measured";
  if (!r.practical) return "impractical (FULL " + fmt(r.cost_ratio, "%.1f") + "x FO)";
  return r.resolves_second_order ? "FULL safe" : "FULL safe, second order below rounding";
}

std::vector<RobustnessRow> robustness_rows(const RobustnessConfig& config, const RobustnessRaw& raw) {
  std::vector<RobustnessRow> rows;
  for (const auto& key : robustness_cells(config)) {
    std::vector<const RobustnessMeasure*> measures;
    for (const auto& m : raw.measures) {
      if (m.cell.id() == key.id()) measures.push_back(&m);
    }
    const RobustnessCost* cost = nullptr;
    for (const auto& c : raw.costs) {
      if (c.cell.id() == key.id()) cost = &c;
    }
    rows.push_back(row_of(key, measures, cost));
  }
  return rows;
}

}  // namespace theria::lab
