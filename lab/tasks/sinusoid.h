// Sinusoid regression through attention, few-shot (docs/tasks.md; the sinusoid of Finn et al. 2017): an example
// is a sequence of T real values x_t, each uniform in [input_min, input_max]; a task hides an amplitude A, a phase
// phi and a position p, and the target is A sin(x_p - phi). The other T - 1 values are distractors drawn like x_p,
// so a model must attend to position p to read the one value that matters, and must learn p, A and phi from the
// task's support set. Loss MSE; the score is R^2 over a task's query set (0: predicting the query mean).
#pragma once

#include "tasks/task_family.h"

namespace theria::lab {

class SinusoidTasks : public TaskFamily {
 public:
  SinusoidTasks(TaskConfig config, uint64_t seed);

  const char* name() const override { return "sinusoid"; }
  TaskIO io() const override;  // reals in, one real out
  at::Tensor labels(const Task& task, const at::Tensor& x) const override;

 protected:
  std::vector<Knob> own_knobs() const override;
  Task hidden(at::Generator& gen) const override;
  at::Tensor inputs(const Task& task, int64_t n, at::Generator& gen) const override;
};

}  // namespace theria::lab
