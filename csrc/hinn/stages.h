// What every scheme's step shares: gradient evaluations of the network that keep their primal passes
// ("stages"), and the vector–Jacobian products of ∇H at a kept stage. A scheme (schemes/*.h) is written
// over this helper and its own small scratch; nothing else of the network reaches it.
#pragma once
#include <cstdint>

#include "network.h"

namespace hinn::HINN_ISA {

// Parameter cotangents nobody wants (the Newton matrix's vector–Jacobian products).
struct NoAcc {
  template <class I, class X>
  HINN_HD void operator()(I, const X&) const {}
};

// A failed solve, from any thread: the call's status flag becomes non-zero.
HINN_HD void report_failure(std::uintptr_t status) {
#if defined(__CUDA_ARCH__)
  atomicOr(reinterpret_cast<int*>(status), 1);
#else
  __atomic_store_n(reinterpret_cast<int*>(status), 1, __ATOMIC_RELAXED);
#endif
}

// Scratch of Stages with room for `stages` kept passes, in lane values.
HINN_HD long stages_scratch(const NetDesc& nd, int stages) {
  return 4L * nd.n_in() + work_size(nd) + (long)stages * primal_size(nd);
}

// W: the width at compile time (0: nd.width); V: the lane type; Ptr: how the scratch is addressed
// (strided.h); the states a scheme passes in are of the same kind.
template <int W, class V_, class Ptr_>
struct Stages {
  using V = V_;
  using S = scalar_t<V>;
  using Ptr = Ptr_;
  using CPtr = cview_t<Ptr>;
  const NetDesc& nd;
  const S* th;
  Ptr x;     // n_in
  Ptr g;     // n_in
  Ptr v;     // n_in
  Ptr xb;    // n_in
  Ptr work;  // work_size
  Ptr prim;  // the kept passes, primal_size each
  bool failed = false;    // a solve of this lane value did not converge (the driver reports it)
  unsigned adjoints = 0;  // bit k: stage k's pass holds its gradient sweep's adjoints

  HINN_HD Stages(const NetDesc& nd_, const S* th_, Ptr scratch) : nd(nd_), th(th_) {
    const int n = nd.n_in();
    x = scratch;
    g = x + n;
    v = g + n;
    xb = v + n;
    work = xb + n;
    prim = work + work_size(nd);
  }

  HINN_HD Ptr stage(int k) { return prim + k * primal_size(nd); }

  HINN_HD void load_x(V t, CPtr p, CPtr q) {
    const int d = nd.d, o = nd.time;
    if (o) x[0] = t;
    for (int j = 0; j < d; ++j) {
      x[o + j] = p[j];
      x[o + d + j] = q[j];
    }
  }
  // H at (t, p, q), its primal pass kept in stage k (Full: everything a vjp needs)
  template <bool Full = true>
  HINN_HDI V store(int k, V t, CPtr p, CPtr q) {
    load_x(t, p, q);
    adjoints &= ~(1u << k);
    return primal<W, Full>(nd, th, x, stage(k));
  }
  // gp = ∂pH, gq = ∂qH at (t, p, q), the pass kept in stage k (Full: with its adjoints, for a later vjp).
  // Without Sweep only the pass is kept (gp, gq untouched): a recomputed step's last evaluation, whose
  // gradient only its output needs.
  template <bool Full = true, bool Sweep = true>
  HINN_PASS void grad(int k, V t, CPtr p, CPtr q, Ptr gp, Ptr gq) {
    load_x(t, p, q);
    adjoints &= ~(1u << k);
    if (!Sweep) {
      primal<W, Full, false>(nd, th, x, stage(k));
      return;
    }
    value_and_grad<W, Full, false>(nd, th, x, stage(k), g, work, Full);
    if (Full) adjoints |= 1u << k;
    const int d = nd.d, o = nd.time;
    for (int j = 0; j < d; ++j) {
      gp[j] = g[o + j];
      gq[j] = g[o + d + j];
    }
  }
  // pb += ∂/∂p, qb += ∂/∂q of (vp·∂pH + vq·∂qH) at stage k's point (vp or vq null: zero); the
  // parameters' part to acc.
  template <class Acc>
  HINN_PASS void vjp(int k, CPtr vp, CPtr vq, Ptr pb, Ptr qb, Acc& acc) {
    const int d = nd.d, o = nd.time, n = nd.n_in();
    for (int i = 0; i < n; ++i) {
      v[i] = V{};
      xb[i] = V{};
    }
    for (int j = 0; j < d; ++j) {
      if (vp) v[o + j] = vp[j];
      if (vq) v[o + d + j] = vq[j];
    }
    vjp_from_primal<W>(nd, th, stage(k), v, V{}, xb, acc, work, ((adjoints >> k) & 1u) != 0);
    for (int j = 0; j < d; ++j) {
      pb[j] += xb[o + j];
      qb[j] += xb[o + d + j];
    }
  }
};

// Named pieces of a scheme's scratch, each `n` lane values, carved in order from one pointer.
template <class Ptr>
struct Carve {
  Ptr at;
  HINN_HD Ptr operator()(long n) {
    Ptr r = at;
    at = at + n;
    return r;
  }
};

}  // namespace hinn::HINN_ISA
