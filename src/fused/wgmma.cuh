// Hopper warpgroup MMAs (wgmma, sm_90a) with both operands read from shared memory.
//
// One instruction multiplies a 64 x 16 tile A by a 16 x N tile B for the 4 warps of a warpgroup, the
// tensor cores reading A and B from shared memory themselves (no ldmatrix, no operand registers).
// Both tiles are K-major in the CoreMatrixRows layout (tile_io.cuh), described by a 64-bit matrix
// descriptor. The fp32 accumulator of warp w (rows 16w .. 16w + 15) has the register layout of an
// mma.sync C fragment repeated over N / 8 column tiles: acc[nt][e] is row g + 8 (e / 2), column
// 8 nt + 2 t + e % 2, so the kernels' epilogues take either kind of result.
// Ordering: shared memory written by threads (cp.async included) must be followed by
// fence_proxy_async() in the writing threads before the barrier that precedes the wgmma;
// wgmma_fence() before the first wgmma of a group, wgmma_commit() + wgmma_wait<0>() before the
// accumulators are read.
#pragma once

#include "fused/mma.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace theria::kernels::cuda {

// Descriptor of a no-swizzle K-major tile starting at `tile`: lead_bytes between 8 x 8 blocks along K,
// stride_bytes between blocks of 8 rows (bits 0-13 address, 16-29 and 32-45 the offsets, all >> 4;
// base offset and swizzle mode 0).
__device__ __forceinline__ uint64_t wgmma_desc(const void* tile, uint32_t lead_bytes, uint32_t stride_bytes) {
  const uint64_t addr = (smem_addr(tile) & 0x3FFFF) >> 4;
  return addr | (static_cast<uint64_t>((lead_bytes & 0x3FFFF) >> 4) << 16) |
         (static_cast<uint64_t>((stride_bytes & 0x3FFFF) >> 4) << 32);
}

// The descriptor of the 16-column k-step kk of a CoreMatrixRows<kCols> tile, from row `row0` on.
template <class Layout, typename T>
__device__ __forceinline__ uint64_t wgmma_tile_desc(const T* tile, int row0, int kk) {
  return wgmma_desc(tile + Layout::offset(row0, kk * 16), Layout::kLeadBytes, Layout::kStrideBytes);
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Makes this thread's generic-proxy shared-memory writes visible to the tensor cores' async proxy.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// acc (+)= A B for a 64 x 16 A and a 16 x kN B, both from shared memory; accumulate == 0 overwrites.
template <typename T, int kN>
struct WgmmaSS;

#define THERIA_WGMMA_PRED "{\n.reg .pred p;\nsetp.ne.b32 p, %" 
#define THERIA_WGMMA_TYPE_bf16 "bf16.bf16"
#define THERIA_WGMMA_TYPE_f16 "f16.f16"

#define THERIA_WGMMA_N16(TYPE, CTYPE)                                                                          \
  template <>                                                                                                  \
  struct WgmmaSS<CTYPE, 16> {                                                                                  \
    __device__ __forceinline__ static void run(float (&c)[2][4], uint64_t a, uint64_t b, int accumulate) {   \
      asm volatile(THERIA_WGMMA_PRED "10, 0;\n"                                                               \
                   "wgmma.mma_async.sync.aligned.m64n16k16.f32." TYPE                                          \
                   " {%0, %1, %2, %3, %4, %5, %6, %7}, %8, %9, p, 1, 1, 0, 0;\n}\n"                             \
                   : "+f"(c[0][0]), "+f"(c[0][1]), "+f"(c[0][2]), "+f"(c[0][3]), "+f"(c[1][0]), "+f"(c[1][1]), \
                     "+f"(c[1][2]), "+f"(c[1][3])                                                              \
                   : "l"(a), "l"(b), "r"(accumulate));                                                         \
    }                                                                                                          \
  };

#define THERIA_WGMMA_N32(TYPE, CTYPE)                                                                          \
  template <>                                                                                                  \
  struct WgmmaSS<CTYPE, 32> {                                                                                  \
    __device__ __forceinline__ static void run(float (&c)[4][4], uint64_t a, uint64_t b, int accumulate) {   \
      asm volatile(THERIA_WGMMA_PRED "18, 0;\n"                                                               \
                   "wgmma.mma_async.sync.aligned.m64n32k16.f32." TYPE                                          \
                   " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15},"                  \
                   " %16, %17, p, 1, 1, 0, 0;\n}\n"                                                             \
                   : "+f"(c[0][0]), "+f"(c[0][1]), "+f"(c[0][2]), "+f"(c[0][3]), "+f"(c[1][0]), "+f"(c[1][1]), \
                     "+f"(c[1][2]), "+f"(c[1][3]), "+f"(c[2][0]), "+f"(c[2][1]), "+f"(c[2][2]), "+f"(c[2][3]), \
                     "+f"(c[3][0]), "+f"(c[3][1]), "+f"(c[3][2]), "+f"(c[3][3])                                \
                   : "l"(a), "l"(b), "r"(accumulate));                                                         \
    }                                                                                                          \
  };

THERIA_WGMMA_N16(THERIA_WGMMA_TYPE_bf16, __nv_bfloat16)
THERIA_WGMMA_N16(THERIA_WGMMA_TYPE_f16, __half)
THERIA_WGMMA_N32(THERIA_WGMMA_TYPE_bf16, __nv_bfloat16)
THERIA_WGMMA_N32(THERIA_WGMMA_TYPE_f16, __half)

#undef THERIA_WGMMA_N16
#undef THERIA_WGMMA_N32
#undef THERIA_WGMMA_TYPE_bf16
#undef THERIA_WGMMA_TYPE_f16
#undef THERIA_WGMMA_PRED

template <typename T, int kN>
__device__ __forceinline__ void wgmma_ss(float (&c)[kN / 8][4], uint64_t a, uint64_t b, int accumulate) {
  WgmmaSS<T, kN>::run(c, a, b, accumulate);
}

}  // namespace theria::kernels::cuda
