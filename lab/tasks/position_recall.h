// The position-recall task family (docs/tasks.md): every task hides one position p of a length-T
// sequence; the label of a sequence is the token at p. Sequences are balanced (each of the C classes
// appears T / C times, in random order), so without knowing p neither the token counts nor a mean
// over positions say anything about the label: a model must attend to position p, and must find p
// from the task's small support set.
#pragma once

#include "tasks/task_family.h"

namespace theria::lab {

class PositionRecallTasks : public TaskFamily {
 public:
  PositionRecallTasks(TaskConfig config, uint64_t seed);

  const char* name() const override { return "position_recall"; }
  TaskIO io() const override;
  at::Tensor labels(const Task& task, const at::Tensor& x) const override;

 protected:
  std::vector<Knob> own_knobs() const override;
  Task hidden(at::Generator& gen) const override;
  at::Tensor inputs(const Task& task, int64_t n, at::Generator& gen) const override;
};

}  // namespace theria::lab
