// Induction heads, few-shot (docs/tasks.md; after Olsson et al. 2022: [A][B] ... [A] -> [B]). A sequence of T
// tokens: each of `markers` marker tokens appears exactly twice, at random places, among random filler tokens (out
// of `fillers`). A task hides one marker, the trigger a*; the label is the filler that follows the trigger's first
// occurrence. The fillers after the markers' first occurrences are distinct; after a second occurrence comes
// whatever follows (a filler, a marker, or the end). Every marker occurs twice in every sequence, so nothing in a
// sequence tells which is the trigger: the model must learn a* from the support set, find a*'s first occurrence
// (not its second) and read the token after it. Without a* each marker is as likely: no model can beat
// 1 / markers.
#pragma once

#include "tasks/task_family.h"

namespace theria::lab {

class InductionTasks : public TaskFamily {
 public:
  InductionTasks(TaskConfig config, uint64_t seed);

  const char* name() const override { return "induction"; }
  TaskIO io() const override;  // tokens: markers are ids [0, markers), fillers [markers, markers + fillers);
                               // classes: the fillers
  at::Tensor labels(const Task& task, const at::Tensor& x) const override;

 protected:
  std::vector<Knob> own_knobs() const override;
  Task hidden(at::Generator& gen) const override;
  at::Tensor inputs(const Task& task, int64_t n, at::Generator& gen) const override;
};

}  // namespace theria::lab
