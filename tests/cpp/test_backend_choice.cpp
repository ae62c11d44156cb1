// The decision table of `auto` for CUDA inputs that only the fused SIMT kernels serve (float32, float64, head
// dims without a tensor-core kernel): the reference composition while its double-backward buffers (twelve
// L x S matrices per batch position) fit in a quarter of the device, else the SIMT kernels. The measurements
// behind it: docs/performance.md, "float32 on CUDA".
#include <gtest/gtest.h>

#include "core/backend.h"

#include <ATen/Context.h>

namespace {

using theria::core::reference_beats_simt;
using theria::core::reference_hvp_bytes;

constexpr int64_t kMiB = int64_t{1} << 20;
constexpr int64_t kH200 = 143771 * kMiB;  // as nvidia-smi reports it
constexpr int64_t kH100 = 81559 * kMiB;

struct Row {
  int64_t batch, len, element_size;
  bool reference_on_h200, reference_on_h100;
};

TEST(AutoBackendChoice, ReferenceWhileItsBuffersFitInAQuarterOfTheGpu) {
  const Row table[] = {
      // the shapes of docs/performance.md's float32 table (B*H, L = S), float32
      {32 * 4, 256, 4, true, true},
      {8 * 8, 1024, 4, true, true},
      {2 * 8, 4096, 4, true, true},
      {8 * 16, 2048, 4, true, false},  // 24 GiB: within an H200's quarter (35 GiB), past an H100's (20 GiB)
      {2 * 16, 8192, 4, false, false},  // 96 GiB
      {1, 32768, 4, false, false},      // 48 GiB
      {8 * 16, 2048, 8, false, false},  // float64: 48 GiB
      {8 * 16, 2048, 2, true, true},    // a 16-bit head dim without a tensor-core kernel: 12 GiB
  };
  for (const auto& r : table) {
    EXPECT_EQ(reference_beats_simt(r.batch, r.len, r.len, r.element_size, kH200), r.reference_on_h200)
        << "B*H=" << r.batch << " L=S=" << r.len << " element " << r.element_size << " on an H200";
    EXPECT_EQ(reference_beats_simt(r.batch, r.len, r.len, r.element_size, kH100), r.reference_on_h100)
        << "B*H=" << r.batch << " L=S=" << r.len << " element " << r.element_size << " on an H100";
  }
}

TEST(AutoBackendChoice, BufferEstimateIsTwelveScoreMatrices) {
  EXPECT_EQ(reference_hvp_bytes(3, 5, 7, 4), 12 * 3 * 5 * 7 * 4);
  EXPECT_EQ(reference_hvp_bytes(2, 10, 1, 8), 12 * 2 * 10 * 1 * 8);
}

// float32 products follow PyTorch's precision setting: bfloat16 at "medium", TF32's mantissa or better at "high",
// float32 at "highest", and float32 whenever the new API says "ieee" for CUDA matmuls (it has no bfloat16 for CUDA).
TEST(AutoBackendChoice, Float32ProductsFollowTheMatmulPrecision) {
  using theria::Float32Products;
  using theria::core::float32_products;
  auto& ctx = at::globalContext();
  const auto restore = ctx.float32MatmulPrecision();
  ctx.setFloat32MatmulPrecision("medium");
  EXPECT_EQ(float32_products(), Float32Products::kBFloat16);
  ctx.setFloat32MatmulPrecision("high");
  EXPECT_EQ(float32_products(), Float32Products::kTF32);
  ctx.setFloat32MatmulPrecision("highest");
  EXPECT_EQ(float32_products(), Float32Products::kFloat32);
  for (const char* setting : {"medium", "high"}) {
    ctx.setFloat32MatmulPrecision(setting);
    ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, at::Float32Precision::IEEE);
    EXPECT_EQ(float32_products(), Float32Products::kFloat32) << setting;
  }
  ctx.setFloat32MatmulPrecision(restore == at::Float32MatmulPrecision::MEDIUM ? "medium"
                                : restore == at::Float32MatmulPrecision::HIGH ? "high"
                                                                              : "highest");
}

// "high"'s row is TF32's, float16's (10 explicit mantissa bits), strictly between float32's and bfloat16's at every
// order, and the other two products give those dtypes' rows.
TEST(Tolerances, Float32HighRowIsTf32sBetweenFloat32AndBfloat16) {
  using theria::Derivative;
  using theria::Float32Products;
  for (int i = 0; i <= 3; ++i) {
    const auto order = static_cast<Derivative>(i);
    const double high = theria::float32_tolerance(Float32Products::kTF32, order).max_rel_error;
    EXPECT_EQ(high, theria::tolerance(at::kHalf, order).max_rel_error) << i;
    EXPECT_GT(high, theria::tolerance(at::kFloat, order).max_rel_error) << i;
    EXPECT_LT(high, theria::tolerance(at::kBFloat16, order).max_rel_error) << i;
    EXPECT_EQ(theria::float32_tolerance(Float32Products::kFloat32, order).max_rel_error,
              theria::tolerance(at::kFloat, order).max_rel_error);
    EXPECT_EQ(theria::float32_tolerance(Float32Products::kBFloat16, order).max_rel_error,
              theria::tolerance(at::kBFloat16, order).max_rel_error);
  }
}

}  // namespace
