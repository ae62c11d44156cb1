// Declarations of the kernel launch templates; each is instantiated once in instantiations/ so that
// a compile error names one combination and the files build in parallel.
#pragma once

#include "fused/launch.h"
#include "kernels/sdpa_params.h"

#include <cuda_runtime_api.h>

namespace theria::kernels::cuda {

// The passes of the tensor-core forward kernel: kOut writes out and lse; kJvp also out_dot and lse_dot
// along the tangents set in p; kTangent reads the saved out and lse and writes only out_dot, lse_dot
// (the first step of the backward-JVP).
enum class FwdPass { kOut, kJvp, kTangent };
// kGroups, kMask (every tensor-core family): the kernel serves grouped-query heads (p.group) and, with kMask,
// attn_mask (p.mask); three builds run: plain (neither: none of their code is compiled in, so the plain problem
// runs the kernels as tuned), groups, and mask (which takes grouped heads too). Each extra costs registers
// that the others should not pay: a run-time test alone cost the D=128 forward 30 %, and the mask code in the
// grouped kernels 18 % (docs/performance.md).
template <typename T, int kHeadDim, bool kCausal, FwdPass kPass, bool kGroups, bool kMask>
void launch_sdpa_fwd_tc(const SdpaFwdParams& p, cudaStream_t stream);

// kDeterministic: ws.dq_turns is set and the key blocks add their dQ shares in ascending order (DqTurn).
template <typename T, int kHeadDim, bool kCausal, bool kDeterministic, bool kGroups, bool kMask>
void launch_sdpa_bwd_tc(const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream);

// The tangents (dq_dot, dk_dot, dv_dot) of the backward; p carries lse_dot and out_dot from a tangent pass
// (delta and delta_dot come from its own row-term kernel). kDoutDot: p.dout_dot is set.
template <typename T, int kHeadDim, bool kCausal, bool kDoutDot, bool kDeterministic, bool kGroups, bool kMask>
void launch_sdpa_bwd_jvp_tc(const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream);

template <typename T, bool kTangent, int kCols>
void launch_sdpa_fwd_simt(const SdpaFwdParams& p, cudaStream_t stream);

template <typename T, bool kTangent, int kCols>
void launch_sdpa_bwd_simt(const SdpaBwdParams& p, cudaStream_t stream);

}  // namespace theria::kernels::cuda
