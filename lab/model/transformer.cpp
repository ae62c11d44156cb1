#include "model/transformer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace theria::lab {
namespace {

constexpr int64_t kAttentionWeights = 4;  // wq, wk, wv, wo
constexpr int64_t kMlpWeights = 2;        // w1, w2

int64_t per_block(const ModelConfig& c) {
  return (c.pooling == Pooling::Attention ? kAttentionWeights : 0) + kMlpWeights;
}

}  // namespace

std::vector<std::string> weight_names(const ModelConfig& c) {
  std::vector<std::string> names{"token_embedding", "position_embedding"};
  for (int64_t b = 0; b < c.blocks; ++b) {
    const std::string p = "block" + std::to_string(b) + ".";
    if (c.pooling == Pooling::Attention) {
      for (const char* n : {"wq", "wk", "wv", "wo"}) names.push_back(p + n);
    }
    names.push_back(p + "mlp_in");
    names.push_back(p + "mlp_out");
  }
  names.push_back("head");
  return names;
}

Weights init_weights(const ModelConfig& c, uint64_t seed, const at::TensorOptions& options) {
  TORCH_CHECK(c.dim % c.heads == 0, "model: dim (", c.dim, ") must be a multiple of heads (", c.heads, ")");
  TORCH_CHECK(c.blocks >= 1, "model: blocks must be >= 1");
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto normal = [&](int64_t rows, int64_t cols, double std) {
    return (at::randn({rows, cols}, gen, at::kDouble) * std).to(options).requires_grad_();
  };
  const double fan_in = 1.0 / std::sqrt(static_cast<double>(c.dim));
  Weights w{normal(c.classes, c.dim, 1.0), normal(c.seq_len + 1, c.dim, 1.0)};
  for (int64_t b = 0; b < c.blocks; ++b) {
    if (c.pooling == Pooling::Attention) {
      for (int i = 0; i < kAttentionWeights; ++i) w.push_back(normal(c.dim, c.dim, fan_in));
    }
    w.push_back(normal(c.dim, 2 * c.dim, fan_in));
    w.push_back(normal(2 * c.dim, c.dim, 1.0 / std::sqrt(2.0 * c.dim)));
  }
  w.push_back(normal(c.dim, c.classes, fan_in));
  return w;
}

at::Tensor forward(const ModelConfig& c, const Weights& w, const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2 && x.size(1) == c.seq_len, "model: tokens must be [batch, ", c.seq_len, "], got ",
              x.sizes());
  TORCH_CHECK(static_cast<int64_t>(w.size()) == 3 + c.blocks * per_block(c), "model: expected ",
              3 + c.blocks * per_block(c), " weights, got ", w.size());
  const int64_t B = x.size(0), T1 = c.seq_len + 1, D = c.dim, H = c.heads;
  // Slot 0 is CLS: a zero token embedding plus its own position embedding.
  at::Tensor h = at::cat({at::zeros({B, 1, D}, w[0].options()), w[0].index_select(0, x.reshape(-1)).view({B, -1, D})}, 1) +
                 w[1];
  size_t i = 2;
  for (int64_t b = 0; b < c.blocks; ++b) {
    if (c.pooling == Pooling::Attention) {
      auto heads = [&](const at::Tensor& proj) { return h.matmul(proj).view({B, T1, H, D / H}).transpose(1, 2); };
      const at::Tensor q = heads(w[i]), k = heads(w[i + 1]), v = heads(w[i + 2]);
      const at::Tensor a = c.attend ? c.attend(q, k, v, c.attention) : sdpa(q, k, v, c.attention);
      h = h + a.transpose(1, 2).reshape({B, T1, D}).matmul(w[i + 3]);
      i += kAttentionWeights;
    } else {
      h = h + h.mean(1, /*keepdim=*/true);
    }
    h = h + at::relu(h.matmul(w[i])).matmul(w[i + 1]);
    i += kMlpWeights;
  }
  return h.select(1, 0).matmul(w[i]);
}

}  // namespace theria::lab
