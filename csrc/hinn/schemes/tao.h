// Tao's explicit scheme (src/hinn/tao.py) of order 2 (one jump) and 4 (the triple jump γ, 1 − 2γ, γ with
// γ = 1/(2 − 2^{1/3})), on the extended state P = (p | y), Q = (q | x): width 2d; the copies (x, y) of
// (q, p) start on the diagonal (the drivers' lift_state) and the cotangents of both copies add up at the
// start (fold_cotangent).
#pragma once
#include <cmath>

#include "explicit.h"

namespace hinn::HINN_ISA {

struct TaoParams {
  static constexpr const char* kNames = "omega";
  double omega;  // the coupling of the copies
  HINN_HD explicit TaoParams(const SchemeArgs& a) : omega(a.omega) {}
  static const char* check(const SchemeArgs& a) {
    return std::isfinite(a.omega) && a.omega > 0 ? nullptr : "Tao's scheme needs a finite coupling omega > 0";
  }
};

// Jumps: order-2 steps per step (1, or 3 for the triple jump of order 4).
template <int Jumps>
struct Tao : ExplicitScheme {
  static constexpr int kStages = 4 * Jumps, kStateMult = 2;
  using Params = TaoParams;

  // Size and start of the order-2 step b within a step, as fractions of h.
  HINN_HD static double fraction(int b) {
    if (Jumps == 1) return 1.0;
    const double g = 1.0 / (2.0 - cbrt(2.0));
    return b == 1 ? 1.0 - 2.0 * g : g;
  }
  HINN_HD static double offset(int b) {
    if (Jumps == 1) return 0.0;
    const double g = 1.0 / (2.0 - cbrt(2.0));
    return b == 0 ? 0.0 : b == 1 ? g : 1.0 - g;
  }

  // φ_A for a time δ: H(q, y) moves p and x (gradient at (t, y, q), kept in stage k)
  template <bool Keep, bool Out = true, class St, class P, class V, class S>
  HINN_HDI static void flow_a(St& st, GradPair<P>& w, int k, V t, S delta, P Pp, P Q) {
    const int d = st.nd.d;
    st.template grad<Keep, Out>(k, t, Pp + d, Q, w.gp, w.gq);
    if (Out)
      for (int j = 0; j < d; ++j) {
        Pp[j] -= delta * w.gq[j];
        Q[d + j] += delta * w.gp[j];
      }
  }
  // φ_B for a time δ: H(x, p) moves q and y
  template <bool Keep, class St, class P, class V, class S>
  HINN_HDI static void flow_b(St& st, GradPair<P>& w, int k, V t, S delta, P Pp, P Q) {
    const int d = st.nd.d;
    st.template grad<Keep>(k, t, Pp, Q + d, w.gp, w.gq);
    for (int j = 0; j < d; ++j) {
      Q[j] += delta * w.gp[j];
      Pp[d + j] -= delta * w.gq[j];
    }
  }
  // φ_C: (q − x, p − y) rotated by `angle`, q + x and p + y fixed. Orthogonal, so its adjoint is the
  // rotation by −angle applied to the cotangents.
  template <class P>
  HINN_HD static void rotate(int d, P Pp, P Q, double angle) {
    using V = elem_t<P>;
    using S = scalar_t<V>;
    const S c = S(cos(angle)), sn = S(sin(angle));
    for (int j = 0; j < d; ++j) {
      const int e = d + j;
      const V u = Q[j] - Q[e], v = Pp[j] - Pp[e], sq = Q[j] + Q[e], sp = Pp[j] + Pp[e];
      const V u2 = c * u + sn * v, v2 = -sn * u + c * v;
      Pp[j] = (sp + v2) / S(2);
      Q[j] = (sq + u2) / S(2);
      Q[e] = (sq - u2) / S(2);
      Pp[e] = (sp - v2) / S(2);
    }
  }

  template <bool Keep, bool Out = true, class St, class P, class V, class S>
  HINN_PASS static void forward(St& st, const Params& prm, P sc, V t, S h, P p, P q) {
    GradPair<P> w(sc, st.nd.d);
    for (int b = 0; b < Jumps; ++b) {
      const S dl = S(fraction(b)) * h, half = dl / S(2);
      const V tb = t + S(offset(b)) * h;
      const int k = Keep ? 4 * b : 0;
      flow_a<Keep>(st, w, k, tb, half, p, q);
      flow_b<Keep>(st, w, Keep ? k + 1 : 0, tb + half, half, p, q);
      rotate(st.nd.d, p, q, 2.0 * prm.omega * double(dl));
      flow_b<Keep>(st, w, Keep ? k + 2 : 0, tb + half, half, p, q);
      if (b < Jumps - 1) flow_a<Keep>(st, w, Keep ? k + 3 : 0, tb + dl, half, p, q);
      else flow_a<Keep, Out>(st, w, Keep ? k + 3 : 0, tb + dl, half, p, q);
    }
  }

  // The flows' adjoints at stage k's point, in place on the cotangents (PB, QB): p' = p − δ ∂qH(y, q),
  // x' = x + δ ∂pH(y, q) send their cotangents to (ȳ, q̄); φ_B's to (p̄, x̄).
  template <class St, class P, class S, class Acc>
  HINN_HDI static void vjp_a(St& st, GradPair<P>& w, int k, S delta, P PB, P QB, Acc& acc) {
    const int d = st.nd.d;
    for (int j = 0; j < d; ++j) {
      w.a[j] = delta * QB[d + j];
      w.b[j] = -delta * PB[j];
    }
    st.vjp(k, w.a, w.b, PB + d, QB, acc);
  }
  template <class St, class P, class S, class Acc>
  HINN_HDI static void vjp_b(St& st, GradPair<P>& w, int k, S delta, P PB, P QB, Acc& acc) {
    const int d = st.nd.d;
    for (int j = 0; j < d; ++j) {
      w.a[j] = delta * QB[j];
      w.b[j] = -delta * PB[d + j];
    }
    st.vjp(k, w.a, w.b, PB, QB + d, acc);
  }

  template <class St, class P, class S, class Acc>
  HINN_PASS static void backward(St& st, const Params& prm, P sc, S h, P pb, P qb, Acc& acc) {
    GradPair<P> w(sc, st.nd.d);
    for (int b = Jumps - 1; b >= 0; --b) {
      const S dl = S(fraction(b)) * h, half = dl / S(2);
      const int k = 4 * b;
      vjp_a(st, w, k + 3, half, pb, qb, acc);
      vjp_b(st, w, k + 2, half, pb, qb, acc);
      rotate(st.nd.d, pb, qb, -2.0 * prm.omega * double(dl));
      vjp_b(st, w, k + 1, half, pb, qb, acc);
      vjp_a(st, w, k, half, pb, qb, acc);
    }
  }
};

}  // namespace hinn::HINN_ISA
