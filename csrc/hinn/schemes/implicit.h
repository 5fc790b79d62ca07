// The implicit schemes (src/hinn/implicit.py), symplectic for every smooth H, time-dependent included:
//   implicit_midpoint z̄ = z + h/2 f(t + h/2, z̄), z' = 2z̄ − z with f = (−∂qH, ∂pH), z = (p, q)
//   implicit_leapfrog p½ = p − h/2 ∂qH(t,p½,q); q' = q + h/2 [∂pH(t,p½,q) + ∂pH(t+h,p½,q')];
//                     p' = p½ − h/2 ∂qH(t+h,p½,q'): two solves of width d
// Newton per sample and the implicit function theorem's adjoint (newton.h).
#pragma once
#include <cmath>

#include "../newton.h"

namespace hinn::HINN_ISA {

struct ImplicitParams {
  static constexpr const char* kNames = "tol max_iter";
  double tol;     // 0: the default of the precision (newton.h: default_tol)
  long max_iter;  // Newton steps at most
  HINN_HD explicit ImplicitParams(const SchemeArgs& a) : tol(a.tol), max_iter(a.max_iter) {}
  static const char* check(const SchemeArgs& a) {
    if (!(std::isfinite(a.tol) && a.tol >= 0)) return "the solver tolerance must be >= 0 (0: the default)";
    if (!(a.max_iter >= 1 && a.max_iter <= 1000000)) return "the solver's max_iter must be in [1, 1e6]";
    return nullptr;
  }
  template <class S>
  HINN_HD S tolerance() const {
    return tol > 0 ? S(tol) : default_tol<S>();
  }
};

// What the implicit schemes share: their parameters, and that they solve (and may fail to converge).
struct ImplicitScheme {
  static constexpr int kStateMult = 1;
  static constexpr bool kSolves = true;
  using Params = ImplicitParams;
};

struct ImplicitMidpoint : ImplicitScheme {
  static constexpr int kStages = 1, kForwardStages = 1;
  template <class St>
  using Col = Collocation<1, St>;
  HINN_HD static long scratch(int d) { return 4L * d + collocation_scratch(1, d); }  // Z μ | solve

  template <class St, class P, class S>
  HINN_HD static Col<St> system(St& st, P sc, S h) {
    Col<St> col(st, sc + 4 * st.nd.d, 0, 2 * st.nd.d);
    col.a[0][0] = S(1);
    col.h = h / S(2);
    return col;
  }

  template <bool Keep, bool Out = true, class St, class P, class V, class S>
  HINN_PASS static void forward(St& st, const Params& prm, P sc, V t, S h, P p, P q) {
    const int d = st.nd.d;
    const S hh = h / S(2);
    P Z = sc;
    Col<St> col = system(st, sc, h);
    st.template grad<false>(0, t + hh, p, q, Z + d, Z);  // the guess Φ(z)
    for (int j = 0; j < d; ++j) {
      Z[j] = p[j] - hh * Z[j];
      Z[d + j] = q[j] + hh * Z[d + j];
    }
    const V tt[1] = {t + hh};
    col.solve(tt, p, q, Z, prm.template tolerance<S>(), prm.max_iter);
    for (int j = 0; j < d; ++j) {
      p[j] = S(2) * Z[j] - p[j];
      q[j] = S(2) * Z[d + j] - q[j];
    }
  }
  // z' = 2z̄ − z: z̄'s cotangent is 2ḡ, and the input's μ − ḡ
  template <class St, class P, class S, class Acc>
  HINN_PASS static void backward(St& st, const Params&, P sc, S h, P pb, P qb, Acc& acc) {
    const int d = st.nd.d;
    P mu = sc + 2 * d;
    Col<St> col = system(st, sc, h);
    for (int j = 0; j < d; ++j) {
      mu[j] = S(2) * pb[j];
      mu[d + j] = S(2) * qb[j];
      pb[j] = -pb[j];
      qb[j] = -qb[j];
    }
    col.backward(mu, pb, qb, acc);
    for (int j = 0; j < d; ++j) {
      pb[j] += mu[j];
      qb[j] += mu[d + j];
    }
  }
};

struct ImplicitLeapfrog : ImplicitScheme {
  static constexpr int kStages = 2, kForwardStages = 1;
  template <class St>
  using Col = Collocation<1, St>;
  // Z = (p½ | q') | C (the q' equation's constant in its q half) | p½'s and q''s cotangents | solve
  HINN_HD static long scratch(int d) { return 6L * d + collocation_scratch(1, d); }

  // the p½ equation (stage 0) or the q' equation (stage k1)
  template <class St, class P, class S>
  HINN_HD static Col<St> system(St& st, P sc, S h, bool second, int k1) {
    const int d = st.nd.d;
    Col<St> col(st, sc + 6 * d, second ? d : 0, second ? 2 * d : d, second ? k1 : 0);
    col.a[0][0] = S(1);
    col.h = h / S(2);
    return col;
  }

  template <bool Keep, bool Out = true, class St, class P, class V, class S>
  HINN_PASS static void forward(St& st, const Params& prm, P sc, V t, S h, P p, P q) {
    using CP = typename St::CPtr;
    const int d = st.nd.d;
    const S hh = h / S(2);
    P Z = sc;
    P C = sc + 2 * d;
    const S tol = prm.template tolerance<S>();
    Col<St> c1 = system(st, sc, h, false, 0);
    st.template grad<false>(0, t, p, q, Z + d, Z);  // the guess Φ(p)
    for (int j = 0; j < d; ++j) {
      Z[j] = p[j] - hh * Z[j];
      Z[d + j] = q[j];
    }
    const V t0[1] = {t}, t1[1] = {t + h};
    c1.solve(t0, p, CP{}, Z, tol, prm.max_iter);  // p½ = p − h/2 ∂qH(t, p½, q)
    for (int j = 0; j < d; ++j) {
      const V gp0 = c1.F[d + j];  // ∂pH(t, p½, q)
      C[d + j] = q[j] + hh * gp0;
      Z[d + j] = q[j] + h * gp0;
    }
    Col<St> c2 = system(st, sc, h, true, Keep ? 1 : 0);
    c2.solve(t1, CP{}, C + d, Z, tol, prm.max_iter);  // q' = C + h/2 ∂pH(t+h, p½, q')
    for (int j = 0; j < d; ++j) {
      p[j] = Z[j] + hh * c2.F[j];  // F's p half: −∂qH(t+h, p½, q')
      q[j] = Z[d + j];
    }
  }
  template <class St, class P, class S, class Acc>
  HINN_PASS static void backward(St& st, const Params&, P sc, S h, P pb, P qb, Acc& acc) {
    using CP = typename St::CPtr;
    const int d = st.nd.d;
    const S hh = h / S(2);
    P ab = sc;         // d: a vjp's cotangent
    P mu = sc + d;     // d
    P phb = sc + 4 * d;  // p½'s cotangent
    P q1b = sc + 5 * d;  // q''s cotangent
    for (int j = 0; j < d; ++j) {
      phb[j] = pb[j];
      q1b[j] = qb[j];
      ab[j] = -hh * pb[j];
    }
    st.vjp(1, CP{}, ab, phb, q1b, acc);  // p' = p½ − h/2 ∂qH(t+h, p½, q')
    for (int j = 0; j < d; ++j) mu[j] = q1b[j];
    system(st, sc, h, true, 1).backward(mu, phb, q1b, acc);  // q' = C + h/2 ∂pH(t+h, p½, q'): μ is C's
    for (int j = 0; j < d; ++j) {
      qb[j] = mu[j];
      ab[j] = hh * mu[j];  // C = q + h/2 ∂pH(t, p½, q)
    }
    st.vjp(0, ab, CP{}, phb, qb, acc);
    for (int j = 0; j < d; ++j) mu[j] = phb[j];
    system(st, sc, h, false, 0).backward(mu, pb, qb, acc);  // p½ = p − h/2 ∂qH(t, p½, q): μ is p's
    for (int j = 0; j < d; ++j) pb[j] = mu[j];
  }
};

}  // namespace hinn::HINN_ISA
