// Runtime values to template parameters, in one place (after FlashAttention's static_switch.h).
#pragma once

#include "fused/float32_parts.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#define THERIA_BOOL_SWITCH(COND, CONST_NAME, ...) \
  [&] {                                            \
    if (COND) {                                    \
      constexpr bool CONST_NAME = true;            \
      return __VA_ARGS__();                        \
    } else {                                       \
      constexpr bool CONST_NAME = false;           \
      return __VA_ARGS__();                        \
    }                                              \
  }()

// 16-bit dtypes of the tensor-core kernels.
#define THERIA_HALF_SWITCH(DTYPE, TYPE_NAME, ...)  \
  [&] {                                            \
    if ((DTYPE) == Dtype::kBFloat16) {             \
      using TYPE_NAME = __nv_bfloat16;             \
      return __VA_ARGS__();                        \
    } else {                                       \
      using TYPE_NAME = __half;                    \
      return __VA_ARGS__();                        \
    }                                              \
  }()

// The dtypes of the tensor-core kernels: the 16-bit ones and float32, whose products run on bfloat16 parts or scaled
// float16 copies (mma.cuh's MmaOperand).
#define THERIA_TC_DTYPE_SWITCH(DTYPE, TYPE_NAME, ...) \
  [&] {                                               \
    if ((DTYPE) == Dtype::kFloat32) {                 \
      using TYPE_NAME = float;                        \
      return __VA_ARGS__();                           \
    }                                                 \
    if ((DTYPE) == Dtype::kFloat32x3) {               \
      using TYPE_NAME = Float32Parts<3>;              \
      return __VA_ARGS__();                           \
    }                                                 \
    if ((DTYPE) == Dtype::kFloat32Half) {             \
      using TYPE_NAME = Float32Half;                  \
      return __VA_ARGS__();                           \
    }                                                 \
    return THERIA_HALF_SWITCH(DTYPE, TYPE_NAME, __VA_ARGS__); \
  }()

// float / double of the SIMT kernels.
#define THERIA_FLOAT_SWITCH(DTYPE, TYPE_NAME, ...) \
  [&] {                                            \
    if ((DTYPE) == Dtype::kFloat64) {              \
      using TYPE_NAME = double;                    \
      return __VA_ARGS__();                        \
    } else {                                       \
      using TYPE_NAME = float;                     \
      return __VA_ARGS__();                        \
    }                                              \
  }()

#define THERIA_HEADDIM_SWITCH(HEADDIM, CONST_NAME, ...) \
  [&] {                                                 \
    if ((HEADDIM) <= 32) {                              \
      constexpr int CONST_NAME = 32;                    \
      return __VA_ARGS__();                             \
    } else if ((HEADDIM) <= 64) {                       \
      constexpr int CONST_NAME = 64;                    \
      return __VA_ARGS__();                             \
    } else if ((HEADDIM) <= 96) {                       \
      constexpr int CONST_NAME = 96;                    \
      return __VA_ARGS__();                             \
    } else {                                            \
      constexpr int CONST_NAME = 128;                   \
      return __VA_ARGS__();                             \
    }                                                   \
  }()

// Columns per lane of the SIMT kernels: ceil(head dim / 32) rounded up to 1, 2, 4 or 8.
#define THERIA_LANE_COLS_SWITCH(HEADDIM, CONST_NAME, ...) \
  [&] {                                                   \
    if ((HEADDIM) <= 32) {                                \
      constexpr int CONST_NAME = 1;                       \
      return __VA_ARGS__();                               \
    } else if ((HEADDIM) <= 64) {                         \
      constexpr int CONST_NAME = 2;                       \
      return __VA_ARGS__();                               \
    } else if ((HEADDIM) <= 128) {                        \
      constexpr int CONST_NAME = 4;                       \
      return __VA_ARGS__();                               \
    } else {                                              \
      constexpr int CONST_NAME = 8;                       \
      return __VA_ARGS__();                               \
    }                                                     \
  }()

// The build of the tensor-core kernels a problem takes (kGroups, kMask in kernel_templates.h): attn_mask (with
// grouped-query heads), grouped-query heads, or plain.
#define THERIA_BUILD_SWITCH(PARAMS, GROUPS, MASK, ...) \
  [&] {                                                \
    if ((PARAMS).mask.ptr != nullptr) {                \
      constexpr bool GROUPS = true, MASK = true;       \
      return __VA_ARGS__();                            \
    } else if ((PARAMS).group > 1) {                   \
      constexpr bool GROUPS = true, MASK = false;      \
      return __VA_ARGS__();                            \
    } else {                                           \
      constexpr bool GROUPS = false, MASK = false;     \
      return __VA_ARGS__();                            \
    }                                                  \
  }()
