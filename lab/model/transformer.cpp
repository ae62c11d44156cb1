#include "model/transformer.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

namespace theria::lab {
namespace {

constexpr int64_t kAttentionWeights = 4;  // wq, wk, wv, wo (and key_smear with smeared keys)
constexpr int64_t kMlpWeights = 2;        // w1, w2

int64_t attention_weights(const ModelConfig& c) {
  return c.pooling == Pooling::Attention ? kAttentionWeights + (c.smeared_keys ? 1 : 0) : 0;
}

int64_t per_block(const ModelConfig& c) { return attention_weights(c) + kMlpWeights; }

// Tokens: one table. Reals: a per-position MLP 1 -> dim -> dim (input_in, input_bias, input_out).
int64_t embedding_weights(const ModelConfig& c) { return c.input == InputKind::Reals ? 3 : 1; }

int64_t weight_count(const ModelConfig& c) { return embedding_weights(c) + 2 + c.blocks * per_block(c); }

int64_t vocab_of(const ModelConfig& c) { return c.vocab > 0 ? c.vocab : c.classes; }

}  // namespace

ModelConfig fit_model_to(ModelConfig config, const TaskIO& io) {
  config.seq_len = io.seq_len;
  config.input = io.input;
  config.vocab = io.input == InputKind::Tokens ? io.vocab : 0;
  config.target = io.target;
  config.classes = io.target == TargetKind::Classes ? io.classes : 1;
  return config;
}

std::string model_mismatch(const ModelConfig& c, const TaskIO& io) {
  const auto fit = fit_model_to(c, io);
  std::string m;
  auto differs = [&](const char* what, const std::string& model, const std::string& family) {
    if (model == family) return;
    m += std::string(m.empty() ? "" : "; ") + what + " " + model + " (the family's: " + family + ")";
  };
  auto input = [](InputKind k) { return k == InputKind::Tokens ? "tokens" : "reals"; };
  auto target = [](TargetKind k) { return k == TargetKind::Classes ? "classes" : "regression"; };
  differs("seq_len", std::to_string(c.seq_len), std::to_string(fit.seq_len));
  differs("input", input(c.input), input(fit.input));
  if (c.input == InputKind::Tokens && io.input == InputKind::Tokens) {
    differs("vocab", std::to_string(vocab_of(c)), std::to_string(vocab_of(fit)));
  }
  differs("target", target(c.target), target(fit.target));
  differs("outputs", std::to_string(c.classes), std::to_string(fit.classes));
  return m;
}

std::vector<std::string> weight_names(const ModelConfig& c) {
  std::vector<std::string> names{"token_embedding"};
  if (c.input == InputKind::Reals) names = {"input_in", "input_bias", "input_out"};
  names.push_back("position_embedding");
  for (int64_t b = 0; b < c.blocks; ++b) {
    const std::string p = "block" + std::to_string(b) + ".";
    if (c.pooling == Pooling::Attention) {
      for (const char* n : {"wq", "wk", "wv", "wo"}) names.push_back(p + n);
      if (c.smeared_keys) names.push_back(p + "key_smear");
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
  TORCH_CHECK(c.target == TargetKind::Classes || c.classes == 1, "model: a regression head has 1 output, got ",
              c.classes);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto normal = [&](int64_t rows, int64_t cols, double std) {
    return (at::randn({rows, cols}, gen, at::kDouble) * std).to(options).requires_grad_();
  };
  const double fan_in = 1.0 / std::sqrt(static_cast<double>(c.dim));
  Weights w;
  if (c.input == InputKind::Reals) {
    // x -> relu(x * input_in + input_bias) @ input_out: ReLU kinks spread over a few units around 0.
    w = {normal(1, c.dim, 1.0), normal(1, c.dim, 1.0), normal(c.dim, c.dim, fan_in)};
  } else {
    w = {normal(vocab_of(c), c.dim, 1.0)};
  }
  w.push_back(normal(c.seq_len + 1, c.dim, 1.0));
  for (int64_t b = 0; b < c.blocks; ++b) {
    if (c.pooling == Pooling::Attention) {
      for (int i = 0; i < kAttentionWeights; ++i) w.push_back(normal(c.dim, c.dim, fan_in));
      if (c.smeared_keys) w.push_back(at::zeros({c.heads}, options).requires_grad_());
    }
    w.push_back(normal(c.dim, 2 * c.dim, fan_in));
    w.push_back(normal(2 * c.dim, c.dim, 1.0 / std::sqrt(2.0 * c.dim)));
  }
  w.push_back(normal(c.dim, c.classes, fan_in));
  return w;
}

at::Tensor forward(const ModelConfig& c, const Weights& w, const at::Tensor& x) {
  // x [batch, T] with the weights as made by init_weights, or x [tasks, batch, T] with every weight carrying a
  // leading tasks dim (one set of fast weights per task: the inner loops of a meta-batch in one pass).
  const bool grouped = x.dim() == 3;
  TORCH_CHECK((x.dim() == 2 || grouped) && x.size(-1) == c.seq_len, "model: inputs must be [batch, ", c.seq_len,
              "] or [tasks, batch, ", c.seq_len, "], got ", x.sizes());
  TORCH_CHECK(static_cast<int64_t>(w.size()) == weight_count(c), "model: expected ", weight_count(c),
              " weights, got ", w.size());
  const int64_t G = grouped ? x.size(0) : 1, T1 = c.seq_len + 1, D = c.dim, H = c.heads;
  if (grouped) {
    for (const auto& t : w) {
      TORCH_CHECK(t.dim() >= 1 && t.size(0) == G, "model: grouped inputs of ", G, " tasks need weights with a ",
                  "leading tasks dim of ", G, ", got ", t.sizes());
    }
  }
  const std::vector<int64_t> lead(x.sizes().begin(), x.sizes().end() - 1);  // [batch] or [tasks, batch]
  auto with = [&](std::vector<int64_t> tail) {
    auto s = lead;
    s.insert(s.end(), tail.begin(), tail.end());
    return s;
  };
  // A weight as it multiplies activations [lead..., rows, cols]: as is, or (grouped) with a singleton dim per
  // activation dim between the tasks dim and its own two, so that matmul pairs task g's weight with task g's rows.
  auto per_task = [&](const at::Tensor& t, int64_t activation_dims) {
    if (!grouped) return t;
    auto s = t.sizes().vec();
    s.insert(s.begin() + 1, activation_dims - 3, 1);
    return t.view(s);
  };
  const at::Tensor embedded = [&] {
    if (c.input == InputKind::Reals) {
      const auto xr = x.to(w[0].scalar_type()).unsqueeze(-1);  // [lead..., T, 1]
      return at::relu(xr * per_task(w[0], xr.dim()) + per_task(w[1], xr.dim())).matmul(per_task(w[2], xr.dim()));
    }
    if (!grouped) return w[0].index_select(0, x.reshape(-1)).view(with({c.seq_len, D}));
    // One table per task: task g's ids index rows g * vocab + id of the tables stacked.
    const int64_t V = w[0].size(1);
    const auto ids = x + at::arange(G, x.options()).mul(V).view({G, 1, 1});
    return w[0].reshape({G * V, D}).index_select(0, ids.reshape(-1)).view(with({c.seq_len, D}));
  }();
  size_t i = embedding_weights(c);
  // Slot 0 is CLS: a zero token embedding plus its own position embedding.
  at::Tensor h = at::cat({at::zeros(with({1, D}), w[0].options()), embedded}, -2) + per_task(w[i++], embedded.dim());
  const int64_t A = h.dim();
  for (int64_t b = 0; b < c.blocks; ++b) {
    if (c.pooling == Pooling::Attention) {
      const int64_t N = h.numel() / (T1 * D);  // sequences in all
      auto heads = [&](const at::Tensor& proj) {
        return h.matmul(per_task(proj, A)).view({N, T1, H, D / H}).transpose(1, 2);
      };
      // q, k, v made in this order: autograd then sums their gradients into h in the same order as ever.
      const at::Tensor q = heads(w[i]);
      at::Tensor k = heads(w[i + 1]);
      const at::Tensor v = heads(w[i + 2]);
      if (c.smeared_keys) {
        // [tasks, sequences of a task, H, 1, 1]: task g's keep factors for its own sequences.
        const at::Tensor keep = at::sigmoid(w[i + kAttentionWeights]).view({G, 1, H, 1, 1});
        const at::Tensor previous = at::constant_pad_nd(k.narrow(2, 0, T1 - 1), {0, 0, 1, 0});  // k_{t-1}, 0 at CLS
        const std::vector<int64_t> split{G, N / G, H, T1, D / H};
        k = (keep * k.view(split) + (1 - keep) * previous.view(split)).view({N, H, T1, D / H});
      }
      const at::Tensor a = c.attend ? c.attend(q, k, v, c.attention) : sdpa(q, k, v, c.attention);
      h = h + a.transpose(1, 2).reshape(with({T1, D})).matmul(per_task(w[i + 3], A));
      i += attention_weights(c);
    } else {
      h = h + h.mean(-2, /*keepdim=*/true);
    }
    h = h + at::relu(h.matmul(per_task(w[i], A))).matmul(per_task(w[i + 1], A));
    i += kMlpWeights;
  }
  const at::Tensor cls = h.select(-2, 0);  // [lead..., D]
  if (c.target == TargetKind::Regression) {
    // MSE's curvature along the head is 2 ||h||^2, tens to hundreds here: an inner lr that moves attention would
    // throw the head far off. The regression head reads the CLS state at unit norm (curvature 2).
    return (cls * at::rsqrt(cls.pow(2).sum(-1, /*keepdim=*/true) + 1e-12)).matmul(per_task(w[i], cls.dim()));
  }
  return cls.matmul(per_task(w[i], cls.dim()));
}

}  // namespace theria::lab
