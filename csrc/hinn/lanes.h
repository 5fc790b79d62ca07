// Lane types: the per-sample math is written once over a "lane value" V, which is a plain float/double
// (one CUDA thread = one sample) or a GCC vector of several samples (CPU: samples across SIMD lanes).
#pragma once
#include <cmath>

#include "hd.h"

namespace hinn::HINN_ISA {

template <class V>
struct lanes {
  using scalar = V;
  static constexpr int n = 1;
};

#if !defined(__CUDACC__)
// One vector register of samples: 512 bits (16 floats, 8 doubles) when compiled for AVX-512, else 256.
// On Zen 4 a 512-bit operation runs as two 256-bit halves in flight, which hides the latency of the
// narrow network's short dependency chains: 1.7-1.8x over 256-bit code (benchmarks/RESULTS.md).
// (64-byte vectors without AVX-512 ran 3.6-5x slower: GCC moves their halves through the stack.)
// Without AVX (the baseline x86-64 build, other architectures) one 128-bit register.
#if defined(__AVX512F__)
#define HINN_VEC_BYTES 64
#elif defined(__AVX__)
#define HINN_VEC_BYTES 32
#else
#define HINN_VEC_BYTES 16
#endif
typedef float fvec __attribute__((vector_size(HINN_VEC_BYTES)));
typedef double dvec __attribute__((vector_size(HINN_VEC_BYTES)));
template <>
struct lanes<fvec> {
  using scalar = float;
  static constexpr int n = HINN_VEC_BYTES / 4;
};
template <>
struct lanes<dvec> {
  using scalar = double;
  static constexpr int n = HINN_VEC_BYTES / 8;
};
#endif

#if !defined(__CUDACC__)
// NB vector registers of samples handled as one lane value. Wide networks spend their time in
// matrix–vector products: a block lets each broadcast weight feed NB independent FMA chains (instead of
// one latency-bound chain) and lets the parameter cotangents be summed over NB·n samples in registers
// before they touch memory. A struct of vectors, not a longer GCC vector: GCC lowers vectors wider than
// the hardware's through the stack.
template <class B, int NB>
struct vblock {
  B v[NB];
};
template <class B, int NB>
struct lanes<vblock<B, NB>> {
  using scalar = typename lanes<B>::scalar;
  using base = B;
  static constexpr int n = NB * lanes<B>::n;
};

#define HINN_BLOCK_OP(OP)                                                                  \
  template <class B, int NB>                                                               \
  HINN_HD vblock<B, NB> operator OP(const vblock<B, NB>& a, const vblock<B, NB>& b) {      \
    vblock<B, NB> r;                                                                       \
    _Pragma("GCC unroll 16") for (int i = 0; i < NB; ++i) r.v[i] = a.v[i] OP b.v[i];       \
    return r;                                                                              \
  }                                                                                        \
  template <class B, int NB>                                                               \
  HINN_HD vblock<B, NB> operator OP(const vblock<B, NB>& a, typename lanes<B>::scalar s) { \
    vblock<B, NB> r;                                                                       \
    _Pragma("GCC unroll 16") for (int i = 0; i < NB; ++i) r.v[i] = a.v[i] OP s;            \
    return r;                                                                              \
  }                                                                                        \
  template <class B, int NB>                                                               \
  HINN_HD vblock<B, NB> operator OP(typename lanes<B>::scalar s, const vblock<B, NB>& a) { \
    vblock<B, NB> r;                                                                       \
    _Pragma("GCC unroll 16") for (int i = 0; i < NB; ++i) r.v[i] = s OP a.v[i];            \
    return r;                                                                              \
  }                                                                                        \
  template <class B, int NB, class X>                                                      \
  HINN_HD vblock<B, NB>& operator OP##=(vblock<B, NB>& a, const X& b) {                    \
    a = a OP b;                                                                            \
    return a;                                                                              \
  }
HINN_BLOCK_OP(+)
HINN_BLOCK_OP(-)
HINN_BLOCK_OP(*)
HINN_BLOCK_OP(/)
#undef HINN_BLOCK_OP

template <class B, int NB>
HINN_HD vblock<B, NB> operator-(const vblock<B, NB>& a) {
  vblock<B, NB> r;
#pragma GCC unroll 16
  for (int i = 0; i < NB; ++i) r.v[i] = -a.v[i];
  return r;
}
#endif

template <class V>
using scalar_t = typename lanes<V>::scalar;

// The register a lane value reduces to (itself, or a block's vector type) and the reduction: parameter
// cotangents are kept per register lane, so a block first sums its NB vectors.
template <class V>
struct base_of {
  using type = V;
};
#if !defined(__CUDACC__)
template <class B, int NB>
struct base_of<vblock<B, NB>> {
  using type = B;
};
#endif
template <class V>
using base_t = typename base_of<V>::type;

template <class V>
HINN_HD base_t<V> fold(const V& v) {
  return v;
}
#if !defined(__CUDACC__)
template <class B, int NB>
HINN_HD B fold(const vblock<B, NB>& a) {
  B r = a.v[0];
#pragma GCC unroll 16
  for (int i = 1; i < NB; ++i) r += a.v[i];
  return r;
}
#endif

// Lane l of a value (the value itself for scalars), readable and writable.
template <class V>
HINN_HD scalar_t<V>& lane(V& v, int l) {
  if constexpr (lanes<V>::n == 1) {
    (void)l;
    return v;
  } else {
    return reinterpret_cast<scalar_t<V>*>(&v)[l];
  }
}
template <class V>
HINN_HD scalar_t<V> lane(const V& v, int l) {
  if constexpr (lanes<V>::n == 1) {
    (void)l;
    return v;
  } else {
    return reinterpret_cast<const scalar_t<V>*>(&v)[l];
  }
}

// z0 += x k0, z1 += x k1: two outputs of a matrix–vector sweep from one input. For a block, register by
// register, each loaded register held for its two FMAs: GCC otherwise folds the block's loads into the
// FMAs and repeats them for the second output, and a 256-bit block's sweep is then bound by the two
// loads a cycle the core serves instead of by its two FMA pipes (benchmarks/RESULTS.md).
template <class V, class S>
HINN_HD void madd2(V& z0, V& z1, const V& x, S k0, S k1) {
  z0 += x * k0;
  z1 += x * k1;
}
#if !defined(__CUDACC__)
template <class B, int NB, class S>
HINN_HD void madd2(vblock<B, NB>& z0, vblock<B, NB>& z1, const vblock<B, NB>& x, S k0, S k1) {
#pragma GCC unroll 16
  for (int r = 0; r < NB; ++r) {
    B xr = x.v[r];
    asm("" : "+x"(xr));  // in a register: not re-read from memory for the second FMA
    z0.v[r] += xr * k0;
    z1.v[r] += xr * k1;
  }
}
#endif

// s − (+0) is s for every s, −0 included (s + 0 would turn −0 into +0 and break sign masks); the
// compiler folds the subtraction away.
template <class V, class S>
HINN_HD V splat(S s) {
  return static_cast<scalar_t<V>>(s) - V{};
}

}  // namespace hinn::HINN_ISA
