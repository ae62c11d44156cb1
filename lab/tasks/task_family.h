// A few-shot task family (docs/tasks.md): tasks generated from a seed, nothing downloaded. Task `i` of a family
// with seed `s` is always the same (one generator per task); held-out tasks come from the family with another
// seed. Each task hides something (a position, a key, a trigger token, a sinusoid) that the model can only learn
// from the task's support set, and attention is what must find it. The family says what its examples are
// (TaskIO): token ids or real values in, classes or one real out, so that the model and the loss follow from it.
#pragma once

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace theria::lab {

// Every family's knobs; each family reads its own (docs/tasks.md) and checks them when it is made.
struct TaskConfig {
  int64_t seq_len = 8;  // T (mqar: even, >= 2 * pairs; 2 * pairs holds nothing but the pairs)
  int64_t classes = 4;  // position_recall: C, must divide T
  int64_t support = 16;
  int64_t query = 32;
  std::string family = "position_recall";  // position_recall, mqar, induction, sinusoid
  // mqar: `pairs` key-value pairs per sequence, keys distinct out of `keys`, values distinct out of `values`.
  int64_t keys = 8, values = 8, pairs = 4;
  // induction: every sequence holds each of `markers` trigger candidates twice, the rest is out of `fillers`
  // (T >= 3 * markers, fillers >= markers).
  int64_t markers = 2, fillers = 4;
  // sinusoid: y = A sin(x_p - phi), A in [amplitude_min, amplitude_max], phi in [phase_min, phase_max],
  // every x_t uniform in [input_min, input_max] (Finn et al. 2017's ranges by default).
  double amplitude_min = 0.1, amplitude_max = 5.0;
  double phase_min = 0.0, phase_max = M_PI;
  double input_min = -5.0, input_max = 5.0;
};

enum class InputKind { Tokens, Reals };          // x: [n, T] int64 token ids, or [n, T] float64 values
enum class TargetKind { Classes, Regression };  // y: [n] int64 class ids (cross-entropy), or [n] float64 (MSE)

// What a family's examples are, and so what the model reads and predicts (lab::fit_model_to).
struct TaskIO {
  int64_t seq_len = 0;
  InputKind input = InputKind::Tokens;
  int64_t vocab = 0;  // Tokens: ids in [0, vocab)
  TargetKind target = TargetKind::Classes;
  int64_t classes = 0;  // Classes: labels in [0, classes); Regression: 1 (one real per example)
  // The score of a model that does not know the task's hidden part: accuracy (Classes), or R^2 (Regression: 0,
  // the score of predicting the query set's mean).
  double chance = 0.0;
  const char* metric() const { return target == TargetKind::Classes ? "accuracy" : "r2"; }
};

struct Task {
  int64_t position = 0;  // position_recall, sinusoid: the hidden position p
  at::Tensor support_x, support_y;  // [support, T], [support]
  at::Tensor query_x, query_y;      // [query, T], [query]
  int64_t token = -1;  // mqar: the hidden key k*; induction: the hidden trigger a*; -1 otherwise
  double amplitude = 0.0, phase = 0.0;  // sinusoid: A, phi

  Task to(const at::Device& device) const;  // the same task, its tensors on `device`
};

// One knob of a family, for reports (summary.json).
struct Knob {
  std::string name;
  double value;
  bool integral;
};

class TaskFamily {
 public:
  TaskFamily(TaskConfig config, uint64_t seed);
  virtual ~TaskFamily() = default;

  virtual const char* name() const = 0;
  virtual TaskIO io() const = 0;
  std::vector<Knob> knobs() const;  // the knobs this family reads, support and query included

  // Task number `index` of this family: the same seed and index give the same task.
  Task task(uint64_t index, const at::Device& device = at::kCPU) const;

  // The labels of inputs x [n, T] under `task`'s hidden part: the family's rule, for any x (on the CPU).
  virtual at::Tensor labels(const Task& task, const at::Tensor& x) const = 0;

  const TaskConfig& config() const { return config_; }

 protected:
  // A task draws its hidden part, then its support inputs, then its query inputs, from one generator.
  virtual std::vector<Knob> own_knobs() const = 0;  // the family's own knobs (not support and query)
  virtual Task hidden(at::Generator& gen) const = 0;
  virtual at::Tensor inputs(const Task& task, int64_t n, at::Generator& gen) const = 0;  // [n, T]

 private:
  TaskConfig config_;
  uint64_t seed_;
};

// Draws shared by the families, from a task's generator:
// `n` rows, each a random arrangement of the ids {0..count-1}, each `length / count` times (count divides length).
at::Tensor balanced_sequences(int64_t n, int64_t length, int64_t count, at::Generator& gen);
// `n` rows of `k` distinct ids out of [0, count), in random order (k <= count).
at::Tensor distinct_ids(int64_t n, int64_t k, int64_t count, at::Generator& gen);
// Per row of x [n, T], the token after the first occurrence of `token` (each row holds `token` before its end).
at::Tensor token_after_first(const at::Tensor& x, int64_t token);

}  // namespace theria::lab
