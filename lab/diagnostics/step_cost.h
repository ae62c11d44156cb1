// The cost of one meta-step (theria maml, the studies): its time (median of 3 after a warm-up) and the peak
// memory it adds (the CUDA allocator's peak on GPU, the process's peak resident set on CPU).
#pragma once

#include "train/trainer.h"

#include <functional>
#include <string>
#include <vector>

namespace theria::lab {

struct StepCost {
  double ms = 0.0, peak_mib = 0.0;
  std::string memory_kind;  // "cuda_allocator_peak_mib" or "process_peak_rss_mib"
};

StepCost time_meta_step(const TrainConfig& t, MamlMode mode, const Weights& w,
                        const std::vector<Task>& tasks);

// The same for any step on `device` (an estimator's meta-gradient, for one): a warm-up, then the median of 3.
StepCost time_step(const at::Device& device, const std::function<void()>& step);

}  // namespace theria::lab
