// float32 at precision "high" on float16 copies (Float32Half, src/fused/operand_scales.cuh): the exponents the copies
// and the kernels share, computed on the host here so that CI (no GPU) checks them. What must hold: each operand's
// copy has its largest finite magnitude in [1/2, 1) (float16's normal range with TF32's mantissa kept), non-finite
// and zero operands go unscaled, the tangents share one exponent that puts their largest scaled magnitude in [1/2, 1),
// and the kernels' factors take exactly the copies' powers of two off (powers of two: the products stay TF32
// products rounded to nearest).
#include <gtest/gtest.h>

#include "fused/operand_scales.cuh"

#include <cmath>
#include <limits>
#include <vector>

namespace {

namespace kc = theria::kernels::cuda;

TEST(OperandScales, EachCopysLargestMagnitudeLiesInAHalfToOne) {
  for (double amax : {1.0, 0.5, 0.75, 0.999, 1.5, 3.0, 65504.0, 1e5, 1e37, 1e-3, 6.1e-5, 1e-6, 1e-30, 1.2e-38}) {
    const int e = kc::unit_exponent(amax);
    const double scaled = std::ldexp(amax, e);
    EXPECT_GE(scaled, 0.5) << amax;
    EXPECT_LT(scaled, 1.0) << amax;
  }
}

TEST(OperandScales, ZeroAndNonFiniteOperandsGoUnscaled) {
  EXPECT_EQ(kc::unit_exponent(0.0), 0);
  EXPECT_EQ(kc::unit_exponent(std::numeric_limits<double>::infinity()), 0);
  EXPECT_EQ(kc::unit_exponent(std::numeric_limits<double>::quiet_NaN()), 0);
}

TEST(OperandScales, ExponentsStayInFloatsNormalRange) {
  // The exponents stop at +-126, so that the kernels' inverse factors (2^-e, as floats) stay finite: a largest
  // magnitude past 2^126 (float32 reaches 2^128) leaves a copy of at most 4, and a float32 subnormal's (below 2^-126)
  // one below 1/2, both inside float16's normal range.
  EXPECT_EQ(kc::unit_exponent(1e-40), 126);
  EXPECT_EQ(kc::unit_exponent(3e38), -126);
  EXPECT_LE(std::ldexp(3.4e38, kc::unit_exponent(3.4e38)), 4.0);
  EXPECT_GE(std::ldexp(1e-40, kc::unit_exponent(1e-40)), std::ldexp(1.0, -14));
  EXPECT_TRUE(std::isfinite(kc::pow2f(-kc::unit_exponent(3.4e38))));
  EXPECT_TRUE(std::isfinite(kc::pow2f(-kc::unit_exponent(1e-40))));
}

std::vector<float> amax_of(float q, float k, float v, float dout, float q_dot, float k_dot, float v_dot, float dout_dot) {
  std::vector<float> amax(kc::kOperandSlots);
  amax[kc::kSlotQ] = q, amax[kc::kSlotK] = k, amax[kc::kSlotV] = v, amax[kc::kSlotDout] = dout;
  amax[kc::kSlotQDot] = q_dot, amax[kc::kSlotKDot] = k_dot, amax[kc::kSlotVDot] = v_dot;
  amax[kc::kSlotDoutDot] = dout_dot;
  return amax;
}

TEST(OperandScales, TangentsShareTheExponentOfTheirLargestScaledCopy) {
  // Operands of very different sizes; the k tangent is the largest relative to its operand.
  const std::vector<float> amax = amax_of(3.0f, 1e-4f, 2e5f, 0.25f, 1e-2f, 7e-3f, 5e2f, 0.0f);
  const kc::OperandScales s = kc::OperandScales::from(amax.data());
  double largest = 0.0;
  for (int slot : {kc::kSlotQDot, kc::kSlotKDot, kc::kSlotVDot, kc::kSlotDoutDot}) {
    const double scaled = std::ldexp(static_cast<double>(amax[slot]), s.of(slot));
    EXPECT_LT(scaled, 1.0) << slot;  // no tangent's copy past 1
    largest = std::max(largest, scaled);
  }
  EXPECT_GE(largest, 0.5);
  // A tangent's copy carries its operand's power of two and the shared one.
  EXPECT_EQ(s.of(kc::kSlotKDot), s.k + s.tangent);
  EXPECT_EQ(s.of(kc::kSlotVDot), s.v + s.tangent);
  // The operands' own copies in [1/2, 1).
  for (int slot : {kc::kSlotQ, kc::kSlotK, kc::kSlotV, kc::kSlotDout}) {
    const double scaled = std::ldexp(static_cast<double>(amax[slot]), s.of(slot));
    EXPECT_GE(scaled, 0.5) << slot;
    EXPECT_LT(scaled, 1.0) << slot;
  }
}

TEST(OperandScales, TheKernelsFactorsTakeTheCopiesPowersOff) {
  // One logit and one gradient element formed from the copies' values as the kernels form them, against the same
  // from the float32 values: equal to the last bit, since every factor is a power of two (times the logits' scale).
  const std::vector<float> amax = amax_of(40.0f, 3e-3f, 1e4f, 2e-6f, 1e-1f, 1e-5f, 1e3f, 1e-8f);
  const kc::OperandScales s = kc::OperandScales::from(amax.data());
  const double scale = 0.125;
  for (bool tangent : {false, true}) {
    const kc::ScaleFactors f = kc::ScaleFactors::of(s, scale, tangent);
    const int t = tangent ? s.tangent : 0;
    const double q = 37.25, k = -2.5e-3, v = 9.5e3, dout = 1.75e-6, p = 0.0625;
    const double q_c = std::ldexp(q, s.q), k_c = std::ldexp(k, s.k), v_c = std::ldexp(v, s.v);
    const double dout_c = std::ldexp(dout, s.dout + t), p_c = std::ldexp(p, kc::kProbExp);
    EXPECT_EQ(q_c * k_c * f.logits, scale * q * k);                                 // S = scale Q K^T
    EXPECT_EQ(p_c * dout_c * f.dv, p * dout);                                       // dV += P^T dO
    const double ds_c = p_c * (dout_c * v_c);  // dS' = P' (dP'), dP' = dO' V'^T
    EXPECT_EQ(ds_c * q_c * f.dk, scale * p * (dout * v) * q);                       // dK += scale dS^T Q
    EXPECT_EQ(ds_c * k_c * f.dq, scale * p * (dout * v) * k);                       // dQ += scale dS K
    // delta and delta_dot are staged in dP' units: rowsum(dO' * O) 2^v.
    EXPECT_EQ(f.delta, kc::pow2f(s.dout + s.v));
  }
}

}  // namespace
