// A small functional transformer for the lab: token + position embeddings with a CLS slot, one or
// two blocks (attention through theria::sdpa, or mean pooling as the ablation), an MLP, and a
// classification head read at CLS. Its weights are a plain list of tensors, so an inner loop can
// build fast weights without touching any module state.
#pragma once

#include <theria/sdpa.h>

#include <ATen/core/Tensor.h>

#include <functional>
#include <string>
#include <vector>

namespace theria::lab {

using Weights = std::vector<at::Tensor>;

enum class Pooling { Attention, Mean };

// The attention call of every block: theria::sdpa unless a study swaps in a variant (lab/variants).
using AttentionFn = std::function<at::Tensor(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                             const SdpaOptions& options)>;

struct ModelConfig {
  int64_t seq_len = 8;
  int64_t classes = 4;
  int64_t dim = 32;
  int64_t heads = 2;
  int64_t blocks = 1;
  Pooling pooling = Pooling::Attention;
  SdpaOptions attention;  // backend (and scale) of theria::sdpa
  AttentionFn attend;     // empty: theria::sdpa
};

// Fresh weights (leaves that require grad) from `seed`, in the dtype/device of `options`.
Weights init_weights(const ModelConfig& config, uint64_t seed, const at::TensorOptions& options);

// Logits [batch, classes] for token ids x [batch, seq_len].
at::Tensor forward(const ModelConfig& config, const Weights& weights, const at::Tensor& x);

// Names of the weights, in order (for reports).
std::vector<std::string> weight_names(const ModelConfig& config);

}  // namespace theria::lab
