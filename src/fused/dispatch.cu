// The one dispatch point of the fused kernels: dtype x head dim x causal (x tangent) x build (plain, grouped
// heads, mask) to the instantiated launch templates.
#include "fused/kernel_templates.h"
#include "fused/launch.h"
#include "fused/static_switch.h"

namespace theria::kernels::cuda {

bool tensor_core_head_dim(Dtype dtype, int64_t dim_qk, int64_t dim_v) {
  const bool half = dtype == Dtype::kFloat16 || dtype == Dtype::kBFloat16;
  const bool dim = dim_qk == 32 || dim_qk == 64 || dim_qk == 96 || dim_qk == 128;
  return half && dim && dim_qk == dim_v;
}

void sdpa_fwd_tc(Dtype dtype, const SdpaFwdParams& p, cudaStream_t stream) {
  THERIA_HALF_SWITCH(dtype, T, [&] {
    THERIA_HEADDIM_SWITCH(p.dim_qk, kHeadDim, [&] {
      THERIA_BOOL_SWITCH(p.causal, kCausal, [&] {
        THERIA_BOOL_SWITCH(p.with_tangent(), kTangent, [&] {
          THERIA_BUILD_SWITCH(p, kGroups, kMask, [&] {
            launch_sdpa_fwd_tc<T, kHeadDim, kCausal, kTangent ? FwdPass::kJvp : FwdPass::kOut, kGroups, kMask>(p, stream);
          });
        });
      });
    });
  });
}

void sdpa_tangent_tc(Dtype dtype, const SdpaFwdParams& p, cudaStream_t stream) {
  THERIA_HALF_SWITCH(dtype, T, [&] {
    THERIA_HEADDIM_SWITCH(p.dim_qk, kHeadDim, [&] {
      THERIA_BOOL_SWITCH(p.causal, kCausal, [&] {
        THERIA_BUILD_SWITCH(p, kGroups, kMask, [&] {
          launch_sdpa_fwd_tc<T, kHeadDim, kCausal, FwdPass::kTangent, kGroups, kMask>(p, stream);
        });
      });
    });
  });
}

void sdpa_bwd_tc(Dtype dtype, const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream) {
  THERIA_HALF_SWITCH(dtype, T, [&] {
    THERIA_HEADDIM_SWITCH(p.dim_qk, kHeadDim, [&] {
      THERIA_BOOL_SWITCH(p.causal, kCausal, [&] {
        THERIA_BOOL_SWITCH(ws.dq_turns != nullptr, kDeterministic, [&] {
          THERIA_BUILD_SWITCH(p, kGroups, kMask, [&] {
            launch_sdpa_bwd_tc<T, kHeadDim, kCausal, kDeterministic, kGroups, kMask>(p, ws, stream);
          });
        });
      });
    });
  });
}

void sdpa_bwd_jvp_tc(Dtype dtype, const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream) {
  THERIA_HALF_SWITCH(dtype, T, [&] {
    THERIA_HEADDIM_SWITCH(p.dim_qk, kHeadDim, [&] {
      THERIA_BOOL_SWITCH(p.causal, kCausal, [&] {
        THERIA_BOOL_SWITCH(p.dout_dot.ptr != nullptr, kDoutDot, [&] {
          THERIA_BOOL_SWITCH(ws.dq_turns != nullptr, kDeterministic, [&] {
            THERIA_BUILD_SWITCH(p, kGroups, kMask, [&] {
              launch_sdpa_bwd_jvp_tc<T, kHeadDim, kCausal, kDoutDot, kDeterministic, kGroups, kMask>(p, ws, stream);
            });
          });
        });
      });
    });
  });
}

void sdpa_fwd_simt(Dtype dtype, const SdpaFwdParams& p, cudaStream_t stream) {
  THERIA_FLOAT_SWITCH(dtype, T, [&] {
    THERIA_LANE_COLS_SWITCH(p.dim_v, kCols, [&] {
      THERIA_BOOL_SWITCH(p.with_tangent(), kTangent, [&] { launch_sdpa_fwd_simt<T, kTangent, kCols>(p, stream); });
    });
  });
}

void sdpa_bwd_simt(Dtype dtype, const SdpaBwdParams& p, cudaStream_t stream) {
  const int64_t widest = p.dim_qk > p.dim_v ? p.dim_qk : p.dim_v;
  THERIA_FLOAT_SWITCH(dtype, T, [&] {
    THERIA_LANE_COLS_SWITCH(widest, kCols, [&] {
      THERIA_BOOL_SWITCH(p.with_tangent(), kTangent, [&] { launch_sdpa_bwd_simt<T, kTangent, kCols>(p, stream); });
    });
  });
}

}  // namespace theria::kernels::cuda
