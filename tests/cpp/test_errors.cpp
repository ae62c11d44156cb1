// Bad inputs: each one throws c10::Error whose message names the argument at fault and the
// expected form, whichever entry point (public API, ops, select_backend) it comes through.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <tuple>
#include <vector>

#include "ops/ops.h"
#include "test_util.h"

namespace theria_test {
namespace {

using theria::Backend;

// Runs fn, expects a c10::Error, and checks that its message contains every one of `needles`.
void expect_error_mentions(const std::function<void()>& fn, std::initializer_list<std::string> needles) {
  EXPECT_THROW(fn(), c10::Error);
  try {
    fn();
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    for (const auto& needle : needles) {
      EXPECT_NE(msg.find(needle), std::string::npos) << "error message lacks \"" << needle << "\":\n" << msg;
    }
  } catch (...) {
  }
}

Tensor T(at::IntArrayRef shape, uint64_t seed = 1, at::ScalarType dtype = at::kDouble) {
  return randn(shape, seed, dtype);
}

// Every public way of asking for attention on (q, k, v) must reject the same inputs.
void expect_all_entry_points_reject(const Tensor& q, const Tensor& k, const Tensor& v,
                                    std::initializer_list<std::string> needles) {
  for (const auto backend : {Backend::Auto, Backend::Reference, Backend::Explicit}) {
    SCOPED_TRACE(theria::backend_name(backend));
    const auto options = theria::SdpaOptions().backend(backend);
    expect_error_mentions([&] { theria::sdpa(q, k, v, options); }, needles);
    expect_error_mentions([&] { theria::select_backend(q, k, v, options); }, needles);
  }
  expect_error_mentions([&] { theria::ops::sdpa_fwd(q, k, v, false, 1.0, "explicit"); }, needles);
}

TEST(SdpaErrors, OneDimensionalQuery) {
  expect_all_entry_points_reject(T({4}), T({4}), T({4}), {"query", "(..., L, E)", "1-D"});
}

// Ranks that differ broadcast in the public API, as in F.scaled_dot_product_attention (test_masks_gqa.cpp checks
// the values); the primitive ops take broadcast operands and reject them.
TEST(SdpaErrors, RankMismatchReachesOnlyThePrimitives) {
  for (const auto& [q, k, v, needles] :
       {std::tuple{T({2, 3, 4}), T({5, 4}), T({2, 5, 4}), std::vector<std::string>{"key", "(..., S, E)", "2-D"}},
        std::tuple{T({2, 3, 4}), T({2, 5, 4}), T({1, 2, 5, 4}),
                   std::vector<std::string>{"value", "(..., S, Ev)", "4-D"}}}) {
    EXPECT_NO_THROW(theria::sdpa(q, k, v, theria::SdpaOptions().backend(Backend::Explicit)));
    EXPECT_THROW(theria::ops::sdpa_fwd(q, k, v, false, 1.0, "explicit"), c10::Error);
    try {
      theria::ops::sdpa_fwd(q, k, v, false, 1.0, "explicit");
    } catch (const c10::Error& e) {
      const std::string msg = e.what_without_backtrace();
      for (const auto& needle : needles) EXPECT_NE(msg.find(needle), std::string::npos) << msg;
    }
  }
}

TEST(SdpaErrors, LeadingSizeMismatch) {
  expect_all_entry_points_reject(T({2, 3, 4}), T({3, 5, 4}), T({3, 5, 4}), {"query", "key", "value", "leading"});
}

TEST(SdpaErrors, FeatureSizeMismatch) {
  expect_all_entry_points_reject(T({2, 3, 4}), T({2, 5, 6}), T({2, 5, 4}), {"key", "feature size E", "[2, 5, 6]"});
}

TEST(SdpaErrors, LengthMismatchBetweenKeyAndValue) {
  expect_all_entry_points_reject(T({2, 3, 4}), T({2, 5, 4}), T({2, 6, 4}), {"value", "length S of key", "[2, 6, 4]"});
}

TEST(SdpaErrors, IntegerDtype) {
  const Tensor qi = at::arange(24, at::kLong).reshape({2, 3, 4});
  expect_all_entry_points_reject(qi, T({2, 5, 4}), T({2, 5, 4}), {"query", "floating-point", "Long"});
  expect_all_entry_points_reject(T({2, 3, 4}), T({2, 5, 4}), at::ones({2, 5, 4}, at::kInt),
                                 {"value", "floating-point"});
}

TEST(SdpaErrors, MixedDtypes) {
  expect_all_entry_points_reject(T({2, 3, 4}), T({2, 5, 4}, 2, at::kFloat), T({2, 5, 4}),
                                 {"query", "key", "value", "one dtype", "Float", "Double"});
}

TEST(SdpaErrors, UnknownBackendString) {
  expect_error_mentions([] { theria::parse_backend("flash"); }, {"backend", "'flash'", "'explicit'"});
  expect_error_mentions([] { theria::parse_backend("Explicit"); }, {"backend", "'Explicit'"});
  expect_error_mentions(
      [] {
        theria::ops::sdpa(T({2, 3, 4}), T({2, 5, 4}), T({2, 5, 4}), false, std::nullopt, "cuda");
      },
      {"backend", "'cuda'"});
}

TEST(SdpaErrors, FusedOnCpu) {
  const Tensor q = T({2, 3, 4}), k = T({2, 5, 4}), v = T({2, 5, 4});
  const auto fused = theria::SdpaOptions().backend(Backend::Fused);
  expect_error_mentions([&] { theria::sdpa(q, k, v, fused); }, {"backend", "'fused'", "CUDA", "cpu"});
  expect_error_mentions([&] { theria::select_backend(q, k, v, fused); }, {"backend", "'fused'"});
  expect_error_mentions([&] { theria::ops::sdpa_fwd(q, k, v, false, 0.5, "fused"); }, {"backend", "'fused'"});
}

TEST(SdpaErrors, NonFiniteScale) {
  const Tensor q = T({2, 3, 4}), k = T({2, 5, 4}), v = T({2, 5, 4});
  for (const double s : {std::nan(""), HUGE_VAL}) {
    expect_error_mentions([&] { theria::sdpa(q, k, v, theria::SdpaOptions().scale(s)); }, {"scale", "finite"});
  }
}

TEST(SdpaErrors, BackwardOpArguments) {
  const Tensor q = T({2, 3, 4}), k = T({2, 5, 4}), v = T({2, 5, 6});
  const auto [out, lse] = theria::ops::sdpa_fwd(q, k, v, false, 0.5, "explicit");
  const Tensor dout = T({2, 3, 6}, 2);
  expect_error_mentions(
      [&] {
        theria::ops::sdpa_bwd(q, k, v, out, lse, T({2, 3, 5}), false, 0.5, "explicit");
      },
      {"dout", "[2, 3, 6]", "[2, 3, 5]"});
  expect_error_mentions([&] { theria::ops::sdpa_bwd(q, k, v, out, lse.unsqueeze(-1), dout, false, 0.5, "explicit"); },
                        {"lse", "(..., L)"});
  expect_error_mentions([&] { theria::ops::sdpa_bwd(q, k, v, out, lse.to(at::kFloat), dout, false, 0.5, "explicit"); },
                        {"lse", "Double"});
  expect_error_mentions([&] { theria::ops::sdpa_bwd(q, k, v, out.to(at::kFloat), lse, dout, false, 0.5, "explicit"); },
                        {"out", "dtype of query"});
  expect_error_mentions(
      [&] {
        theria::ops::sdpa_jvp(q, k, v, std::nullopt, T({2, 5, 5}), std::nullopt, false, 0.5, "explicit");
      },
      {"k_dot", "[2, 5, 4]"});
  expect_error_mentions(
      [&] {
        theria::ops::sdpa_bwd_jvp(q, k, v, out, lse, dout, std::nullopt, std::nullopt, std::nullopt, T({2, 3, 4}),
                                  false, 0.5, "explicit");
      },
      {"dout_dot", "[2, 3, 6]"});
}

// A bad request never leaves a half-built graph behind: the error comes before any node.
TEST(SdpaErrors, ErrorsAlsoWithGradAndForwardAd) {
  const Tensor q = T({2, 3, 4}).requires_grad_(), k = T({2, 5, 6}).requires_grad_(), v = T({2, 5, 4});
  expect_error_mentions([&] { theria::sdpa(q, k, v); }, {"key", "feature size E"});
  DualLevel level;
  const Tensor qd = make_dual(q.detach(), T({2, 3, 4}, 3), level);
  expect_error_mentions([&] { theria::sdpa(qd, k.detach(), v); }, {"key", "feature size E"});
}

}  // namespace
}  // namespace theria_test
