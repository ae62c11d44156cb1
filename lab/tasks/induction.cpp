#include "tasks/induction.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <utility>
#include <vector>

namespace theria::lab {

InductionTasks::InductionTasks(TaskConfig config, uint64_t seed) : TaskFamily(std::move(config), seed) {
  const auto& c = this->config();
  TORCH_CHECK(c.markers >= 2, "induction: markers must be >= 2, got ", c.markers);
  TORCH_CHECK(c.fillers >= c.markers, "induction: fillers (", c.fillers, ") must be >= markers (", c.markers,
              "): the fillers after the markers' first occurrences are distinct");
  TORCH_CHECK(c.seq_len >= 3 * c.markers, "induction: seq_len (", c.seq_len, ") must be >= 3 x markers (",
              c.markers, "): each marker twice, its first occurrence followed by a filler");
}

TaskIO InductionTasks::io() const {
  const auto& c = config();
  return {c.seq_len, InputKind::Tokens, c.markers + c.fillers, TargetKind::Classes, c.fillers, 1.0 / c.markers};
}

std::vector<Knob> InductionTasks::own_knobs() const {
  const auto& c = config();
  return {{"seq_len", double(c.seq_len), true}, {"markers", double(c.markers), true},
          {"fillers", double(c.fillers), true}};
}

Task InductionTasks::hidden(at::Generator& gen) const {
  Task t;
  t.token = at::randint(config().markers, {1}, gen).item<int64_t>();
  return t;
}

// A sequence is a random order of units: for each marker m a pair [m, its filler] (m's first occurrence) and a
// single [m] (its second), and T - 3M single fillers.
at::Tensor InductionTasks::inputs(const Task&, int64_t n, at::Generator& gen) const {
  const int64_t M = config().markers, T = config().seq_len, free = T - 3 * M, units = 2 * M + free;
  const auto successor = distinct_ids(n, M, config().fillers, gen);  // [n, M]: the filler after m's first occurrence
  auto order = at::rand({n, units}, gen).argsort(/*dim=*/int64_t{1});  // unit ids: pairs [0, M), singles [M, 2M)
  const auto filler = at::randint(config().fillers, {n, std::max<int64_t>(free, 1)}, gen);
  auto x = at::empty({n, T}, at::kLong);
  auto o = order.accessor<int64_t, 2>();
  auto s = successor.accessor<int64_t, 2>();
  auto f = filler.accessor<int64_t, 2>();
  auto out = x.accessor<int64_t, 2>();
  std::vector<int64_t> place(2 * M);
  for (int64_t r = 0; r < n; ++r) {
    // A marker's pair comes before its single: where the single came first, the two trade places.
    for (int64_t u = 0; u < units; ++u) {
      if (o[r][u] < 2 * M) place[o[r][u]] = u;
    }
    for (int64_t m = 0; m < M; ++m) {
      if (place[M + m] < place[m]) std::swap(o[r][place[m]], o[r][place[M + m]]);
    }
    int64_t t = 0;
    for (int64_t u = 0; u < units; ++u) {
      const int64_t id = o[r][u];
      if (id < M) {
        out[r][t++] = id;
        out[r][t++] = M + s[r][id];
      } else if (id < 2 * M) {
        out[r][t++] = id - M;
      } else {
        out[r][t++] = M + f[r][id - 2 * M];
      }
    }
  }
  return x;
}

// The filler after the trigger's first occurrence (ids [markers, markers + fillers) are the classes [0, fillers)).
at::Tensor InductionTasks::labels(const Task& task, const at::Tensor& x) const {
  return token_after_first(x, task.token) - config().markers;
}

}  // namespace theria::lab
