// Fused SIMT kernels (no tensor cores): the path for float32 and float64 inputs, for head dims the
// tensor-core kernels do not cover (E != Ev, or not 32/64/96/128), and for the JVP and
// backward-JVP. Same algorithms as the explicit CPU kernels, one warp per row:
//   forward/JVP:  warp per query row, lanes take 32 keys at a time (online softmax over chunks)
//   row terms:    warp per query row, delta = rowsum(dout * out) [and delta_dot]
//   dq pass:      warp per query row, lanes over keys (and a float mask's gradient dS where asked);
//   dk/dv pass:   warp per key row, lanes over queries
// Lane `lane` owns output columns lane + 32 c, c < kCols. The per-pair terms come from
// kernels/sdpa_scalar.h, shared with the CPU kernels. No L x S buffer, no atomics.
#pragma once

#include "fused/kernel_templates.h"
#include "kernels/sdpa_scalar.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>

namespace theria::kernels::cuda {

constexpr int kSimtWarps = 4;  // warps per block

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffff, x, o);
  return x;
}

template <typename T>
__device__ __forceinline__ T warp_nan_max(T x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) x = nan_max(x, __shfl_xor_sync(0xffffffff, x, o));
  return x;
}

// The warp's row (flat index over batch x rows) or -1 past the end.
__device__ __forceinline__ int64_t warp_task(int64_t n_tasks) {
  const int64_t task = blockIdx.x * int64_t(kSimtWarps) + threadIdx.x / 32;
  return task < n_tasks ? task : -1;
}

template <typename T, bool kTangent, int kCols>
__global__ void __launch_bounds__(kSimtWarps * 32) sdpa_fwd_simt_kernel(const SdpaFwdParams p) {
  const int64_t task = warp_task(p.batch * p.len_q);
  if (task < 0) return;
  const int lane = threadIdx.x % 32;
  const int64_t b = task / p.len_q, i = task % p.len_q, E = p.dim_qk, Ev = p.dim_v, end = visible_end(p, i);
  const T* q_i = row<T>(p.q, b, i);
  T m = neg_inf<T>(), l = 0, acc_lse = 0, acc[kCols], acc_dot[kCols];
#pragma unroll
  for (int c = 0; c < kCols; ++c) acc[c] = acc_dot[c] = 0;

  for (int64_t j0 = 0; j0 < end; j0 += 32) {
    const int64_t j = j0 + lane;
    const bool valid = j < end;
    T s = neg_inf<T>(), s_dot = 0;
    if (valid) {
      s = logit<T>(p, b, i, j, dot(q_i, row<T>(p.k, b, j), E));
      if constexpr (kTangent) {
        s_dot = logit_tangent<T>(p, b, i, j, q_i, row<T>(p.k, b, j));
      }
    }
    const T m_new = nan_max(m, warp_nan_max(s));
    const bool empty = m_new == neg_inf<T>();  // every logit so far is -inf: no mass yet
    const T alpha = empty ? T(1) : std::exp(m - m_new);
    const T pj = valid && !empty ? std::exp(s - m_new) : T(0);
    l = l * alpha + warp_sum(pj);
    if constexpr (kTangent) acc_lse = acc_lse * alpha + warp_sum(pj * s_dot);
#pragma unroll
    for (int c = 0; c < kCols; ++c) {
      acc[c] *= alpha;
      acc_dot[c] *= alpha;
    }
    const int n = static_cast<int>(end - j0 < 32 ? end - j0 : 32);
    for (int jj = 0; jj < n; ++jj) {
      const T p_jj = __shfl_sync(0xffffffff, pj, jj);
      const T w_jj = kTangent ? __shfl_sync(0xffffffff, pj * s_dot, jj) : T(0);
      const T* v_j = row<T>(p.v, b, j0 + jj);
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const int64_t col = lane + 32 * c;
        if (col < Ev) {
          acc[c] += p_jj * v_j[col];
          if constexpr (kTangent) acc_dot[c] += w_jj * v_j[col] + p_jj * row<T>(p.v_dot, b, j0 + jj)[col];
        }
      }
    }
    m = m_new;
  }

  // No mass (no visible key, or every logit -inf): zeros and lse = -inf, as PyTorch's math SDPA.
  const bool no_mass = l == T(0);
  const T fill = T(0);
  T* out_i = row<T>(p.out, b, i);
  const T lse_dot = kTangent ? (no_mass ? fill : acc_lse / l) : T(0);
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
    const int64_t col = lane + 32 * c;
    if (col >= Ev) continue;
    out_i[col] = no_mass ? fill : acc[c] / l;
    if constexpr (kTangent) row<T>(p.out_dot, b, i)[col] = no_mass ? fill : acc_dot[c] / l - lse_dot * out_i[col];
  }
  if (lane == 0) {
    static_cast<T*>(p.lse)[task] = no_mass ? neg_inf<T>() : m + std::log(l);
    if constexpr (kTangent) static_cast<T*>(p.lse_dot)[task] = lse_dot;
  }
}

// delta = rowsum(dout * out), delta_dot = rowsum(dout_dot * out + dout * out_dot); inputs in T,
// sums and outputs in Acc (float for 16-bit inputs).
template <typename T, typename Acc, bool kTangent>
__global__ void __launch_bounds__(kSimtWarps * 32) sdpa_row_terms_kernel(const SdpaBwdParams p) {
  const int64_t task = warp_task(p.batch * p.len_q);
  if (task < 0) return;
  const int lane = threadIdx.x % 32;
  const int64_t b = task / p.len_q, i = task % p.len_q;
  const T* dout_i = row<T>(p.dout, b, i);
  const T* out_i = row<T>(p.out, b, i);
  Acc delta = 0, delta_dot = 0;
  for (int64_t col = lane; col < p.dim_v; col += 32) {
    delta += static_cast<Acc>(dout_i[col]) * static_cast<Acc>(out_i[col]);
    if constexpr (kTangent) {
      // An absent dout tangent (ptr == nullptr, the double backward) contributes nothing.
      const Acc dout_dot = p.dout_dot.ptr ? static_cast<Acc>(row<T>(p.dout_dot, b, i)[col]) : Acc(0);
      delta_dot += dout_dot * static_cast<Acc>(out_i[col]) +
                   static_cast<Acc>(dout_i[col]) * static_cast<Acc>(row<T>(p.out_dot, b, i)[col]);
    }
  }
  delta = warp_sum(delta);
  if constexpr (kTangent) delta_dot = warp_sum(delta_dot);
  if (lane == 0) {
    static_cast<Acc*>(p.delta)[task] = delta;
    if constexpr (kTangent) static_cast<Acc*>(p.delta_dot)[task] = delta_dot;
  }
}

template <typename T, bool kTangent, int kCols>
__global__ void __launch_bounds__(kSimtWarps * 32) sdpa_dq_simt_kernel(const SdpaBwdParams p) {
  const int64_t task = warp_task(p.batch * p.len_q);
  if (task < 0) return;
  const int lane = threadIdx.x % 32;
  const int64_t b = task / p.len_q, i = task % p.len_q, E = p.dim_qk, end = visible_end(p, i);
  const T scale = static_cast<T>(p.scale);
  T acc[kCols], acc_dot[kCols];
#pragma unroll
  for (int c = 0; c < kCols; ++c) acc[c] = acc_dot[c] = 0;
  for (int64_t j0 = 0; j0 < end; j0 += 32) {
    const PairTerms<T> mine = j0 + lane < end ? pair_terms<T, kTangent>(p, b, i, j0 + lane) : PairTerms<T>{};
    if (j0 + lane < end) store_mask_grad<T>(p, b, i, j0 + lane, kTangent ? mine.ds_dot : mine.ds);
    const int n = static_cast<int>(end - j0 < 32 ? end - j0 : 32);
    for (int jj = 0; jj < n; ++jj) {
      const T ds = __shfl_sync(0xffffffff, mine.ds, jj);
      const T ds_dot = kTangent ? __shfl_sync(0xffffffff, mine.ds_dot, jj) : T(0);
      const T* k_j = row<T>(p.k, b, j0 + jj);
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const int64_t col = lane + 32 * c;
        if (col < E) {
          acc[c] += ds * k_j[col];
          if constexpr (kTangent) acc_dot[c] += ds_dot * k_j[col] + ds * row<T>(p.k_dot, b, j0 + jj)[col];
        }
      }
    }
  }
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
    const int64_t col = lane + 32 * c;
    if (col >= E) continue;
    row<T>(p.dq, b, i)[col] = scale * acc[c];
    if constexpr (kTangent) row<T>(p.dq_dot, b, i)[col] = scale * acc_dot[c];
  }
}

template <typename T, bool kTangent, int kCols>
__global__ void __launch_bounds__(kSimtWarps * 32) sdpa_dkdv_simt_kernel(const SdpaBwdParams p) {
  // One warp per key-side row; under grouped-query attention it collects the query heads of its group.
  const int64_t task = warp_task(kv_batches(p) * p.len_kv);
  if (task < 0) return;
  const int lane = threadIdx.x % 32;
  const int64_t b = first_query_batch(p, task / p.len_kv), j = task % p.len_kv, E = p.dim_qk, Ev = p.dim_v,
                L = p.len_q;
  const T scale = static_cast<T>(p.scale);
  T dk[kCols], dv[kCols], dk_dot[kCols], dv_dot[kCols];
#pragma unroll
  for (int c = 0; c < kCols; ++c) dk[c] = dv[c] = dk_dot[c] = dv_dot[c] = 0;
  for (int64_t bq = b; bq < b + p.group; ++bq) {
    for (int64_t i0 = first_query_seeing(p, j); i0 < L; i0 += 32) {
      const PairTerms<T> mine = i0 + lane < L ? pair_terms<T, kTangent>(p, bq, i0 + lane, j) : PairTerms<T>{};
      const int n = static_cast<int>(L - i0 < 32 ? L - i0 : 32);
      for (int ii = 0; ii < n; ++ii) {
        const PairTerms<T> t{__shfl_sync(0xffffffff, mine.p, ii), __shfl_sync(0xffffffff, mine.ds, ii),
                             kTangent ? __shfl_sync(0xffffffff, mine.p_dot, ii) : T(0),
                             kTangent ? __shfl_sync(0xffffffff, mine.ds_dot, ii) : T(0)};
        const int64_t i = i0 + ii;
        const T* q_i = row<T>(p.q, bq, i);
        const T* dout_i = row<T>(p.dout, bq, i);
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          const int64_t col = lane + 32 * c;
          if (col < Ev) {
            dv[c] += t.p * dout_i[col];
            if constexpr (kTangent) dv_dot[c] += t.p_dot * dout_i[col] + t.p * row<T>(p.dout_dot, bq, i)[col];
          }
          if (col < E) {
            dk[c] += t.ds * q_i[col];
            if constexpr (kTangent) dk_dot[c] += t.ds_dot * q_i[col] + t.ds * row<T>(p.q_dot, bq, i)[col];
          }
        }
      }
    }
  }
#pragma unroll
  for (int c = 0; c < kCols; ++c) {
    const int64_t col = lane + 32 * c;
    if (col < Ev) {
      row<T>(p.dv, b, j)[col] = dv[c];
      if constexpr (kTangent) row<T>(p.dv_dot, b, j)[col] = dv_dot[c];
    }
    if (col < E) {
      row<T>(p.dk, b, j)[col] = scale * dk[c];
      if constexpr (kTangent) row<T>(p.dk_dot, b, j)[col] = scale * dk_dot[c];
    }
  }
}

inline unsigned simt_blocks(int64_t rows) { return static_cast<unsigned>((rows + kSimtWarps - 1) / kSimtWarps); }

template <typename T, bool kTangent, int kCols>
void launch_sdpa_fwd_simt(const SdpaFwdParams& p, cudaStream_t stream) {
  sdpa_fwd_simt_kernel<T, kTangent, kCols><<<simt_blocks(p.batch * p.len_q), kSimtWarps * 32, 0, stream>>>(p);
}

template <typename T, typename Acc, bool kTangent>
void launch_sdpa_row_terms(const SdpaBwdParams& p, cudaStream_t stream) {
  sdpa_row_terms_kernel<T, Acc, kTangent><<<simt_blocks(p.batch * p.len_q), kSimtWarps * 32, 0, stream>>>(p);
}

// Backward (kTangent: backward-JVP, which needs out_dot and lse_dot from a JVP pass first).
template <typename T, bool kTangent, int kCols>
void launch_sdpa_bwd_simt(const SdpaBwdParams& p, cudaStream_t stream) {
  launch_sdpa_row_terms<T, T, kTangent>(p, stream);
  sdpa_dq_simt_kernel<T, kTangent, kCols><<<simt_blocks(p.batch * p.len_q), kSimtWarps * 32, 0, stream>>>(p);
  sdpa_dkdv_simt_kernel<T, kTangent, kCols><<<simt_blocks(kv_batches(p) * p.len_kv), kSimtWarps * 32, 0, stream>>>(p);
}

}  // namespace theria::kernels::cuda
