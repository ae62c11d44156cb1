// Shared-memory tiles: their global -> shared copies, their ldmatrix addresses, the stores of
// accumulator rows back to global memory, and the launch with dynamic shared memory.
//
// Tiles are row-major kRows x kCols 16-bit elements in a layout type (offset, copy order): PaddedRows
// pads each row by 8 elements (16 bytes): with a row pitch of 2*kCols + 16 bytes, the 8 row addresses
// of one ldmatrix fall in 8 distinct groups of 4 banks for every head dim used here (32, 64, 96, 128),
// so the loads are conflict-free without a swizzle, and the padding works for 96 where an XOR
// swizzle over 8 chunks would not. CoreMatrixRows stores whole 8 x 8 blocks, the layout wgmma reads.
#pragma once

#include "fused/mma.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace theria::kernels::cuda {

// Row-major tile with each row padded by 8 elements. With kParts > 1 (float32 split into bfloat16 parts,
// mma.cuh) a row holds its parts one after another, part i at column i * kCols (kPartStride): one address
// gives every part, and with a row pitch of 2 * (2 * kCols) + 16 bytes the ldmatrix rows still fall in distinct
// bank groups (an odd number of 16-byte chunks, as for one part).
template <int kCols, int kParts = 1>
struct PaddedRows {
  static constexpr int kPartStride = kCols;
  static constexpr int kStride = kParts * kCols + 8;  // elements between two rows in shared memory
  static constexpr int tile_elems(int rows) { return rows * kStride; }
  __device__ __forceinline__ static int offset(int r, int c) { return r * kStride + c; }
  // The c-th 16-byte chunk of a copy: consecutive threads take consecutive chunks of a row.
  __device__ __forceinline__ static void chunk(int c, int& r, int& col) {
    r = c / (kCols / 8);
    col = (c % (kCols / 8)) * 8;
  }
};

// Tile of whole 8 x 8 blocks (8 rows of 16 bytes, 128 contiguous bytes), the blocks of 8 rows one after
// another: the no-swizzle layout wgmma reads (wgmma.cuh), K-major or MN-major. One ldmatrix matrix or
// one 4-byte store per lane of an accumulator row pair stays within one block, so neither conflicts.
// A 16-byte chunk's bank group is its row's index within the block: copies give each pair of neighbouring
// threads the two chunks of one 32-byte sector of a row, and 8 threads four rows (16 threads cover a block's
// 8 rows x 2 chunks). Each sector is read whole, at the price of a 2-way conflict on the shared-memory
// side; copying 8 rows of one chunk column per 8 threads (conflict-free) read each sector twice, as two
// half-used requests: Nsight Compute counted as many L2 sectors as requests, twice the tile bytes, and the
// forward's consumers waited for its copies (docs/performance.md).
template <int kCols>
struct CoreMatrixRows {
  static constexpr int kPartStride = 0;  // 16-bit operands only
  static constexpr int kBlockColBytes = 128;         // between blocks adjacent along the columns
  static constexpr int kBlockRowBytes = 16 * kCols;  // between blocks adjacent along the rows (2-byte elements)
  // wgmma descriptor fields (wgmma.cuh, TileDesc): no swizzle; the leading offset steps along K, the stride offset
  // along M or N, for both majors.
  static constexpr uint32_t kSwizzleMode = 0;
  template <bool kMnMajor>
  static constexpr uint32_t lead_bytes() { return kMnMajor ? kBlockRowBytes : kBlockColBytes; }
  template <bool kMnMajor>
  static constexpr uint32_t stride_bytes() { return kMnMajor ? kBlockColBytes : kBlockRowBytes; }
  static constexpr int tile_elems(int rows) { return rows * kCols; }
  __host__ __device__ __forceinline__ static constexpr int offset(int r, int c) {
    return (r >> 3) * (8 * kCols) + (c >> 3) * 64 + (r & 7) * 8 + (c & 7);
  }
  static_assert(kCols % 16 == 0, "rows of whole 32-byte sectors");
  __device__ __forceinline__ static void chunk(int c, int& r, int& col) {
    r = (c / kCols) * 8 + ((c >> 1) & 7);               // kCols chunks per block row
    col = (2 * ((c >> 4) % (kCols / 16)) + (c & 1)) * 8;  // chunk pairs of a row at consecutive threads
  }
};

// Tile of kRows rows as the TMA copies it with the 128-byte swizzle (tma.cuh): one box of kRows x 64 columns (128
// bytes a row) after another, row r of a box at 128 r bytes, its 16-byte chunk i stored at chunk i ^ (r % 8) (the
// hardware applies the XOR on address bits, so a tile starts on a 1024-byte boundary). offset() is the element where
// a descriptor starts before the swizzle: the wgmma reads the tile as 8-row atoms of 1024 bytes, K-major (rows M or
// N, 16 columns a k-step: 32 bytes on within a row, the next box after four) or MN-major (rows K: a k-step is 16
// rows; N spans boxes at the leading offset).
template <int kRows>
struct Swizzled128Rows {
  static constexpr int kBoxBytes = kRows * 128;
  static constexpr int tile_elems(int cols) { return kRows * cols; }
  __host__ __device__ __forceinline__ static constexpr int offset(int r, int c) {
    return (c / 64) * (kRows * 64) + r * 64 + c % 64;
  }
  static constexpr uint32_t kSwizzleMode = 1;  // the descriptor's 128-byte swizzle
  template <bool kMnMajor>
  static constexpr uint32_t lead_bytes() { return kMnMajor ? kBoxBytes : 16; }  // K-major: unused
  template <bool kMnMajor>
  static constexpr uint32_t stride_bytes() { return 1024; }  // between 8-row atoms
};

// A buffer of four operand tiles of kRows x kCols in the TMA maps' order (X, Y, X_dot, Y_dot: the backward-JVP's
// Q, dO, Q_dot, dO_dot), where with kStack X and X_dot are one stacked tile of 2 kRows rows (Stacked: each 64-column
// box X's rows, then X_dot's) in the room of the first two tiles, so that a product whose other operand multiplies
// both is one product of twice the N (wgmma_product_rule_stacked); Y and Y_dot follow. at(i): where operand i
// starts, in elements; stacked(i): whether it lies in the stacked tile (its boxes twice as far apart: Stacked's
// layout).
template <int kRows, int kCols, bool kStack>
struct OperandTiles {
  using Single = Swizzled128Rows<kRows>;
  using Stacked = std::conditional_t<kStack, Swizzled128Rows<2 * kRows>, Single>;  // X's and X_dot's layout
  static constexpr int kTile = Single::tile_elems(kCols);
  static constexpr bool stacked(int i) { return kStack && i % 2 == 0; }
  static constexpr int at(int i) {
    return !kStack ? i * kTile : i == 0 ? 0 : i == 2 ? Stacked::offset(kRows, 0) : (i == 1 ? 2 : 3) * kTile;
  }
};

// Base of batch position b (split as b / heads, b % heads) in a strided global matrix.
template <typename T>
__device__ __forceinline__ T* batch_base(const MatrixView& m, int64_t b) {
  return static_cast<T*>(m.ptr) + (b / m.heads) * m.batch_stride + (b % m.heads) * m.head_stride;
}

// Batch position b as (b / heads, b % heads) in 32-bit arithmetic, for the grouped and masked builds: b < 65 536
// on the tensor-core path, and a 64-bit division cost the D=128 grouped forward, which sits at its register
// limit, 13 % (docs/performance.md).
struct BatchSplit {
  uint32_t outer, head;
};
__device__ __forceinline__ BatchSplit split_batch(int64_t b, int64_t heads) {
  const uint32_t b32 = static_cast<uint32_t>(b), h = static_cast<uint32_t>(heads);
  const uint32_t outer = b32 / h;
  return {outer, b32 - outer * h};
}

// The same for a key-side view (k, v, their tangents and gradients): under grouped-query attention (kGroups)
// query position b maps to its key/value head; the plain kernels keep batch_base's arithmetic. The backward kernels
// read key-side operands with kGroups true in every build (kReadKeysByGroup): their plain build also serves grouped
// heads, one query head per CTA (fused_backend.cpp), and with group 1 the two agree.
template <typename T, bool kGroups>
__device__ __forceinline__ T* key_base(const MatrixView& m, int64_t b) {
  if constexpr (!kGroups) return batch_base<T>(m, b);
  const BatchSplit s = split_batch(b, m.heads);
  return static_cast<T*>(m.ptr) + s.outer * m.batch_stride + s.head / static_cast<uint32_t>(m.group) * m.head_stride;
}
constexpr bool kReadKeysByGroup = true;

// 8 float32 values at src (32-byte aligned) as their bfloat16 parts (T's) at dst, dst + kPartStride, ...
template <typename T, int kPartStride>
__device__ __forceinline__ void split_chunk(__nv_bfloat16* dst, const float* src, bool valid) {
  constexpr int kParts = kPartsOf<T>;
  float4 a = make_float4(0.f, 0.f, 0.f, 0.f), b = a;
  if (valid) {
    a = __ldg(reinterpret_cast<const float4*>(src));
    b = __ldg(reinterpret_cast<const float4*>(src) + 1);
  }
  uint32_t parts[kParts][4];
  split_eight<T>(parts, a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w);
#pragma unroll
  for (int i = 0; i < kParts; ++i) {
    *reinterpret_cast<uint4*>(dst + i * kPartStride) = make_uint4(parts[i][0], parts[i][1], parts[i][2], parts[i][3]);
  }
}

// Asynchronously copies rows [row0, row0 + kRows) of a row-major global matrix (kCols columns,
// contiguous, 16-byte aligned rows) into a tile of the given layout; rows at or past n_rows become zeros.
// float32 rows (the split path) are split into their bfloat16 parts on the way: cp.async cannot convert, so
// those copies are plain loads and stores, complete when the function returns.
template <typename T, int kRows, int kCols, int kThreads, class Layout = PaddedRows<kCols, kPartsOf<T>>>
__device__ __forceinline__ void load_rows_async(ElemOf<T>* tile, const T* gmem, int64_t row_stride, int row0,
                                                int n_rows, int tid) {
  constexpr int kChunks = kRows * (kCols / 8);
  constexpr int kIters = (kChunks + kThreads - 1) / kThreads;
  const auto copy = [&](int c) {
    int r, col;
    Layout::chunk(c, r, col);
    const bool valid = row0 + r < n_rows;
    const T* src = valid ? gmem + static_cast<int64_t>(row0 + r) * row_stride + col : gmem;
    if constexpr (kPartsOf<T> > 1) {
      split_chunk<T, Layout::kPartStride>(tile + Layout::offset(r, col), reinterpret_cast<const float*>(src), valid);
    } else {
      cp_async_16(tile + Layout::offset(r, col), src, valid);
    }
  };
  if constexpr (kIters <= 4) {
    // A compile-time trip count: with the bound test on the thread index, the loop waited on a re-read
    // of the index (Nsight Compute: 3 % of the backward-JVP's stall samples; this form alone took the
    // backward-JVP op from 4.84 to 4.25 ms at D=64, docs/performance.md).
#pragma unroll
    for (int i = 0; i < kIters; ++i) {
      const int c = tid + i * kThreads;
      if (kChunks % kThreads != 0 && c >= kChunks) break;
      copy(c);
    }
  } else {
    // Longer copies keep the index loop: unrolled, their addresses stay live across the caller's loop
    // (the D=128 forward, 8 chunks each of K and V per thread, ran 13 % slower).
#pragma unroll
    for (int c = tid; c < kChunks; c += kThreads) copy(c);
  }
}

// The batch bases of a kernel's streamed operands (view(i), i < kN), worked out once: inside the loop
// each would divide the batch index by the heads again (a 64-bit division, about a hundred
// instructions), which took 40 % of the warpgroup tangent pass's loop. load() copies rows
// [row0, row0 + kRows) of each into consecutive tiles of tile_elems elements.
// kKeyGroups: the operands are key-side views under grouped-query attention (key_base).
template <typename T, int kN, bool kKeyGroups = false>
struct OperandBases {
  const T* base[kN];
  template <class View>
  __device__ __forceinline__ OperandBases(View view, int64_t b) {
#pragma unroll
    for (int i = 0; i < kN; ++i) base[i] = key_base<const T, kKeyGroups>(view(i), b);
  }
  // `head`: the query position that many heads after b (a backward CTA's group under grouped-query attention).
  template <int kRows, int kCols, int kThreads, class Layout, class View>
  __device__ __forceinline__ void load(View view, ElemOf<T>* tiles, int tile_elems, int row0, int n_rows, int tid,
                                       int64_t head = 0) const {
#pragma unroll
    for (int i = 0; i < kN; ++i) {
      load_rows_async<T, kRows, kCols, kThreads, Layout>(tiles + i * tile_elems, base[i] + head * view(i).head_stride,
                                                         view(i).row_stride, row0, n_rows, tid);
    }
  }
};

// A warp's 16 x kCols fp32 accumulator tile (mma C fragments; rows row0 + g and row0 + g + 8) pair by pair:
// fn(offset, x0, x1) for each lane's two neighbouring columns, offset = row * row_stride + column in a row-major
// matrix; rows at or past n_rows are skipped.
template <int kCols, class Fn>
__device__ __forceinline__ void for_acc_pairs(int64_t row_stride, const float (&acc)[kCols / 8][4], int row0, int n_rows,
                                              int lane, Fn fn) {
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + g + 8 * r;
    if (row >= n_rows) continue;
#pragma unroll
    for (int dt = 0; dt < kCols / 8; ++dt) {
      fn(static_cast<int64_t>(row) * row_stride + dt * 8 + 2 * t, acc[dt][2 * r], acc[dt][2 * r + 1]);
    }
  }
}

// Writes the tile times `scale` as rows of T of a row-major global matrix.
template <typename T, int kCols>
__device__ __forceinline__ void store_acc_rows(T* gmem, int64_t row_stride, const float (&acc)[kCols / 8][4], int row0,
                                               int n_rows, float scale, int lane) {
  for_acc_pairs<kCols>(row_stride, acc, row0, n_rows, lane,
                       [&](int64_t at, float x0, float x1) { store2<T>(gmem + at, x0 * scale, x1 * scale); });
}

// Adds the tile times `scale` to rows of a row-major fp32 global matrix, each lane's pair as one 8-byte reduction
// (red.global.add.v2.f32 on sm_90).
template <int kCols>
__device__ __forceinline__ void add_acc_rows(float* gmem, int64_t row_stride, const float (&acc)[kCols / 8][4], int row0,
                                             int n_rows, float scale, int lane) {
  for_acc_pairs<kCols>(row_stride, acc, row0, n_rows, lane, [&](int64_t at, float x0, float x1) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd(reinterpret_cast<float2*>(gmem + at), make_float2(x0 * scale, x1 * scale));
#else
    atomicAdd(gmem + at, x0 * scale);
    atomicAdd(gmem + at + 1, x1 * scale);
#endif
  });
}

// Launches a tile kernel with `smem` bytes of dynamic shared memory, first raising the kernel's limit
// when that is above the 48 KB every kernel gets by default.
template <typename... Params, typename... Args>
void launch_with_smem(void (*kernel)(Params...), dim3 grid, int threads, size_t smem, cudaStream_t stream,
                      const Args&... args) {
  if (smem > 48 * 1024) {
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  }
  kernel<<<grid, threads, smem, stream>>>(args...);
}

// ldmatrix addresses for the fragment patterns used by the kernels (see mma.cuh), in a tile of the
// given layout:
// A fragment of a 16 x 16 block at (row0, col0) of a row-major tile.
template <class Layout, typename T>
__device__ __forceinline__ const T* a_frag_addr(const T* tile, int row0, int col0, int lane) {
  return tile + Layout::offset(row0 + (lane % 16), col0 + (lane / 16) * 8);
}
// B fragments of two n-tiles (n0, n0 + 8) x one k-step (k0) from a tile stored [n][k] (rows are n).
template <class Layout, typename T>
__device__ __forceinline__ const T* b_frag_addr_nk(const T* tile, int n0, int k0, int lane) {
  return tile + Layout::offset(n0 + (lane & 7) + ((lane >> 4) << 3), k0 + ((lane >> 3) & 1) * 8);
}
// With ldmatrix .trans: B fragments of one k-step (k0) x two n-tiles (n0, n0 + 8) from a tile stored
// [k][n] (rows are k); also the A fragment of the transpose of a tile stored [k][m] at (k0, m0).
template <class Layout, typename T>
__device__ __forceinline__ const T* b_frag_addr_kn(const T* tile, int k0, int n0, int lane) {
  return tile + Layout::offset(k0 + (lane & 7) + ((lane >> 3) & 1) * 8, n0 + (lane >> 4) * 8);
}
template <class Layout, typename T>
__device__ __forceinline__ const T* at_frag_addr(const T* tile, int k0, int m0, int lane) {
  return tile + Layout::offset(k0 + (lane & 7) + (lane >> 4) * 8, m0 + ((lane >> 3) & 1) * 8);
}

// Fragment loads of every part of an operand (Frag, mma.cuh) at an address from the helpers above.
template <class Layout, typename T>
__device__ __forceinline__ void ld_frag(Frag<T>& f, const ElemOf<T>* at) {
#pragma unroll
  for (int i = 0; i < kPartsOf<T>; ++i) ldmatrix_x4(f.r[i], at + i * Layout::kPartStride);
}
template <class Layout, typename T>
__device__ __forceinline__ void ld_frag_trans(Frag<T>& f, const ElemOf<T>* at) {
#pragma unroll
  for (int i = 0; i < kPartsOf<T>; ++i) ldmatrix_x4_trans(f.r[i], at + i * Layout::kPartStride);
}

// Two neighbouring fp32 values staged in a shared tile (dS^T for a transposed product), every part.
template <class Layout, typename T>
__device__ __forceinline__ void store_parts(ElemOf<T>* at, float x, float y) {
  uint32_t parts[kPartsOf<T>];
  split_pair<T>(parts, x, y);
#pragma unroll
  for (int i = 0; i < kPartsOf<T>; ++i) *reinterpret_cast<uint32_t*>(at + i * Layout::kPartStride) = parts[i];
}

}  // namespace theria::kernels::cuda
