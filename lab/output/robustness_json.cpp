#include "output/robustness_json.h"

#include "output/taxonomy_json.h"

namespace theria::lab {

void to_json(Json& j, const RobustnessCellKey& k) {
  j = Json{{"seq_len", k.seq_len}, {"head_dim", k.head_dim}, {"precision", k.precision}, {"backend", k.backend}};
}

void from_json(const Json& j, RobustnessCellKey& k) {
  k.seq_len = j.at("seq_len").get<int64_t>();
  k.head_dim = j.at("head_dim").get<int64_t>();
  k.precision = j.at("precision").get<std::string>();
  k.backend = j.at("backend").get<std::string>();
}

void to_json(Json& j, const RobustnessMeasure& m) {
  j = Json{{"cell", m.cell},
           {"seed", m.seed},
           {"status", m.status},
           {"non_finite", m.non_finite},
           {"second_order_share", number_or_null(m.second_order_share)},
           {"graph_nodes", m.graph_nodes},
           {"rel_diff_full_vs_fo", number_or_null(m.rel_diff_full_vs_fo)},
           {"error_full", number_or_null(m.error_full)},
           {"cosine_full", number_or_null(m.cosine_full)},
           {"error_fo", number_or_null(m.error_fo)}};
}

void from_json(const Json& j, RobustnessMeasure& m) {
  m.cell = j.at("cell").get<RobustnessCellKey>();
  m.seed = j.at("seed").get<uint64_t>();
  m.status = j.at("status").get<std::string>();
  m.non_finite = j.at("non_finite").get<bool>();
  m.second_order_share = number_from(j.at("second_order_share"));
  m.graph_nodes = j.at("graph_nodes").get<std::vector<std::string>>();
  m.rel_diff_full_vs_fo = number_from(j.at("rel_diff_full_vs_fo"));
  m.error_full = number_from(j.at("error_full"));
  m.cosine_full = number_from(j.at("cosine_full"));
  m.error_fo = number_from(j.at("error_fo"));
}

void to_json(Json& j, const RobustnessCost& c) {
  j = Json{{"cell", c.cell},
           {"status", c.status},
           {"full_ms", number_or_null(c.full.ms)},
           {"fo_ms", number_or_null(c.fo.ms)},
           {"full_peak_mib", number_or_null(c.full.peak_mib)},
           {"fo_peak_mib", number_or_null(c.fo.peak_mib)},
           {"memory_kind", c.full.memory_kind}};
}

void from_json(const Json& j, RobustnessCost& c) {
  c.cell = j.at("cell").get<RobustnessCellKey>();
  c.status = j.at("status").get<std::string>();
  c.full.ms = number_from(j.at("full_ms"));
  c.fo.ms = number_from(j.at("fo_ms"));
  c.full.peak_mib = number_from(j.at("full_peak_mib"));
  c.fo.peak_mib = number_from(j.at("fo_peak_mib"));
  c.full.memory_kind = c.fo.memory_kind = j.at("memory_kind").get<std::string>();
}

Json row_json(const RobustnessRow& r) {
  return Json{{"cell", r.cell},
              {"seeds", r.seeds},
              {"failure", r.failure},
              {"non_finite_seeds", r.non_finite_seeds},
              {"runs", r.runs},
              {"stable", r.stable},
              {"second_order_path", r.second_order_path},
              {"accurate", r.accurate},
              {"resolves_second_order", r.resolves_second_order},
              {"practical", r.practical},
              {"works", r.works},
              {"second_order_share", interval_json(r.share)},
              {"rel_diff_full_vs_fo", interval_json(r.rel_diff)},
              {"error_full", interval_json(r.error_full)},
              {"max_error_full", number_or_null(r.max_error_full)},
              {"error_fo", interval_json(r.error_fo)},
              {"cosine_full", interval_json(r.cosine_full)},
              {"tolerance", r.tolerance},
              {"path_threshold", r.path_threshold},
              {"cost_status", r.cost_status},
              {"full_ms", number_or_null(r.full_ms)},
              {"fo_ms", number_or_null(r.fo_ms)},
              {"full_peak_mib", number_or_null(r.full_peak_mib)},
              {"fo_peak_mib", number_or_null(r.fo_peak_mib)},
              {"full_over_fo", number_or_null(r.cost_ratio)},
              {"graph_nodes", r.graph_nodes},
              {"verdict", r.verdict}};
}

}  // namespace theria::lab
