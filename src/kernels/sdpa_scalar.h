// Scalar building blocks shared by the explicit CPU kernels and the CUDA SIMT kernels (compiled by
// both g++ and nvcc): row access, dot/axpy, causal bounds, and the per-pair terms of the backward
// and backward-JVP (docs/derivatives.md, B and BJ), written once.
#pragma once

#include "kernels/sdpa_params.h"

#include <cmath>
#include <limits>

#if defined(__CUDACC__)
#define THERIA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define THERIA_HOST_DEVICE inline
#endif

namespace theria::kernels {

template <typename T>
THERIA_HOST_DEVICE T* row(const MatrixView& m, int64_t b, int64_t i) {
  return static_cast<T*>(m.ptr) + (b / m.heads) * m.batch_stride + (b % m.heads) / m.group * m.head_stride +
         i * m.row_stride;
}

// Grouped-query attention: the key side has batch / group positions; key-side position bk is shared by the
// query positions first_query_batch(p, bk) + 0 .. group - 1 (consecutive heads of one outer position).
THERIA_HOST_DEVICE int64_t kv_batches(const SdpaFwdParams& p) { return p.batch / p.group; }
THERIA_HOST_DEVICE int64_t first_query_batch(const SdpaFwdParams& p, int64_t bk) {
  const int64_t heads_kv = p.heads_q / p.group;
  return (bk / heads_kv) * p.heads_q + (bk % heads_kv) * p.group;
}

// Offset of attn_mask's element for batch position b, query i, key j.
THERIA_HOST_DEVICE int64_t mask_offset(const MaskView& m, int64_t b, int64_t i, int64_t j) {
  return (b / m.heads) * m.batch_stride + (b % m.heads) * m.head_stride + i * m.row_stride + j * m.col_stride;
}

// attn_mask's additive term of one pair for the scalar kernels, whose binding stores a float mask in the
// compute type T: 0 or -inf for a boolean mask, the bias otherwise; 0 without a mask.
template <typename T>
THERIA_HOST_DEVICE T mask_term(const MaskView& m, int64_t b, int64_t i, int64_t j) {
  if (m.kind == MaskKind::kNone) return T(0);
  const int64_t at = mask_offset(m, b, i, j);
  if (m.kind == MaskKind::kBool) return static_cast<const bool*>(m.ptr)[at] ? T(0) : -std::numeric_limits<T>::infinity();
  return static_cast<const T*>(m.ptr)[at];
}

// The logit of query i and key j from their dot product: scale * qk plus attn_mask's term.
template <typename T>
THERIA_HOST_DEVICE T logit(const SdpaFwdParams& p, int64_t b, int64_t i, int64_t j, T qk) {
  return static_cast<T>(p.scale) * qk + mask_term<T>(p.mask, b, i, j);
}

// The float mask's tangent of one pair, in the compute type T as the binding stores it; 0 without one.
template <typename T>
THERIA_HOST_DEVICE T mask_tangent(const SdpaFwdParams& p, int64_t b, int64_t i, int64_t j) {
  if (p.mask_dot.ptr == nullptr) return T(0);
  return static_cast<const T*>(p.mask_dot.ptr)[mask_offset(p.mask_dot, b, i, j)];
}

// dS of one pair (or its tangent, in the backward-JVP) into the float mask's gradient where it is asked for. The
// scalar kernels' binding gives every pair its own element (MaskGradView::accumulate is false there).
template <typename T>
THERIA_HOST_DEVICE void store_mask_grad(const SdpaBwdParams& p, int64_t b, int64_t i, int64_t j, T value) {
  const MaskGradView& d = p.dmask;
  if (d.ptr == nullptr) return;
  static_cast<T*>(d.ptr)[(b / d.heads) * d.batch_stride + (b % d.heads) * d.head_stride + i * d.row_stride +
                         j * d.col_stride] = value;
}

// Row statistics (lse, delta and their tangents) are contiguous [batch, len_q].
template <typename T>
THERIA_HOST_DEVICE T stat(const void* base, const SdpaFwdParams& p, int64_t b, int64_t i) {
  return static_cast<const T*>(base)[b * p.len_q + i];
}

template <typename T>
THERIA_HOST_DEVICE T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t e = 0; e < n; ++e) s += a[e] * b[e];
  return s;
}

template <typename T>
THERIA_HOST_DEVICE void axpy(T* y, T a, const T* x, int64_t n) {
  for (int64_t e = 0; e < n; ++e) y[e] += a * x[e];
}

// The logit's tangent of query i (row q_i) and key j (row k_j): scale (q_dot_i . k_j + q_i . k_dot_j) plus the float
// mask's tangent.
template <typename T>
THERIA_HOST_DEVICE T logit_tangent(const SdpaFwdParams& p, int64_t b, int64_t i, int64_t j, const T* q_i,
                                   const T* k_j) {
  const int64_t E = p.dim_qk;
  return static_cast<T>(p.scale) * (dot(row<T>(p.q_dot, b, i), k_j, E) + dot(q_i, row<T>(p.k_dot, b, j), E)) +
         mask_tangent<T>(p, b, i, j);
}

// max that keeps a NaN from either side, so a NaN logit poisons its row as in softmax.
template <typename T>
THERIA_HOST_DEVICE T nan_max(T a, T b) {
  return (a > b || a != a) ? a : b;
}

template <typename T>
THERIA_HOST_DEVICE T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

// One past the last key visible to query row i (top-left causal: keys j <= i).
THERIA_HOST_DEVICE int64_t visible_end(const SdpaFwdParams& p, int64_t i) {
  return p.causal ? (i + 1 < p.len_kv ? i + 1 : p.len_kv) : p.len_kv;
}

// First query row that sees key j.
THERIA_HOST_DEVICE int64_t first_query_seeing(const SdpaFwdParams& p, int64_t j) {
  return p.causal ? (j < p.len_q ? j : p.len_q) : 0;
}

template <typename T>
struct PairTerms {
  T p = 0, ds = 0;          // P_ij and dS_ij
  T p_dot = 0, ds_dot = 0;  // their tangents (backward-JVP only)
};

// Terms of query i and key j, rebuilt from the row statistics. A row with lse = -inf has no mass.
template <typename T, bool kTangent>
THERIA_HOST_DEVICE PairTerms<T> pair_terms(const SdpaBwdParams& p, int64_t b, int64_t i, int64_t j) {
  const int64_t E = p.dim_qk, Ev = p.dim_v;
  const T lse = stat<T>(p.lse, p, b, i), delta = stat<T>(p.delta, p, b, i);
  const T* q_i = row<T>(p.q, b, i);
  const T* k_j = row<T>(p.k, b, j);
  const T* v_j = row<T>(p.v, b, j);
  const T* dout_i = row<T>(p.dout, b, i);
  PairTerms<T> t;
  t.p = lse == neg_inf<T>() ? T(0) : std::exp(logit<T>(p, b, i, j, dot(q_i, k_j, E)) - lse);
  const T dp = dot(dout_i, v_j, Ev);
  t.ds = t.p * (dp - delta);
  if constexpr (kTangent) {
    const T s_dot = logit_tangent<T>(p, b, i, j, q_i, k_j);
    t.p_dot = t.p * (s_dot - stat<T>(p.lse_dot, p, b, i));
    const T dp_dot = dot(row<T>(p.dout_dot, b, i), v_j, Ev) + dot(dout_i, row<T>(p.v_dot, b, j), Ev);
    t.ds_dot = t.p_dot * (dp - delta) + t.p * (dp_dot - stat<T>(p.delta_dot, p, b, i));
  }
  return t;
}

}  // namespace theria::kernels
