#include "output/sweep_json.h"

#include "output/taxonomy_json.h"  // interval_json

namespace theria::lab {

void to_json(Json& j, const SweepCell& c) {
  j = Json{{"inner_steps", c.inner_steps},
           {"mode", maml_mode_name(c.mode)},
           {"backend", backend_name(c.backend)},
           {"seed", c.seed},
           {"inner_lr", c.inner_lr},
           {"final_accuracy", number_or_null(c.metrics.final_accuracy)},
           {"steps_to_90", number_or_null(c.metrics.steps_to_90)},
           {"area_under_curve", number_or_null(c.metrics.area_under_curve)},
           {"curve_steps", c.curve_steps},
           {"curve_accuracy", numbers_or_null(c.curve_accuracy)},
           {"status", c.status},
           {"seconds", c.seconds}};
}

void from_json(const Json& j, SweepCell& c) {
  c.inner_steps = j.at("inner_steps").get<int64_t>();
  c.mode = parse_maml_mode(j.at("mode").get<std::string>());
  c.backend = parse_backend(j.at("backend").get<std::string>());
  c.seed = j.at("seed").get<uint64_t>();
  c.inner_lr = j.at("inner_lr").get<double>();
  c.metrics.final_accuracy = number_from(j.at("final_accuracy"));
  c.metrics.steps_to_90 = number_from(j.at("steps_to_90"));
  c.metrics.area_under_curve = number_from(j.at("area_under_curve"));
  c.curve_steps = j.at("curve_steps").get<std::vector<double>>();
  c.curve_accuracy = numbers_from(j.at("curve_accuracy"));
  c.status = j.at("status").get<std::string>();
  c.seconds = j.at("seconds").get<double>();
}

void to_json(Json& j, const SweepCost& c) {
  j = Json{{"inner_steps", c.inner_steps},
           {"mode", maml_mode_name(c.mode)},
           {"backend", backend_name(c.backend)},
           {"ms", c.cost.ms},
           {"peak_mib", c.cost.peak_mib},
           {"memory_kind", c.cost.memory_kind}};
}

void from_json(const Json& j, SweepCost& c) {
  c.inner_steps = j.at("inner_steps").get<int64_t>();
  c.mode = parse_maml_mode(j.at("mode").get<std::string>());
  c.backend = parse_backend(j.at("backend").get<std::string>());
  c.cost.ms = j.at("ms").get<double>();
  c.cost.peak_mib = j.at("peak_mib").get<double>();
  c.cost.memory_kind = j.at("memory_kind").get<std::string>();
}

Json lr_choice_json(const LrChoice& c) {
  return Json{{"inner_steps", c.inner_steps},
              {"mode", maml_mode_name(c.mode)},
              {"chosen_lr", c.lr},
              {"candidates", c.candidates},
              {"validation_accuracy", numbers_or_null(c.validation_accuracy)}};
}

Json summary_json(const SweepSummary& s) {
  Json rows = Json::array(), gaps = Json::array(), trends = Json::array();
  for (const auto& r : s.rows) {
    rows.push_back({{"backend", r.backend},
                    {"inner_steps", r.inner_steps},
                    {"mode", r.mode},
                    {"inner_lr", r.inner_lr},
                    {"final_accuracy", interval_json(r.final_accuracy)},
                    {"steps_to_90", interval_json(r.steps_to_90)},
                    {"area_under_curve", interval_json(r.area_under_curve)},
                    {"diverged_seeds", r.diverged},
                    {"ms_per_meta_step", r.ms_per_meta_step},
                    {"peak_mib", r.peak_mib}});
  }
  for (const auto& g : s.gaps) {
    gaps.push_back({{"backend", g.backend},
                    {"inner_steps", g.inner_steps},
                    {"versus", g.versus},
                    {"full_minus_versus_final_accuracy", interval_json(g.final_accuracy)},
                    {"full_minus_versus_area_under_curve", interval_json(g.area_under_curve)},
                    {"regime", g.regime}});
  }
  for (const auto& t : s.trends) {
    trends.push_back({{"backend", t.backend},
                      {"versus", t.versus},
                      {"from_steps", t.from_steps},
                      {"to_steps", t.to_steps},
                      {"gap_change", interval_json(t.change)},
                      {"verdict", t.verdict}});
  }
  return Json{{"rows", rows}, {"gaps", gaps}, {"trends", trends}};
}

}  // namespace theria::lab
