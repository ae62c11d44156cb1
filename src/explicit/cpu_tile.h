// Tile sizes of the explicit CPU kernels; the scalar helpers they share with the CUDA SIMT
// kernels live in kernels/sdpa_scalar.h.
#pragma once

#include "kernels/sdpa_scalar.h"

namespace theria::kernels::cpu {

using kernels::axpy;
using kernels::dot;
using kernels::first_query_batch;
using kernels::first_query_seeing;
using kernels::kv_batches;
using kernels::logit;
using kernels::nan_max;
using kernels::neg_inf;
using kernels::pair_terms;
using kernels::PairTerms;
using kernels::row;
using kernels::visible_end;

constexpr int64_t kBlockM = 16;  // query rows per parallel task
constexpr int64_t kBlockN = 64;  // keys per streamed tile

}  // namespace theria::kernels::cpu
