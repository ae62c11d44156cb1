// How much of a step's wall time the GPU is busy (issue 18: the lab's GPU meta-step): the union of one profiled
// step's kernel, copy and memset intervals (PyTorch's profiler, Kineto's CUDA activities: times taken on the GPU)
// over the median wall time of three unprofiled steps, call to synchronize. The profiled step's own wall time is
// longer (the profiler's host-side overhead) and is reported beside it. What the GPU does not cover is launch
// overhead, host work (the autograd engine; no Python here) and synchronization.
#pragma once

#include <ATen/core/Tensor.h>

#include <algorithm>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace theria::lab {

struct GpuBusy {
  struct Kind {
    std::string name;  // a kernel's (or copy's) name as the profiler gives it
    double ms = 0.0;   // their summed durations
    int64_t count = 0;
  };
  double wall_ms = 0.0;           // median of three unprofiled steps, from the call to the synchronize after it
  double profiled_wall_ms = 0.0;  // the profiled step, the same way
  double busy_ms = 0.0;           // the union of the profiled step's GPU activity intervals
  int64_t activities = 0;  // kernels, copies and memsets the step ran
  std::vector<Kind> top;   // the activities that took the most time, by name, longest first (at most kTop)
  static constexpr size_t kTop = 8;
  double share() const { return wall_ms > 0.0 ? std::min(1.0, busy_ms / wall_ms) : 0.0; }
};

// One warm-up step, three timed ones, then one profiled step on `device`. None on a CPU device.
std::optional<GpuBusy> gpu_busy(const at::Device& device, const std::function<void()>& step);

}  // namespace theria::lab
