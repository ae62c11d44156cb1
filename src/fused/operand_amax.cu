// float32 at matmul precision "high" on float16 operands (Float32Half): max|X| of each operand of a pass, from which
// the copies' and the kernels' powers of two follow (operand_scales.cuh). The binding runs it once per call, over
// every operand the call's passes read, so that passes which share copies (the double backward's tangent pass and
// backward-JVP) share exponents too.
#include "fused/launch.h"
#include "fused/scaled_copies.cuh"

#include <algorithm>

namespace theria::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kPairsPerThread = 8;  // a thread's share before the warp's one atomic

__global__ void __launch_bounds__(kThreads) operand_amax_kernel(const __grid_constant__ CopyBatch s, float* amax) {
  const CopyOperand& o = s.op[blockIdx.z];
  const int64_t b = blockIdx.y, elems = o.rows * s.cols;
  // The finite values' largest: an operand's inf and NaN stay what they are in its copy (inf 2^e is inf) and leave
  // the other values' exponent alone, so that non-finite inputs spread no further than float32 products spread them.
  const auto finite_abs = [](float x) { return fabsf(x) < INFINITY ? fabsf(x) : 0.f; };  // (NaN compares false)
  float m = 0.f;
  for (int64_t i = 2 * (static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x); i < elems;
       i += 2 * static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t r = i / s.cols;
    const int c = static_cast<int>(i - r * s.cols);
    float x, y;
    load2<float>(batch_base<float>(o.m, b) + r * o.m.row_stride + c, x, y);
    m = fmaxf(m, fmaxf(finite_abs(x), finite_abs(y)));
  }
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) m = fmaxf(m, __shfl_xor_sync(0xffffffff, m, offset));
  // Non-negative floats order as their bits do.
  if (threadIdx.x % 32 == 0) atomicMax(reinterpret_cast<unsigned*>(amax + o.slot), __float_as_uint(m));
}

}  // namespace

void sdpa_operand_amax(const AmaxOperand* ops, int count, int64_t batch, int cols, float* amax, cudaStream_t stream) {
  cudaMemsetAsync(amax, 0, kOperandSlots * sizeof(float), stream);
  CopyBatch s;
  s.batch = batch;
  s.cols = cols;
  int64_t elems = 0;
  for (int i = 0; i < count && s.count < kMaxCopyOperands; ++i) {
    if (ops[i].rows == 0) continue;
    s.op[s.count++] = {ops[i].view, ops[i].rows, nullptr, ops[i].slot};
    elems = std::max(elems, ops[i].rows * cols);
  }
  if (s.count == 0 || elems == 0 || batch == 0) return;
  const int64_t blocks = (elems / 2 + kThreads * kPairsPerThread - 1) / (kThreads * kPairsPerThread);
  const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(std::min<int64_t>(batch, 65535)),
                  static_cast<unsigned>(s.count));
  operand_amax_kernel<<<grid, kThreads, 0, stream>>>(s, amax);
}

}  // namespace theria::kernels::cuda
