// PyTorch's own SDPA backends as the lab model's attention: what users run instead of theria. `math` is the
// composition of differentiable ops (every derivative order, L x S buffers); `flash` is PyTorch's fused kernel
// (CUDA, and its CPU counterpart), whose backward has no derivative: a FULL meta-gradient through it raises. The
// robustness map records both as results (docs/robustness.md). They call torch's public
// at::scaled_dot_product_attention with only the one backend enabled, so autocast treats them as it treats a
// user's call.
#pragma once

#include "model/transformer.h"

#include <string>

namespace theria::lab {

enum class PytorchSdpa { Math, Flash };

// The attention call; inputs of any rank >= 4 are flattened to (N, heads, L, D) for the call and back.
AttentionFn pytorch_attention(PytorchSdpa backend);

// "pytorch_math", "pytorch_flash"
const char* pytorch_attention_name(PytorchSdpa backend);

}  // namespace theria::lab
