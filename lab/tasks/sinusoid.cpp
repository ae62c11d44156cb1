#include "tasks/sinusoid.h"

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

namespace theria::lab {

SinusoidTasks::SinusoidTasks(TaskConfig config, uint64_t seed) : TaskFamily(std::move(config), seed) {
  const auto& c = this->config();
  TORCH_CHECK(c.seq_len >= 1, "sinusoid: seq_len must be >= 1, got ", c.seq_len);
  TORCH_CHECK(c.amplitude_min <= c.amplitude_max && c.phase_min <= c.phase_max && c.input_min < c.input_max,
              "sinusoid: each range must be [min, max] with min <= max (inputs: min < max)");
}

TaskIO SinusoidTasks::io() const {
  return {config().seq_len, InputKind::Reals, 0, TargetKind::Regression, 1, 0.0};
}

std::vector<Knob> SinusoidTasks::own_knobs() const {
  const auto& c = config();
  return {{"seq_len", double(c.seq_len), true},          {"amplitude_min", c.amplitude_min, false},
          {"amplitude_max", c.amplitude_max, false},     {"phase_min", c.phase_min, false},
          {"phase_max", c.phase_max, false},             {"input_min", c.input_min, false},
          {"input_max", c.input_max, false}};
}

Task SinusoidTasks::hidden(at::Generator& gen) const {
  const auto& c = config();
  Task t;
  t.position = at::randint(c.seq_len, {1}, gen).item<int64_t>();
  const auto u = at::rand({2}, gen, at::kDouble);
  t.amplitude = c.amplitude_min + (c.amplitude_max - c.amplitude_min) * u[0].item<double>();
  t.phase = c.phase_min + (c.phase_max - c.phase_min) * u[1].item<double>();
  return t;
}

at::Tensor SinusoidTasks::inputs(const Task&, int64_t n, at::Generator& gen) const {
  const auto& c = config();
  return c.input_min + (c.input_max - c.input_min) * at::rand({n, c.seq_len}, gen, at::kDouble);
}

at::Tensor SinusoidTasks::labels(const Task& task, const at::Tensor& x) const {
  return task.amplitude * at::sin(x.select(1, task.position).to(at::kDouble) - task.phase);
}

}  // namespace theria::lab
