// Torch binding of the row kernels, the explicit algorithm's two kernel families (forward/JVP and
// backward/backward-JVP over SdpaFwdParams / SdpaBwdParams). It serves the explicit CPU kernels and
// the fused SIMT CUDA kernels alike: allocates outputs on the inputs' device, computes 16-bit inputs
// in float (returned in the input dtype), flattens leading dims into [batch, rows, cols] with a
// contiguous last dim, fills the params and calls the family's launchers. Absent tangents are zeros.
// Grouped-query key/value operands keep their Hkv heads (MatrixView::group); attn_mask is read where it lies
// (mask_operand.h), a float one in the compute dtype.
// Inputs are assumed checked (core/contract.h).
#pragma once

#include "kernels/sdpa_params.h"

#include <ATen/core/Tensor.h>

#include <functional>
#include <optional>
#include <tuple>

namespace theria::row_kernels {

using at::Tensor;
using OptTensor = std::optional<Tensor>;
using Tensor5 = std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor>;

// The launchers of one family; the dtype is float or double (the compute dtype).
struct RowKernels {
  std::function<void(const kernels::SdpaFwdParams&, at::ScalarType)> fwd;
  std::function<void(const kernels::SdpaBwdParams&, at::ScalarType)> bwd;
};

std::tuple<Tensor, Tensor> sdpa_fwd(const RowKernels& kernels, const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool causal, double scale, const OptTensor& mask);

std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const RowKernels& kernels, const Tensor& q, const Tensor& k,
                                            const Tensor& v, const OptTensor& q_dot, const OptTensor& k_dot,
                                            const OptTensor& v_dot, bool causal, double scale,
                                            const OptTensor& mask, const OptTensor& mask_dot);

// With mask_grad the last result is the float mask's gradient (its shape and dtype), else an empty tensor; the
// backward-JVP's is its tangent.
std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd(const RowKernels& kernels, const Tensor& q, const Tensor& k,
                                                    const Tensor& v, const Tensor& out, const Tensor& lse,
                                                    const Tensor& dout, bool causal, double scale,
                                                    const OptTensor& mask, bool mask_grad);

Tensor5 sdpa_bwd_jvp(const RowKernels& kernels, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                     const Tensor& lse, const Tensor& dout, const OptTensor& q_dot, const OptTensor& k_dot,
                     const OptTensor& v_dot, const OptTensor& dout_dot, bool causal, double scale,
                     const OptTensor& mask, const OptTensor& mask_dot, bool mask_grad);

}  // namespace theria::row_kernels
