// Small helpers shared by the explicit CPU kernels: row access, dot/axpy, causal bounds.
#pragma once

#include "kernels/sdpa_params.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace theria::kernels::cpu {

constexpr int64_t kBlockM = 16;  // query rows per parallel task
constexpr int64_t kBlockN = 64;  // keys per streamed tile

template <typename T>
inline T* row(const MatrixView& m, int64_t b, int64_t i) {
  return static_cast<T*>(m.ptr) + b * m.batch_stride + i * m.row_stride;
}

template <typename T>
inline T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t e = 0; e < n; ++e) s += a[e] * b[e];
  return s;
}

template <typename T>
inline void axpy(T* y, T a, const T* x, int64_t n) {
  for (int64_t e = 0; e < n; ++e) y[e] += a * x[e];
}

// max that keeps a NaN from either side, so a NaN logit poisons its row as in softmax.
template <typename T>
inline T nan_max(T a, T b) {
  return (a > b || a != a) ? a : b;
}

// One past the last key visible to query row i (top-left causal: keys j <= i).
inline int64_t visible_end(const SdpaFwdParams& p, int64_t i) {
  return p.causal ? std::min(i + 1, p.len_kv) : p.len_kv;
}

// First query row that sees key j.
inline int64_t first_query_seeing(const SdpaFwdParams& p, int64_t j) {
  return p.causal ? std::min(j, p.len_q) : 0;
}

template <typename T>
inline T neg_inf() {
  return -std::numeric_limits<T>::infinity();
}

}  // namespace theria::kernels::cpu
