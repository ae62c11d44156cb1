// How much of a step's wall time the GPU is busy (issue 18: the lab's GPU meta-step): one step profiled with
// PyTorch's profiler (Kineto, CUDA activities), the union of its kernels', copies' and memsets' intervals over the
// step's wall time, launch to the last synchronize. What the GPU does not cover is launch overhead, host work (the
// autograd engine, Python-free here) and synchronization.
#pragma once

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>

namespace theria::lab {

struct GpuBusy {
  double wall_ms = 0.0;  // the step, from its first call to the synchronize after it
  double busy_ms = 0.0;  // the union of the GPU activities' intervals inside that window
  int64_t activities = 0;  // kernels, copies and memsets the step ran
  double share() const { return wall_ms > 0.0 ? busy_ms / wall_ms : 0.0; }
};

// One warm-up step, then one profiled step on `device`. None on a CPU device.
std::optional<GpuBusy> gpu_busy(const at::Device& device, const std::function<void()>& step);

}  // namespace theria::lab
