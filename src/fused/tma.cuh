// Tensor Memory Accelerator (TMA, sm_90) copies of row-major operand tiles, global -> shared memory, with the
// 128-byte swizzle that the warpgroup MMAs read (wgmma.cuh, Swizzled128Rows in tile_io.cuh).
//
// Host: a CUtensorMap describes one strided operand (MatrixView) as a 4-d tensor (columns, rows, heads, outer
// batch) and the box one copy moves: 64 columns (128 bytes) x kRows rows. The driver's encoder is reached through
// the runtime's entry-point query, so nothing links libcuda. A view the hardware cannot address (base not 16-byte
// aligned, a stride not a multiple of 16 bytes) gets no map: the caller runs a kernel without TMA.
// Device: one thread issues a tile's copies (a box per 64 columns) and announces their bytes on the stage's "full"
// mbarrier (arrive.expect_tx); the copies complete the barrier's phase when the bytes have landed, visible to the
// tensor cores with no fence. Rows past the tensor's end arrive as zeros.
#pragma once

#include "fused/mma.cuh"
#include "fused/tile_io.cuh"
#include "kernels/sdpa_params.h"

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace theria::kernels::cuda {

constexpr int kTmaBoxCols = 64;  // 16-bit columns of one box: the 128 bytes the swizzle spans

// ---- host ----

inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &found) !=
            cudaSuccess ||
        found != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

// The map of a query-side (key_side false) or key-side view of `rows` x `cols` 16-bit matrices, `batch` of them
// addressed as the kernels' batch index b (b / heads, (b % heads) / group), copied in boxes of 64 x box_rows.
// False when the view cannot be described (the map is then left unset).
template <typename T>
bool encode_rows_map(CUtensorMap* map, const MatrixView& m, int64_t rows, int64_t cols, int64_t batch, bool key_side,
                     int box_rows) {
  static_assert(sizeof(T) == 2, "16-bit operands");
  const PFN_cuTensorMapEncodeTiled_v12000 encode = tensor_map_encoder();
  if (encode == nullptr || reinterpret_cast<uintptr_t>(m.ptr) % 16 != 0 || cols % kTmaBoxCols != 0) return false;
  const int64_t heads = key_side ? m.heads / m.group : m.heads;
  const int64_t outer = batch / m.heads;
  cuuint64_t dims[4] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows), static_cast<cuuint64_t>(heads),
                        static_cast<cuuint64_t>(outer)};
  // Byte strides of rows, heads, outer batch; a dimension of size one takes the packed stride (it is never stepped).
  int64_t strides[3] = {m.row_stride, m.head_stride, m.batch_stride};
  int64_t packed = cols;
  for (int i = 0; i < 3; ++i) {
    if (dims[i + 1] == 1) strides[i] = packed;
    packed = strides[i] * static_cast<int64_t>(dims[i + 1]);
  }
  cuuint64_t byte_strides[3];
  for (int i = 0; i < 3; ++i) {
    if (strides[i] <= 0 || (strides[i] * 2) % 16 != 0) return false;
    byte_strides[i] = static_cast<cuuint64_t>(strides[i] * 2);
  }
  cuuint32_t box[4] = {kTmaBoxCols, static_cast<cuuint32_t>(box_rows), 1, 1};
  cuuint32_t unit[4] = {1, 1, 1, 1};
  const CUtensorMapDataType type =
      std::is_same_v<T, __half> ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  return encode(map, type, 4, m.ptr, dims, byte_strides, box, unit, CU_TENSOR_MAP_INTERLEAVE_NONE,
                CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) == CUDA_SUCCESS;
}

// ---- device ----

// The coordinates (head, outer batch) of batch position b in a map from encode_rows_map: query side (b / heads,
// b % heads), key side under grouped-query attention its key/value head ((b % heads) / group).
struct TmaBatch {
  int head, outer;
};
template <bool kKeyGroups>
__device__ __forceinline__ TmaBatch tma_batch(const MatrixView& m, int64_t b) {
  const BatchSplit s = split_batch(b, m.heads);
  const uint32_t head = kKeyGroups ? s.head / static_cast<uint32_t>(m.group) : s.head;
  return {static_cast<int>(head), static_cast<int>(s.outer)};
}

// The dynamic shared memory of a kernel with swizzled tiles, which the swizzle needs on 1024-byte boundaries: its
// first such boundary. The base of dynamic shared memory is not one on the H200 (measured: a check that trapped
// otherwise stopped the kernels), so each such kernel asks kSwizzlePad bytes more than its tiles need.
constexpr int kSwizzlePad = 1024;
__device__ __forceinline__ unsigned char* swizzled_smem(unsigned char* smem) {
  return smem + ((kSwizzlePad - smem_addr(smem) % kSwizzlePad) % kSwizzlePad);
}

// Arrives on the barrier and adds `bytes` to the transfers its current phase waits for.
__device__ __forceinline__ void mbarrier_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_addr(bar)), "r"(bytes)
               : "memory");
}

// Rows [row0, row0 + box rows) of matrix `at` as kCols / 64 boxes, box c at tile + c * box bytes; the
// copies complete on `bar`, whose phase the caller has told to expect kBoxBytes * kCols / 64 bytes.
template <int kCols, int kBoxBytes>
__device__ __forceinline__ void tma_load_rows(void* tile, const CUtensorMap* map, int row0, TmaBatch at,
                                              uint64_t* bar) {
  const uint32_t dst = smem_addr(tile), mbar = smem_addr(bar);
#pragma unroll
  for (int c = 0; c < kCols / kTmaBoxCols; ++c) {
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4, "
        "%5}], [%6];\n" ::"r"(dst + c * kBoxBytes),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c * kTmaBoxCols), "r"(row0), "r"(at.head), "r"(at.outer), "r"(mbar)
        : "memory");
  }
}

}  // namespace theria::kernels::cuda
