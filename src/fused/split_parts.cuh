// float32 operands as bfloat16 parts in global memory, x = hi + lo (mma.cuh, split_pair), for the warpgroup kernels
// at matmul precision "high": their TMA copies move tiles as they are, so the parts are formed once per operand
// before the copies, where the mma.sync kernels split what they load (tile_io.cuh, split_chunk). The scratch that
// holds them is the binding's (sdpa_fwd_tc_scratch_bytes, launch.h).
#pragma once

#include "fused/mma.cuh"
#include "fused/tile_io.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace theria::kernels::cuda {

// The parts of m's `rows` x `cols` rows at every batch position, packed: part i of position b, row r at
// dst + i * part_elems + (b * rows + r) * cols. Two columns a thread (m's rows are 8-byte aligned on the
// tensor-core path). T: the split operand type (float: two parts).
template <typename T>
__global__ void split_rows_kernel(const MatrixView m, int64_t rows, int cols, int64_t part_elems,
                                  __nv_bfloat16* dst) {
  static_assert(kPartsOf<T> == 2, "two bfloat16 parts");
  const int64_t b = blockIdx.y;
  const int64_t i = 2 * (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x);
  if (i >= rows * cols) return;
  const int64_t r = i / cols;
  const int c = static_cast<int>(i - r * cols);
  float x, y;
  load2<float>(batch_base<float>(m, b) + r * m.row_stride + c, x, y);
  uint32_t parts[2];
  split_pair<T>(parts, x, y);
  const int64_t pair = (b * rows * cols + i) / 2;
  reinterpret_cast<uint32_t*>(dst)[pair] = parts[0];
  reinterpret_cast<uint32_t*>(dst + part_elems)[pair] = parts[1];
}

// m's parts at `dst` (2 * batch * rows * cols bfloat16 elements), and their views, addressed by the same batch
// positions as m (whose group must be 1: the float32 build has no grouped heads); dst moves past them, so that a
// launcher splits its operands one after the other into one scratch.
struct SplitParts {
  MatrixView part[2];
};
template <typename T>
SplitParts split_rows(const MatrixView& m, int64_t batch, int64_t rows, int cols, __nv_bfloat16*& dst,
                      cudaStream_t stream) {
  const int64_t part_elems = batch * rows * cols;
  constexpr int kThreads = 256;
  const dim3 grid(static_cast<unsigned>((rows * cols / 2 + kThreads - 1) / kThreads), static_cast<unsigned>(batch));
  split_rows_kernel<T><<<grid, kThreads, 0, stream>>>(m, rows, cols, part_elems, dst);
  SplitParts s;
  for (int i = 0; i < 2; ++i) {
    MatrixView& v = s.part[i];
    v.ptr = dst + i * part_elems;
    v.row_stride = cols;
    v.head_stride = rows * cols;
    v.heads = m.heads;
    v.batch_stride = m.heads * rows * cols;
    v.group = 1;
  }
  dst += 2 * part_elems;
  return s;
}

}  // namespace theria::kernels::cuda
