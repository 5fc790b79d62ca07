// Smooth activations and their first two derivatives, for scalars and SIMD lane packs.
#pragma once
#include <type_traits>

#include "lanes.h"
#include "types.h"

namespace hinn::HINN_ISA {

// Scalar kernels. Softplus follows torch.nn.functional.softplus (beta = 1, threshold = 20): the identity
// above the threshold, so that every backend computes the same function and the same derivatives.
template <class S>
HINN_HD void act_scalar(int act, S z, S& s, S& d1, S& d2) {
#if !defined(__CUDA_ARCH__)
  using std::exp;
  using std::log1p;
  using std::tanh;
#endif
  if (act == kTanh) {
    s = tanh(z);
    d1 = S(1) - s * s;
    d2 = S(-2) * s * d1;
  } else if (z > S(20)) {
    s = z;
    d1 = S(1);
    d2 = S(0);
  } else {
    // in e = exp(−|z|) ∈ (0, 1]: σ' = e/(1+e)² is exact in both tails (σ'(1 − σ') cancels for z ≫ 0)
    const S e = exp(-(z < S(0) ? -z : z));
    const S r = S(1) / (S(1) + e);
    s = (z > S(0) ? z : S(0)) + log1p(e);
    d1 = z >= S(0) ? r : e * r;
    d2 = e * r * r;
  }
}

#if !defined(__CUDACC__)
// 1/k!, k = 0..15, computed at compile time (a constexpr function called in the loop was evaluated at
// run time: 9 % of the float64 profile).
struct InvFactorials {
  double c[16];
  constexpr InvFactorials() : c{} {
    double f = 1;
    c[0] = 1;
    for (int k = 1; k < 16; ++k) {
      f /= k;
      c[k] = f;
    }
  }
};
inline constexpr InvFactorials kInvFactorial{};

// What the pack functions share: ln2 split for Cody–Waite range reduction (hi with trailing zero bits,
// so that n·hi is exact), and the lowest argument whose exp is still a normal number.
template <class S>
struct PackConstants {
  static constexpr bool dbl = sizeof(S) == 8;
  static constexpr S ln2_hi = dbl ? S(0.693147180369123816490) : S(0.693359375);
  static constexpr S ln2_lo = dbl ? S(1.90821492927058770002e-10) : S(-2.12194440e-4);
  static constexpr S exp_lowest = dbl ? S(-708) : S(-87);
};

// The integer vector of V's shape, for bit operations on its lanes.
template <class V>
struct int_lanes {
  using I = typename std::conditional<sizeof(scalar_t<V>) == 8, long long, int>::type;
  typedef I type __attribute__((vector_size(sizeof(V))));
};

// exp(y) − 1 for packs, y <= 0, as 2^n and expm1(r): y = n ln2 + r with |r| <= ln2/2 (Cody–Waite split
// of ln2), expm1(r) by its Taylor polynomial (degree 13 in double, 7 in float: truncation below half an
// ulp, 0.11 ulp in double). y is clamped where 2^n is still a normal number (exp(y) then underflows).
template <class V>
HINN_HD void exp_split_nonpositive(V y, V& two_n, V& em_r) {
  using S = scalar_t<V>;
  constexpr bool dbl = sizeof(S) == 8;
  constexpr int deg = dbl ? 13 : 7;
  using C = PackConstants<S>;
  const S log2e = S(1.4426950408889634074);
  const S magic = dbl ? S(6755399441055744.0) : S(12582912.0f);  // 1.5 * 2^(mantissa bits)
  y = y < C::exp_lowest ? splat<V>(C::exp_lowest) : y;
  const V m = y * log2e + magic;  // magic + n, n = y log2e rounded to nearest, in the low mantissa bits
  const V n = m - magic;
  V r = (y - n * C::ln2_hi) - n * C::ln2_lo;
  // Σ_{k=1..deg} r^k / k! = r + r² (E(r²) + r O(r²)), E and O from the terms of even and odd k >= 2: two
  // Horner chains of half the length (one chain's latency bounds narrow layers, whose passes are mostly
  // this), and the leading term r added last and exactly, so the chains' rounding is scaled by r² <= 0.12
  const V r2 = r * r;
  constexpr int top_even = deg % 2 ? deg - 1 : deg, top_odd = deg % 2 ? deg : deg - 1;
  V even = splat<V>(S(kInvFactorial.c[top_even]));
  V odd = splat<V>(S(kInvFactorial.c[top_odd]));
#pragma GCC unroll 8
  for (int k = top_even - 2; k >= 2; k -= 2) even = even * r2 + S(kInvFactorial.c[k]);
#pragma GCC unroll 8
  for (int k = top_odd - 2; k >= 3; k -= 2) odd = odd * r2 + S(kInvFactorial.c[k]);
  em_r = r2 * (even + r * odd) + r;
  // 2^n from the exponent bits; n as an integer is m's bits less magic's (no conversion)
  using IV = typename int_lanes<V>::type;
  const IV ni = (IV)m - (IV)splat<V>(magic);
  const IV bits = (ni + (dbl ? 1023 : 127)) << (dbl ? 52 : 23);
  two_n = (V)bits;
}

// expm1(y) = 2^n expm1(r) + (2^n − 1), both terms exact or nearly so; all tanh needs.
template <class V>
HINN_HD V expm1_nonpositive(V y) {
  V two_n, em_r;
  exp_split_nonpositive(y, two_n, em_r);
  return two_n * em_r + (two_n - scalar_t<V>(1));
}

// exp(y) = 2^n (expm1(r) + 1), y <= 0: to a few ulp; 0 below the clamp (where exp(y) is subnormal).
template <class V>
HINN_HD V exp_nonpositive(V y) {
  using S = scalar_t<V>;
  V two_n, em_r;
  exp_split_nonpositive(y, two_n, em_r);
  return y < PackConstants<S>::exp_lowest ? splat<V>(S(0)) : two_n * em_r + two_n;
}

// log1p(x) for packs, 0 <= x <= 1 (all softplus needs): u = 1 + x rounded, its rounding error c = x − (u − 1)
// added back as c/u; log u = k ln2 + log f with f = u or u/2 in [√2/2, √2], log f = 2 atanh(s), s =
// (f − 1)/(f + 1), |s| <= 0.1716, by the odd series in s (s² <= 0.0295: 11 terms in double, 5 in float,
// truncation below 1e-17 and 3e-8 relative).
template <class V>
HINN_HD V log1p_unit(V x) {
  using S = scalar_t<V>;
  constexpr bool dbl = sizeof(S) == 8;
  constexpr int terms = dbl ? 11 : 5;
  const V u = x + S(1);
  const V c = x - (u - S(1));
  const V big = u > S(1.4142135623730951) ? splat<V>(S(1)) : splat<V>(S(0));  // k
  const V f = u * (S(1) - S(0.5) * big);                                      // exact: u or u/2
  const V s = (f - S(1)) / (f + S(1));
  const V s2 = s * s;
  V poly = splat<V>(S(1) / S(2 * terms + 1));
#pragma GCC unroll 16
  for (int j = terms - 1; j >= 1; --j) poly = poly * s2 + S(1) / S(2 * j + 1);
  using C = PackConstants<S>;
  return big * C::ln2_hi + ((S(2) * s + S(2) * s * s2 * poly) + (big * C::ln2_lo + c / u));
}

// softplus and its derivatives as act_scalar computes them (the identity above 20), on packs.
template <class V>
HINN_HD void softplus_pack(V z, V& s, V& d1, V& d2) {
  using S = scalar_t<V>;
  using IV = typename int_lanes<V>::type;
  const V a = (V)((IV)z & ~(IV)splat<V>(S(-0.0)));  // |z|
  const V e = exp_nonpositive(-a);
  const V r = S(1) / (S(1) + e);
  const V pos = z > S(0) ? z : splat<V>(S(0));
  s = z > S(20) ? z : pos + log1p_unit(e);
  d1 = z > S(20) ? splat<V>(S(1)) : (z >= S(0) ? r : e * r);
  d2 = z > S(20) ? splat<V>(S(0)) : e * r * r;
}

// float32 tanh as a rational function: tanh(x) ≈ x P(u) / Q(u), u = x²/81, x clamped to [−9, 9]
// (|tanh(9) − 1| is below float32's half-ulp at 1). Coefficients from our own fit (reweighted least
// squares for relative error on [0, 9], benchmarks/fit_tanh.py): 6.6e-9 relative in exact
// arithmetic, 2.5 ulp evaluated in float32 (tests/test_fused.py::test_activation_accuracy).
template <class V>
HINN_HD V tanh_rational_f32(V z) {
  const V x = z > 9.0f ? splat<V>(9.0f) : (z < -9.0f ? splat<V>(-9.0f) : z);
  const V u = x * x * (1.0f / 81.0f);
  V p = splat<V>(-2.397601368e-02f);
  p = p * u + 1.840380759e-01f;
  p = p * u - 8.706505769e-01f;
  p = p * u + 5.927925947e+00f;
  p = p * u + 2.036514291e+01f;
  p = p * u + 1.059805790e+01f;
  p = p * u + 9.999999934e-01f;
  V q = splat<V>(1.353135902e+02f);
  q = q * u + 1.607132134e+02f;
  q = q * u + 3.759805286e+01f;
  q = q * u + 1.0f;
  const V t = x * p / q;
  return t > 1.0f ? splat<V>(1.0f) : (t < -1.0f ? splat<V>(-1.0f) : t);
}

template <class V>
HINN_HD V tanh_pack(V z) {
  using S = scalar_t<V>;
  if constexpr (sizeof(S) == 4) {
    return tanh_rational_f32(z);
  } else {
    // |z| and the sign put back as bits: one operation each where compares and blends took three
    using IV = typename int_lanes<V>::type;
    const IV sign = (IV)z & (IV)splat<V>(S(-0.0));
    const V a = (V)((IV)z ^ sign);
    const V e = expm1_nonpositive(S(-2) * a);  // tanh|z| = −expm1(−2|z|) / (2 + expm1(−2|z|))
    const V t = e / (S(-2) - e);
    return (V)((IV)t | sign);
  }
}

template <class V>
HINN_HD void act_pack(int act, V z, V& s, V& d1, V& d2) {
  using S = scalar_t<V>;
  if (act == kTanh) {
    s = tanh_pack(z);
    d1 = S(1) - s * s;
    d2 = S(-2) * s * d1;
    return;
  }
  softplus_pack(z, s, d1, d2);
}
#endif

template <class V>
HINN_HD void activate(int act, V z, V& s, V& d1, V& d2) {
  if constexpr (!std::is_same<V, base_t<V>>::value) {  // a block of registers (CPU only)
#if !defined(__CUDACC__)
#pragma GCC unroll 16
    for (int i = 0; i < int(sizeof(V) / sizeof(base_t<V>)); ++i) activate(act, z.v[i], s.v[i], d1.v[i], d2.v[i]);
#endif
  } else if constexpr (lanes<V>::n == 1) {
    act_scalar<V>(act, z, s, d1, d2);
  } else {
#if !defined(__CUDACC__)
    act_pack<V>(act, z, s, d1, d2);
#endif
  }
}

// out(k, σ(z_k), σ'(z_k), σ''(z_k)) for k = 0..w-1, the activation chosen once for the layer: with the
// branch outside the loop the outputs' evaluations are independent instruction streams that the compiler
// interleaves (inside it, each output's polynomial and division waited for the previous one).
template <class V, class ZP, class Out>
HINN_HD void activate_layer(int act, int w, ZP z, Out&& out) {
  if (act == kTanh) {
    for (int k = 0; k < w; ++k) {
      V s{}, d1{}, d2{};
      activate(kTanh, V(z[k]), s, d1, d2);
      out(k, s, d1, d2);
    }
  } else {
    for (int k = 0; k < w; ++k) {
      V s{}, d1{}, d2{};
      activate(act, V(z[k]), s, d1, d2);
      out(k, s, d1, d2);
    }
  }
}

}  // namespace hinn::HINN_ISA
