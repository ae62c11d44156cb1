// The one dispatch point of the fused kernels: dtype x head dim x causal (x tangent) x build (plain, grouped
// heads, mask) to the instantiated launch templates.
#include "fused/kernel_templates.h"
#include "fused/launch.h"
#include "fused/static_switch.h"
#include "fused/tile_policy.h"

#include <algorithm>
#include <stdexcept>
#include <type_traits>

namespace theria::kernels::cuda {

bool tensor_core_head_dim(Dtype dtype, int64_t dim_qk, int64_t dim_v) {
  const bool operand = dtype == Dtype::kFloat16 || dtype == Dtype::kBFloat16 || dtype == Dtype::kFloat32;
  const bool dim = dim_qk == 32 || dim_qk == 64 || dim_qk == 96 || dim_qk == 128;
  // Three parts per operand take 3 kCols + 8 elements a row: up to 64 the tiles fit two CTAs' shared memory.
  const bool three_parts = dtype == Dtype::kFloat32x3 && (dim_qk == 32 || dim_qk == 64);
  // Scaled float16 copies: the warpgroup kernels, head dims 64 and 128, where the split has no build.
  const bool half_copies = dim_qk == 64 || dim_qk == 128;
  if (dtype == Dtype::kFloat32Half) return half_copies && dim_qk == dim_v;
  if (dtype == Dtype::kFloat32 && half_copies) return false;
  return ((operand && dim) || three_parts) && dim_qk == dim_v;
}

namespace {

// The build a problem takes (THERIA_BUILD_SWITCH), as fn(groups, mask) with std::bool_constant arguments. float32
// (split products) comes in the plain build only, and with three parts at head dims up to 64: the binding sends it
// nothing else (fused_backend.cpp, tensor_core_head_dim), and a call that does anyway is refused here rather than
// run on the wrong kernel.
template <typename T, int kHeadDim, class Params, class Fn>
void build_switch(const Params& p, Fn&& fn) {
  if constexpr (std::is_same_v<T, Float32Parts<3>> && kHeadDim > 64) {
    throw std::invalid_argument("theria fused: the three-part float32 kernels take head dims up to 64");
  } else if constexpr (kIsFloat32Half<T> && kHeadDim != 64 && kHeadDim != 128) {
    throw std::invalid_argument("theria fused: float32 on float16 copies takes head dims 64 and 128");
  } else if constexpr (std::is_same_v<T, float> && (kHeadDim == 64 || kHeadDim == 128)) {
    throw std::invalid_argument("theria fused: float32 at \"high\" takes float16 copies at head dims 64 and 128 "
                                "(Dtype::kFloat32Half), the bfloat16 split at 32 and 96");
  } else if constexpr (sizeof(T) == 4) {
    if (p.mask.ptr != nullptr || p.group > 1) {
      throw std::invalid_argument("theria fused: the float32 tensor-core kernels take no attn_mask and no grouped heads");
    }
    fn(std::false_type{}, std::false_type{});
  } else {
    THERIA_BUILD_SWITCH(p, kGroups, kMask, [&] { fn(std::bool_constant<kGroups>{}, std::bool_constant<kMask>{}); });
  }
}

}  // namespace

void sdpa_fwd_tc(Dtype dtype, const SdpaFwdParams& p, cudaStream_t stream) {
  THERIA_TC_DTYPE_SWITCH(dtype, T, [&] {
    THERIA_HEADDIM_SWITCH(p.dim_qk, kHeadDim, [&] {
      THERIA_BOOL_SWITCH(p.causal, kCausal, [&] {
        THERIA_BOOL_SWITCH(p.with_tangent(), kTangent, [&] {
          build_switch<T, kHeadDim>(p, [&](auto groups, auto mask) {
            constexpr FwdPass kPass = kTangent ? FwdPass::kJvp : FwdPass::kOut;
            launch_sdpa_fwd_tc<T, kHeadDim, kCausal, kPass, decltype(groups)::value, decltype(mask)::value>(p, stream);
          });
        });
      });
    });
  });
}

// The scaled float16 copies (Float32Half, scaled_copies.cuh): the only dtype whose kernels read copies, formed at
// every length (it has only the warpgroup kernels).
namespace {
bool forms_copies(Dtype dtype, int64_t dim_qk, int64_t dim_v, int64_t group, bool mask) {
  return dtype == Dtype::kFloat32Half && dim_v == dim_qk && group == 1 && !mask &&
         warpgroup_kernels(static_cast<int>(dim_qk), 1);
}
}  // namespace

size_t sdpa_fwd_tc_scratch_bytes(Dtype dtype, const SdpaFwdParams& p) {
  if (!forms_copies(dtype, p.dim_qk, p.dim_v, p.group, p.mask.ptr != nullptr)) return 0;
  // The forward's q, k, v; the tangent pass's and JVP's also their tangents.
  const int64_t elems = (p.batch * p.len_q + 2 * p.batch * p.len_kv) * p.dim_qk * (p.with_tangent() ? 2 : 1);
  return static_cast<size_t>(elems) * 2;
}

size_t sdpa_bwd_tc_scratch_bytes(Dtype dtype, const SdpaBwdParams& p) {
  if (!forms_copies(dtype, p.dim_qk, p.dim_v, p.group, p.mask.ptr != nullptr)) return 0;
  // q, dout [, q_dot [, dout_dot]]; k, v [, k_dot, v_dot].
  const bool tangent = p.with_tangent();
  const int64_t rows = tangent ? (p.dout_dot.ptr != nullptr ? 4 : 3) : 2, keys = tangent ? 4 : 2;
  const int64_t elems = (rows * p.len_q + keys * p.len_kv) * p.batch * p.dim_qk;
  return static_cast<size_t>(elems) * 2;
}

size_t sdpa_bwd_tail_bytes(Dtype dtype, const SdpaBwdParams& p) {
  // The builds whose walks may split (sdpa_bwd_wg.cuh, kBwdTailSplits): 16-bit operands, plain, not causal.
  if (dtype != Dtype::kFloat16 && dtype != Dtype::kBFloat16 && dtype != Dtype::kFloat32Half) return 0;
  if (p.causal || p.mask.ptr != nullptr || p.group != 1 || p.dim_v != p.dim_qk) return 0;
  const int head_dim = static_cast<int>(p.dim_qk);
  if (!warpgroup_kernels(head_dim, 1)) return 0;
  // Their key blocks (64 keys a warpgroup) and the SMs, one CTA each (their shared memory): at most a wave less one
  // of those blocks split.
  const auto block_n = [&](bool tangent) {
    return 64 * WarpgroupTile::bwd_warpgroups(head_dim, tangent,
                                              WarpgroupTile::bwd_block_m(head_dim, tangent, false, false));
  };
  const int64_t keys = std::max(block_n(false), block_n(true));
  int device = 0, sms = 0;
  cudaGetDevice(&device);
  cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
  const int64_t units = (p.len_kv + keys - 1) / keys * p.batch;  // (group 1: a key-side position per batch one)
  if (sms <= 0 || units <= sms) return 0;
  return static_cast<size_t>(units % sms) * 2 * keys * head_dim * sizeof(float);
}

void sdpa_tangent_tc(Dtype dtype, const SdpaFwdParams& p, cudaStream_t stream) {
  THERIA_TC_DTYPE_SWITCH(dtype, T, [&] {
    THERIA_HEADDIM_SWITCH(p.dim_qk, kHeadDim, [&] {
      THERIA_BOOL_SWITCH(p.causal, kCausal, [&] {
        build_switch<T, kHeadDim>(p, [&](auto groups, auto mask) {
          launch_sdpa_fwd_tc<T, kHeadDim, kCausal, FwdPass::kTangent, decltype(groups)::value, decltype(mask)::value>(
              p, stream);
        });
      });
    });
  });
}

void sdpa_bwd_tc(Dtype dtype, const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream) {
  THERIA_TC_DTYPE_SWITCH(dtype, T, [&] {
    THERIA_HEADDIM_SWITCH(p.dim_qk, kHeadDim, [&] {
      THERIA_BOOL_SWITCH(p.causal, kCausal, [&] {
        THERIA_BOOL_SWITCH(ws.dq_turns != nullptr, kDeterministic, [&] {
          build_switch<T, kHeadDim>(p, [&](auto groups, auto mask) {
            launch_sdpa_bwd_tc<T, kHeadDim, kCausal, kDeterministic, decltype(groups)::value, decltype(mask)::value>(
                p, ws, stream);
          });
        });
      });
    });
  });
}

void sdpa_bwd_jvp_tc(Dtype dtype, const SdpaBwdParams& p, const BwdWorkspace& ws, cudaStream_t stream) {
  // Its row terms count on the tangent pass run on the same params before it (sdpa_tangent_tc) for delta
  // (launch_tc.cuh); params that did not ask that pass for it would leave delta unset.
  if (p.delta == nullptr || p.dout_out != p.delta) {
    throw std::invalid_argument("theria fused: sdpa_bwd_jvp_tc takes params whose tangent pass wrote delta "
                                "(dout_out == delta)");
  }
  THERIA_TC_DTYPE_SWITCH(dtype, T, [&] {
    THERIA_HEADDIM_SWITCH(p.dim_qk, kHeadDim, [&] {
      THERIA_BOOL_SWITCH(p.causal, kCausal, [&] {
        THERIA_BOOL_SWITCH(p.dout_dot.ptr != nullptr, kDoutDot, [&] {
          THERIA_BOOL_SWITCH(ws.dq_turns != nullptr, kDeterministic, [&] {
            build_switch<T, kHeadDim>(p, [&](auto groups, auto mask) {
              launch_sdpa_bwd_jvp_tc<T, kHeadDim, kCausal, kDoutDot, kDeterministic, decltype(groups)::value,
                                     decltype(mask)::value>(p, ws, stream);
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
