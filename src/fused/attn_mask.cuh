// attn_mask in the tensor-core kernels. The mask is read where it lies (kernels::MaskView: zero strides along
// broadcast dims, so a key-padding mask (B, 1, 1, S) costs one byte per key of a thread's tile, from L1), and
// folded into the raw logits before the softmax: a hidden pair becomes -inf (its tangent 0), as the causal mask
// makes it; a bias beta becomes beta / scale, which the kernels' exp2(s * scale * log2(e) - max) turns into
// + beta (scale > 0 on the tensor-core path: fused_backend.cpp). Compiled into the masked build only
// (kMask, kernel_templates.h).
#pragma once

#include "fused/tile_io.cuh"
#include "kernels/sdpa_params.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

namespace theria::kernels::cuda {

// Where batch position b's mask starts (bytes), or nullptr without a mask. The kernels keep only this pointer
// live; kind and strides stay in the kernel parameters. The query heads of a grouped-query backward CTA are
// consecutive: their masks lie head_stride elements apart.
__device__ __forceinline__ int mask_element_bytes(const MaskView& m) {
  return m.kind == MaskKind::kBool ? 1 : m.kind == MaskKind::kBias16 ? 2 : m.kind == MaskKind::kBias32 ? 4 : 8;
}
__device__ __forceinline__ const unsigned char* mask_base(const MaskView& m, int64_t b) {
  if (m.ptr == nullptr) return nullptr;
  const BatchSplit s = split_batch(b, m.heads);
  return static_cast<const unsigned char*>(m.ptr) +
         (s.outer * m.batch_stride + s.head * m.head_stride) * mask_element_bytes(m);
}

// The term of query qi, key kj in raw logit units: -inf where a boolean mask hides the pair, 0 where it keeps
// it, bias / scale for a float mask.
template <typename T>
__device__ __forceinline__ float mask_term(const MaskView& m, const unsigned char* base, float inv_scale, int qi,
                                           int kj) {
  const int64_t at = qi * m.row_stride + kj * m.col_stride;
  switch (m.kind) {
    case MaskKind::kBool: return base[at] != 0 ? 0.f : -INFINITY;
    case MaskKind::kBias16: return static_cast<float>(reinterpret_cast<const T*>(base)[at]) * inv_scale;
    case MaskKind::kBias32: return reinterpret_cast<const float*>(base)[at] * inv_scale;
    default: return static_cast<float>(reinterpret_cast<const double*>(base)[at]) * inv_scale;
  }
}

// Folds a term into raw logit s (a hidden pair becomes -inf whatever s was, as masked_fill makes it); true
// when the pair is hidden.
__device__ __forceinline__ bool fold_term(float& s, float term) {
  if (term == -INFINITY) {
    s = -INFINITY;
    return true;
  }
  s += term;
  return false;
}

// The query and key of element e of column tile nt of a warp's 16 x 8 kNt accumulator tile (mma C fragments: this
// thread's fragment rows row0 + g and row0 + g + 8, columns col0 + 8 nt + 2t (+1)); with kKeysAsRows the tile is S^T.
struct FragmentPair {
  int qi, kj;
};
template <bool kKeysAsRows>
__device__ __forceinline__ FragmentPair fragment_pair(int row0, int col0, int nt, int e, int lane) {
  const int fr = row0 + lane / 4 + (e >> 1) * 8, fc = col0 + nt * 8 + 2 * (lane % 4) + (e & 1);
  return kKeysAsRows ? FragmentPair{fc, fr} : FragmentPair{fr, fc};
}

// Folds the mask into a warp's 16 x 8 kNt accumulator tile of raw logits (mma C fragments: this thread's
// fragment rows row0 + g and row0 + g + 8, columns col0 + 8 nt + 2t (+1)). kKeysAsRows: the tile is S^T (rows
// are keys, as in the backward kernels), else S. Pairs outside [0, n_q) x [0, n_k) are left alone (the
// kernels mask those already); hidden(nt, e) is called for each pair the mask hides. Per-key masks mostly go
// through ForwardMask / BackwardMask's staged terms; the one that reaches here (a grouped backward CTA whose
// heads' masks differ) is read once per key of the thread, not once per pair.
template <typename T, bool kKeysAsRows, int kNt, class Hidden>
__device__ __forceinline__ void fold_mask(const SdpaFwdParams& p, const unsigned char* base, float (&acc)[kNt][4],
                                          int row0, int col0, int n_q, int n_k, int lane, Hidden hidden) {
  const MaskView& m = p.mask;
  const float inv_scale = 1.f / static_cast<float>(p.scale);
  const int g = lane / 4, t = lane % 4;
  if (kKeysAsRows && m.row_stride == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int kj = row0 + g + 8 * r;
      if (kj >= n_k) continue;
      const float term = mask_term<T>(m, base, inv_scale, 0, kj);
#pragma unroll
      for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
        for (int c = 0; c < 2; ++c) {
          if (col0 + nt * 8 + 2 * t + c < n_q && fold_term(acc[nt][2 * r + c], term)) hidden(nt, 2 * r + c);
        }
      }
    }
    return;
  }
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const FragmentPair at = fragment_pair<kKeysAsRows>(row0, col0, nt, e, lane);
      if (at.qi < n_q && at.kj < n_k && fold_term(acc[nt][e], mask_term<T>(m, base, inv_scale, at.qi, at.kj))) {
        hidden(nt, e);
      }
    }
  }
}

// A mask that is the same for every query (row stride 0: a key-padding mask, (B, 1, 1, S) or (B, H, 1, S)) lets
// a kernel take a block of keys as a whole, as FlashAttention's variable-length kernels skip padding: the CTA
// classifies the block from one term per key (ForwardMask, BackwardMask) and then skips it (every key hidden),
// runs it as if unmasked (every term 0), or folds the terms. Keys past n_k count as hidden (the kernels bound them
// anyway).
enum class KeyBlock { kHidden, kPlain, kTerms };

__device__ __forceinline__ bool per_key_mask(const SdpaFwdParams& p) {
  return p.mask.ptr != nullptr && p.mask.row_stride == 0;
}

// A mask that varies by query (a full (B, H, L, S) mask, a causal or document mask passed as a tensor) comes with
// a tile map (MaskView::tiles, built by sdpa_mask_tiles): one class per kMaskTile x kMaskTile tile, so a kernel
// classifies a block of queries x keys from a few bytes, before it loads the block's operands, as FlexAttention's
// block masks do. The map of batch position b (nullptr without one):
__device__ __forceinline__ const unsigned char* tiles_base(const MaskView& m, int64_t b) {
  if (m.tiles == nullptr) return nullptr;
  const BatchSplit s = split_batch(b, m.heads);
  return m.tiles + s.outer * m.tiles_batch_stride + s.head * m.tiles_head_stride;
}

// The class of the block of rows [m0, m0 + kRows) and keys [n0, n0 + kCols) from its tiles: hidden when every tile
// is, plain (nothing to fold) when every tile is, else terms. Each thread reads the few bytes itself (one address
// across the CTA, a broadcast from L1), so no barrier; tiles past the map's edge (rows past len_q, keys past len_kv)
// are not read, as the kernels bound those pairs themselves.
template <int kRows, int kCols>
__device__ __forceinline__ KeyBlock tile_class(const unsigned char* tiles, int tile_rows, int tile_cols, int m0,
                                               int n0) {
  const int r1 = min((m0 + kRows - 1) / kMaskTile, tile_rows - 1);
  const int c1 = min((n0 + kCols - 1) / kMaskTile, tile_cols - 1);
  bool visible = false, plain = true;
  for (int r = m0 / kMaskTile; r <= r1; ++r) {
    for (int c = n0 / kMaskTile; c <= c1; ++c) {
      const unsigned char x = tiles[r * tile_cols + c];
      visible |= x != kTileHidden;
      plain &= x == kTilePlain;
    }
  }
  return !visible ? KeyBlock::kHidden : plain ? KeyBlock::kPlain : KeyBlock::kTerms;
}

// A CTA's walk over its blocks (forward: key blocks; backward: query steps) with their tile-map classes read one
// block ahead of where they are needed: the class of block i + 1 decides whether its operands are loaded during
// block i, so it is fetched during block i - 1, and the map's global-memory latency hides behind a block's products
// (read where needed, it cost an all-visible mask 80 % of the forward's time: docs/performance.md). class_of(i)
// gives block i's class (kTerms for every block where there is no map).
template <class ClassOf>
struct ClassesAhead {
  ClassOf class_of;
  int end;
  KeyBlock current, next;

  // The walk over blocks [begin, end).
  __device__ __forceinline__ ClassesAhead(ClassOf class_of_, int begin, int end_)
      : class_of(class_of_), end(end_),
        current(begin < end_ ? class_of_(begin) : KeyBlock::kHidden),
        next(begin + 1 < end_ ? class_of_(begin + 1) : KeyBlock::kHidden) {}
  // Whether the first block may be seen (before the first take); whether block i + 1 may be seen, during block i
  // (after take(i - 1)).
  __device__ __forceinline__ bool first_seen() const { return current != KeyBlock::kHidden; }
  __device__ __forceinline__ bool next_seen() const { return next != KeyBlock::kHidden; }
  // Block i's class; call for i = begin, begin + 1, ... in order. Fetches block i + 2's.
  __device__ __forceinline__ KeyBlock take(int i) {
    const KeyBlock c = current;
    current = next;
    next = i + 2 < end ? class_of(i + 2) : KeyBlock::kHidden;
    return c;
  }
};

// The key blocks a forward CTA's rows [m0, m0 + kBlockM) may see, [begin, end): from the first to the last key block
// with a tile the map does not show hidden, found by one pass over the CTA's rows of the map (each thread a few
// entries; two ints of shared memory at `scratch`, three barriers: every thread calls it). The walk then starts and
// stops there instead of stepping through the hidden blocks before and after (the causal part of a causal mask, a
// sliding window, another document), each of which cost a barrier and, in a run, the map's latency. Without a map:
// [0, n_blocks).
struct BlockRange {
  int begin, end;
};
template <int kBlockM, int kBlockN, int kThreads>
__device__ __forceinline__ BlockRange visible_key_blocks(const MaskView& m, const unsigned char* tiles, int m0,
                                                         int n_blocks, int* scratch, int tid) {
  if (tiles == nullptr) return {0, n_blocks};
  static_assert(kBlockN % kMaskTile == 0, "a map column lies in one key block");
  if (tid == 0) {
    scratch[0] = n_blocks;
    scratch[1] = -1;
  }
  __syncthreads();
  constexpr int kRows = (kBlockM + kMaskTile - 1) / kMaskTile;
  const int r0 = m0 / kMaskTile, rows = min(kRows, m.tile_rows - r0);
  const int cols = min(m.tile_cols, n_blocks * (kBlockN / kMaskTile));
  int lo = n_blocks, hi = -1;
  for (int i = tid; i < rows * cols; i += kThreads) {
    const int r = i / cols, c = i - r * cols;
    if (tiles[(r0 + r) * m.tile_cols + c] != kTileHidden) {
      lo = min(lo, c / (kBlockN / kMaskTile));
      hi = max(hi, c / (kBlockN / kMaskTile));
    }
  }
  if (hi >= 0) {
    atomicMin(scratch, lo);
    atomicMax(scratch + 1, hi);
  }
  __syncthreads();
  const BlockRange range{scratch[0], max(scratch[0], scratch[1] + 1)};
  __syncthreads();  // the scratch is the per-key terms' staging area: read before anyone writes it
  return range;
}

// The term of key kj of a per-key mask (-inf past n_k).
template <typename T>
__device__ __forceinline__ float key_term(const SdpaFwdParams& p, const unsigned char* base, int kj, int n_k) {
  return kj < n_k ? mask_term<T>(p.mask, base, 1.f / static_cast<float>(p.scale), 0, kj) : -INFINITY;
}

// The block's class from each thread's term (threads without a key pass has_key = false). A CTA-wide barrier:
// every thread calls it.
__device__ __forceinline__ KeyBlock classify_keys(float term, bool has_key) {
  const bool any_visible = __syncthreads_or(has_key && term != -INFINITY);
  const bool all_zero = __syncthreads_and(!has_key || term == 0.f);
  return !any_visible ? KeyBlock::kHidden : all_zero ? KeyBlock::kPlain : KeyBlock::kTerms;
}

// Folds per-key terms into a 16 x 8 kNt tile of raw logits. kKeysAsRows: the tile is S^T and terms[r] is the
// term of this thread's fragment row r; else S, and terms holds the block's terms by key (shared memory), this
// thread's columns 8 nt + 2t (+1).
template <bool kKeysAsRows, int kNt, class Hidden>
__device__ __forceinline__ void fold_key_terms(float (&acc)[kNt][4], const float* terms, int lane, Hidden hidden) {
  const int t = lane % 4;
#pragma unroll
  for (int nt = 0; nt < kNt; ++nt) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float term = kKeysAsRows ? terms[e >> 1] : terms[nt * 8 + 2 * t + (e & 1)];
      if (fold_term(acc[nt][e], term)) hidden(nt, e);
    }
  }
}

// The class of block nb of a CTA's key blocks (kBlockN keys) for its rows from m0 (kBlockM) from the tile map at
// `tiles`, or kTerms without one.
template <int kBlockM, int kBlockN>
struct KeyBlockClass {
  const unsigned char* tiles;
  int tile_rows, tile_cols, m0;
  __device__ __forceinline__ KeyBlock operator()(int nb) const {
    return tiles != nullptr ? tile_class<kBlockM, kBlockN>(tiles, tile_rows, tile_cols, m0, nb * kBlockN)
                            : KeyBlock::kTerms;
  }
};

// The forward-side passes' view of attn_mask (the masked build): the mask of the CTA's batch position (rows from
// m0, kBlockM of them), and under a per-key mask its walk over key blocks — thread tid < kBlockN fetches its key's
// term a block ahead; step() stages block nb's terms in shared memory (`terms`, kBlockN floats), fetches block
// nb + 1's, and classifies block nb. A mask that varies by query is classified from its tile map.
template <typename T, int kBlockM, int kBlockN, int kThreads>
struct ForwardMask {
  const unsigned char* base;  // nullptr: no mask (the other builds)
  float* terms;
  bool per_key;
  float next = 0.f;
  BlockRange range;  // the key blocks to walk: every one, or those the tile map leaves (visible_key_blocks)
  ClassesAhead<KeyBlockClass<kBlockM, kBlockN>> blocks;  // from the tile map, if any

  // Every thread constructs it (the range takes barriers), before the first key block is loaded.
  __device__ __forceinline__ ForwardMask(const SdpaFwdParams& p, int64_t b, int m0, int n_blocks, float* terms_,
                                         int tid, int n_k, bool masked)
      : ForwardMask(p, b, m0, n_blocks, terms_, tid, n_k, masked ? mask_base(p.mask, b) : nullptr,
                    masked ? tiles_base(p.mask, b) : nullptr) {}

 private:
  __device__ __forceinline__ ForwardMask(const SdpaFwdParams& p, int64_t b, int m0, int n_blocks, float* terms_,
                                         int tid, int n_k, const unsigned char* base_, const unsigned char* tiles)
      : base(base_),
        terms(terms_),
        per_key(base_ != nullptr && per_key_mask(p)),
        range(visible_key_blocks<kBlockM, kBlockN, kThreads>(p.mask, tiles, m0, n_blocks,
                                                             reinterpret_cast<int*>(terms_), tid)),
        blocks(KeyBlockClass<kBlockM, kBlockN>{tiles, p.mask.tile_rows, p.mask.tile_cols, m0}, range.begin, range.end) {
    if (per_key && tid < kBlockN) next = key_term<T>(p, base, tid, n_k);
  }

 public:
  // The class of key block nb; kHidden: skip it. Every thread calls it, in order of nb (a per-key mask's step holds
  // a barrier and fetches the next block's terms, from block 0: its range is every block; the tile map's classes
  // are read a block ahead).
  __device__ __forceinline__ KeyBlock classify(const SdpaFwdParams& p, int nb, int n_blocks, int tid, int n_k) {
    if (per_key) return step(p, nb, n_blocks, tid, n_k);
    return blocks.take(nb);
  }
  // During block nb (before classify(nb)): whether block nb + 1's operands are worth loading; false where the tile
  // map shows every pair hidden.
  __device__ __forceinline__ bool next_seen() const { return per_key || blocks.next_seen(); }
  // Per-key masks only. A CTA-wide barrier: every thread calls it.
  __device__ __forceinline__ KeyBlock step(const SdpaFwdParams& p, int nb, int n_blocks, int tid, int n_k) {
    const float term = next;
    if (tid < kBlockN) {
      terms[tid] = term;
      if (nb + 1 < n_blocks) next = key_term<T>(p, base, (nb + 1) * kBlockN + tid, n_k);
    }
    return classify_keys(term, tid < kBlockN);
  }
  // Folds the mask into a tile of S (rows from row0, keys from n0) of a block that classify() did not find hidden.
  template <int kNt, class Hidden>
  __device__ __forceinline__ void fold(const SdpaFwdParams& p, KeyBlock block, float (&acc)[kNt][4], int row0, int n0,
                                       int n_q, int n_k, int lane, Hidden hidden) const {
    if (per_key) {
      if (block == KeyBlock::kTerms) fold_key_terms<false, kNt>(acc, terms, lane, hidden);
    } else if (base != nullptr && block != KeyBlock::kPlain) {
      fold_mask<T, false, kNt>(p, base, acc, row0, n0, n_q, n_k, lane, hidden);
    }
  }
};

// The query rows a backward CTA's keys [n0, n0 + kBlockN) may be seen from, over the `heads` consecutive query heads
// it streams, in whole steps of kBlockM from m_begin: [begin, end) from the first to the last step with a tile the
// map does not show hidden (one pass over the CTA's columns of the map; two ints of shared memory at `scratch`, three
// barriers: every thread calls it), so that the walk skips the hidden steps before and after instead of stepping
// through them. Without a map: [m_begin, len_q).
struct RowRange {
  int begin, end;
};
template <int kBlockM, int kBlockN, int kThreads>
__device__ __forceinline__ RowRange visible_query_rows(const MaskView& m, const unsigned char* tiles, int heads, int n0,
                                                       int m_begin, int len_q, int* scratch, int tid) {
  if (tiles == nullptr) return {m_begin, len_q};
  const int n_steps = m_begin < len_q ? (len_q - m_begin + kBlockM - 1) / kBlockM : 0;
  if (tid == 0) {
    scratch[0] = n_steps;
    scratch[1] = -1;
  }
  __syncthreads();
  const int c0 = n0 / kMaskTile, cols = min((kBlockN + kMaskTile - 1) / kMaskTile, m.tile_cols - c0);
  const int r0 = m_begin / kMaskTile, rows = m.tile_rows - r0;
  int lo = n_steps, hi = -1;
  for (int i = tid; i < heads * rows * cols; i += kThreads) {
    const int h = i / (rows * cols), rc = i - h * rows * cols, r = rc / cols, c = rc - r * cols;
    if (tiles[h * m.tiles_head_stride + (r0 + r) * m.tile_cols + c0 + c] != kTileHidden) {
      const int row0 = (r0 + r) * kMaskTile;  // the map row's first and last query rows, in steps from m_begin
      lo = min(lo, (max(row0, m_begin) - m_begin) / kBlockM);
      hi = max(hi, (min(row0 + kMaskTile, len_q) - 1 - m_begin) / kBlockM);
    }
  }
  if (hi >= 0) {
    atomicMin(scratch, lo);
    atomicMax(scratch + 1, hi);
  }
  __syncthreads();
  const int first = scratch[0], last = max(scratch[0] - 1, scratch[1]);
  __syncthreads();  // the scratch is the CTA's row statistics: read before anyone writes them
  return {m_begin + first * kBlockM, min(len_q, m_begin + (last + 1) * kBlockM)};
}

// The backward kernels' view of attn_mask (the masked build). A CTA owns its block of keys for the whole kernel,
// so under a per-key mask it classifies them once, and each thread keeps the terms of its fragment rows (keys
// first_key + 16 kt + g + 8 r) in registers; taken only where the terms are the same for every query head of the
// CTA (a grouped-query CTA streams several). Otherwise the mask is read per tile, head by head (the group's query
// heads are consecutive: their masks and tile maps lie head_stride and tiles_head_stride apart), and a tile map
// classifies each query step (step_block). Construct it in every thread (classify_keys holds a barrier).
template <typename T, int kTiles>
struct BackwardMask {
  const unsigned char* base = nullptr;   // the mask of the CTA's first query head; nullptr: none
  const unsigned char* tiles = nullptr;  // its tile map, or nullptr
  bool per_key = false;
  KeyBlock block = KeyBlock::kTerms;
  float terms[kTiles][2];

  BackwardMask() = default;  // no mask (the other builds)
  __device__ __forceinline__ BackwardMask(const SdpaFwdParams& p, int64_t b0, int n0, int block_keys, int first_key,
                                          int n_k, int tid, int g)
      : base(mask_base(p.mask, b0)), tiles(tiles_base(p.mask, b0)) {
    per_key = base != nullptr && per_key_mask(p) && (p.mask.head_stride == 0 || p.group == 1);
    if (!per_key) return;
#pragma unroll
    for (int kt = 0; kt < kTiles; ++kt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) terms[kt][r] = key_term<T>(p, base, first_key + 16 * kt + g + 8 * r, n_k);
    }
    const bool mine = tid < block_keys;
    block = classify_keys(mine ? key_term<T>(p, base, n0 + tid, n_k) : 0.f, mine);
  }
  // No query sees any key of the CTA: it adds nothing.
  __device__ __forceinline__ bool all_hidden() const { return block == KeyBlock::kHidden; }
  // The class of query head `head`'s step of kBlockM queries from m against the CTA's kBlockN keys from n0, from the
  // tile map (kTerms without one; a per-key mask has none). kHidden: the step adds nothing, skip it.
  template <int kBlockM, int kBlockN>
  __device__ __forceinline__ KeyBlock step_block(const SdpaFwdParams& p, int head, int m, int n0) const {
    if (tiles == nullptr) return KeyBlock::kTerms;
    return tile_class<kBlockM, kBlockN>(tiles + head * p.mask.tiles_head_stride, p.mask.tile_rows, p.mask.tile_cols,
                                        m, n0);
  }
  // Folds the mask into this thread's key tile kt of S^T (keys from key0, queries from m) for query head `head`, of a
  // step that step_block classed `tile`.
  template <int kNt, class Hidden>
  __device__ __forceinline__ void fold(const SdpaFwdParams& p, int head, KeyBlock tile, int kt, float (&acc)[kNt][4],
                                       int key0, int m, int n_q, int n_k, int lane, Hidden hidden) const {
    if (per_key) {
      if (block == KeyBlock::kTerms) fold_key_terms<true, kNt>(acc, terms[kt], lane, hidden);
    } else if (base != nullptr && tile != KeyBlock::kPlain) {
      const unsigned char* head_base = base + head * p.mask.head_stride * mask_element_bytes(p.mask);
      fold_mask<T, true, kNt>(p, head_base, acc, key0, m, n_q, n_k, lane, hidden);
    }
  }
};

}  // namespace theria::kernels::cuda
