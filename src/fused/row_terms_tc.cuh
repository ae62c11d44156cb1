// Row terms of the tensor-core backward and backward-JVP (docs/derivatives.md, B and BJ), in fp32. The backward's:
// delta = rowsum(dout * out), each block also zeroing its rows of the dQ buffer (SdpaFwdParams::zero_dq_accum;
// dq_finish.cuh, zero_dq_rows) instead of a fill launch of its own. The backward-JVP's tangent pass writes delta
// (SdpaFwdParams::dout_out), rowsum(dout * out_dot) into delta_dot from the out_dot it had before rounding
// (dout_out_dot), and zeroes the dQ-tangent buffer; what is left is a dout tangent's term, which kDoutDot adds:
// delta_dot += rowsum(dout_dot * out) (without a dout tangent this kernel does not run: launch_tc.cuh).
// A quad of threads takes a row, each thread 16-byte chunks of it (kHeadDim / 32 of them); rows start
// on 16-byte boundaries on this path. The batch position comes from the grid, so no thread divides by
// the row count (the warp-per-row SIMT kernel spent about three times as long at the
// benchmark shapes on its divisions and 2-byte loads).
#pragma once

#include "fused/dq_finish.cuh"
#include "fused/mma.cuh"
#include "fused/operand_scales.cuh"
#include "fused/tile_io.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

namespace theria::kernels::cuda {

// The dot product of two 16-byte chunks of T (8 16-bit values, or 4 float32 on the split path), in fp32.
template <typename T>
__device__ __forceinline__ float dot_chunk(const uint4& a, const uint4& b) {
  const uint32_t x[4] = {a.x, a.y, a.z, a.w}, y[4] = {b.x, b.y, b.z, b.w};
  float s = 0.f;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    if constexpr (sizeof(T) == 4) {
      s = fmaf(__uint_as_float(x[i]), __uint_as_float(y[i]), s);
    } else {
      float a0, a1, b0, b1;
      unpack2<T>(x[i], a0, a1);
      unpack2<T>(y[i], b0, b1);
      s = fmaf(a0, b0, fmaf(a1, b1, s));
    }
  }
  return s;
}

// lse in log2 units, as the backward kernels stage it: -inf (every key masked from the row) becomes +inf, so that the
// row's probabilities exp2(s - lse) are exact zeros.
__device__ __forceinline__ float lse_in_log2(float lse) {
  return lse == -INFINITY ? INFINITY : lse * static_cast<float>(M_LOG2E);
}

// The row statistics a backward kernel stages per block of kBlockM query rows, in the order lse, delta
// or, with tangents (kStats = 4), lse, lse_dot, delta, delta_dot. Thread tid < kStats * kBlockM takes
// statistic tid / kBlockM of row tid % kBlockM: it fetches the value a block early, so that the load
// hides behind a step's products, and stores it later, lse turned into log2 units only then (Nsight
// Compute: a multiply right behind the load held 7 % of the backward-JVP's stall samples). The source
// is picked once, so that no array of pointers lands in local memory.
// kScaled (Float32Half, operand_scales.cuh): lse less P's exponent (P' = P 2^kProbExp); the others are in the units
// of the products on the scaled copies as their passes wrote them (the row terms, the tangent pass).
template <int kStats, int kBlockM, bool kScaled = false>
struct RowStatStager {
  static_assert(kStats == 2 || kStats == 4, "lse and delta, with or without their tangents");
  const float* src;
  int row, tid;
  __device__ __forceinline__ RowStatStager(const SdpaBwdParams& p, int64_t b, int tid_) : tid(tid_) {
    const int which = tid / kBlockM;
    row = tid % kBlockM;
    const void* base = kStats == 2 ? (which == 0 ? p.lse : p.delta)
                                   : (which == 0 ? p.lse : which == 1 ? p.lse_dot : which == 2 ? p.delta : p.delta_dot);
    src = which < kStats ? static_cast<const float*>(base) + b * p.len_q : nullptr;
  }
  // This thread's statistic of the block starting at query m (0 past the end), of the query position `head`
  // after b (grouped-query attention: GroupSteps).
  __device__ __forceinline__ float fetch(int m, int len_q, int head = 0) const {
    return src == nullptr || m + row >= len_q ? 0.f : src[static_cast<int64_t>(head) * len_q + m + row];
  }
  // Or statistic `id` of the block starting at query m straight into stats[buf][kStats][kBlockM] as it is (cp.async,
  // zero past the end; the caller commits and waits), the source taken from the parameters each time (no register
  // held for it): the reader then takes lse into log2 units (in_log2).
  static __device__ __forceinline__ void copy(const SdpaBwdParams& p, int64_t b, int id, float* stats, int buf, int m,
                                              int head = 0) {
    const int which = id / kBlockM, row = id % kBlockM;
    const void* base = kStats == 2 ? (which == 0 ? p.lse : p.delta)
                                   : (which == 0 ? p.lse : which == 1 ? p.lse_dot : which == 2 ? p.delta : p.delta_dot);
    const bool inside = m + row < p.len_q;
    const float* src = static_cast<const float*>(base) + (b + head) * p.len_q + (inside ? m + row : 0);
    cp_async_4(stats + buf * kStats * kBlockM + id, src, inside);
  }
  // A copied lse as store() would have staged it.
  static __device__ __forceinline__ float in_log2(float lse) {
    constexpr float kLseShift = kScaled ? static_cast<float>(kProbExp) : 0.f;
    return lse_in_log2(lse) - kLseShift;
  }
  // Into stats[buf][kStats][kBlockM] in shared memory (lse through lse_in_log2).
  // (x - 0.f is x for every x, so the 16-bit kernels' code is what it was without the shift.)
  __device__ __forceinline__ void store(float* stats, int buf, float x) const {
    constexpr float kLseShift = kScaled ? static_cast<float>(kProbExp) : 0.f;
    if (tid < kStats * kBlockM) stats[buf * kStats * kBlockM + tid] = tid < kBlockM ? lse_in_log2(x) - kLseShift : x;
  }
};

constexpr int kRowTermsThreads = 256;  // 64 rows per block

template <typename T, int kHeadDim, bool kDoutDot>
__global__ void __launch_bounds__(kRowTermsThreads) sdpa_row_terms_tc_kernel(const SdpaBwdParams p) {
  constexpr int kChunks = kHeadDim * static_cast<int>(sizeof(T)) / 16 / 4;  // 16-byte chunks per thread
  const int i = blockIdx.x * (kRowTermsThreads / 4) + threadIdx.x / 4, quad_lane = threadIdx.x % 4;
  // rowsum(x * out) into the row's term: the backward's delta, or the dout tangent's share of delta_dot.
  const MatrixView& x_view = kDoutDot ? p.dout_dot : p.dout;
  float* const term = static_cast<float*>(kDoutDot ? p.delta_dot : p.delta);
  // Float32Half: the term in the units of the backward kernels' products on the scaled copies, dP' = dP 2^(dout + v)
  // [dP_dot' also 2^t] (operand_scales.cuh): the kernels stage it as it is.
  [[maybe_unused]] float units = 1.f;
  if constexpr (kIsFloat32Half<T>) {
    units = block_uniform([&] {
      const ScaleFactors f = ScaleFactors::of(OperandScales::from(p.operand_amax), p.scale, kDoutDot);
      return kDoutDot ? f.delta_dot : f.delta;
    });
  }
  for (int64_t b = blockIdx.y; b < p.batch; b += gridDim.y) {
    if (!kDoutDot && p.zero_dq_accum != nullptr) {
      zero_dq_rows<kRowTermsThreads / 4, kHeadDim, kRowTermsThreads>(p.zero_dq_accum, b,
                                                                     blockIdx.x * (kRowTermsThreads / 4),
                                                                     static_cast<int>(p.len_q), threadIdx.x);
    }
    float sum = 0.f;
    if (i < p.len_q) {
      const auto at = [&](const MatrixView& m) { return batch_base<const T>(m, b) + static_cast<int64_t>(i) * m.row_stride; };
      const uint4* x = reinterpret_cast<const uint4*>(at(x_view));
      const uint4* out = reinterpret_cast<const uint4*>(at(p.out));
#pragma unroll
      for (int c = 0; c < kChunks; ++c) sum += dot_chunk<T>(x[quad_lane + 4 * c], out[quad_lane + 4 * c]);
    }
    sum = quad_sum(sum);
    if constexpr (kIsFloat32Half<T>) sum *= units;
    if (i < p.len_q && quad_lane == 0) {
      float& dst = term[b * p.len_q + i];
      if constexpr (kDoutDot) {
        dst += sum;
      } else {
        dst = sum;
      }
    }
  }
}

template <typename T, int kHeadDim, bool kDoutDot>
void launch_sdpa_row_terms_tc(const SdpaBwdParams& p, cudaStream_t stream) {
  constexpr int kRows = kRowTermsThreads / 4;
  const dim3 grid(static_cast<unsigned>((p.len_q + kRows - 1) / kRows), static_cast<unsigned>(std::min<int64_t>(p.batch, 65535)));
  if (grid.x == 0 || grid.y == 0) return;
  sdpa_row_terms_tc_kernel<T, kHeadDim, kDoutDot><<<grid, kRowTermsThreads, 0, stream>>>(p);
}

}  // namespace theria::kernels::cuda
