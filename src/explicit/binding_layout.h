// Layout helpers shared by the torch bindings of the row kernels (explicit CPU, fused SIMT) and of the fused
// tensor-core kernels: the (outer, heads) strides of a tensor's leading dims, and the grouped-query heads of a
// problem.
#pragma once

#include "kernels/sdpa_params.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace theria::row_kernels {

// Product of the leading (batch/head) sizes of a (..., rows, cols) tensor with rows, cols >= 1.
inline int64_t batch_of(const at::Tensor& t) { return t.numel() / (t.size(-2) * t.size(-1)); }

// The one stride of leading dims [0, n) as a flat index (size-1 dims skipped); false when they do not collapse.
inline bool outer_stride(const at::Tensor& t, int64_t n, int64_t& stride) {
  stride = 0;
  int64_t expect = -1;
  for (int64_t i = n - 1; i >= 0; --i) {
    if (t.size(i) == 1) continue;
    if (expect < 0) {
      stride = t.stride(i);
      expect = t.stride(i) * t.size(i);
    } else if (t.stride(i) != expect) {
      return false;
    } else {
      expect *= t.size(i);
    }
  }
  return true;
}

// A strided (..., rows, cols) tensor as a MatrixView, without a copy, when its last dim is contiguous and its
// leading dims collapse to (outer, heads) strides (zero strides included: expanded operands are read in place);
// false otherwise.
inline bool describe_rows(const at::Tensor& t, kernels::MatrixView& v) {
  const int64_t d = t.dim();
  if (t.size(-1) > 1 && t.stride(-1) != 1) return false;
  v = kernels::MatrixView{};
  v.ptr = t.data_ptr();
  v.row_stride = t.stride(-2);
  if (d >= 3) {
    v.heads = t.size(-3);
    v.head_stride = t.stride(-3);
  }
  return outer_stride(t, d - 3, v.batch_stride);
}

// Grouped-query attention: Hq query heads, `group` of them per key/value head (1: none).
struct Heads {
  int64_t q = 1, group = 1;
};
inline Heads heads_of(const at::Tensor& q, const at::Tensor& k) {
  Heads h;
  if (q.dim() >= 3) h.q = q.size(-3);
  const int64_t kv = batch_of(k);
  h.group = kv > 0 ? batch_of(q) / kv : 1;
  return h;
}

}  // namespace theria::row_kernels
