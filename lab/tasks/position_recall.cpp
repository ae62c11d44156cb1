#include "tasks/position_recall.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace theria::lab {

PositionRecallTasks::PositionRecallTasks(TaskConfig config, uint64_t seed) : TaskFamily(std::move(config), seed) {
  const auto& c = this->config();
  TORCH_CHECK(c.seq_len >= 2, "position_recall: seq_len must be >= 2, got ", c.seq_len);
  TORCH_CHECK(c.classes >= 2 && c.seq_len % c.classes == 0,
              "position_recall: classes must be >= 2 and divide seq_len (", c.seq_len, "), got ", c.classes);
}

TaskIO PositionRecallTasks::io() const {
  const auto& c = config();
  return {c.seq_len, InputKind::Tokens, c.classes, TargetKind::Classes, c.classes, 1.0 / c.classes};
}

std::vector<Knob> PositionRecallTasks::own_knobs() const {
  return {{"seq_len", double(config().seq_len), true}, {"classes", double(config().classes), true}};
}

Task PositionRecallTasks::hidden(at::Generator& gen) const {
  Task t;
  t.position = at::randint(config().seq_len, {1}, gen).item<int64_t>();
  return t;
}

// Balanced sequences: each row a random arrangement of the multiset {0..C-1} x (T / C).
at::Tensor PositionRecallTasks::inputs(const Task&, int64_t n, at::Generator& gen) const {
  return balanced_sequences(n, config().seq_len, config().classes, gen);
}

at::Tensor PositionRecallTasks::labels(const Task& task, const at::Tensor& x) const {
  return x.select(1, task.position).contiguous();
}

}  // namespace theria::lab
