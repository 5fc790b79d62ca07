// Gauss–Legendre collocation with two stages (src/hinn/implicit.py: Gauss4): order 4, symplectic and
// symmetric for every smooth H, time-dependent included; the implicit midpoint rule is its one-stage
// member. With f = (−∂qH, ∂pH) and z = (p, q):
//   Z_i = z + h Σ_j a_ij f(t + c_j h, Z_j) (i = 1, 2),   z' = z + h/2 [f(t + c_1 h, Z_1) + f(t + c_2 h, Z_2)]
//   c = 1/2 ∓ √3/6,  a = [[1/4, 1/4 − √3/6], [1/4 + √3/6, 1/4]]
// The stage system (4d unknowns) is solved by Newton per sample from Z_i = z + c_i h f(t, z) (newton.h).
#pragma once
#include "implicit.h"

namespace hinn::HINN_ISA {

struct Gauss4 : ImplicitScheme {
  static constexpr int kStages = 2, kForwardStages = 2;
  template <class St>
  using Col = Collocation<2, St>;
  // Z (2 × 2d) | μ (2 × 2d) | the cotangents on ∇H (2d) | solve
  HINN_HD static long scratch(int d) { return 10L * d + collocation_scratch(2, d); }

  template <class S>
  struct Tableau {
    S c[2], a[2][2];
    HINN_HD Tableau() {
      const double r = 0.28867513459481288225;  // √3/6
      c[0] = S(0.5 - r), c[1] = S(0.5 + r);
      a[0][0] = S(0.25), a[0][1] = S(0.25 - r), a[1][0] = S(0.25 + r), a[1][1] = S(0.25);
    }
  };
  template <class St, class P, class S>
  HINN_HD static Col<St> system(St& st, P sc, S h) {
    Col<St> col(st, sc + 10 * st.nd.d, 0, 2 * st.nd.d);
    const Tableau<S> tb;
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) col.a[i][j] = tb.a[i][j];
    col.h = h;
    return col;
  }

  template <bool Keep, bool Out = true, class St, class P, class V, class S>
  HINN_PASS static void forward(St& st, const Params& prm, P sc, V t, S h, P p, P q) {
    const int d = st.nd.d;
    const Tableau<S> tb;
    P Z = sc;
    Col<St> col = system(st, sc, h);
    st.template grad<false>(0, t, p, q, col.F + d, col.F);  // ∇H at z: the guess
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < d; ++j) {
        Z[2 * i * d + j] = p[j] - tb.c[i] * h * col.F[j];
        Z[2 * i * d + d + j] = q[j] + tb.c[i] * h * col.F[d + j];
      }
    const V tt[2] = {t + tb.c[0] * h, t + tb.c[1] * h};
    col.solve(tt, p, q, Z, prm.template tolerance<S>(), prm.max_iter);
    const S hb = h / S(2);
    for (int j = 0; j < d; ++j) {
      p[j] += hb * (col.F[j] + col.F[2 * d + j]);
      q[j] += hb * (col.F[d + j] + col.F[3 * d + j]);
    }
  }
  // z̄' reaches z directly, and through each f(Z_j): its vjp gives Z̄_j (and θ's direct part), the
  // stage system's adjoint turns Z̄ into μ, the cotangent of z in both equations.
  template <class St, class P, class S, class Acc>
  HINN_PASS static void backward(St& st, const Params&, P sc, S h, P pb, P qb, Acc& acc) {
    using V = typename St::V;
    const int d = st.nd.d;
    P mu = sc + 4 * d;
    P cp = sc + 8 * d;  // on ∂pH: f's q half
    P cq = sc + 9 * d;  // on ∂qH: minus f's p half
    const S hb = h / S(2);
    for (int j = 0; j < d; ++j) {
      cp[j] = hb * qb[j];
      cq[j] = -hb * pb[j];
    }
    for (int i = 0; i < 4 * d; ++i) mu[i] = V{};
    for (int k = 0; k < 2; ++k) st.vjp(k, cp, cq, mu + 2 * k * d, mu + 2 * k * d + d, acc);
    system(st, sc, h).backward(mu, pb, qb, acc);
    for (int j = 0; j < d; ++j) {
      pb[j] += mu[j] + mu[2 * d + j];
      qb[j] += mu[d + j] + mu[3 * d + j];
    }
  }
};

}  // namespace hinn::HINN_ISA
