// Torch binding of the explicit CPU kernels: allocates outputs, upcasts half-precision inputs to
// float (computed in float, returned in the input dtype), fills the params structs. Inputs are
// assumed checked (core/contract.h). Absent tangents are zeros.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <tuple>

namespace theria::explicit_backend {

using at::Tensor;
using OptTensor = std::optional<Tensor>;

std::tuple<Tensor, Tensor> sdpa_fwd(const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale);

std::tuple<Tensor, Tensor, Tensor> sdpa_jvp(const Tensor& q, const Tensor& k, const Tensor& v,
                                            const OptTensor& q_dot, const OptTensor& k_dot,
                                            const OptTensor& v_dot, bool causal, double scale);

std::tuple<Tensor, Tensor, Tensor> sdpa_bwd(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                            const Tensor& lse, const Tensor& dout, bool causal, double scale);

std::tuple<Tensor, Tensor, Tensor, Tensor> sdpa_bwd_jvp(const Tensor& q, const Tensor& k, const Tensor& v,
                                                        const Tensor& out, const Tensor& lse, const Tensor& dout,
                                                        const OptTensor& q_dot, const OptTensor& k_dot,
                                                        const OptTensor& v_dot, const OptTensor& dout_dot,
                                                        bool causal, double scale);

}  // namespace theria::explicit_backend
