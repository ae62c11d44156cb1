#include "variants/pytorch_attention.h"

#include <ATen/ATen.h>
#include <ATen/Context.h>

namespace theria::lab {
namespace {

// Only `backend` enabled among PyTorch's SDPA backends for the guard's lifetime (restored after, also on a throw).
class OnlySdpaBackend {
 public:
  explicit OnlySdpaBackend(PytorchSdpa backend)
      : ctx_(at::globalContext()),
        flash_(ctx_.userEnabledFlashSDP()),
        efficient_(ctx_.userEnabledMemEfficientSDP()),
        math_(ctx_.userEnabledMathSDP()),
        cudnn_(ctx_.userEnabledCuDNNSDP()) {
    ctx_.setSDPUseFlash(backend == PytorchSdpa::Flash);
    ctx_.setSDPUseMath(backend == PytorchSdpa::Math);
    ctx_.setSDPUseMemEfficient(false);
    ctx_.setSDPUseCuDNN(false);
  }
  ~OnlySdpaBackend() {
    ctx_.setSDPUseFlash(flash_);
    ctx_.setSDPUseMath(math_);
    ctx_.setSDPUseMemEfficient(efficient_);
    ctx_.setSDPUseCuDNN(cudnn_);
  }
  OnlySdpaBackend(const OnlySdpaBackend&) = delete;
  OnlySdpaBackend& operator=(const OnlySdpaBackend&) = delete;

 private:
  at::Context& ctx_;
  bool flash_, efficient_, math_, cudnn_;
};

// (..., heads, L, D) as (N, heads, L, D): the fused kernels take rank 4 only.
at::Tensor rank4(const at::Tensor& t) { return t.reshape({-1, t.size(-3), t.size(-2), t.size(-1)}); }

}  // namespace

AttentionFn pytorch_attention(PytorchSdpa backend) {
  return [backend](const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const SdpaOptions& o) {
    OnlySdpaBackend only(backend);
    const at::Tensor out = at::scaled_dot_product_attention(rank4(q), rank4(k), rank4(v), /*attn_mask=*/{},
                                                            /*dropout_p=*/0.0, o.causal_, o.scale_);
    auto shape = q.sizes().vec();
    shape.back() = v.size(-1);
    return out.reshape(shape);
  };
}

const char* pytorch_attention_name(PytorchSdpa backend) {
  return backend == PytorchSdpa::Math ? "pytorch_math" : "pytorch_flash";
}

}  // namespace theria::lab
