#include "output/train_json.h"

namespace theria::lab {

void to_json(Json& j, const Divergence& d) {
  j = Json{{"where", static_cast<int>(d.where)}, {"task", d.task}, {"inner_step", d.inner_step},
           {"inner_steps", d.inner_steps}};
}
void from_json(const Json& j, Divergence& d) {
  d.where = static_cast<Divergence::Where>(j.at("where").get<int>());
  d.task = j.at("task").get<int64_t>();
  d.inner_step = j.at("inner_step").get<int64_t>();
  d.inner_steps = j.at("inner_steps").get<int64_t>();
}

void to_json(Json& j, const Evaluation& e) {
  j = Json{{"pre_accuracy", number_or_null(e.pre_accuracy)}, {"post_accuracy", number_or_null(e.post_accuracy)},
           {"post_loss", number_or_null(e.post_loss)},       {"pre_loss", number_or_null(e.pre_loss)},
           {"divergence", e.divergence}};
}
void from_json(const Json& j, Evaluation& e) {
  e.pre_accuracy = number_from(j.at("pre_accuracy"));
  e.post_accuracy = number_from(j.at("post_accuracy"));
  e.post_loss = number_from(j.at("post_loss"));
  e.pre_loss = number_from(j.at("pre_loss"));
  e.divergence = j.at("divergence").get<Divergence>();
}

void to_json(Json& j, const CurvePoint& p) {
  j = Json{{"step", p.step}, {"meta_loss", p.meta_loss ? number_or_null(*p.meta_loss) : Json()},
           {"has_meta_loss", p.meta_loss.has_value()}, {"held_out", p.held_out}};
}
void from_json(const Json& j, CurvePoint& p) {
  p.step = j.at("step").get<int64_t>();
  p.meta_loss = j.at("has_meta_loss").get<bool>() ? std::optional<double>(number_from(j.at("meta_loss"))) : std::nullopt;
  p.held_out = j.at("held_out").get<Evaluation>();
}

void to_json(Json& j, const RunDivergence& d) {
  j = Json{{"meta_step", d.meta_step}, {"phase", d.phase}, {"at", d.at}};
}
void from_json(const Json& j, RunDivergence& d) {
  d.meta_step = j.at("meta_step").get<int64_t>();
  d.phase = j.at("phase").get<std::string>();
  d.at = j.at("at").get<Divergence>();
}

}  // namespace theria::lab
