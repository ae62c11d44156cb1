// A forward-AD level for one scope, released when the scope ends, by an exception too: PyTorch
// allows one level at a time, and a leaked one makes every later forward-AD call fail.
#pragma once

#include <torch/csrc/autograd/forward_grad.h>

#include <cstdint>

namespace theria::cli {

class ForwardAdLevel {
 public:
  ForwardAdLevel() : index_(torch::autograd::ForwardADLevel::get_next_idx()) {}
  ~ForwardAdLevel() { torch::autograd::ForwardADLevel::release_idx(index_); }
  ForwardAdLevel(const ForwardAdLevel&) = delete;
  ForwardAdLevel& operator=(const ForwardAdLevel&) = delete;

  uint64_t index() const { return index_; }

 private:
  uint64_t index_;
};

}  // namespace theria::cli
