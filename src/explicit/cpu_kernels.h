// Explicit CPU kernels: the same tiled algorithms as the fused CUDA kernels (blocks of query
// rows as parallel tasks, key tiles streamed with a running max and sum), in float or double.
// Half-precision inputs are upcast to float by the binding (explicit_backend.cpp).
#pragma once

#include "kernels/sdpa_params.h"

namespace theria::kernels::cpu {

// Forward (out, lse); with tangents set also the exact JVP (out_dot, lse_dot). Eq. (F), (J).
template <typename T>
void sdpa_fwd(const SdpaFwdParams& params);

// Backward (dq, dk, dv); with tangents set also the backward-JVP (dq_dot, dk_dot, dv_dot), which
// reads out_dot and lse_dot from a preceding sdpa_fwd JVP pass. Eq. (B), (BJ).
template <typename T>
void sdpa_bwd(const SdpaBwdParams& params);

}  // namespace theria::kernels::cpu
