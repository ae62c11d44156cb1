// Multi-query associative recall, few-shot (docs/tasks.md; after the MQAR task of Arora et al. 2023, "Zoology"):
// a sequence of `pairs` key-value pairs k_1 v_1 ... k_N v_N, keys distinct out of `keys` tokens, values distinct
// out of `values` tokens. A task hides one key k*, present in every sequence of the task at a random pair; the
// label is the value paired with k*. In Zoology the queried key is in the sequence; here the task hides it, so
// the model must learn k* from the support set, then find k* in each sequence and read the token after it.
// Every sequence shows N values once each: without k* a model can do no better than 1/N. At seq_len T > 2N (as
// Zoology's sequence length, a knob of its own) the N pairs sit in N of the T / 2 two-token slots, chosen at random,
// and a pad token fills the others: the model must find k* among T positions.
#pragma once

#include "tasks/task_family.h"

namespace theria::lab {

class MqarTasks : public TaskFamily {
 public:
  MqarTasks(TaskConfig config, uint64_t seed);

  const char* name() const override { return "mqar"; }
  // tokens: keys are ids [0, keys), values [keys, keys + values), the pad keys + values; classes: the values
  TaskIO io() const override;
  at::Tensor labels(const Task& task, const at::Tensor& x) const override;

 protected:
  std::vector<Knob> own_knobs() const override;
  Task hidden(at::Generator& gen) const override;
  at::Tensor inputs(const Task& task, int64_t n, at::Generator& gen) const override;

 private:
  bool padded() const;  // seq_len > 2 x pairs
};

}  // namespace theria::lab
