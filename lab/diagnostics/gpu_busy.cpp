#include "diagnostics/gpu_busy.h"

#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#ifdef THERIA_WITH_FUSED
#include <ATen/cuda/CUDAContext.h>
#endif

#include <algorithm>
#include <set>
#include <utility>
#include <vector>

namespace theria::lab {
namespace {

constexpr const char* kStepScope = "theria::lab::profiled_step";

// The total length of the union of [start, end) intervals clipped to [lo, hi).
double union_ns(std::vector<std::pair<uint64_t, uint64_t>> spans, uint64_t lo, uint64_t hi) {
  std::sort(spans.begin(), spans.end());
  double total = 0.0;
  uint64_t reach = lo;
  for (auto [start, end] : spans) {
    start = std::max(start, reach);
    end = std::min(end, hi);
    if (end > start) {
      total += static_cast<double>(end - start);
      reach = end;
    }
  }
  return total;
}

}  // namespace

std::optional<GpuBusy> gpu_busy(const at::Device& device, const std::function<void()>& step) {
#ifdef THERIA_WITH_FUSED
  if (!device.is_cuda()) return std::nullopt;
  namespace profiler = torch::autograd::profiler;
  using torch::profiler::impl::ActivityType;
  const auto sync = [] { at::cuda::getCurrentCUDAStream().synchronize(); };
  step();  // warm-up: the allocator's blocks, cuBLAS handles and kernel attributes are in place before the measurement
  sync();
  const torch::profiler::impl::ProfilerConfig config(torch::profiler::impl::ProfilerState::KINETO);
  const std::set<ActivityType> activities{ActivityType::CPU, ActivityType::CUDA};
  profiler::prepareProfiler(config, activities);
  profiler::enableProfiler(config, activities, {at::RecordScope::USER_SCOPE, at::RecordScope::FUNCTION});
  {
    // The window: a CPU scope around the step and its synchronize, on the clock Kineto puts the GPU activities on.
    RECORD_USER_SCOPE(kStepScope);
    step();
    sync();
  }
  const auto result = profiler::disableProfiler();
  uint64_t lo = 0, hi = 0;
  std::vector<std::pair<uint64_t, uint64_t>> spans;
  for (const auto& e : result->events()) {
    if (e.deviceType() == c10::DeviceType::CUDA) {
      spans.emplace_back(e.startNs(), e.endNs());
    } else if (e.name() == kStepScope) {
      lo = e.startNs();
      hi = e.endNs();
    }
  }
  TORCH_CHECK(hi > lo, "gpu_busy: the profiler recorded no window for the step");
  GpuBusy busy;
  busy.wall_ms = static_cast<double>(hi - lo) * 1e-6;
  busy.busy_ms = union_ns(spans, lo, hi) * 1e-6;
  busy.activities = static_cast<int64_t>(spans.size());
  return busy;
#else
  (void)device;
  (void)step;
  return std::nullopt;
#endif
}

}  // namespace theria::lab
