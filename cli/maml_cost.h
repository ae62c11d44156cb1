// The cost of one meta-step for `theria maml`: its time (median of 3 after a warm-up) and the peak
// memory it adds (the CUDA allocator's peak on GPU, the process's peak resident set on CPU).
#pragma once

#include "trainer.h"

#include <string>
#include <vector>

namespace theria::cli {

struct StepCost {
  double ms = 0.0, peak_mib = 0.0;
  std::string memory_kind;  // "cuda_allocator_peak_mib" or "process_peak_rss_mib"
};

StepCost time_meta_step(const lab::TrainConfig& t, lab::MamlMode mode, const lab::Weights& w,
                        const std::vector<lab::Task>& tasks);

}  // namespace theria::cli
