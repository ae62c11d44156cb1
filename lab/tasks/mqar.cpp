#include "tasks/mqar.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace theria::lab {

MqarTasks::MqarTasks(TaskConfig config, uint64_t seed) : TaskFamily(std::move(config), seed) {
  const auto& c = this->config();
  TORCH_CHECK(c.pairs >= 2, "mqar: pairs must be >= 2, got ", c.pairs);
  TORCH_CHECK(c.keys >= c.pairs && c.values >= c.pairs, "mqar: keys (", c.keys, ") and values (", c.values,
              ") must be >= pairs (", c.pairs, "): keys and values are distinct within a sequence");
  TORCH_CHECK(c.seq_len >= 2 * c.pairs && c.seq_len % 2 == 0, "mqar: seq_len (", c.seq_len,
              ") must be even and >= 2 x pairs (", 2 * c.pairs, "): one slot of two tokens per pair");
}

bool MqarTasks::padded() const {
  return config().seq_len > 2 * config().pairs;
}

TaskIO MqarTasks::io() const {
  const auto& c = config();
  // A padded sequence has one more token, the pad (id keys + values).
  return {c.seq_len, InputKind::Tokens, c.keys + c.values + (padded() ? 1 : 0), TargetKind::Classes, c.values,
          1.0 / c.pairs};
}

std::vector<Knob> MqarTasks::own_knobs() const {
  const auto& c = config();
  return {{"seq_len", double(c.seq_len), true},
          {"keys", double(c.keys), true},
          {"values", double(c.values), true},
          {"pairs", double(c.pairs), true}};
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
  const auto pairs = at::stack({keys, values + c.keys}, 2);  // [n, N, 2]
  if (!padded()) return pairs.reshape({n, 2 * c.pairs});
  // The N pairs in N of the T / 2 slots, chosen at random and kept in their order; pad tokens in the others.
  const int64_t slots = c.seq_len / 2;
  const auto chosen = std::get<0>(at::rand({n, slots}, gen).argsort(/*dim=*/int64_t{1}).narrow(1, 0, c.pairs).sort(1));
  auto x = at::full({n, slots, 2}, c.keys + c.values, at::kLong);
  x.scatter_(1, chosen.unsqueeze(2).expand({n, c.pairs, 2}), pairs);
  return x.reshape({n, c.seq_len});
}

// The value after k* (ids [keys, keys + values) are the value classes [0, values)).
at::Tensor MqarTasks::labels(const Task& task, const at::Tensor& x) const {
  return token_after_first(x, task.token) - config().keys;
}

}  // namespace theria::lab
