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
// One 256-bit register of samples: 8 floats or 4 doubles. (64-byte GCC vectors, lowered to two AVX2
// registers, ran 3.6-5x slower: GCC moves their halves through the stack.)
typedef float f8v __attribute__((vector_size(32)));
typedef double d4v __attribute__((vector_size(32)));
template <>
struct lanes<f8v> {
  using scalar = float;
  static constexpr int n = 8;
};
template <>
struct lanes<d4v> {
  using scalar = double;
  static constexpr int n = 4;
};
#endif

template <class V>
using scalar_t = typename lanes<V>::scalar;

template <class V, class S>
HINN_HD V splat(S s) {
  return V{} + static_cast<scalar_t<V>>(s);
}

}  // namespace hinn
