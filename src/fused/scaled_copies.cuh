// float32 operands at matmul precision "high" as float16 copies in global memory for the warpgroup kernels
// (Float32Half: each copy scaled by its operand's power of two, operand_scales.cuh). Their TMA copies move tiles as
// they are, so the copies are formed once per operand before the kernel. The scratch that holds them is the
// binding's (sdpa_fwd_tc_scratch_bytes, sdpa_bwd_tc_scratch_bytes: launch.h).
#pragma once

#include "fused/mma.cuh"
#include "fused/operand_scales.cuh"
#include "fused/tile_io.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace theria::kernels::cuda {

// One float32 operand to read: its view, its rows a batch position, where its copy goes (position b, row r at
// dst + (b * rows + r) * cols), its slot (operand_scales.cuh).
struct CopyOperand {
  MatrixView m;
  int64_t rows = 0;
  uint16_t* dst = nullptr;
  int slot = 0;
};

// Every operand of a pass in one launch (blockIdx.z: the operand): one launch each had cost a small HVP more host
// time than its kernels took (docs/performance.md). Eight: the backward-JVP's with a dout tangent. (operand_amax.cu
// reads its operands through the same batch.)
constexpr int kMaxCopyOperands = 8;
struct CopyBatch {
  CopyOperand op[kMaxCopyOperands];
  int count = 0;
  int cols = 0;
  int64_t batch = 0;
  const float* amax = nullptr;  // SdpaFwdParams::operand_amax
};

// kVec columns a thread: four where every operand's rows start on 16-byte boundaries (ScaledCopies::launch: 16-byte
// loads, 8-byte stores), else two (the views' rows are 8-byte aligned on the tensor-core path). A thread's chunk of
// operand blockIdx.z: its kVec float32 values and where their float16 copies go (`at`, in units of kVec 16-bit
// values); false past the operand's end.
template <int kVec>
__device__ __forceinline__ bool load_row_chunk(const CopyBatch& s, const CopyOperand& o, float (&x)[kVec],
                                               int64_t& at) {
  static_assert(kVec == 2 || kVec == 4, "two or four columns a thread");
  const int64_t b = blockIdx.y, elems = o.rows * s.cols;
  const int64_t i = kVec * (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x);
  if (i >= elems) return false;
  const int64_t r = i / s.cols;
  const int c = static_cast<int>(i - r * s.cols);
  const float* src = batch_base<float>(o.m, b) + r * o.m.row_stride + c;
  if constexpr (kVec == 4) {
    const float4 v = *reinterpret_cast<const float4*>(src);
    x[0] = v.x, x[1] = v.y, x[2] = v.z, x[3] = v.w;
  } else {
    load2<float>(src, x[0], x[1]);
  }
  at = (b * elems + i) / kVec;
  return true;
}

// x 2^e as float16, e the operand's exponent (operand_scales.cuh).
template <int kVec>
__global__ void scaled_half_rows_kernel(const __grid_constant__ CopyBatch s) {
  const CopyOperand& o = s.op[blockIdx.z];
  const float f = block_uniform([&] { return pow2f(OperandScales::from(s.amax).of(o.slot)); });
  float x[kVec];
  int64_t at = 0;
  if (!load_row_chunk<kVec>(s, o, x, at)) return;
  uint32_t pairs[kVec / 2];
#pragma unroll
  for (int j = 0; j < kVec / 2; ++j) pairs[j] = pack2<__half>(x[2 * j] * f, x[2 * j + 1] * f);
  if constexpr (kVec == 4) {
    reinterpret_cast<uint2*>(o.dst)[at] = make_uint2(pairs[0], pairs[1]);
  } else {
    reinterpret_cast<uint32_t*>(o.dst)[at] = pairs[0];
  }
}

// A pass's operands, added one after the other into its scratch (packed: batch * rows * cols 16-bit elements each),
// then formed in one launch. The passes add them in one order, Q, Q_dot, K, V, K_dot, V_dot, dO, dO_dot (those they
// have), so that the backward-JVP finds the six it shares with the tangent pass where that pass formed them
// (SdpaBwdParams::tangent_copies_formed). The exponents come from `amax` (SdpaFwdParams::operand_amax).
class ScaledCopies {
 public:
  ScaledCopies(void* scratch, int64_t batch, int cols, const float* amax) : dst_(static_cast<uint16_t*>(scratch)) {
    s_.batch = batch;
    s_.cols = cols;
    s_.amax = amax;
  }

  // Whether a pass with these params can form its copies: the binding's scratch and the operands' largest magnitudes
  // are set, and every query head has its own key head (the float32 kernels' plain build).
  static bool can_form(const SdpaFwdParams& p) {
    return p.scratch != nullptr && p.operand_amax != nullptr && p.group == 1;
  }

  // The view of m's copy, formed once launch() has run, or already there (`formed`: an earlier pass formed it in the
  // same place of the same scratch); slot: m's (operand_scales.cuh). At most kMaxCopyOperands operands: the launchers
  // add fixed lists of at most eight.
  MatrixView add(const MatrixView& m, int64_t rows, int slot, bool formed = false) {
    if (!formed) s_.op[s_.count++] = {m, rows, dst_, slot};
    MatrixView v;
    v.ptr = dst_;
    v.row_stride = s_.cols;
    v.head_stride = rows * s_.cols;
    v.heads = m.heads;
    v.batch_stride = m.heads * rows * s_.cols;
    v.group = 1;
    dst_ += s_.batch * rows * s_.cols;
    return v;
  }

  // Four columns a thread where every operand's rows start on 16-byte boundaries (measured: 2.9 TB/s with two
  // columns, docs/performance.md), else two.
  void launch(cudaStream_t stream) const {
    constexpr int kThreads = 256;
    int64_t elems = 0;
    bool vec4 = true;
    for (int i = 0; i < s_.count; ++i) {
      const MatrixView& m = s_.op[i].m;
      elems = std::max(elems, s_.op[i].rows * s_.cols);
      vec4 = vec4 && reinterpret_cast<uintptr_t>(m.ptr) % 16 == 0 && m.row_stride % 4 == 0 &&
             (m.heads == 1 || m.head_stride % 4 == 0) && m.batch_stride % 4 == 0;
    }
    if (elems == 0 || s_.batch == 0) return;
    const int vec = vec4 ? 4 : 2;
    const int64_t blocks = (elems / vec + kThreads - 1) / kThreads;
    const dim3 grid(static_cast<unsigned>(blocks), static_cast<unsigned>(s_.batch), static_cast<unsigned>(s_.count));
    if (vec4) {
      scaled_half_rows_kernel<4><<<grid, kThreads, 0, stream>>>(s_);
    } else {
      scaled_half_rows_kernel<2><<<grid, kThreads, 0, stream>>>(s_);
    }
  }

 private:
  CopyBatch s_;
  uint16_t* dst_;
};

}  // namespace theria::kernels::cuda
