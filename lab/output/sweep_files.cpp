#include "output/sweep_files.h"

#include "output/format.h"
#include "output/sweep_json.h"

#include <theria/tolerances.h>

#include <c10/util/Exception.h>

#include <fstream>

namespace theria::lab {

std::string sweep_markdown(const SweepSummary& s) {
  std::string md =
      "| backend | inner steps | mode | inner lr (validation) | held-out " + s.metric + " | meta-steps to 90 % | area "
      "under curve | diverged seeds | ms / meta-step | peak MiB |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : s.rows) {
    md += "| " + r.backend + " | " + std::to_string(r.inner_steps) + " | " + r.mode + " | " + fmt(r.inner_lr, "%g") +
          " | " + fmt(r.final_accuracy, "%.3f") + " | " + fmt(r.steps_to_90, "%.0f", "did not learn") + " | " +
          fmt(r.area_under_curve, "%.3f") + " | " + std::to_string(r.diverged) + " | " +
          fmt(r.ms_per_meta_step, "%.1f") + " | " + fmt(r.peak_mib, "%.1f") + " |\n";
  }
  md += "\n### FULL minus first order, paired by seed\n\n| backend | inner steps | versus | held-out " + s.metric + " gap | "
        "area-under-curve gap | regime |\n|---|---|---|---|---|---|\n";
  for (const auto& g : s.gaps) {
    md += "| " + g.backend + " | " + std::to_string(g.inner_steps) + " | " + g.versus + " | " +
          fmt(g.final_accuracy, "%+.3f") + " | " + fmt(g.area_under_curve, "%+.3f") + " | **" + g.regime + "** |\n";
  }
  md += "\n### Does the gap grow with inner depth?\n\n| backend | versus | depths | gap(deep) − gap(shallow) | verdict "
        "|\n|---|---|---|---|---|\n";
  for (const auto& t : s.trends) {
    md += "| " + t.backend + " | " + t.versus + " | " + std::to_string(t.from_steps) + " → " +
          std::to_string(t.to_steps) + " | " + fmt(t.change, "%+.3f") + " | **" + t.verdict + "** |\n";
  }
  return md;
}

void write_sweep_files(const std::string& dir, const SweepConfig& c, const SweepRaw& raw, const SweepSummary& s,
                       const StudyProvenance& p) {
  Json lr = Json::array(), cells = Json::array(), costs = Json::array();
  for (const auto& x : raw.lr) lr.push_back(lr_choice_json(x));
  for (const auto& x : raw.cells) cells.push_back(Json(x));
  for (const auto& x : raw.costs) costs.push_back(Json(x));
  write_json(dir + "/sweep.json", Json{{"study", "sweep"},
                                       {"command", p.command},
                                       {"device_name", p.device_name},
                                       {"seconds", p.seconds},
                                       {"config", sweep_config_json(c)},
                                       {"rules", {{"interval", "95 % Student-t over seeds; gaps paired by seed"},
                                                  {"document", "docs/sweep.md"}}},
                                       {"lr_choice", lr},
                                       {"summary", summary_json(s)},
                                       {"costs", costs},
                                       {"cells", cells}});

  std::ofstream csv(dir + "/sweep.csv");
  TORCH_CHECK(csv, "cannot write ", dir, "/sweep.csv");
  csv << "backend,inner_steps,mode,inner_lr,final_accuracy_mean,final_accuracy_low,final_accuracy_high,"
         "steps_to_90_mean,area_under_curve_mean,diverged_seeds,ms_per_meta_step,peak_mib\n";
  for (const auto& r : s.rows) {
    csv << r.backend << "," << r.inner_steps << "," << r.mode << "," << csv_number(r.inner_lr) << ","
        << csv_number(r.final_accuracy.mean) << "," << csv_number(r.final_accuracy.low) << ","
        << csv_number(r.final_accuracy.high) << "," << csv_number(r.steps_to_90.mean) << ","
        << csv_number(r.area_under_curve.mean) << "," << r.diverged << "," << csv_number(r.ms_per_meta_step) << ","
        << csv_number(r.peak_mib) << "\n";
  }

  std::ofstream md(dir + "/sweep.md");
  TORCH_CHECK(md, "cannot write ", dir, "/sweep.md");
  md << "# Signal → behaviour sweep: " << c.train.tasks.family << ", " << dtype_name(c.train.dtype) << ", " << p.device_name << ", " << c.seeds
     << " seeds\n\nMade by `" << p.command << "` in " << fmt(p.seconds, "%.0f") << " s. Rules: docs/sweep.md. "
     << "Inner lr chosen per (depth, mode) on validation tasks (" << c.search_seeds << " search seeds, "
     << c.search_meta_steps << " meta-steps each), never on the test tasks the table reports. Intervals: 95 % over "
     << "seeds; gaps paired by seed.\n\n"
     << sweep_markdown(s);
}

}  // namespace theria::lab
