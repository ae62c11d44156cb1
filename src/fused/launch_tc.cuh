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

#include <stdexcept>

namespace theria::kernels::cuda {

// Float32Half's passes form their float16 copies in the binding's scratch (sdpa_fwd_tc_scratch_bytes,
// sdpa_bwd_tc_scratch_bytes) and have no kernel to run without them.
[[noreturn]] inline void throw_no_float32_half_copies() {
  throw std::invalid_argument("theria fused: float32 on float16 copies takes the scratch of its copies and "
                              "SdpaFwdParams::operand_amax");
}

template <typename T, int kHeadDim, bool kCausal, FwdPass kPass, bool kGroups, bool kMask>
void launch_sdpa_fwd_tc(const SdpaFwdParams& p, cudaStream_t stream) {
  if constexpr (kIsFloat32Half<T>) {
    // Float32Half runs the warpgroup kernels only (on copies it forms, which TMA addresses): no mma.sync fallback.
    static_assert(warpgroup_forward(kHeadDim, 1, kMask) && warpgroup_kernels(kHeadDim, 1) && !kGroups && !kMask,
                  "Float32Half: head dims 64 and 128, the plain build");
    if constexpr (kPass == FwdPass::kOut) {
      if (!launch_sdpa_fwd_wg<T, kHeadDim, kCausal, kGroups>(p, stream)) throw_no_float32_half_copies();
    } else {
      constexpr bool kOnline = kPass == FwdPass::kJvp && WarpgroupTile::one_pass_jvp(kHeadDim, kMask);
      TangentWgMaps maps;
      if (!tangent_wg_maps<T, kHeadDim, kGroups, kMask, kOnline>(p, maps, stream)) throw_no_float32_half_copies();
      if constexpr (kPass == FwdPass::kJvp && !kOnline) {
        launch_sdpa_fwd_tc<T, kHeadDim, kCausal, FwdPass::kOut, kGroups, kMask>(p, stream);
      }
      launch_sdpa_tangent_wg<T, kHeadDim, kCausal, kGroups, kMask, kOnline>(p, maps, stream);
    }
  } else if constexpr (kPass == FwdPass::kOut && warpgroup_forward(kHeadDim, kPartsOf<T>, kMask)) {
    // The warpgroup pipeline declines views its TMA copies cannot address; those run the mma.sync kernel.
    if (!warpgroup_forward_pays(p.len_kv) || !launch_sdpa_fwd_wg<T, kHeadDim, kCausal, kGroups>(p, stream)) {
      launch_fwd_tc_kernel<T, kHeadDim, kCausal, kPass, kGroups, kMask>(p, stream);
    }
  } else if constexpr (kPass != FwdPass::kOut && warpgroup_kernels(kHeadDim, kPartsOf<T>)) {
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
  if constexpr (warpgroup_kernels(kHeadDim, kPartsOf<T>)) {
    using Tr = BwdWgTraits<kHeadDim, false, false, WarpgroupTile::bwd_block_m(kHeadDim, false, kMask, kDeterministic)>;
    if (!launch_sdpa_bwd_wg<T, Tr, kCausal, kDeterministic, kGroups, kMask>(p, ws, stream)) {
      if constexpr (kIsFloat32Half<T>) {
        throw_no_float32_half_copies();
      } else {
        launch_bwd_tc_kernel<T, kHeadDim, kCausal, kDeterministic, kGroups, kMask>(p, ws, stream);
      }
    }
  } else {
    static_assert(!kIsFloat32Half<T>, "Float32Half: head dims 64 and 128");
    launch_bwd_tc_kernel<T, kHeadDim, kCausal, kDeterministic, kGroups, kMask>(p, ws, stream);
  }
  launch_dq_finish<T, kHeadDim>(p, p.dq, ws, false, stream);
}

template <typename T, int kHeadDim, bool kCausal, bool kDoutDot, bool kDeterministic, bool kGroups, bool kMask>
void launch_sdpa_bwd_jvp_tc(const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream) {
  // The tangent pass has written delta (SdpaFwdParams::dout_out) beside its share of delta_dot, and zeroed the
  // dQ-tangent buffer (sdpa_bwd_jvp_tc in dispatch.cu refuses params that do not say so): the row terms only add a
  // dout tangent's share, rowsum(dout_dot * out).
  if constexpr (kDoutDot) launch_sdpa_row_terms_tc<T, kHeadDim, true>(p, stream);
  if constexpr (warpgroup_kernels(kHeadDim, kPartsOf<T>)) {
    using Tr = BwdWgTraits<kHeadDim, true, kDoutDot, WarpgroupTile::bwd_block_m(kHeadDim, true, kMask, kDeterministic)>;
    if (!launch_sdpa_bwd_wg<T, Tr, kCausal, kDeterministic, kGroups, kMask>(p, ws, stream)) {
      if constexpr (kIsFloat32Half<T>) {
        throw_no_float32_half_copies();
      } else {
        launch_bwd_jvp_tc_kernel<T, kHeadDim, kCausal, kDoutDot, kDeterministic, kGroups, kMask>(p, ws, stream);
      }
    }
  } else {
    static_assert(!kIsFloat32Half<T>, "Float32Half: head dims 64 and 128");
    launch_bwd_jvp_tc_kernel<T, kHeadDim, kCausal, kDoutDot, kDeterministic, kGroups, kMask>(p, ws, stream);
  }
  launch_dq_finish<T, kHeadDim>(p, p.dq_dot, ws, true, stream);
}

}  // namespace theria::kernels::cuda
