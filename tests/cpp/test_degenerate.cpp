// Problems with a zero size (B, H, L, S, E or Ev = 0) are answered on every backend as PyTorch's math
// SDPA answers them: the same shapes, the same values (zeros where a sum over keys is empty), and
// gradients of the same shapes and values; select_backend says how. The Python side
// (tests/python/test_degenerate.py) covers the other orders and the hostile layouts.
#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <theria/sdpa.h>
#include <torch/csrc/autograd/autograd.h>

#include <vector>

namespace {

using at::Tensor;
using theria::Backend;

struct Sizes {
  int64_t b, h, l, s, e, ev;
};

Tensor leaf(std::vector<int64_t> shape, uint64_t seed) {
  at::manual_seed(seed);
  return at::randn(shape, at::kDouble).requires_grad_();
}

void expect_equal(const Tensor& got, const Tensor& want, const char* what) {
  ASSERT_EQ(got.sizes(), want.sizes()) << what;
  if (want.numel() > 0) {
    EXPECT_TRUE(at::allclose(got, want, 1e-12, 1e-12)) << what << "\n" << got << "\n" << want;
  }
}

TEST(SdpaDegenerate, EveryZeroSizeMatchesMathOnEveryCpuBackend) {
  const std::vector<Sizes> cases{{0, 2, 3, 4, 5, 5}, {2, 0, 3, 4, 5, 5}, {1, 2, 0, 4, 5, 5},
                                 {1, 2, 3, 0, 5, 5}, {1, 2, 3, 4, 0, 5}, {1, 2, 3, 4, 5, 0}};
  for (const auto& c : cases) {
    for (const bool causal : {false, true}) {
      for (const auto backend : {Backend::Auto, Backend::Reference, Backend::Explicit}) {
        const Tensor q = leaf({c.b, c.h, c.l, c.e}, 1), k = leaf({c.b, c.h, c.s, c.e}, 2),
                     v = leaf({c.b, c.h, c.s, c.ev}, 3);
        const Tensor out = theria::sdpa(q, k, v, theria::SdpaOptions().causal(causal).backend(backend));
        const Tensor want = std::get<0>(at::_scaled_dot_product_attention_math(q, k, v, {}, 0.0, causal));
        expect_equal(out, want, "out");
        const Tensor dout = at::randn(want.sizes(), at::kDouble);
        const auto got_g = torch::autograd::grad({out}, {q, k, v}, {dout}, true, false, true);
        const auto want_g = torch::autograd::grad({want}, {q, k, v}, {dout}, true, false, true);
        for (size_t i = 0; i < 3; ++i) {
          const Tensor g = got_g[i].defined() ? got_g[i] : at::zeros_like(std::vector<Tensor>{q, k, v}[i]);
          const Tensor w = want_g[i].defined() ? want_g[i] : at::zeros_like(g);
          expect_equal(g, w, "gradient");
        }
        const auto choice = theria::select_backend(q, k, v, theria::SdpaOptions().backend(backend));
        if (backend != Backend::Reference) {
          EXPECT_NE(choice.reason.find("empty problem"), std::string::npos);
        }
      }
    }
  }
}

TEST(SdpaDegenerate, ZeroFeaturesIgnoreTheDefaultScale) {
  // E = 0: every logit is 0 (PyTorch's 1/sqrt(0) meets only empty operands), so the output is the
  // mean of the visible values, not NaN.
  const Tensor q = leaf({1, 1, 3, 0}, 1), k = leaf({1, 1, 4, 0}, 2), v = leaf({1, 1, 4, 2}, 3);
  const Tensor out = theria::sdpa(q, k, v, theria::SdpaOptions().causal(true));
  expect_equal(out, v.detach().cumsum(2).narrow(2, 0, 3) / at::arange(1, 4, at::kDouble).view({1, 1, 3, 1}), "out");
}

}  // namespace
