// The position-recall task family (docs/tasks.md): every task hides one position p of a length-T
// sequence; the label of a sequence is the token at p. Sequences are balanced (each of the C classes
// appears T / C times, in random order), so without knowing p neither the token counts nor a mean
// over positions say anything about the label: a model must attend to position p, and must find p
// from the task's small support set.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace theria::lab {

struct TaskConfig {
  int64_t seq_len = 8;  // T
  int64_t classes = 4;  // C; must divide T
  int64_t support = 16;
  int64_t query = 32;
};

struct Task {
  int64_t position = 0;           // the hidden p
  at::Tensor support_x, support_y;  // [support, T] int64, [support] int64
  at::Tensor query_x, query_y;      // [query, T], [query]
};

class PositionRecallTasks {
 public:
  PositionRecallTasks(TaskConfig config, uint64_t seed);

  // Task number `index` of this family: the same seed and index give the same task.
  Task task(uint64_t index, const at::Device& device = at::kCPU) const;

  const TaskConfig& config() const { return config_; }

 private:
  TaskConfig config_;
  uint64_t seed_;
};

}  // namespace theria::lab
