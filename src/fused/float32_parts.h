// The element types that select the float32 tensor-core kernels: stored, read and written as float32 (sizeof 4), so
// that a float tensor's data is their array; the products run on 16-bit operands (mma.cuh, MmaOperand).
#pragma once

#include <cuda_runtime.h>

namespace theria::kernels::cuda {

// kParts bfloat16 parts per operand (three: matmul precision "highest"; `float` itself is the two-part split).
template <int kParts_>
struct Float32Parts {
  float value;
  __host__ __device__ operator float() const { return value; }
};

// Matmul precision "high" at head dims 64 and 128: each operand as one float16 copy scaled by a power of two
// (operand_scales.cuh), float16's 10 explicit mantissa bits being TF32's; the kernels' arithmetic is the float16
// kernels', with the scales folded into their row statistics and output factors.
struct Float32Half {
  float value;
  __host__ __device__ operator float() const { return value; }
};

template <typename T>
inline constexpr bool kIsFloat32Half = false;
template <>
inline constexpr bool kIsFloat32Half<Float32Half> = true;

}  // namespace theria::kernels::cuda
