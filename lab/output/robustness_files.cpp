#include "output/robustness_files.h"

#include "output/format.h"
#include "output/robustness_json.h"

#include <c10/util/Exception.h>

#include <fstream>

namespace theria::lab {
namespace {

const char* yes_no(bool b) { return b ? "yes" : "no"; }

}  // namespace

std::string robustness_markdown_table(const std::vector<RobustnessRow>& rows) {
  std::string md =
      "| T | head dim | precision | backend | second-order path (share) | FULL vs FO | FULL error (max) | FO error | "
      "second order resolved | stable | FULL / FO ms | FULL peak MiB | verdict |\n"
      "|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    md += "| " + std::to_string(r.cell.seq_len) + " | " + std::to_string(r.cell.head_dim) + " | " + r.cell.precision +
          " | " + r.cell.backend + " | ";
    if (!r.runs) {
      md += "— | — | — | — | — | — | — | — | **" + r.verdict + "** |\n";
      continue;
    }
    md += std::string(yes_no(r.second_order_path)) + " (" + fmt(r.share.mean, "%.2g") + ") | " +
          fmt(r.rel_diff.mean, "%.2g") + " | " + fmt(r.error_full.mean, "%.2g") + " (" + fmt(r.max_error_full, "%.2g") +
          ") | " + fmt(r.error_fo.mean, "%.2g") + " | " + yes_no(r.resolves_second_order) + " | " + yes_no(r.stable) +
          " | " + fmt(r.full_ms, "%.3g") + " / " + fmt(r.fo_ms, "%.3g") + " | " + fmt(r.full_peak_mib, "%.4g") +
          " | **" + r.verdict + "** |\n";
  }
  return md;
}

void write_robustness_files(const std::string& dir, const RobustnessConfig& config, const RobustnessRaw& raw,
                            const std::vector<RobustnessRow>& rows, const StudyProvenance& p) {
  const Json rules{{"resolved_factor", kResolvedFactor},
                   {"practical_cost_ratio", kPracticalCostRatio},
                   {"tolerances", "meta_gradient_tolerance and second_order_path_threshold of the compute dtype "
                                  "(studies/taxonomy_rules.h)"},
                   {"interval", "95 % Student-t over seeds"},
                   {"document", "docs/robustness.md"}};
  Json rows_json = Json::array(), measures = Json::array(), costs = Json::array();
  for (const auto& r : rows) rows_json.push_back(row_json(r));
  for (const auto& m : raw.measures) measures.push_back(Json(m));
  for (const auto& c : raw.costs) costs.push_back(Json(c));
  write_json(dir + "/robustness.json", Json{{"study", "robustness"},
                                            {"command", p.command},
                                            {"device_name", p.device_name},
                                            {"seconds", p.seconds},
                                            {"config", robustness_config_json(config)},
                                            {"rules", rules},
                                            {"rows", rows_json},
                                            {"measures", measures},
                                            {"costs", costs}});

  std::ofstream csv(dir + "/robustness.csv");
  TORCH_CHECK(csv, "cannot write ", dir, "/robustness.csv");
  csv << "seq_len,head_dim,precision,backend,runs,stable,second_order_path,accurate,resolves_second_order,practical,"
         "works,share_mean,rel_diff_mean,error_full_mean,error_full_low,error_full_high,error_full_max,error_fo_mean,"
         "cosine_full_mean,full_ms,fo_ms,full_peak_mib,fo_peak_mib,verdict\n";
  const auto num = csv_number;
  const auto b = [](bool x) { return x ? "true" : "false"; };
  for (const auto& r : rows) {
    csv << r.cell.seq_len << "," << r.cell.head_dim << "," << r.cell.precision << "," << r.cell.backend << ","
        << b(r.runs) << "," << b(r.stable) << "," << b(r.second_order_path) << "," << b(r.accurate) << ","
        << b(r.resolves_second_order) << "," << b(r.practical) << "," << b(r.works) << "," << num(r.share.mean) << ","
        << num(r.rel_diff.mean) << "," << num(r.error_full.mean) << "," << num(r.error_full.low) << ","
        << num(r.error_full.high) << "," << num(r.max_error_full) << "," << num(r.error_fo.mean) << ","
        << num(r.cosine_full.mean) << "," << num(r.full_ms) << "," << num(r.fo_ms) << "," << num(r.full_peak_mib)
        << "," << num(r.fo_peak_mib) << "," << csv_quote(r.verdict) << "\n";
  }

  std::ofstream md(dir + "/robustness.md");
  TORCH_CHECK(md, "cannot write ", dir, "/robustness.md");
  md << "# Robustness map: FULL MAML through attention, " << p.device_name << ", " << config.seeds << " seeds\n\n"
     << "Made by `" << p.command << "` in " << fmt(p.seconds, "%.0f") << " s. Rules: docs/robustness.md (tolerances "
     << "of the compute dtype as in docs/taxonomy.md; second order resolved: FULL's error at most " << kResolvedFactor
     << " x FO's in every seed; practical: a FULL meta-step at most " << kPracticalCostRatio
     << " x an FO step). Errors: relative L2 against the float64 FULL meta-gradient, mean over seeds (max). Costs: "
     << "seed 0, median of 3; memory: " << (raw.costs.empty() ? std::string("—") : raw.costs.front().full.memory_kind)
     << ".\n\n"
     << robustness_markdown_table(rows);
  md << "\nFailures as recorded:\n\n";
  for (const auto& r : rows) {
    if (!r.failure.empty()) md << "- " << r.cell.id() << ": " << r.failure << "\n";
  }
}

}  // namespace theria::lab
