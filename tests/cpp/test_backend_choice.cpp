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

// float32 runs the bfloat16 tensor-core kernels only where PyTorch's precision setting allows bfloat16
// products: "medium" in the legacy API; never "high" or "highest", nor when the new API says "ieee" for CUDA
// matmuls (it has no bfloat16 for CUDA).
TEST(AutoBackendChoice, Float32RunsAsBfloat16OnlyAtMediumPrecision) {
  auto& ctx = at::globalContext();
  const auto restore = ctx.float32MatmulPrecision();
  ctx.setFloat32MatmulPrecision("medium");
  EXPECT_TRUE(theria::core::bfloat16_products_allowed());
  ctx.setFloat32MatmulPrecision("high");
  EXPECT_FALSE(theria::core::bfloat16_products_allowed());
  ctx.setFloat32MatmulPrecision("highest");
  EXPECT_FALSE(theria::core::bfloat16_products_allowed());
  ctx.setFloat32MatmulPrecision("medium");
  ctx.setFloat32Precision(at::Float32Backend::CUDA, at::Float32Op::MATMUL, at::Float32Precision::IEEE);
  EXPECT_FALSE(theria::core::bfloat16_products_allowed());
  ctx.setFloat32MatmulPrecision(restore == at::Float32MatmulPrecision::MEDIUM ? "medium"
                                : restore == at::Float32MatmulPrecision::HIGH ? "high"
                                                                              : "highest");
}

}  // namespace
