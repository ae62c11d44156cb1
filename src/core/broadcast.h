// The front of theria.sdpa: F.scaled_dot_product_attention's argument rules (enable_gqa, broadcasting of the
// leading dims, attn_mask with is_causal) turned into one call of the primitive ops. Leading dims broadcast as
// PyTorch broadcasts them, by expand() (views: no copy; autograd sums a broadcast input's gradient back).
// Key/value heads that divide the query's stay as they are, as grouped-query attention, whether enable_gqa
// asked for it or a single key/value head broadcast to every query head (multi-query attention): the kernels
// address them by stride and sum their gradients over each group, so nothing is expanded per query head.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

namespace theria::core {

struct SdpaCall {
  at::Tensor q, k, v;  // q (..., Hq, L, E); k, v (..., Hkv, S, E|Ev) with Hkv dividing Hq
  std::optional<at::Tensor> mask;
  double scale = 1.0;
};

SdpaCall broadcast_call(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                        const std::optional<at::Tensor>& attn_mask, bool is_causal, std::optional<double> scale,
                        bool enable_gqa, const char* op);

}  // namespace theria::core
