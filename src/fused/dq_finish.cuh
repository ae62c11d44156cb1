// The dQ side of the tensor-core backward and backward-JVP: each key block adds its share of dQ (or
// of its tangent) into an fp32 buffer with atomics (add_dq_tile), and a last kernel writes
// scale * buffer in the output dtype and layout (launch_dq_finish; rows start on 16-byte boundaries
// on this path). Atomic adds arrive in any order, so dQ's last bits vary between runs; under
// torch.use_deterministic_algorithms(True) the binding passes a turn counter per query block and the
// key blocks add in ascending order (DqTurn), which fixes every sum's order (docs/contract.md, "Determinism").
#pragma once

#include "fused/kernel_templates.h"
#include "fused/operand_scales.cuh"
#include "fused/tile_io.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_runtime.h>

#include <algorithm>

namespace theria::kernels::cuda {

// Adds a warp's 16 x kCols accumulator tile (mma C fragments) to rows m0 .. m0 + 15 of the buffer,
// starting at column col0. Each lane's two neighbouring columns go as one 8-byte reduction
// (red.global.add.v2.f32 on sm_90): half the L2 atomic operations of two scalar adds.
template <int kCols, int kHeadDim>
__device__ __forceinline__ void add_dq_tile(float* dq_accum, const float (&acc)[kCols / 8][4], int m0, int col0,
                                            int len_q, int lane) {
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int qi = m0 + g + 8 * r;
    if (qi >= len_q) continue;
    float* row = dq_accum + static_cast<int64_t>(qi) * kHeadDim + col0 + 2 * t;
#pragma unroll
    for (int dt = 0; dt < kCols / 8; ++dt) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
      atomicAdd(reinterpret_cast<float2*>(row + dt * 8), make_float2(acc[dt][2 * r], acc[dt][2 * r + 1]));
#else
      atomicAdd(row + dt * 8, acc[dt][2 * r]);
      atomicAdd(row + dt * 8 + 1, acc[dt][2 * r + 1]);
#endif
    }
  }
}

// The buffer's start: rows [row0, row0 + kRows) of batch position b that lie below len_q zeroed by the kCtaThreads
// threads of a CTA that runs before the backward anyway (the row terms; the backward-JVP's tangent pass:
// SdpaFwdParams::zero_dq_accum), in 16-byte stores, instead of a fill launch of its own.
template <int kRows, int kHeadDim, int kCtaThreads>
__device__ __forceinline__ void zero_dq_rows(float* dq_accum, int64_t b, int row0, int len_q, int tid) {
  static_assert(kHeadDim % 4 == 0, "rows of whole float4s");
  float4* rows = reinterpret_cast<float4*>(dq_accum + (b * len_q + row0) * kHeadDim);
  const int vecs = min(kRows, len_q - row0) * (kHeadDim / 4);
#pragma unroll 4
  for (int i = tid; i < kRows * (kHeadDim / 4); i += kCtaThreads) {
    if (i < vecs) rows[i] = make_float4(0.f, 0.f, 0.f, 0.f);
  }
}

// Ordered dQ adds for deterministic mode: key block n adds its share of the query block at row m only
// after key blocks 0 .. n-1 have added theirs. The blocks that reach a query block are always 0 .. N
// (the causal mask hides a key block from the queries before it, never from the ones after), each
// walks its query blocks in ascending order, and a block with a lower linear index is scheduled no
// later, so the block being waited for is running or done: the wait ends. DqTurn<false> (the default,
// atomic path) is empty, so that the default kernels carry no trace of it (a runtime switch here cost the
// backward 7-11 %: docs/performance.md). wait() and pass() hold a CTA-wide barrier: call them where
// every thread of the CTA arrives.
template <bool kEnabled>
struct DqTurn {
  __device__ DqTurn(const BwdWorkspace&, int64_t, int) {}
  __device__ __forceinline__ void wait() const {}
  __device__ __forceinline__ void pass() const {}
};

template <>
struct DqTurn<true> {
  int* counter;
  int turn;

  __device__ DqTurn(const BwdWorkspace& ws, int64_t b, int m)
      : counter(ws.dq_turns + b * ws.dq_turn_slots + m / 16), turn(static_cast<int>(blockIdx.x)) {}
  __device__ __forceinline__ void wait() const {
    if (threadIdx.x == 0) {
      int seen;
      while (true) {
        asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(seen) : "l"(counter) : "memory");
        if (seen == turn) break;
        __nanosleep(64);
      }
    }
    __syncthreads();
  }
  // After this CTA's adds: make them visible before the next block's turn.
  __device__ __forceinline__ void pass() const {
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) {
      asm volatile("st.release.gpu.global.b32 [%0], %1;\n" ::"l"(counter), "r"(turn + 1) : "memory");
    }
  }
};

// The end of a backward CTA: its rows of dK or dV (or their tangents) times `scale`, stored in T at the key-side
// position of query position b0 — or, under grouped heads in the plain build (ws.key_side_adds), added to the
// zeroed fp32 buffer the view then describes, where the group's query heads meet.
template <typename T, int kCols, bool kGroups>
__device__ __forceinline__ void write_key_rows(const BwdWorkspace& ws, const MatrixView& dst, int64_t b0,
                                               const float (&acc)[kCols / 8][4], int row0, int n_rows, float scale,
                                               int lane) {
  if (ws.key_side_adds) {
    add_acc_rows<kCols>(key_base<float, true>(dst, b0), dst.row_stride, acc, row0, n_rows, scale, lane);
  } else {
    store_acc_rows<T, kCols>(key_base<T, kGroups>(dst, b0), dst.row_stride, acc, row0, n_rows, scale, lane);
  }
}

// A backward CTA that adds nothing to a query block's dQ (the mask hides the pairs) still takes its turn under
// ordered dQ adds, so that the key blocks after it are not kept waiting: pass_dq_turn for one step skipped,
// pass_dq_turns for a CTA that runs none (every key of its block hidden). Steps: GroupSteps.
template <bool kDeterministic>
__device__ __forceinline__ void pass_dq_turn(const BwdWorkspace& ws, int64_t b, int m) {
  if constexpr (kDeterministic) {
    const DqTurn<true> turn(ws, b, m);
    turn.wait();
    turn.pass();
  }
}
// A step the tile map shows hidden, in place of its work: stage_next() stages the next step's row statistics, the
// step's dQ turn is passed, and end_step() ends it as a computed step ends.
template <bool kDeterministic, class StageNext, class EndStep>
__device__ __forceinline__ void skip_step(const BwdWorkspace& ws, int64_t b, int m, StageNext stage_next,
                                          EndStep end_step) {
  stage_next();
  pass_dq_turn<kDeterministic>(ws, b, m);
  end_step();
}
template <bool kDeterministic, class Steps>
__device__ __forceinline__ void pass_dq_turns(const BwdWorkspace& ws, int64_t b0, const Steps& steps) {
  for (int step = 0; step < steps.count; ++step) pass_dq_turn<kDeterministic>(ws, b0 + steps.head(step), steps.row(step));
}
// The turns of the query blocks a CTA's walk leaves out, [m_begin, begin) and [end, len_q) of each of its `heads`
// heads in steps of block_m (a tile map's hidden rows: visible_query_rows).
template <bool kDeterministic>
__device__ __forceinline__ void pass_dq_turns_outside(const BwdWorkspace& ws, int64_t b0, int heads, int m_begin,
                                                      int begin, int end, int len_q, int block_m) {
  if constexpr (kDeterministic) {
    for (int h = 0; h < heads; ++h) {
      for (int m = m_begin; m < len_q; m += block_m) {
        if (m < begin || m >= end) pass_dq_turn<true>(ws, b0 + h, m);
      }
    }
  }
}

// scale * 8 fp32 values at src (32-byte aligned) stored as T at dst: one 16-byte store of 16-bit values, two of
// float32, from two 16-byte loads. An fp32 buffer's row chunk written out (dQ's finish, the split backward walks').
template <typename T>
__device__ __forceinline__ void store_scaled_chunk8(T* dst, const float* src, float scale) {
  const float4 x = reinterpret_cast<const float4*>(src)[0], y = reinterpret_cast<const float4*>(src)[1];
  if constexpr (sizeof(T) == 4) {  // float32 (the split path): two 16-byte stores
    reinterpret_cast<float4*>(dst)[0] = make_float4(x.x * scale, x.y * scale, x.z * scale, x.w * scale);
    reinterpret_cast<float4*>(dst)[1] = make_float4(y.x * scale, y.y * scale, y.z * scale, y.w * scale);
  } else {
    *reinterpret_cast<uint4*>(dst) = {pack2<T>(x.x * scale, x.y * scale), pack2<T>(x.z * scale, x.w * scale),
                                      pack2<T>(y.x * scale, y.y * scale), pack2<T>(y.z * scale, y.w * scale)};
  }
}

// scale * buffer as rows of T: a thread writes 8 columns (store_scaled_chunk8); the batch position comes from the
// grid, so no thread divides (the element-per-thread form with 64-bit divisions took three times as long as its
// memory traffic at the benchmark shapes).
// (Float32Half: the scale that also takes the copies' powers of two off, of dQ or, `tangent`, its tangent.)
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(256) sdpa_dq_finish_kernel(const SdpaBwdParams p, const MatrixView dst,
                                                             const BwdWorkspace ws, bool tangent) {
  constexpr int kChunks = kHeadDim / 8;  // per row
  const int idx = blockIdx.x * 256 + threadIdx.x, i = idx / kChunks, col = (idx % kChunks) * 8;
  float scale = static_cast<float>(p.scale);
  if constexpr (kIsFloat32Half<T>) {
    scale = block_uniform([&] { return ScaleFactors::of(OperandScales::from(p.operand_amax), p.scale, tangent).dq; });
  }
  if (i >= p.len_q) return;
  for (int64_t b = blockIdx.y; b < p.batch; b += gridDim.y) {
    store_scaled_chunk8(batch_base<T>(dst, b) + static_cast<int64_t>(i) * dst.row_stride + col,
                        ws.dq_accum + (b * p.len_q + i) * kHeadDim + col, scale);
  }
}

template <typename T, int kHeadDim>
void launch_dq_finish(const SdpaBwdParams& p, const MatrixView& dst, const BwdWorkspace& ws, bool tangent,
                      cudaStream_t stream) {
  const int64_t threads = p.len_q * (kHeadDim / 8);
  const dim3 grid(static_cast<unsigned>((threads + 255) / 256), static_cast<unsigned>(std::min<int64_t>(p.batch, 65535)));
  if (grid.x == 0 || grid.y == 0) return;
  sdpa_dq_finish_kernel<T, kHeadDim><<<grid, 256, 0, stream>>>(p, dst, ws, tangent);
}

}  // namespace theria::kernels::cuda
