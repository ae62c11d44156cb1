#include "diagnostics/step_cost.h"

#include <ATen/ATen.h>

#include <malloc.h>

#ifdef THERIA_WITH_FUSED
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <algorithm>
#include <chrono>
#include <fstream>
#include <string>

namespace theria::lab {
namespace {

void synchronize(const at::Device& device) {
#ifdef THERIA_WITH_FUSED
  if (device.is_cuda()) at::cuda::getCurrentCUDAStream().synchronize();
#endif
}

// Peak memory of one measurement, above what was in use when it started: the CUDA allocator's peak (GPU), or
// the process's peak resident set (CPU) after freed heap pages went back to the system (malloc_trim) and the
// kernel's peak counter was reset (writing 5 to /proc/self/clear_refs; Linux >= 4.0), so that a mode measured
// after another does not read the other's peak.
// Where the reset is refused, the kind says the figure is the process's all-time peak.
struct Memory {
  explicit Memory(const at::Device& device) : device_(device) {
#ifdef THERIA_WITH_FUSED
    if (device.is_cuda()) {
      c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
      base_ = stat().current;
      return;
    }
#endif
    malloc_trim(0);  // hand freed heap pages back, so that the resident set is the live set again
    std::ofstream clear("/proc/self/clear_refs");
    reset_ = static_cast<bool>(clear << "5" << std::flush);
    rss_base_kb_ = status_kb("VmRSS:");
  }
  double peak_mib() const {
#ifdef THERIA_WITH_FUSED
    if (device_.is_cuda()) return static_cast<double>(stat().peak - base_) / (1 << 20);
#endif
    return (status_kb("VmHWM:") - (reset_ ? rss_base_kb_ : 0.0)) / 1024.0;
  }
  const char* kind() const {
    return device_.is_cuda() ? "cuda_allocator_peak_mib" : reset_ ? "process_peak_rss_above_start_mib" : "process_peak_rss_mib";
  }

 private:
  static double status_kb(const std::string& key) {
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind(key, 0) == 0) return std::stod(line.substr(key.size()));  // kB
    }
    return 0.0;
  }
#ifdef THERIA_WITH_FUSED
  c10::CachingAllocator::Stat stat() const {
    return c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index())
        .allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
  }
  int64_t base_ = 0;
#endif
  at::Device device_;
  bool reset_ = false;
  double rss_base_kb_ = 0.0;
};

}  // namespace

StepCost time_meta_step(const TrainConfig& t, MamlMode mode, const Weights& w,
                        const std::vector<Task>& tasks) {
  MamlConfig maml = t.maml;
  maml.mode = mode;
  return time_step(t.device, [&] { meta_gradient(t.model, maml, w, tasks); });
}

StepCost time_step(const at::Device& device, const std::function<void()>& step) {
  step();  // warm-up
  synchronize(device);
  const Memory memory(device);
  std::vector<double> ms;
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    step();
    synchronize(device);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[1], memory.peak_mib(), memory.kind()};
}

}  // namespace theria::lab
