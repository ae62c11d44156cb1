// The element types that select the float32 tensor-core kernels (mma.cuh, MmaOperand): stored, read and written as
// float32 (sizeof 4), so that a float tensor's data is their array.
//   TensorFloat32     matmul precision "high": TF32 products (10-bit mantissa, fp32 accumulation), as cuBLAS.
//   Float32Parts<3>   matmul precision "highest": three bfloat16 parts per operand, float32 accuracy.
#pragma once

#include <cuda_runtime.h>

namespace theria::kernels::cuda {

template <int kParts_>
struct Float32Parts {
  float value;
  __host__ __device__ operator float() const { return value; }
};

struct TensorFloat32 {
  float value;
  __host__ __device__ operator float() const { return value; }
};

}  // namespace theria::kernels::cuda
