// float32 at matmul precision "high" on float16 operands (Float32Half, float32_parts.h): the powers of two.
//
// float16 has TF32's 10 explicit mantissa bits but a 5-bit exponent. Each operand X of a pass goes to the tensor
// cores as the float16 copy X' = X 2^x, x chosen from max|X| (the binding's sdpa_operand_amax, before the pass)
// so that max|X'| lies in [1/2, 1); a tangent X_dot as X_dot 2^(x + t), one t for all tangents (the sums the
// kernels form, S_dot = Q_dot K^T + Q K_dot^T and the like, then add terms of one scale). P and what is formed from
// it (dS, P_dot, dS_dot) carry 2^kProbExp: a backward's P = exp(S - lse) is about 1 / L, and at long rows the
// float16 copies of the diffuse rows' dS and dS_dot fell into float16's subnormals (the emulation,
// scripts/numerics/float32_products_emulation.py: 5x TF32's error at L = 8192 without it, TF32's with it).
// Powers of two are exact, so each product is a TF32 product rounded to nearest; the kernels' arithmetic is the
// float16 kernels', the scales folded into the logits' scale, the row statistics they stage, and the factors of
// their outputs (docs/contract.md, "float32").
#pragma once

#include "fused/launch.h"  // OperandSlot

#include <cuda_runtime.h>

#include <cmath>

namespace theria::kernels::cuda {

// The exponent P and its products' operands carry.
constexpr int kProbExp = 6;

// The e with amax 2^e in [1/2, 1): 0 for 0, inf and NaN (such an operand goes as it is: its inf and NaN stay what
// they are). Clamped to float's normal exponents.
__host__ __device__ inline int unit_exponent(double amax) {
  if (!(amax > 0.0) || !std::isfinite(amax)) return 0;
  int e = 0;
  frexp(amax, &e);  // amax = f 2^e, f in [1/2, 1)
  return e > 126 ? -126 : (e < -126 ? 126 : -e);
}

// A pass's exponents, from the slots (the kernels and the copies read the same ones: the copies' scales and the
// kernels' factors agree by construction).
struct OperandScales {
  int q = 0, k = 0, v = 0, dout = 0, tangent = 0;

  __host__ __device__ static OperandScales from(const float* amax) {
    OperandScales s;
    s.q = unit_exponent(amax[kSlotQ]);
    s.k = unit_exponent(amax[kSlotK]);
    s.v = unit_exponent(amax[kSlotV]);
    s.dout = unit_exponent(amax[kSlotDout]);
    // The tangents' common exponent: the largest of max|X_dot| 2^x over the tangents.
    const double rel = fmax(fmax(ldexp(static_cast<double>(amax[kSlotQDot]), s.q),
                                 ldexp(static_cast<double>(amax[kSlotKDot]), s.k)),
                            fmax(ldexp(static_cast<double>(amax[kSlotVDot]), s.v),
                                 ldexp(static_cast<double>(amax[kSlotDoutDot]), s.dout)));
    s.tangent = unit_exponent(rel);
    return s;
  }

  // The exponent of the copy of the operand in `slot`.
  __host__ __device__ int of(int slot) const {
    switch (slot) {
      case kSlotQ: return q;
      case kSlotK: return k;
      case kSlotV: return v;
      case kSlotDout: return dout;
      case kSlotQDot: return q + tangent;
      case kSlotKDot: return k + tangent;
      case kSlotVDot: return v + tangent;
      default: return dout + tangent;
    }
  }
};

// 2^e as a float (0 or inf past float's range, as a float32 product of the unscaled values would round).
__host__ __device__ inline float pow2f(int e) { return static_cast<float>(ldexp(1.0, e)); }

// What the kernels multiply by, from the logits' scale and the exponents: the logits' scale less Q's and K's powers
// of two; the units of the row statistics the backward kernels stage, which their producers (the row terms, the
// tangent pass) write in the products' units; the factors that take the scales off the backward's outputs (with
// `tangent`, the backward-JVP's).
struct ScaleFactors {
  float logits = 1.f;     // Q' K'^T to the logits (and S_dot' to the logits' tangent times 2^t)
  float delta = 1.f;      // delta in dP' = dO' V'^T units: 2^(dout + v)
  float lse_dot = 1.f;    // lse_dot in the units of S_dot': 2^t
  float delta_dot = 1.f;  // delta_dot in dP_dot' units: 2^(dout + v + t)
  float dk = 1.f, dv = 1.f, dq = 1.f;  // the logits' scale in dk, dq; P's, dO's [and the tangents'] powers off

  __host__ __device__ static ScaleFactors of(const OperandScales& s, double scale, bool tangent) {
    ScaleFactors f;
    const int t = tangent ? s.tangent : 0;
    f.logits = static_cast<float>(ldexp(scale, -(s.q + s.k)));
    f.delta = pow2f(s.dout + s.v);
    f.lse_dot = pow2f(s.tangent);
    f.delta_dot = pow2f(s.dout + s.v + s.tangent);
    f.dv = pow2f(-(kProbExp + s.dout + t));
    f.dk = static_cast<float>(ldexp(scale, -(kProbExp + s.dout + s.v + s.q + t)));
    f.dq = static_cast<float>(ldexp(scale, -(kProbExp + s.dout + s.v + s.k + t)));
    return f;
  }
};

#ifdef __CUDACC__
// A float thread 0 of the block computes and every thread reads: the exponents' FP64 frexp and ldexp cost dozens of
// instructions, so a kernel whose threads each touch a few elements forms them once per block. Every thread of the
// block must call it (it synchronises the block).
template <typename Compute>
__device__ float block_uniform(const Compute& compute) {
  __shared__ float value;
  if (threadIdx.x == 0) value = compute();
  __syncthreads();
  return value;
}
#endif  // the host (tests/cpp/test_operand_scales.cpp) reads the exponents above only

}  // namespace theria::kernels::cuda
