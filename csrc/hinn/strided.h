// Where a sample's scratch lives. The per-sample math (network.h, integrators.h) indexes its scratch
// through a pointer-like type P: a plain `V*` on the CPU (one block of samples owns a contiguous
// buffer), or a Strided<V> on CUDA, where element i of thread `tid` is base[i * nthreads + tid], so that
// the threads of a warp reading "their" element i touch consecutive addresses (coalesced), and the
// scratch of every thread together is one dense array that the caller sizes and allocates.
#pragma once
#include <type_traits>
#include <utility>

#include "lanes.h"

namespace hinn::HINN_ISA {

template <class V>
struct Strided {
  V* base = nullptr;
  long stride = 1;

  HINN_HD V& operator[](long i) const { return base[i * stride]; }
  HINN_HD Strided operator+(long i) const { return {base + i * stride, stride}; }
  HINN_HD explicit operator bool() const { return base != nullptr; }
  template <class U, class = std::enable_if_t<std::is_same<U, const V>::value && !std::is_const<V>::value>>
  HINN_HD operator Strided<U>() const {
    return {base, stride};
  }
};

// The element type behind a pointer-like P (V for V*, const V*, Strided<V>, Strided<const V>).
template <class P>
using elem_t = std::remove_cv_t<std::remove_reference_t<decltype(std::declval<P>()[0])>>;

// The read-only view of a pointer-like type.
template <class P>
struct cview;
template <class V>
struct cview<V*> {
  using type = const V*;
};
template <class V>
struct cview<Strided<V>> {
  using type = Strided<const V>;
};
template <class P>
using cview_t = typename cview<P>::type;

// A plain local array seen through the same pointer-like type as P (stride 1), so that code written for
// P can also work on arrays held in registers.
template <class V>
HINN_HD V* as_like(V*, V* raw) {
  return raw;
}
template <class V>
HINN_HD Strided<V> as_like(Strided<V>, V* raw) {
  return {raw, 1};
}

}  // namespace hinn::HINN_ISA
