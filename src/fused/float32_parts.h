// The element type that selects the float32 tensor-core kernels with kParts bfloat16 parts per operand (mma.cuh,
// MmaOperand): stored, read and written as float32 (sizeof 4), so that a float tensor's data is its array.
#pragma once

#include <cuda_runtime.h>

namespace theria::kernels::cuda {

template <int kParts_>
struct Float32Parts {
  float value;
  __host__ __device__ operator float() const { return value; }
};

}  // namespace theria::kernels::cuda
