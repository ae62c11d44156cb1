// theria on CUDA (ctest -L gpu). Every test skips when no CUDA device is present.
//   - Reference (and Auto, which resolves to it while no fused kernels are built) in float32,
//     float16 and bfloat16: forward, backward and HVP against the float64 CPU oracle on the same
//     rounded inputs, at the dtype's tolerance.
//   - Explicit on CUDA is refused; Fused is refused while fused_kernels_built() is false.
#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <gtest/gtest.h>
#include <torch/csrc/autograd/autograd.h>

#include <string>
#include <vector>

#include "test_util.h"

namespace theria_test {
namespace {

using theria::Backend;

#define SKIP_WITHOUT_CUDA() \
  if (!at::hasCUDA()) GTEST_SKIP() << "no CUDA device"

const at::Device kCuda(at::kCUDA, 0);

const Case kGpuCases[] = {
    {{2, 3}, 1, 17, 16, 8, true, std::nullopt},
    {{2, 3}, 33, 20, 32, 16, true, std::nullopt},
    {{2}, 20, 70, 8, 24, false, 0.3},
    {{4}, 64, 64, 64, 64, true, std::nullopt},
};

class GpuCase : public ::testing::TestWithParam<std::tuple<Case, at::ScalarType>> {};

INSTANTIATE_TEST_SUITE_P(Shapes, GpuCase,
                         ::testing::Combine(::testing::ValuesIn(kGpuCases),
                                            ::testing::Values(at::kFloat, at::kHalf, at::kBFloat16)));

TEST_P(GpuCase, ReferenceMatchesFloat64CpuOracle) {
  SKIP_WITHOUT_CUDA();
  const auto& [c, dtype] = GetParam();
  const Tensor q = randn(c.q_shape(), 1, dtype, kCuda).requires_grad_();
  const Tensor k = randn(c.k_shape(), 2, dtype, kCuda).requires_grad_();
  const Tensor v = randn(c.v_shape(), 3, dtype, kCuda).requires_grad_();
  const Tensor dout = randn(c.out_shape(), 4, dtype, kCuda).requires_grad_();
  const TensorList u{randn(c.q_shape(), 5, dtype, kCuda), randn(c.k_shape(), 6, dtype, kCuda),
                     randn(c.v_shape(), 7, dtype, kCuda)};

  const Tensor oq = f64_leaf(q, true), ok = f64_leaf(k, true), ov = f64_leaf(v, true), od = f64_leaf(dout, true);
  const TensorList ou{f64_leaf(u[0], false), f64_leaf(u[1], false), f64_leaf(u[2], false)};
  const ReverseChain ref = reverse_chain(oracle_fn(c), {oq, ok, ov}, od, ou, {}, 2);

  // Auto is Reference while no fused kernels are built; with them it (and Fused) run those.
  std::vector<Backend> backends{Backend::Reference, Backend::Auto};
  if (theria::fused_kernels_built()) backends.push_back(Backend::Fused);
  for (const auto backend : backends) {
    SCOPED_TRACE(theria::backend_name(backend));
    const ReverseChain r = reverse_chain(theria_fn(c, backend), {q, k, v}, dout, u, {}, 2);
    EXPECT_TRUE(r.out.is_cuda());
    EXPECT_EQ(r.out.scalar_type(), dtype);
    EXPECT_CLOSE(r.out, ref.out, dtype, Derivative::Forward);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_TRUE(r.first[i].is_cuda());
      EXPECT_EQ(r.first[i].scalar_type(), dtype);
      EXPECT_CLOSE(r.first[i], ref.first[i], dtype, Derivative::FirstOrder) << " input " << i;
    }
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_CLOSE(r.second[i], ref.second[i], dtype, Derivative::SecondOrder) << " input " << i;
    }
  }
}

TEST(GpuBackend, ExplicitRefusesCuda) {
  SKIP_WITHOUT_CUDA();
  const Tensor q = randn({2, 3, 4}, 1, at::kFloat, kCuda), k = randn({2, 5, 4}, 2, at::kFloat, kCuda),
               v = randn({2, 5, 4}, 3, at::kFloat, kCuda);
  const auto opts = theria::SdpaOptions().backend(Backend::Explicit);
  EXPECT_THROW(theria::sdpa(q, k, v, opts), c10::Error);
  EXPECT_THROW(theria::select_backend(q, k, v, opts), c10::Error);
  try {
    theria::sdpa(q, k, v, opts);
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("'explicit'"), std::string::npos) << e.what();
  }
}

TEST(GpuBackend, AutoSelectionFollowsFusedBuild) {
  SKIP_WITHOUT_CUDA();
  const Tensor q = randn({2, 3, 64}, 1, at::kHalf, kCuda), k = randn({2, 5, 64}, 2, at::kHalf, kCuda),
               v = randn({2, 5, 64}, 3, at::kHalf, kCuda);
  const auto choice = theria::select_backend(q, k, v);
  const auto fused = theria::SdpaOptions().backend(Backend::Fused);
  if (theria::fused_kernels_built()) {
    EXPECT_EQ(choice.backend, Backend::Fused) << choice.reason;
    EXPECT_EQ(theria::select_backend(q, k, v, fused).backend, Backend::Fused);
  } else {
    EXPECT_EQ(choice.backend, Backend::Reference) << choice.reason;
    EXPECT_THROW(theria::sdpa(q, k, v, fused), c10::Error);
    EXPECT_THROW(theria::select_backend(q, k, v, fused), c10::Error);
    try {
      theria::sdpa(q, k, v, fused);
    } catch (const c10::Error& e) {
      EXPECT_NE(std::string(e.what_without_backtrace()).find("not available"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(theria::select_backend(q, k, v, theria::SdpaOptions().backend(Backend::Reference)).backend,
            Backend::Reference);
}

// Inputs only the SIMT kernels serve (float32 here) go to the reference composition while its L x S buffers fit
// in a quarter of the GPU, else to the fused SIMT kernels (core::reference_beats_simt; the table is pinned in
// test_backend_choice.cpp).
TEST(GpuBackend, AutoSendsFloat32ToTheFasterBackendThatFits) {
  SKIP_WITHOUT_CUDA();
  if (!theria::fused_kernels_built()) GTEST_SKIP() << "no fused kernels in this build";
  const Tensor small = randn({8, 1024, 64}, 1, at::kFloat, kCuda);
  const auto small_choice = theria::select_backend(small, small, small);
  EXPECT_EQ(small_choice.backend, Backend::Reference) << small_choice.reason;
  EXPECT_NE(small_choice.reason.find("fit in a quarter"), std::string::npos) << small_choice.reason;
  // 12 x 32768^2 x 4 bytes = 48 GiB: more than a quarter of any GPU this project runs on.
  const Tensor long_seq = randn({1, 32768, 64}, 2, at::kFloat, kCuda);
  const auto long_choice = theria::select_backend(long_seq, long_seq, long_seq);
  EXPECT_EQ(long_choice.backend, Backend::Fused) << long_choice.reason;
  EXPECT_NE(long_choice.reason.find("fused SIMT kernels"), std::string::npos) << long_choice.reason;
}

// With fused kernels built, inputs they cannot take (head dims above their limit) are refused
// by Fused and routed by Auto to the reference composition, with the reason.
TEST(GpuBackend, FusedRefusesUnsupportedHeadDim) {
  SKIP_WITHOUT_CUDA();
  if (!theria::fused_kernels_built()) GTEST_SKIP() << "no fused kernels in this build";
  const Tensor q = randn({1, 3, 300}, 1, at::kHalf, kCuda), k = randn({1, 5, 300}, 2, at::kHalf, kCuda),
               v = randn({1, 5, 8}, 3, at::kHalf, kCuda);
  const auto choice = theria::select_backend(q, k, v);
  EXPECT_EQ(choice.backend, Backend::Reference) << choice.reason;
  EXPECT_NE(choice.reason.find("300"), std::string::npos) << choice.reason;
  EXPECT_THROW(theria::select_backend(q, k, v, theria::SdpaOptions().backend(Backend::Fused)), c10::Error);
}

TEST(GpuBackend, MixedDevicesRejected) {
  SKIP_WITHOUT_CUDA();
  const Tensor q = randn({2, 3, 4}, 1, at::kFloat, kCuda), k = randn({2, 5, 4}, 2, at::kFloat),
               v = randn({2, 5, 4}, 3, at::kFloat, kCuda);
  try {
    theria::sdpa(q, k, v);
    ADD_FAILURE() << "no error for a key on the CPU";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what_without_backtrace()).find("one device"), std::string::npos) << e.what();
  }
}

// Forward mode on CUDA through the reference composition.
TEST(GpuAutograd, ForwardModeJvp) {
  SKIP_WITHOUT_CUDA();
  const Case c{{2, 2}, 9, 13, 8, 4, true, std::nullopt};
  const TensorList qkv{randn(c.q_shape(), 1, at::kFloat, kCuda), randn(c.k_shape(), 2, at::kFloat, kCuda),
                       randn(c.v_shape(), 3, at::kFloat, kCuda)};
  const TensorList t{randn(c.q_shape(), 4, at::kFloat, kCuda), randn(c.k_shape(), 5, at::kFloat, kCuda),
                     randn(c.v_shape(), 6, at::kFloat, kCuda)};
  TensorList oqkv, ot;
  for (size_t i = 0; i < 3; ++i) {
    oqkv.push_back(f64_leaf(qkv[i], false));
    ot.push_back(f64_leaf(t[i], false));
  }
  EXPECT_CLOSE(jvp(theria_fn(c, Backend::Auto), qkv, t), jvp(oracle_fn(c), oqkv, ot), at::kFloat,
               Derivative::FirstOrder);
}

}  // namespace
}  // namespace theria_test
