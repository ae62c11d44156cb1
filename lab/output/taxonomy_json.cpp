#include "output/taxonomy_json.h"

namespace theria::lab {

void to_json(Json& j, const TaxonomyCell& c) {
  j = Json{{"variant", c.variant},
           {"mode", maml_mode_name(c.mode)},
           {"seed", c.seed},
           {"second_order_share", number_or_null(c.second_order_share)},
           {"error_rel_l2", number_or_null(c.error_rel_l2)},
           {"error_cosine", number_or_null(c.error_cosine)},
           {"graph_nodes", c.graph_nodes},
           {"diagnostic_status", c.diagnostic_status},
           {"detector_flagged", c.detector_flagged},
           {"detector_graph_warnings", c.detector_graph_warnings},
           {"detector_numerical_error", number_or_null(c.detector_numerical_error)},
           {"trained", c.trained},
           {"pre_accuracy", number_or_null(c.pre_accuracy)},
           {"post_accuracy", number_or_null(c.post_accuracy)},
           {"train_status", c.train_status},
           {"train_seconds", c.train_seconds}};
}

void from_json(const Json& j, TaxonomyCell& c) {
  c.variant = j.at("variant").get<std::string>();
  c.mode = parse_maml_mode(j.at("mode").get<std::string>());
  c.seed = j.at("seed").get<uint64_t>();
  c.second_order_share = number_from(j.at("second_order_share"));
  c.error_rel_l2 = number_from(j.at("error_rel_l2"));
  c.error_cosine = number_from(j.at("error_cosine"));
  c.graph_nodes = j.at("graph_nodes").get<std::vector<std::string>>();
  c.diagnostic_status = j.at("diagnostic_status").get<std::string>();
  c.detector_flagged = j.at("detector_flagged").get<bool>();
  c.detector_graph_warnings = j.at("detector_graph_warnings").get<std::vector<std::string>>();
  c.detector_numerical_error = number_from(j.at("detector_numerical_error"));
  c.trained = j.at("trained").get<bool>();
  c.pre_accuracy = number_from(j.at("pre_accuracy"));
  c.post_accuracy = number_from(j.at("post_accuracy"));
  c.train_status = j.at("train_status").get<std::string>();
  c.train_seconds = j.at("train_seconds").get<double>();
}

void to_json(Json& j, const TaxonomyTraining& t) {
  j = Json{{"pre_accuracy", number_or_null(t.pre_accuracy)},
           {"post_accuracy", number_or_null(t.post_accuracy)},
           {"status", t.status},
           {"seconds", t.seconds}};
}

void from_json(const Json& j, TaxonomyTraining& t) {
  t.pre_accuracy = number_from(j.at("pre_accuracy"));
  t.post_accuracy = number_from(j.at("post_accuracy"));
  t.status = j.at("status").get<std::string>();
  t.seconds = j.at("seconds").get<double>();
}

void to_json(Json& j, const TaxonomyRelDiff& r) {
  Json points = Json::array();
  for (const auto& p : r.points) {
    points.push_back({{"inner_steps", p.inner_steps},
                      {"value", number_or_null(p.value)},
                      {"cosine", number_or_null(p.cosine)},
                      {"status", p.divergence.describe()}});
  }
  j = Json{{"variant", r.variant}, {"seed", r.seed}, {"points", points}};
}

void from_json(const Json& j, TaxonomyRelDiff& r) {
  r.variant = j.at("variant").get<std::string>();
  r.seed = j.at("seed").get<uint64_t>();
  r.points.clear();
  for (const auto& p : j.at("points")) {
    RelDiff d;
    d.inner_steps = p.at("inner_steps").get<int64_t>();
    d.value = number_from(p.at("value"));
    d.cosine = number_from(p.at("cosine"));
    // A diverged point reads back with its NaN value; the reason is kept only in the part file.
    r.points.push_back(d);
  }
}

void to_json(Json& j, const TaxonomyCost& c) {
  j = Json{{"variant", c.variant},
           {"full_ms", c.full.ms},
           {"fo_ms", c.fo.ms},
           {"full_peak_mib", c.full.peak_mib},
           {"fo_peak_mib", c.fo.peak_mib},
           {"memory_kind", c.full.memory_kind}};
}

void from_json(const Json& j, TaxonomyCost& c) {
  c.variant = j.at("variant").get<std::string>();
  c.full.ms = j.at("full_ms").get<double>();
  c.fo.ms = j.at("fo_ms").get<double>();
  c.full.peak_mib = j.at("full_peak_mib").get<double>();
  c.fo.peak_mib = j.at("fo_peak_mib").get<double>();
  c.full.memory_kind = c.fo.memory_kind = j.at("memory_kind").get<std::string>();
}

Json interval_json(const Interval& i) {
  return Json{{"mean", number_or_null(i.mean)},
              {"low", number_or_null(i.low)},
              {"high", number_or_null(i.high)},
              {"n", i.n},
              {"non_finite", i.non_finite}};
}

Json row_json(const TaxonomyRow& r) {
  Json rel_diff = Json::array();
  for (size_t i = 0; i < r.rel_diff_steps.size(); ++i) {
    rel_diff.push_back({{"inner_steps", r.rel_diff_steps[i]},
                        {"value", interval_json(r.rel_diff[i])},
                        {"cosine", interval_json(r.rel_diff_cosine[i])}});
  }
  return Json{{"variant", r.variant},
              {"mode", r.mode},
              {"drops", r.drops},
              {"second_order_path", r.second_order_path},
              {"second_order_share", interval_json(r.share)},
              {"graph_nodes", r.graph_nodes},
              {"meta_gradient_error_rel_l2", interval_json(r.error)},
              {"meta_gradient_cosine", interval_json(r.cosine)},
              {"rel_diff_full_vs_fo", rel_diff},
              {"post_accuracy", interval_json(r.post_accuracy)},
              {"post_accuracy_minus_exact_full", interval_json(r.vs_exact_full)},
              {"post_accuracy_minus_exact_fo", interval_json(r.vs_exact_fo)},
              {"detector", r.detector},
              {"detector_numerical_error", interval_json(r.detector_error)},
              {"behaviour", r.behaviour},
              {"verdict", r.verdict},
              {"expected", r.expected},
              {"agreement", r.agreement}};
}

}  // namespace theria::lab
