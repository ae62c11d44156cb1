#include "diagnostics/gpu_busy.h"

#include "diagnostics/step_cost.h"

#include <ATen/record_function.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#ifdef THERIA_WITH_FUSED
#include <ATen/cuda/CUDAContext.h>
#endif

#include <algorithm>
#include <map>
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
  // Warm-up and the median of 3 (the allocator's blocks, cuBLAS handles and kernel attributes are in place first).
  const double wall_ms = time_step(device, step).ms;
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
  std::map<std::string, GpuBusy::Kind> kinds;
  for (const auto& e : result->events()) {
    // The scope shows on the GPU's timeline too (Kineto's annotation of the kernels it launched): not an activity.
    if (e.deviceType() == c10::DeviceType::CUDA && e.name() != kStepScope) {
      spans.emplace_back(e.startNs(), e.endNs());
      auto& kind = kinds[e.name()];
      kind.ms += static_cast<double>(e.durationNs()) * 1e-6;
      ++kind.count;
    } else if (e.deviceType() == c10::DeviceType::CPU && e.name() == kStepScope) {
      lo = e.startNs();
      hi = e.endNs();
    }
  }
  TORCH_CHECK(hi > lo, "gpu_busy: the profiler recorded no window for the step");
  GpuBusy busy;
  busy.wall_ms = wall_ms;
  busy.profiled_wall_ms = static_cast<double>(hi - lo) * 1e-6;
  busy.busy_ms = union_ns(spans, lo, hi) * 1e-6;
  busy.activities = static_cast<int64_t>(spans.size());
  for (auto& [name, kind] : kinds) {
    kind.name = name;
    busy.top.push_back(kind);
  }
  std::sort(busy.top.begin(), busy.top.end(), [](const auto& a, const auto& b) { return a.ms > b.ms; });
  if (busy.top.size() > GpuBusy::kTop) busy.top.resize(GpuBusy::kTop);
  return busy;
#else
  (void)device;
  (void)step;
  return std::nullopt;
#endif
}

}  // namespace theria::lab
