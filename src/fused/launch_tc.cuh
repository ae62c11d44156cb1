// The family launchers of the tensor-core kernels (declared in kernel_templates.h, instantiated once per combination
// in instantiations/, called by dispatch.cu): each picks the kernel that serves its family here (tile_policy.h's
// warpgroup_forward and warpgroup_kernels: the wgmma kernels where they serve,
// the mma.sync ones otherwise) and runs
// the passes around it: the row terms before a backward (the backward-JVP's in its tangent pass, but for a dout
// tangent's term), dQ's finish after.
#pragma once

#include "fused/dq_finish.cuh"
#include "fused/kernel_templates.h"
#include "fused/row_terms_tc.cuh"
#include "fused/sdpa_bwd_jvp_tc.cuh"
#include "fused/sdpa_bwd_tc.cuh"
#include "fused/sdpa_bwd_wg.cuh"
#include "fused/sdpa_fwd_tc.cuh"
#include "fused/sdpa_fwd_wg.cuh"
#include "fused/sdpa_tangent_wg.cuh"
#include "fused/tile_policy.h"

#include <cuda_runtime.h>

namespace theria::kernels::cuda {

template <typename T, int kHeadDim, bool kCausal, FwdPass kPass, bool kGroups, bool kMask>
void launch_sdpa_fwd_tc(const SdpaFwdParams& p, cudaStream_t stream) {
  if constexpr (kPass == FwdPass::kOut && warpgroup_forward(kHeadDim, kPartsOf<T>, kMask)) {
    // The warpgroup pipeline declines views its TMA copies cannot address; those run the mma.sync kernel.
    if (!warpgroup_forward_pays(p.len_kv) || !launch_sdpa_fwd_wg<T, kHeadDim, kCausal, kGroups>(p, stream)) {
      launch_fwd_tc_kernel<T, kHeadDim, kCausal, kPass, kGroups, kMask>(p, stream);
    }
  } else if constexpr (kPass != FwdPass::kOut && warpgroup_kernels(kHeadDim, kPartsOf<T>, kMask)) {
    // The tangent pass, and the JVP: in one pass of the same kernel (kOnline) or as the forward followed by the
    // tangent pass (WarpgroupTile::one_pass_jvp); operands TMA cannot address run the mma.sync kernel of the pass
    // asked for.
    constexpr bool kOnline = kPass == FwdPass::kJvp && WarpgroupTile::one_pass_jvp(kHeadDim, kMask);
    TangentWgMaps maps;
    if (!tangent_wg_maps<T, kHeadDim, kGroups, kMask, kOnline>(p, maps, stream)) {
      launch_fwd_tc_kernel<T, kHeadDim, kCausal, kPass, kGroups, kMask>(p, stream);
      return;
    }
    if constexpr (kPass == FwdPass::kJvp && !kOnline) {
      launch_sdpa_fwd_tc<T, kHeadDim, kCausal, FwdPass::kOut, kGroups, kMask>(p, stream);
    }
    launch_sdpa_tangent_wg<T, kHeadDim, kCausal, kGroups, kMask, kOnline>(p, maps, stream);
  } else {
    launch_fwd_tc_kernel<T, kHeadDim, kCausal, kPass, kGroups, kMask>(p, stream);
  }
}

template <typename T, int kHeadDim, bool kCausal, bool kDeterministic, bool kGroups, bool kMask>
void launch_sdpa_bwd_tc(const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream) {
  launch_sdpa_row_terms_tc<T, kHeadDim, false>(p, stream);
  if constexpr (warpgroup_kernels(kHeadDim, kPartsOf<T>, kMask)) {
    constexpr int kParts = kPartsOf<T>;
    using Tr = BwdWgTraits<kHeadDim, false, false,
                           WarpgroupTile::bwd_block_m(kHeadDim, false, kMask, kDeterministic, kParts), kParts>;
    if (!launch_sdpa_bwd_wg<T, Tr, kCausal, kDeterministic, kGroups, kMask>(p, ws, stream)) {
      launch_bwd_tc_kernel<T, kHeadDim, kCausal, kDeterministic, kGroups, kMask>(p, ws, stream);
    }
  } else {
    launch_bwd_tc_kernel<T, kHeadDim, kCausal, kDeterministic, kGroups, kMask>(p, ws, stream);
  }
  launch_dq_finish<T, kHeadDim>(p, p.dq, ws, stream);
}

template <typename T, int kHeadDim, bool kCausal, bool kDoutDot, bool kDeterministic, bool kGroups, bool kMask>
void launch_sdpa_bwd_jvp_tc(const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream) {
  // The tangent pass has written delta (SdpaFwdParams::dout_out) beside its share of delta_dot, and zeroed the
  // dQ-tangent buffer (sdpa_bwd_jvp_tc in dispatch.cu refuses params that do not say so): the row terms only add a
  // dout tangent's share, rowsum(dout_dot * out).
  if constexpr (kDoutDot) launch_sdpa_row_terms_tc<T, kHeadDim, true>(p, stream);
  if constexpr (warpgroup_kernels(kHeadDim, kPartsOf<T>, kMask)) {
    constexpr int kParts = kPartsOf<T>;
    using Tr = BwdWgTraits<kHeadDim, true, kDoutDot,
                           WarpgroupTile::bwd_block_m(kHeadDim, true, kMask, kDeterministic, kParts), kParts>;
    if (!launch_sdpa_bwd_wg<T, Tr, kCausal, kDeterministic, kGroups, kMask>(p, ws, stream)) {
      launch_bwd_jvp_tc_kernel<T, kHeadDim, kCausal, kDoutDot, kDeterministic, kGroups, kMask>(p, ws, stream);
    }
  } else {
    launch_bwd_jvp_tc_kernel<T, kHeadDim, kCausal, kDoutDot, kDeterministic, kGroups, kMask>(p, ws, stream);
  }
  launch_dq_finish<T, kHeadDim>(p, p.dq_dot, ws, stream);
}

}  // namespace theria::kernels::cuda
