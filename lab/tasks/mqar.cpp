#include "tasks/mqar.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace theria::lab {

MqarTasks::MqarTasks(TaskConfig config, uint64_t seed) : TaskFamily(std::move(config), seed) {
  const auto& c = this->config();
  TORCH_CHECK(c.pairs >= 2, "mqar: pairs must be >= 2, got ", c.pairs);
  TORCH_CHECK(c.keys >= c.pairs && c.values >= c.pairs, "mqar: keys (", c.keys, ") and values (", c.values,
              ") must be >= pairs (", c.pairs, "): keys and values are distinct within a sequence");
}

TaskIO MqarTasks::io() const {
  const auto& c = config();
  return {2 * c.pairs, InputKind::Tokens, c.keys + c.values, TargetKind::Classes, c.values, 1.0 / c.pairs};
}

std::vector<Knob> MqarTasks::own_knobs() const {
  const auto& c = config();
  return {{"keys", double(c.keys), true}, {"values", double(c.values), true}, {"pairs", double(c.pairs), true}};
}

Task MqarTasks::hidden(at::Generator& gen) const {
  Task t;
  t.token = at::randint(config().keys, {1}, gen).item<int64_t>();
  return t;
}

at::Tensor MqarTasks::inputs(const Task& task, int64_t n, at::Generator& gen) const {
  const auto& c = config();
  // The other N - 1 keys, distinct and never k*; then k* among them at a random pair.
  auto others = distinct_ids(n, c.pairs - 1, c.keys - 1, gen);
  others = others + others.ge(task.token).to(at::kLong);
  const auto keys = at::cat({others, at::full({n, 1}, task.token, at::kLong)}, 1)
                        .gather(1, at::rand({n, c.pairs}, gen).argsort(/*dim=*/int64_t{1}));
  const auto values = distinct_ids(n, c.pairs, c.values, gen);
  return at::stack({keys, values + c.keys}, 2).reshape({n, 2 * c.pairs});
}

// The value after k* (ids [keys, keys + values) are the value classes [0, values)).
at::Tensor MqarTasks::labels(const Task& task, const at::Tensor& x) const {
  return token_after_first(x, task.token) - config().keys;
}

}  // namespace theria::lab
