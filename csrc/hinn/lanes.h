// Lane types: the per-sample math is written once over a "lane value" V, which is a plain float/double
// (one CUDA thread = one sample) or a GCC vector of several samples (CPU: samples across SIMD lanes).
#pragma once
#include <cmath>

#if defined(__CUDACC__)
#define HINN_HD __host__ __device__ __forceinline__
#else
#define HINN_HD inline __attribute__((always_inline))
#endif

namespace hinn {

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

template <class V>
using scalar_t = typename lanes<V>::scalar;

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
    return v[l];
  }
}

template <class V, class S>
HINN_HD V splat(S s) {
  return V{} + static_cast<scalar_t<V>>(s);
}

}  // namespace hinn
