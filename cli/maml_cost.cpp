#include "maml_cost.h"

#include <ATen/ATen.h>

#ifdef THERIA_WITH_FUSED
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDACachingAllocator.h>
#endif

#include <algorithm>
#include <chrono>
#include <fstream>

namespace theria::cli {
namespace {

void synchronize(const at::Device& device) {
#ifdef THERIA_WITH_FUSED
  if (device.is_cuda()) at::cuda::getCurrentCUDAStream().synchronize();
#endif
}

// Peak memory of one call: the CUDA allocator's peak above what was allocated before (GPU), or
// the process's peak resident set so far, VmHWM (CPU; it only grows).
struct Memory {
  explicit Memory(const at::Device& device) : device_(device) {
#ifdef THERIA_WITH_FUSED
    if (device.is_cuda()) {
      c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
      base_ = stat().current;
    }
#endif
  }
  double peak_mib() const {
#ifdef THERIA_WITH_FUSED
    if (device_.is_cuda()) return static_cast<double>(stat().peak - base_) / (1 << 20);
#endif
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);) {
      if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
    }
    return 0.0;
  }
  const char* kind() const { return device_.is_cuda() ? "cuda_allocator_peak_mib" : "process_peak_rss_mib"; }

 private:
#ifdef THERIA_WITH_FUSED
  c10::CachingAllocator::Stat stat() const {
    return c10::cuda::CUDACachingAllocator::getDeviceStats(device_.index())
        .allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
  }
  int64_t base_ = 0;
#endif
  at::Device device_;
};

}  // namespace

StepCost time_meta_step(const lab::TrainConfig& t, lab::MamlMode mode, const lab::Weights& w,
                        const std::vector<lab::Task>& tasks) {
  lab::MamlConfig maml = t.maml;
  maml.mode = mode;
  lab::meta_gradient(t.model, maml, w, tasks);  // warm-up
  synchronize(t.device);
  const Memory memory(t.device);
  std::vector<double> ms;
  for (int i = 0; i < 3; ++i) {
    const auto start = std::chrono::steady_clock::now();
    lab::meta_gradient(t.model, maml, w, tasks);
    synchronize(t.device);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[1], memory.peak_mib(), memory.kind()};
}

}  // namespace theria::cli
