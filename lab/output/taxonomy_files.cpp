#include "output/taxonomy_files.h"

#include "output/format.h"
#include "output/taxonomy_json.h"

#include <theria/tolerances.h>

#include <c10/util/Exception.h>

#include <cmath>
#include <cstdio>
#include <fstream>

namespace theria::lab {
namespace {

std::string rel_diff_cell(const TaxonomyRow& r) {
  std::string s;
  for (size_t i = 0; i < r.rel_diff.size(); ++i) {
    s += (i ? ", " : "") + fmt(r.rel_diff_steps[i], "%.0f") + ": " + fmt(r.rel_diff[i].mean, "%.3f");
    if (r.rel_diff[i].non_finite > 0) s += "†";
  }
  return s;
}

}  // namespace

std::string taxonomy_markdown_table(const std::vector<TaxonomyRow>& rows) {
  std::string md =
      "| pattern | mode | second_order_path (share) | rel_diff FULL vs FO by inner steps | meta-gradient error "
      "(rel. L2 vs exact FULL) | cosine | detector | held-out accuracy | minus exact FULL | behavioural effect | "
      "verdict | expected | agreement |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows) {
    md += "| " + r.variant + " | " + r.mode + " | " + (r.second_order_path ? "yes" : "no") + " (" +
          fmt(r.share.mean, "%.2g") + ") | " + rel_diff_cell(r) + " | " + fmt(r.error, "%.2g") + " | " +
          fmt(r.cosine, "%.3f") + " | " + r.detector + " (" + fmt(r.detector_error.mean, "%.2g") + ") | " +
          fmt(r.post_accuracy, "%.3f") + " | " + fmt(r.vs_exact_full, "%+.3f") + " | " +
          r.behaviour + " | **" + r.verdict + "** | " + r.expected + " | " + r.agreement + " |\n";
  }
  return md;
}

void write_taxonomy_files(const std::string& dir, const TaxonomyConfig& config, const TaxonomyRaw& raw,
                          const std::vector<TaxonomyRow>& rows, const StudyProvenance& p) {
  const auto dtype = config.train.dtype;
  Json rules{{"meta_gradient_tolerance", meta_gradient_tolerance(dtype)},
             {"second_order_path_threshold", second_order_path_threshold(dtype)},
             {"conditional_min_cosine", kConditionalMinCosine},
             {"interval", "95 % Student-t over seeds; accuracy differences paired by seed"},
             {"document", "docs/taxonomy.md"}};
  Json rows_json = Json::array(), cells = Json::array(), rel_diff = Json::array(), costs = Json::array();
  for (const auto& r : rows) rows_json.push_back(row_json(r));
  for (const auto& c : raw.cells) cells.push_back(Json(c));
  for (const auto& r : raw.rel_diff) rel_diff.push_back(Json(r));
  for (const auto& c : raw.costs) costs.push_back(Json(c));
  write_json(dir + "/taxonomy.json", Json{{"study", "taxonomy"},
                                          {"command", p.command},
                                          {"device_name", p.device_name},
                                          {"resolved_backend", p.resolved_backend},
                                          {"seconds", p.seconds},
                                          {"config", taxonomy_config_json(config)},
                                          {"rules", rules},
                                          {"rows", rows_json},
                                          {"costs", costs},
                                          {"cells", cells},
                                          {"rel_diff", rel_diff}});

  std::ofstream csv(dir + "/taxonomy.csv");
  TORCH_CHECK(csv, "cannot write ", dir, "/taxonomy.csv");
  csv << "variant,mode,second_order_path,share_mean,error_rel_l2_mean,error_rel_l2_low,error_rel_l2_high,"
         "cosine_mean,post_accuracy_mean,post_accuracy_low,post_accuracy_high,minus_exact_full_mean,"
         "minus_exact_full_low,minus_exact_full_high,minus_exact_fo_mean,minus_exact_fo_low,minus_exact_fo_high,"
         "detector,detector_numerical_error_mean";
  for (const auto s : config.rel_diff_steps) csv << ",rel_diff_" << s;
  csv << ",behaviour,verdict,expected,agreement\n";
  const auto num = csv_number;
  for (const auto& r : rows) {
    csv << r.variant << "," << r.mode << "," << (r.second_order_path ? "true" : "false") << "," << num(r.share.mean)
        << "," << num(r.error.mean) << "," << num(r.error.low) << "," << num(r.error.high) << "," << num(r.cosine.mean)
        << "," << num(r.post_accuracy.mean) << "," << num(r.post_accuracy.low) << "," << num(r.post_accuracy.high)
        << "," << num(r.vs_exact_full.mean) << "," << num(r.vs_exact_full.low) << "," << num(r.vs_exact_full.high)
        << "," << num(r.vs_exact_fo.mean) << "," << num(r.vs_exact_fo.low) << "," << num(r.vs_exact_fo.high) << ","
        << csv_quote(r.detector) << "," << num(r.detector_error.mean);
    for (const auto& i : r.rel_diff) csv << "," << num(i.mean);
    csv << "," << csv_quote(r.behaviour) << "," << r.verdict << "," << r.expected << "," << csv_quote(r.agreement)
        << "\n";
  }

  std::ofstream md(dir + "/taxonomy.md");
  TORCH_CHECK(md, "cannot write ", dir, "/taxonomy.md");
  md << "# Failure taxonomy: " << backend_name(config.train.model.attention.backend_) << " (" << p.resolved_backend
     << "), " << dtype_name(dtype) << ", " << p.device_name << ", " << config.seeds << " seeds\n\n"
     << "Made by `" << p.command << "` in " << fmt(p.seconds, "%.0f") << " s. Rules: docs/taxonomy.md "
     << "(meta-gradient tolerance " << fmt(meta_gradient_tolerance(dtype)) << ", second-order path above "
     << fmt(second_order_path_threshold(dtype)) << ", conditional needs cosine >= " << kConditionalMinCosine
     << "). Intervals: 95 % over seeds, accuracy differences paired by seed. † a seed diverged at that depth.\n\n"
     << taxonomy_markdown_table(rows) << "\n## Cost of one meta-step (seed 0)\n\n"
     << "| pattern | FULL ms | FO ms | FULL / FO | FULL peak MiB | FO peak MiB |\n|---|---|---|---|---|---|\n";
  for (const auto& c : raw.costs) {
    md << "| " << c.variant << " | " << fmt(c.full.ms, "%.1f") << " | " << fmt(c.fo.ms, "%.1f") << " | "
       << fmt(c.full.ms / c.fo.ms, "%.2f") << " | " << fmt(c.full.peak_mib, "%.1f") << " | "
       << fmt(c.fo.peak_mib, "%.1f") << " |\n";
  }
  if (!raw.costs.empty()) md << "\nMemory: " << raw.costs.front().full.memory_kind << ".\n";
  md << "\n## What each pattern drops\n\n";
  for (const auto& r : rows) {
    if (r.mode == "full") md << "- `" << r.variant << "`: " << r.drops << "\n";
  }
}

}  // namespace theria::lab
