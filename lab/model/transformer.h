// A small functional transformer for the lab: token (or real-value) + position embeddings with a CLS slot,
// one or two blocks (attention through theria::sdpa, or mean pooling as the ablation), an MLP, and a head
// read at CLS: C logits, or one real for regression. Its weights are a plain list of tensors, so an inner
// loop can build fast weights without touching any module state.
#pragma once

#include "tasks/task_family.h"

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
  int64_t classes = 4;  // outputs of the head: C logits (TargetKind::Classes), 1 (Regression)
  int64_t dim = 32;
  int64_t heads = 2;
  int64_t blocks = 1;
  Pooling pooling = Pooling::Attention;
  SdpaOptions attention;  // backend (and scale) of theria::sdpa
  AttentionFn attend;     // empty: theria::sdpa
  // What the model reads and predicts: fit_model_to sets them (and seq_len, classes) from a task family.
  int64_t vocab = 0;                        // Tokens: ids in [0, vocab); 0: [0, classes) (position recall)
  InputKind input = InputKind::Tokens;      // Reals: x [batch, seq_len] embedded as x_t * input_embedding
  TargetKind target = TargetKind::Classes;  // the loss: cross-entropy, or MSE on the one output
  // Smeared keys (Olsson et al. 2022): each head's key at slot t is sigmoid(a) k_t + (1 - sigmoid(a)) k_{t-1},
  // with `a` a learned weight per head (starting at 0: half and half). One attention block can then match a
  // token by the token before it, which recall of "the token after k*" needs (mqar, induction; docs/tasks.md).
  bool smeared_keys = false;
};

// `config` with the sequence length, vocabulary, input kind, head size and loss of the family's examples.
ModelConfig fit_model_to(ModelConfig config, const TaskIO& io);
// Whether `config` reads and predicts what the family's examples are (a message saying what differs if not).
std::string model_mismatch(const ModelConfig& config, const TaskIO& io);

// Fresh weights (leaves that require grad) from `seed`, in the dtype/device of `options`.
Weights init_weights(const ModelConfig& config, uint64_t seed, const at::TensorOptions& options);

// Logits [batch, classes] (Regression: predictions [batch, 1]) for x [batch, seq_len]: token ids, or reals.
// Grouped: x [tasks, batch, seq_len] with every weight [tasks, ...] (task g's weights read task g's inputs) gives
// [tasks, batch, classes]; the inner loops of a meta-batch then run as one pass (lab/meta/maml.h).
at::Tensor forward(const ModelConfig& config, const Weights& weights, const at::Tensor& x);

// Names of the weights, in order (for reports).
std::vector<std::string> weight_names(const ModelConfig& config);

}  // namespace theria::lab
