// Hopper warpgroup MMAs (wgmma, sm_90a): one instruction multiplies a 64 x 16 tile A by a 16 x N tile B
// for the 4 warps of a warpgroup, the tensor cores reading the shared-memory operands themselves, once
// for the whole warpgroup (mma.sync needs each warp to load its own copy of B through ldmatrix).
//
// Operands: B always from shared memory through a 64-bit matrix descriptor of a CoreMatrixRows tile
// (tile_io.cuh), K-major (kTrans = 0: tile rows are N, columns K) or MN-major (kTrans = 1: rows are K,
// columns N). A from shared memory the same way (wgmma_ss, rows M or K), or from registers (wgmma_rs):
// warp w supplies rows 16w .. 16w + 15 as an mma.sync A fragment (ldmatrix or c_to_a).
// Accumulator: warp w holds rows 16w .. 16w + 15 with the register layout of an mma.sync C fragment
// repeated over N / 8 column tiles (acc[nt][e]: row g + 8 (e / 2), column 8 nt + 2 t + e % 2), so the
// epilogues of the mma.sync kernels take it unchanged.
// Descriptor offsets, no swizzle (checked on an H100: the other reading faults): the leading offset is
// the distance between 8 x 8 blocks adjacent along K, the stride offset between blocks adjacent along
// M or N, for both majors. With the 128-byte swizzle (tiles copied by TMA): the stride offset is the
// distance between 8-row atoms; the leading offset, for MN-major operands only, between 64-column boxes.
// Ordering: shared memory written by threads (cp.async included) needs fence_proxy_async() in the
// writing threads before the barrier that precedes the wgmma; wgmma_fence() after registers a wgmma
// reads (A, accumulators) were written by other instructions; wgmma_commit() closes a group;
// wgmma_wait<n>() waits until at most n groups are in flight, and fence_operands() after it keeps the
// compiler from touching the accumulators (or reusing A registers) earlier.
#pragma once

#include "fused/mma.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace theria::kernels::cuda {

// The descriptor of a CoreMatrixRows tile at shared-memory byte address `tile`, K-major (rows are M or
// N, columns K) or MN-major (rows are K, columns M or N); at(r, c) moves its start to element (r, c),
// for the k-step whose 16 columns (K-major) or rows (MN-major) start there. The start address sits in
// the low bits, so with r, c known at compile time each k-step's descriptor is one add on a base the
// loop forms once. The base goes through a shuffle from lane 0: the compiler then neither hoists every
// k-step's descriptor out of the loop (two registers each) nor loses sight of the base being the same
// in the whole warp (which keeps the descriptors in uniform registers, with no copy per use).
// The layout gives the offsets and the swizzle mode (tile_io.cuh: CoreMatrixRows, Swizzled128Rows).
template <class Layout, bool kMnMajor>
struct TileDesc {
  static constexpr uint32_t kLead = Layout::template lead_bytes<kMnMajor>();
  static constexpr uint32_t kStride = Layout::template stride_bytes<kMnMajor>();
  static constexpr uint32_t kHigh = (kStride >> 4) | (Layout::kSwizzleMode << 30);  // bits 32-45 and 62-63
  // The start address field holds bits 4-17 of the address. A CTA launched in a cluster sees its shared memory at
  // addresses with its rank in the top byte (sm_90 forms every shared address so; 0 outside cluster launches), which
  // unmasked would spill into the leading byte offset's field (bits 16-29): in docs/results/dq_pairs every rank-1
  // CTA read its operands 256 bytes off.
  static constexpr uint32_t kAddressBits = 0x3FFFF;
  uint32_t lo;
  TileDesc() = default;  // (for arrays of descriptors, one per operand part)
  __device__ __forceinline__ explicit TileDesc(uint32_t tile)
      : lo(__shfl_sync(0xffffffff, ((tile & kAddressBits) >> 4) | ((kLead >> 4) << 16), 0)) {}
  __device__ __forceinline__ uint64_t at(int r, int c) const {
    return (static_cast<uint64_t>(kHigh) << 32) | (lo + ((2 * Layout::offset(r, c)) >> 4));
  }
};

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int kPending>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(kPending) : "memory");
}
// Makes this thread's generic-proxy shared-memory writes visible to the tensor cores' async proxy.
__device__ __forceinline__ void fence_proxy_async() { asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Named barrier (0 is __syncthreads): waits until `threads` threads have reached barrier `id`.
__device__ __forceinline__ void named_barrier_sync(int id, int threads) {
  asm volatile("bar.sync %0, %1;\n" ::"r"(id), "r"(threads) : "memory");
}

// Pins registers at this point of the program: the compiler must assume they change here.
template <int kRows, int kCols, typename V>
__device__ __forceinline__ void fence_operands(V (&x)[kRows][kCols]) {
#pragma unroll
  for (int i = 0; i < kRows; ++i) {
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      if constexpr (std::is_same_v<V, float>) {
        asm volatile("" : "+f"(x[i][j])::"memory");
      } else {
        asm volatile("" : "+r"(x[i][j])::"memory");
      }
    }
  }
}

template <typename T, int kN>
struct Wgmma;

// The accumulator operand lists, 4 registers per 8-column tile: of one array c, or of two arrays lo and hi holding the
// first and the second half of the columns (H_N: ss_halves).
#define THERIA_WG_A4(a, i) "+f"(a[i][0]), "+f"(a[i][1]), "+f"(a[i][2]), "+f"(a[i][3])
#define THERIA_WG_C4(i) THERIA_WG_A4(c, i)
#define THERIA_WG_H_N16 THERIA_WG_A4(lo, 0), THERIA_WG_A4(hi, 0)
#define THERIA_WG_H_N32 THERIA_WG_A4(lo, 0), THERIA_WG_A4(lo, 1), THERIA_WG_A4(hi, 0), THERIA_WG_A4(hi, 1)
#define THERIA_WG_H_N64                                                                                  \
  THERIA_WG_A4(lo, 0), THERIA_WG_A4(lo, 1), THERIA_WG_A4(lo, 2), THERIA_WG_A4(lo, 3), THERIA_WG_A4(hi, 0), \
      THERIA_WG_A4(hi, 1), THERIA_WG_A4(hi, 2), THERIA_WG_A4(hi, 3)
#define THERIA_WG_H_N128                                                                                       \
  THERIA_WG_A4(lo, 0), THERIA_WG_A4(lo, 1), THERIA_WG_A4(lo, 2), THERIA_WG_A4(lo, 3), THERIA_WG_A4(lo, 4),       \
      THERIA_WG_A4(lo, 5), THERIA_WG_A4(lo, 6), THERIA_WG_A4(lo, 7), THERIA_WG_A4(hi, 0), THERIA_WG_A4(hi, 1), \
      THERIA_WG_A4(hi, 2), THERIA_WG_A4(hi, 3), THERIA_WG_A4(hi, 4), THERIA_WG_A4(hi, 5), THERIA_WG_A4(hi, 6), \
      THERIA_WG_A4(hi, 7)
#define THERIA_WG_C_N16 THERIA_WG_C4(0), THERIA_WG_C4(1)
#define THERIA_WG_C_N32 THERIA_WG_C_N16, THERIA_WG_C4(2), THERIA_WG_C4(3)
#define THERIA_WG_C_N64 THERIA_WG_C_N32, THERIA_WG_C4(4), THERIA_WG_C4(5), THERIA_WG_C4(6), THERIA_WG_C4(7)
#define THERIA_WG_C_N128                                                                                   \
  THERIA_WG_C_N64, THERIA_WG_C4(8), THERIA_WG_C4(9), THERIA_WG_C4(10), THERIA_WG_C4(11), THERIA_WG_C4(12), \
      THERIA_WG_C4(13), THERIA_WG_C4(14), THERIA_WG_C4(15)
#define THERIA_WG_R_N16 "{%0, %1, %2, %3, %4, %5, %6, %7}"
#define THERIA_WG_R_N32 "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}"
#define THERIA_WG_R_N64                                                                                    \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
  "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define THERIA_WG_R_N128                                                                                   \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, " \
  "%22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, "   \
  "%42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, "   \
  "%62, %63}"

// One specialisation per (element type, N). The accumulator registers take operand numbers 0 .. R - 1;
// I0 .. I6 are the numbers R .. R + 6 of the operands after them (A, B, the accumulate flag, the
// transposes), as strings. ss_halves: ss with the accumulator as two arrays of N / 2 columns each (two tiles that
// are used apart, formed by one product; wgmma_product_rule_stacked).
#define THERIA_WG_SS_ASM(PTYPE, N, I0, I1, I2, I3, I4)                                       \
  "{\n.reg .pred p;\nsetp.ne.b32 p, " I2 ", 0;\n"                                           \
  "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTYPE " " THERIA_WG_R_N##N ", " I0 ", " I1 \
  ", p, 1, 1, " I3 ", " I4 ";\n}\n"
#define THERIA_WGMMA(CTYPE, PTYPE, N, I0, I1, I2, I3, I4, I5, I6)                                             \
  template <>                                                                                                 \
  struct Wgmma<CTYPE, N> {                                                                                    \
    template <int kTransA, int kTransB>                                                                       \
    __device__ __forceinline__ static void ss(float (&c)[N / 8][4], uint64_t a, uint64_t b, int accumulate) { \
      asm volatile(THERIA_WG_SS_ASM(PTYPE, N, I0, I1, I2, I3, I4)                                             \
                   : THERIA_WG_C_N##N                                                                         \
                   : "l"(a), "l"(b), "r"(accumulate), "n"(kTransA), "n"(kTransB));                            \
    }                                                                                                         \
    template <int kTransA, int kTransB>                                                                       \
    __device__ __forceinline__ static void ss_halves(float (&lo)[N / 16][4], float (&hi)[N / 16][4], uint64_t a, \
                                                     uint64_t b, int accumulate) {                            \
      asm volatile(THERIA_WG_SS_ASM(PTYPE, N, I0, I1, I2, I3, I4)                                             \
                   : THERIA_WG_H_N##N                                                                         \
                   : "l"(a), "l"(b), "r"(accumulate), "n"(kTransA), "n"(kTransB));                            \
    }                                                                                                         \
    template <int kTransB>                                                                                    \
    __device__ __forceinline__ static void rs(float (&c)[N / 8][4], const uint32_t (&a)[4], uint64_t b,      \
                                              int accumulate) {                                               \
      asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, " I5 ", 0;\n"                                           \
                   "wgmma.mma_async.sync.aligned.m64n" #N "k16.f32." PTYPE " " THERIA_WG_R_N##N ", {" I0      \
                   ", " I1 ", " I2 ", " I3 "}, " I4 ", p, 1, 1, " I6 ";\n}\n"                                  \
                   : THERIA_WG_C_N##N                                                                         \
                   : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(accumulate), "n"(kTransB));     \
    }                                                                                                         \
  };
THERIA_WGMMA(__nv_bfloat16, "bf16.bf16", 16, "%8", "%9", "%10", "%11", "%12", "%13", "%14")
THERIA_WGMMA(__nv_bfloat16, "bf16.bf16", 32, "%16", "%17", "%18", "%19", "%20", "%21", "%22")
THERIA_WGMMA(__nv_bfloat16, "bf16.bf16", 64, "%32", "%33", "%34", "%35", "%36", "%37", "%38")
THERIA_WGMMA(__nv_bfloat16, "bf16.bf16", 128, "%64", "%65", "%66", "%67", "%68", "%69", "%70")
THERIA_WGMMA(__half, "f16.f16", 16, "%8", "%9", "%10", "%11", "%12", "%13", "%14")
THERIA_WGMMA(__half, "f16.f16", 32, "%16", "%17", "%18", "%19", "%20", "%21", "%22")
THERIA_WGMMA(__half, "f16.f16", 64, "%32", "%33", "%34", "%35", "%36", "%37", "%38")
THERIA_WGMMA(__half, "f16.f16", 128, "%64", "%65", "%66", "%67", "%68", "%69", "%70")
#undef THERIA_WGMMA

// acc (+)= A B with A and B from shared memory (descriptors); accumulate == 0 overwrites acc.
template <typename T, int kTransA, int kTransB, int kN>
__device__ __forceinline__ void wgmma_ss(float (&c)[kN / 8][4], uint64_t a, uint64_t b, int accumulate) {
  Wgmma<T, kN>::template ss<kTransA, kTransB>(c, a, b, accumulate);
}
// The same with the accumulator's columns [0, kN / 2) in lo and the rest in hi.
template <typename T, int kTransA, int kTransB, int kN>
__device__ __forceinline__ void wgmma_ss_halves(float (&lo)[kN / 16][4], float (&hi)[kN / 16][4], uint64_t a,
                                                uint64_t b, int accumulate) {
  Wgmma<T, kN>::template ss_halves<kTransA, kTransB>(lo, hi, a, b, accumulate);
}
// acc (+)= A B with A from registers (this warp's 16 rows) and B from shared memory.
template <typename T, int kTransB, int kN>
__device__ __forceinline__ void wgmma_rs(float (&c)[kN / 8][4], const uint32_t (&a)[4], uint64_t b, int accumulate) {
  Wgmma<T, kN>::template rs<kTransB>(c, a, b, accumulate);
}

// k-step kk of a product's tangent by the product rule, both operands K-major: acc_dot (+)= A_dot B^T [+ A B_dot^T
// when kBDot]; the first k-step overwrites acc_dot.
template <typename T, int kN, bool kBDot, class DescA, class DescB, class Dot>
__device__ __forceinline__ void wgmma_tangent_step(Dot& acc_dot, const DescA& a, const DescA& a_dot, const DescB& b,
                                                   const DescB& b_dot, int kk) {
  wgmma_ss<T, 0, 0, kN>(acc_dot, a_dot.at(0, 16 * kk), b.at(0, 16 * kk), kk > 0);
  if constexpr (kBDot) wgmma_ss<T, 0, 0, kN>(acc_dot, a.at(0, 16 * kk), b_dot.at(0, 16 * kk), 1);
}

// The product and its tangent, over kK / 16 k-steps with both operands K-major: acc = A B^T; with kTangent also
// acc_dot = A_dot B^T [+ A B_dot^T when kBDot], interleaved by k-step. The first k-step overwrites the
// accumulators; the caller commits the group.
template <typename T, int kN, int kK, bool kTangent, bool kBDot, class DescA, class DescB, class Dot>
__device__ __forceinline__ void wgmma_product_rule(float (&acc)[kN / 8][4], Dot& acc_dot, const DescA& a,
                                                   const DescA& a_dot, const DescB& b, const DescB& b_dot) {
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk) {
    wgmma_ss<T, 0, 0, kN>(acc, a.at(0, 16 * kk), b.at(0, 16 * kk), kk > 0);
    if constexpr (kTangent) wgmma_tangent_step<T, kN, kBDot>(acc_dot, a, a_dot, b, b_dot, kk);
  }
}

// The product alone: acc = A B^T.
template <typename T, int kN, int kK, class DescA, class DescB>
__device__ __forceinline__ void wgmma_product(float (&acc)[kN / 8][4], const DescA& a, const DescB& b) {
  wgmma_product_rule<T, kN, kK, false, false>(acc, acc, a, a, b, b);
}

// The product and its tangent where B and B_dot are one stacked tile (b: its first row; kN rows of B, then kN of
// B_dot, as one K-major operand of 2 kN rows): [acc | part] = A [B; B_dot]^T as one product of 2 kN columns, and
// acc_a_dot = A_dot B^T beside it, so that acc_dot = part + acc_a_dot: the caller adds them once the group is done
// (a wgmma into some of another's accumulator registers makes ptxas serialise every wgmma of the kernel, C7511). A
// is read once for both of its products, where wgmma_product_rule reads it for each. The first k-step overwrites the
// accumulators; the caller commits the group.
template <typename T, int kN, int kK, class DescA, class DescB>
__device__ __forceinline__ void wgmma_product_rule_stacked(float (&acc)[kN / 8][4], float (&part)[kN / 8][4],
                                                           float (&acc_a_dot)[kN / 8][4], const DescA& a,
                                                           const DescA& a_dot, const DescB& b) {
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk) {
    wgmma_ss_halves<T, 0, 0, 2 * kN>(acc, part, a.at(0, 16 * kk), b.at(0, 16 * kk), kk > 0);
    wgmma_ss<T, 0, 0, kN>(acc_a_dot, a_dot.at(0, 16 * kk), b.at(0, 16 * kk), kk > 0);
  }
}

// The tangent alone, for a caller that forms the product itself in another commit group (the phased
// backward-JVP, sdpa_bwd_wg.cuh).
template <typename T, int kN, int kK, bool kBDot, class DescA, class DescB>
__device__ __forceinline__ void wgmma_product_tangent(float (&acc_dot)[kN / 8][4], const DescA& a, const DescA& a_dot,
                                                      const DescB& b, const DescB& b_dot) {
#pragma unroll
  for (int kk = 0; kk < kK / 16; ++kk) wgmma_tangent_step<T, kN, kBDot>(acc_dot, a, a_dot, b, b_dot, kk);
}

}  // namespace theria::kernels::cuda
