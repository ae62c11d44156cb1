// Warp-level tensor-core building blocks (sm_80+ instructions, also the fast path on Hopper for
// FlashAttention-2 style kernels): cp.async copies, ldmatrix loads, m16n8k16 MMAs, packing.
//
// Fragment layouts of mma.m16n8k16 (g = lane / 4, t = lane % 4):
//   A (16x16, row-major), 4 regs: a0 (g, 2t..2t+1) a1 (g+8, 2t..) a2 (g, 2t+8..) a3 (g+8, 2t+8..)
//   B (16x8, "col"),      2 regs: b0 (k=2t..2t+1, n=g) b1 (k=2t+8.., n=g)
//   C (16x8, fp32),       4 regs: c0,c1 (g, 2t..2t+1) c2,c3 (g+8, 2t..2t+1)
// so the C fragments of two adjacent n-tiles are exactly the A fragment of one k-step: the
// softmax probabilities feed the next product without leaving registers.
#pragma once

#include "fused/float32_parts.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace theria::kernels::cuda {

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global -> shared copy; with valid == false the destination is zero-filled (ragged tails).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}
// 4-byte global -> shared copy (cp.async.ca: 4 bytes is below .cg's 16); valid == false zero-fills.
__device__ __forceinline__ void cp_async_4(void* dst, const void* src, bool valid) {
  const int src_bytes = valid ? 4 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

template <typename T>
struct MmaOp;

template <>
struct MmaOp<__nv_bfloat16> {
  __device__ __forceinline__ static void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <>
struct MmaOp<__half> {
  __device__ __forceinline__ static void run(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

template <typename T>
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  MmaOp<T>::run(c, a, b0, b1);
}

// Two floats as one register of two 16-bit values (low half first).
template <typename T>
__device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <>
__device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
template <>
__device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi) {
  __half2 v = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}
// Float32Half's operands in registers are float16 (its scales are on the values already).
template <>
__device__ __forceinline__ uint32_t pack2<Float32Half>(float lo, float hi) {
  return pack2<__half>(lo, hi);
}

// The inverse of pack2: one register of two 16-bit values as two floats.
template <typename T>
__device__ __forceinline__ void unpack2(uint32_t pair, float& lo, float& hi);
template <>
__device__ __forceinline__ void unpack2<__nv_bfloat16>(uint32_t pair, float& lo, float& hi) {
  const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&pair));
  lo = f.x;
  hi = f.y;
}
template <>
__device__ __forceinline__ void unpack2<__half>(uint32_t pair, float& lo, float& hi) {
  const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&pair));
  lo = f.x;
  hi = f.y;
}

// x as the 16-bit operand the tensor cores will see, back in fp32. A row sum that must agree with a
// product taking the rounded values (lse_dot with W V) sums these.
template <typename T>
__device__ __forceinline__ float rounded_to(float x) {
  return static_cast<float>(static_cast<T>(x));
}
template <>
__device__ __forceinline__ float rounded_to<Float32Half>(float x) {
  return __half2float(__float2half_rn(x));
}

// The A fragment of one k-step (16 keys) built from the C fragments of n-tiles 2kk and 2kk+1.
template <typename T>
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c0)[4], const float (&c1)[4]) {
  a[0] = pack2<T>(c0[0], c0[1]);
  a[1] = pack2<T>(c0[2], c0[3]);
  a[2] = pack2<T>(c1[0], c1[1]);
  a[3] = pack2<T>(c1[2], c1[3]);
}

// The operands of the tensor-core products. A 16-bit dtype is its own operand: one part. float32 at matmul
// precision "high" (PyTorch: "treat each float32 number as the sum of two bfloat16 numbers") is split into
// bfloat16 parts, x = hi + lo with hi = bf16(x) and lo = bf16(x - hi), 16 of float32's 24 mantissa bits, and a
// product a b runs as the three MMAs a_hi b_hi + a_hi b_lo + a_lo b_hi (the dropped a_lo b_lo is 2^-16 of it)
// with fp32 accumulation: about 2^-17 relative error per product, where a single bfloat16 MMA has 2^-9.
template <typename T>
struct MmaOperand {
  using Elem = T;  // what shared memory holds and the tensor cores read
  static constexpr int kParts = 1;
};
template <>
struct MmaOperand<float> {
  using Elem = __nv_bfloat16;
  static constexpr int kParts = 2;
};
// float32 at matmul precision "high" at head dims 64 and 128 (Float32Half): one float16 operand, scaled by a power of
// two (operand_scales.cuh): 11 significant bits, TF32's, rounded to nearest.
template <>
struct MmaOperand<Float32Half> {
  using Elem = __half;
  static constexpr int kParts = 1;
};
// float32 at matmul precision "highest" (Float32Parts<3>): x = hi + mid + lo, 24 significant bits, and a product
// runs as the six MMAs whose parts' orders sum below three (hi hi, hi mid, mid hi, hi lo, mid mid, lo hi): float32
// accuracy.
template <int kParts_>
struct MmaOperand<Float32Parts<kParts_>> {
  using Elem = __nv_bfloat16;
  static constexpr int kParts = kParts_;
};
template <typename T>
using ElemOf = typename MmaOperand<T>::Elem;
template <typename T>
inline constexpr int kPartsOf = MmaOperand<T>::kParts;

// An mma A fragment (16 x 16), or the B fragments of two n-tiles (ldmatrix x4), one register set per part.
template <typename T>
struct Frag {
  uint32_t r[kPartsOf<T>][4];
};

// x, y as kParts registers of two 16-bit values each: part i holds what parts 0 .. i-1 left over.
template <typename T>
__device__ __forceinline__ void split_pair(uint32_t* parts, float x, float y) {
  using E = ElemOf<T>;
#pragma unroll
  for (int i = 0; i < kPartsOf<T>; ++i) {
    parts[i] = pack2<E>(x, y);
    if (i + 1 < kPartsOf<T>) {
      float hx, hy;
      unpack2<E>(parts[i], hx, hy);
      x -= hx;
      y -= hy;
    }
  }
}

// x as the split products see it: the sum of its parts.
template <typename T>
__device__ __forceinline__ float parts_sum(float x) {
  uint32_t parts[kPartsOf<T>];
  split_pair<T>(parts, x, 0.f);
  float sum = 0.f;
#pragma unroll
  for (int i = kPartsOf<T> - 1; i >= 0; --i) {
    float v, unused;
    unpack2<ElemOf<T>>(parts[i], v, unused);
    sum += v;
  }
  return sum;
}
template <>
__device__ __forceinline__ float rounded_to<float>(float x) {
  return parts_sum<float>(x);
}
template <>
__device__ __forceinline__ float rounded_to<Float32Parts<3>>(float x) {
  return parts_sum<Float32Parts<3>>(x);
}

// c += a b for n-tile h of b (registers 2h, 2h + 1): every pair of parts whose orders sum below kParts
// (one MMA for a 16-bit dtype, three for the bfloat16 split, six for three parts).
// With three parts ("highest") the products of one call are summed in a fresh accumulator, smallest orders first,
// and added to c by one rounded float add: the tensor cores' fp32 accumulate truncates the aligned sum to about
// 24 bits of the largest addend, the running c included, so accumulating into c directly loses 2^-23 of |c| per
// MMA, biased towards zero (the first H200 run of these kernels, accumulating into c, missed the float32 row's
// forward tolerance at 256 keys: 3.5e-6 against 2e-6); summed per call the loss is 2^-23 of the call's own products.
template <typename T>
__device__ __forceinline__ void mma(float (&c)[4], const Frag<T>& a, const Frag<T>& b, int h) {
  if constexpr (kPartsOf<T> == 3) {
    float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int order = kPartsOf<T> - 1; order >= 0; --order) {
#pragma unroll
      for (int i = 0; i <= order; ++i) {
        MmaOp<ElemOf<T>>::run(d, a.r[i], b.r[order - i][2 * h], b.r[order - i][2 * h + 1]);
      }
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) c[e] += d[e];
  } else {
#pragma unroll
    for (int i = 0; i < kPartsOf<T>; ++i) {
#pragma unroll
      for (int j = 0; i + j < kPartsOf<T>; ++j) MmaOp<ElemOf<T>>::run(c, a.r[i], b.r[j][2 * h], b.r[j][2 * h + 1]);
    }
  }
}

// Eight floats x0 .. x7 as kParts groups of four registers: out[p][i] holds part p of the pair (x_2i, x_2i+1), the
// register order of an A fragment and of a 16-byte row chunk alike.
template <typename T>
__device__ __forceinline__ void split_eight(uint32_t (&out)[kPartsOf<T>][4], float x0, float x1, float x2, float x3,
                                            float x4, float x5, float x6, float x7) {
  uint32_t pairs[4][kPartsOf<T>];
  split_pair<T>(pairs[0], x0, x1);
  split_pair<T>(pairs[1], x2, x3);
  split_pair<T>(pairs[2], x4, x5);
  split_pair<T>(pairs[3], x6, x7);
#pragma unroll
  for (int p = 0; p < kPartsOf<T>; ++p) {
#pragma unroll
    for (int i = 0; i < 4; ++i) out[p][i] = pairs[i][p];
  }
}

// c_to_a for split operands.
template <typename T>
__device__ __forceinline__ void c_to_a(Frag<T>& a, const float (&c0)[4], const float (&c1)[4]) {
  split_eight<T>(a.r, c0[0], c0[1], c0[2], c0[3], c1[0], c1[1], c1[2], c1[3]);
}

// Two neighbouring values of a global row of dtype T (16-bit, or float32 on the split path), as floats.
template <typename T>
__device__ __forceinline__ void load2(const T* at, float& x, float& y) {
  if constexpr (sizeof(T) == 4) {
    const float2 v = *reinterpret_cast<const float2*>(at);
    x = v.x;
    y = v.y;
  } else {
    unpack2<T>(*reinterpret_cast<const uint32_t*>(at), x, y);
  }
}
template <typename T>
__device__ __forceinline__ void store2(T* at, float x, float y) {
  if constexpr (sizeof(T) == 4) {
    *reinterpret_cast<float2*>(at) = make_float2(x, y);
  } else {
    *reinterpret_cast<uint32_t*>(at) = pack2<T>(x, y);
  }
}

// 2^x as one MUFU.EX2. Results below 2^-126 flush to zero, where exp2f spends four more instructions
// per element to return them as subnormals: a probability that small is zero next to the row's largest,
// which is 1 after the max (or lse) is subtracted. -inf gives 0, +inf and NaN pass through.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Calls fn(nt, e) for each masked pair of a 16-row accumulator tile (kNt column tiles from key col0;
// this thread's rows row_g and row_g + 8): keys at or past n_keys and, under the causal mask, keys
// past the row.
template <bool kCausal, int kNt, class Fn>
__device__ __forceinline__ void for_masked_pairs(int col0, int row_g, int n_keys, int t, Fn fn) {
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = col0 + nt * 8 + 2 * t + (e & 1), row = row_g + (e >> 1) * 8;
      if (col >= n_keys || (kCausal && col > row)) fn(nt, e);
    }
  }
}

// Sum / max over the 4 lanes that share a fragment row.
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffff, x, 1);
  x += __shfl_xor_sync(0xffffffff, x, 2);
  return x;
}
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, 1));
  x = fmaxf(x, __shfl_xor_sync(0xffffffff, x, 2));
  return x;
}

// What the exponentials subtract for a running max: 0 while the row has seen only -inf (exp2 of -inf - 0 is 0: a
// zero state).
__device__ __forceinline__ float max_in_use(float row_max) { return row_max == -INFINITY ? 0.f : row_max; }

// The online softmax's running max of row r (0: the fragment's row g, 1: g + 8) of a score tile s of kNt 8-column
// tiles, in log2 units (of s * scale_log2), moved over the tile; m_use is what the exponentials subtract, 0 while
// the row has seen only -inf (exp2 of -inf - 0 is 0: a zero state). Returns the factor that rescales what was
// accumulated against the old max. kScaleOnce: with a positive scale the max of the scaled logits is the scaled max
// of the logits (rounding is monotone): one multiply a row, not one a pair of columns (32 a thread and step at 128
// keys), a zero, negative or NaN scale taking the pairs scaled. (The mma.sync kernels take the pairs scaled but for
// their JVP at head dim 32, FwdTile::jvp_skips_rescale: there the branch cost the head-dim-32 forward 5 %,
// docs/performance.md.)
template <int kNt, bool kScaleOnce = true>
__device__ __forceinline__ float move_row_max(const float (&s)[kNt][4], int r, float scale_log2, float& row_max,
                                              float& m_use) {
  float mx = row_max;
  if (kScaleOnce && scale_log2 > 0.f) {
    float raw = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) raw = fmaxf(raw, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]));
    mx = fmaxf(mx, raw * scale_log2);
  } else {
#pragma unroll
    for (int nt = 0; nt < kNt; ++nt) mx = fmaxf(mx, fmaxf(s[nt][2 * r], s[nt][2 * r + 1]) * scale_log2);
  }
  mx = quad_max(mx);
  m_use = max_in_use(mx);
  const float alpha = fast_exp2(row_max - m_use);
  row_max = mx;
  return alpha;
}

// Whether any row of the warp's rescale factors (move_row_max) is not 1: where none is (no row's max moved, most key
// blocks after the first few), what was accumulated stays as it is and the multiplies are skipped. The vote keeps the
// branch warp-uniform.
__device__ __forceinline__ bool any_rescale(const float (&alpha)[2]) {
  return __any_sync(0xffffffff, alpha[0] != 1.f || alpha[1] != 1.f);
}

}  // namespace theria::kernels::cuda
