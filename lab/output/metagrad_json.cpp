#include "output/metagrad_json.h"

#include "output/format.h"
#include "output/taxonomy_json.h"  // interval_json
#include "stats/confidence.h"
#include "studies/metagrad_rules.h"

#include <c10/util/Exception.h>

#include <fstream>

namespace theria::lab {

void to_json(Json& j, const MetagradCell& c) {
  j = Json{{"estimator", c.estimator},
           {"inner_steps", c.inner_steps},
           {"seed", c.seed},
           {"rel_error_vs_implicit_oracle", number_or_null(c.vs_implicit.rel_l2)},
           {"cosine_vs_implicit_oracle", number_or_null(c.vs_implicit.cosine)},
           {"rel_error_vs_unrolled_oracle", number_or_null(c.vs_unrolled.rel_l2)},
           {"cosine_vs_unrolled_oracle", number_or_null(c.vs_unrolled.cosine)},
           {"max_residual", number_or_null(c.max_residual)},
           {"solves_converged", c.solves_converged},
           {"ms", number_or_null(c.ms)},
           {"peak_mib", number_or_null(c.peak_mib)},
           {"memory_kind", c.memory_kind},
           {"hvp_attention_nodes", c.hvp_attention_nodes},
           {"status", c.status}};
}

void from_json(const Json& j, MetagradCell& c) {
  c.estimator = j.at("estimator").get<std::string>();
  c.inner_steps = j.at("inner_steps").get<int64_t>();
  c.seed = j.at("seed").get<uint64_t>();
  c.vs_implicit = {number_from(j.at("rel_error_vs_implicit_oracle")), number_from(j.at("cosine_vs_implicit_oracle"))};
  c.vs_unrolled = {number_from(j.at("rel_error_vs_unrolled_oracle")), number_from(j.at("cosine_vs_unrolled_oracle"))};
  c.max_residual = number_from(j.at("max_residual"));
  c.solves_converged = j.at("solves_converged").get<bool>();
  c.ms = number_from(j.at("ms"));
  c.peak_mib = number_from(j.at("peak_mib"));
  c.memory_kind = j.at("memory_kind").get<std::string>();
  c.hvp_attention_nodes = j.at("hvp_attention_nodes").get<std::vector<std::string>>();
  c.status = j.at("status").get<std::string>();
}

void to_json(Json& j, const MetagradTraining& r) {
  j = Json{{"estimator", r.estimator},
           {"seed", r.seed},
           {"pre_accuracy", number_or_null(r.pre_accuracy)},
           {"post_accuracy", number_or_null(r.post_accuracy)},
           {"curve_steps", r.curve_steps},
           {"curve_accuracy", numbers_or_null(r.curve_accuracy)},
           {"status", r.status},
           {"seconds", r.seconds},
           {"inner_lr", number_or_null(r.inner_lr)}};
}

void from_json(const Json& j, MetagradTraining& r) {
  r.estimator = j.at("estimator").get<std::string>();
  r.seed = j.at("seed").get<uint64_t>();
  r.pre_accuracy = number_from(j.at("pre_accuracy"));
  r.post_accuracy = number_from(j.at("post_accuracy"));
  r.curve_steps = j.at("curve_steps").get<std::vector<double>>();
  r.curve_accuracy = numbers_from(j.at("curve_accuracy"));
  r.status = j.at("status").get<std::string>();
  r.seconds = j.at("seconds").get<double>();
  r.inner_lr = number_from(j.at("inner_lr"));
}

namespace {

// One row per (estimator, depth): intervals over seeds, and seed 0's cost.
struct Row {
  std::string estimator;
  int64_t inner_steps;
  Interval vs_implicit, cos_implicit, vs_unrolled, cos_unrolled, residual;
  double ms, peak_mib;
  bool converged;
  bool out_of_memory = false;  // seed 0's cell ran out of device memory
};

std::vector<Row> rows(const MetagradConfig& config, const std::vector<MetagradCell>& cells) {
  std::vector<Row> out;
  for (const auto& name : config.estimators) {
    const std::string canonical = estimator_name(parse_estimator(name));
    for (const auto depth : config.inner_steps) {
      std::vector<double> a, b, c2, d, r;
      Row row{canonical, depth, {}, {}, {}, {}, {}, std::nan(""), std::nan(""), true};
      for (const auto& c : cells) {
        if (c.estimator != canonical || c.inner_steps != depth) continue;
        a.push_back(c.vs_implicit.rel_l2);
        b.push_back(c.vs_implicit.cosine);
        c2.push_back(c.vs_unrolled.rel_l2);
        d.push_back(c.vs_unrolled.cosine);
        r.push_back(c.max_residual);
        row.converged = row.converged && c.solves_converged;
        if (c.seed == 0) {
          row.ms = c.ms;
          row.peak_mib = c.peak_mib;
          row.out_of_memory = c.status == "out of memory";
        }
      }
      row.vs_implicit = mean_interval(a);
      row.cos_implicit = mean_interval(b);
      row.vs_unrolled = mean_interval(c2);
      row.cos_unrolled = mean_interval(d);
      row.residual = mean_interval(r);
      out.push_back(row);
    }
  }
  return out;
}

}  // namespace

std::string metagrad_markdown(const MetagradConfig& config, const MetagradRaw& raw) {
  const auto& cells = raw.cells;
  std::string md =
      "| estimator | inner steps | rel. error vs implicit oracle | cosine | rel. error vs unrolled oracle | cosine | "
      "max CG residual | solves converged | ms / meta-step | peak MiB |\n|---|---|---|---|---|---|---|---|---|---|\n";
  for (const auto& r : rows(config, cells)) {
    md += "| " + r.estimator + " | " + std::to_string(r.inner_steps) + " | " + fmt(r.vs_implicit, "%.3g") + " | " +
          fmt(r.cos_implicit.mean, "%.4f") + " | " + fmt(r.vs_unrolled, "%.3g") + " | " + fmt(r.cos_unrolled.mean, "%.4f") +
          " | " + fmt(r.residual.mean, "%.2g") + " | " + (r.converged ? "yes" : "no") + " | " +
          (r.out_of_memory ? "**out of memory** | **out of memory**" : fmt(r.ms, "%.1f") + " | " + fmt(r.peak_mib, "%.1f")) +
          " |\n";
  }
  const auto accuracy = summarize_training(config, raw.training);
  if (accuracy.empty() || raw.training.empty()) return md;
  const bool searched = !raw.lr_choice.empty();
  md += "\n### Held-out accuracy after meta-training with each estimator (" + std::to_string(config.train_inner_steps) +
        " inner steps, " + std::to_string(config.train.meta_steps) + " meta-steps" +
        (searched ? ", inner lr chosen per estimator on validation tasks" : "") +
        ")\n\n| estimator | inner lr | held-out accuracy | minus " + accuracy.front().estimator +
        " (paired) | verdict | diverged seeds | s / run |\n|---|---|---|---|---|---|---|\n";
  for (const auto& a : accuracy) {
    double lr = config.train.maml.inner_lr;
    for (const auto& r : raw.training) {
      if (r.estimator == a.estimator) lr = r.inner_lr;
    }
    md += "| " + a.estimator + " | " + fmt(lr, "%g") + " | " + fmt(a.accuracy, "%.3f") + " | " +
          fmt(a.minus_reference, "%+.3f") + " | **" + a.verdict + "** | " + std::to_string(a.accuracy.non_finite) +
          " | " + fmt(a.seconds, "%.1f") + " |\n";
  }
  if (searched) {
    md += "\nValidation accuracy per inner lr candidate (— : a search run diverged; never chosen):\n\n| estimator |";
    for (const double lr : config.train_lr_grid) md += " " + fmt(lr, "%g") + " |";
    md += "\n|---|" + [&] {
      std::string dashes;
      for (size_t i = 0; i < config.train_lr_grid.size(); ++i) dashes += "---|";
      return dashes;
    }() + "\n";
    for (const auto& c : raw.lr_choice) {
      md += "| " + c.estimator + " |";
      for (const double v : c.validation_accuracy) md += " " + fmt(v, "%.3f") + " |";
      md += "\n";
    }
  }
  return md;
}

void write_metagrad_files(const std::string& dir, const MetagradConfig& config, const MetagradRaw& raw,
                          const StudyProvenance& p) {
  const auto& cells = raw.cells;
  Json all = Json::array(), training = Json::array(), accuracy = Json::array();
  for (const auto& c : cells) all.push_back(Json(c));
  for (const auto& r : raw.training) training.push_back(Json(r));
  Json lr_choice = Json::array();
  for (const auto& c : raw.lr_choice) {
    lr_choice.push_back(Json{{"estimator", c.estimator},
                             {"chosen_lr", number_or_null(c.lr)},
                             {"candidates", c.candidates},
                             {"validation_accuracy", numbers_or_null(c.validation_accuracy)}});
  }
  for (const auto& a : summarize_training(config, raw.training)) {
    accuracy.push_back(Json{{"estimator", a.estimator},
                            {"post_accuracy", interval_json(a.accuracy)},
                            {"minus_reference", interval_json(a.minus_reference)},
                            {"verdict", a.verdict},
                            {"seconds_per_run", number_or_null(a.seconds)}});
  }
  write_json(dir + "/metagrad.json", Json{{"study", "metagrad"},
                                          {"command", p.command},
                                          {"device_name", p.device_name},
                                          {"seconds", p.seconds},
                                          {"config", metagrad_config_json(config)},
                                          {"cells", all},
                                          {"lr_choice", lr_choice},
                                          {"training", training},
                                          {"accuracy", accuracy}});
  std::ofstream csv(dir + "/metagrad.csv");
  TORCH_CHECK(csv, "cannot write ", dir, "/metagrad.csv");
  csv << "estimator,inner_steps,rel_error_vs_implicit_mean,cosine_vs_implicit_mean,rel_error_vs_unrolled_mean,"
         "cosine_vs_unrolled_mean,max_residual_mean,solves_converged,ms,peak_mib\n";
  for (const auto& r : rows(config, cells)) {
    csv << csv_quote(r.estimator) << "," << r.inner_steps << "," << csv_number(r.vs_implicit.mean) << ","
        << csv_number(r.cos_implicit.mean) << "," << csv_number(r.vs_unrolled.mean) << ","
        << csv_number(r.cos_unrolled.mean) << "," << csv_number(r.residual.mean) << ","
        << (r.converged ? "true" : "false") << "," << csv_number(r.ms) << "," << csv_number(r.peak_mib) << "\n";
  }
  std::ofstream md(dir + "/metagrad.md");
  TORCH_CHECK(md, "cannot write ", dir, "/metagrad.md");
  md << "# Meta-gradient estimators: " << p.device_name << ", " << config.seeds << " seeds\n\nMade by `" << p.command
     << "` in " << fmt(p.seconds, "%.0f") << " s. "
     << (!config.oracle                  ? "No oracle (--no-oracle): the cost of a meta-step only. "
         : config.oracle_device.is_cuda() ? "Oracles in float64 on the GPU, the fused backend's float64 kernels "
                                            "(--oracle-device cuda; docs/metagrad.md). "
                                          : "Oracles in float64 on the CPU, reference backend (docs/metagrad.md). ")
     << "Intervals: 95 % over seeds; cost from seed 0"
     << (cells.empty() ? "" : " (" + cells.front().memory_kind + ")") << ".\n\n"
     << metagrad_markdown(config, raw);
}

}  // namespace theria::lab
