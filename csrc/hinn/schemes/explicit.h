// The explicit schemes (src/hinn/integrators.py). Sign convention: dq/dt = ∂H/∂p, dp/dt = −∂H/∂q.
//   euler             q' = q + h ∂pH(t,p,q);  p' = p − h ∂qH(t,p,q)
//   symplectic_euler  p' = p − h ∂qH(t,p,q);  q' = q + h ∂pH(t,p',q)
//   leapfrog          p½ = p − h/2 ∂qH(t,p,q); q' = q + h ∂pH(t+h/2,p½,q); p' = p½ − h/2 ∂qH(t+h,p½,q')
//   rk4               classical Runge–Kutta on (ṗ, q̇) = (−∂qH, ∂pH)
// Each backward applies the vector–Jacobian products of ∇H at the stages its forward<true> kept, in
// reverse order. The interface every scheme follows is in schemes.h; without Out (a reverse sweep's
// recomputation) the last gradient evaluation keeps its pass only and the output is not formed.
#pragma once
#include "../stages.h"

namespace hinn::HINN_ISA {

// No parameters.
struct NoParams {
  static constexpr const char* kNames = "";  // the SchemeArgs fields read, as the Python layer names them
  HINN_HD explicit NoParams(const SchemeArgs&) {}
  static const char* check(const SchemeArgs&) { return nullptr; }
};

// gp, gq (∇H at the last evaluation) and a, b (the cotangents sent into a vjp): what the one- to
// three-stage schemes need beside their stages.
template <class P>
struct GradPair {
  P gp, gq, a, b;
  HINN_HD static long size(int d) { return 4L * d; }
  HINN_HD GradPair(P sc, int d) : gp(sc), gq(sc + d), a(sc + 2 * d), b(sc + 3 * d) {}
};

// What the explicit schemes of (p, q) share: no parameters, one pass reused by forward<false>, and
// GradPair as their scratch.
struct ExplicitScheme {
  static constexpr int kForwardStages = 1, kStateMult = 1;
  static constexpr bool kSolves = false;
  using Params = NoParams;
  HINN_HD static long scratch(int d) { return GradPair<int*>::size(d); }
};

struct Euler : ExplicitScheme {
  static constexpr int kStages = 1;

  template <bool Keep, bool Out = true, class St, class P, class V, class S>
  HINN_PASS static void forward(St& st, const Params&, P sc, V t, S h, P p, P q) {
    const int d = st.nd.d;
    GradPair<P> w(sc, d);
    st.template grad<Keep, Out>(0, t, p, q, w.gp, w.gq);
    if (Out)
      for (int j = 0; j < d; ++j) {
        q[j] += h * w.gp[j];
        p[j] -= h * w.gq[j];
      }
  }
  template <class St, class P, class S, class Acc>
  HINN_PASS static void backward(St& st, const Params&, P sc, S h, P pb, P qb, Acc& acc) {
    const int d = st.nd.d;
    GradPair<P> w(sc, d);
    for (int j = 0; j < d; ++j) {
      w.a[j] = h * qb[j];
      w.b[j] = -h * pb[j];
    }
    st.vjp(0, w.a, w.b, pb, qb, acc);
  }
};

struct SymplecticEuler : ExplicitScheme {
  static constexpr int kStages = 2;

  template <bool Keep, bool Out = true, class St, class P, class V, class S>
  HINN_PASS static void forward(St& st, const Params&, P sc, V t, S h, P p, P q) {
    const int d = st.nd.d;
    GradPair<P> w(sc, d);
    st.template grad<Keep>(0, t, p, q, w.gp, w.gq);
    for (int j = 0; j < d; ++j) p[j] -= h * w.gq[j];
    st.template grad<Keep, Out>(Keep ? 1 : 0, t, p, q, w.gp, w.gq);
    if (Out)
      for (int j = 0; j < d; ++j) q[j] += h * w.gp[j];
  }
  template <class St, class P, class S, class Acc>
  HINN_PASS static void backward(St& st, const Params&, P sc, S h, P pb, P qb, Acc& acc) {
    using CP = typename St::CPtr;
    const int d = st.nd.d;
    GradPair<P> w(sc, d);
    for (int j = 0; j < d; ++j) w.a[j] = h * qb[j];
    st.vjp(1, w.a, CP{}, pb, qb, acc);  // q' = q + h ∂pH(t, p', q)
    for (int j = 0; j < d; ++j) w.b[j] = -h * pb[j];
    st.vjp(0, CP{}, w.b, pb, qb, acc);  // p' = p − h ∂qH(t, p, q)
  }
};

struct Leapfrog : ExplicitScheme {
  static constexpr int kStages = 3;

  template <bool Keep, bool Out = true, class St, class P, class V, class S>
  HINN_PASS static void forward(St& st, const Params&, P sc, V t, S h, P p, P q) {
    const int d = st.nd.d;
    const S hh = h / S(2);
    GradPair<P> w(sc, d);
    st.template grad<Keep>(0, t, p, q, w.gp, w.gq);
    for (int j = 0; j < d; ++j) p[j] -= hh * w.gq[j];
    st.template grad<Keep>(Keep ? 1 : 0, t + hh, p, q, w.gp, w.gq);
    for (int j = 0; j < d; ++j) q[j] += h * w.gp[j];
    st.template grad<Keep, Out>(Keep ? 2 : 0, t + h, p, q, w.gp, w.gq);
    if (Out)
      for (int j = 0; j < d; ++j) p[j] -= hh * w.gq[j];
  }
  template <class St, class P, class S, class Acc>
  HINN_PASS static void backward(St& st, const Params&, P sc, S h, P pb, P qb, Acc& acc) {
    using CP = typename St::CPtr;
    const int d = st.nd.d;
    const S hh = h / S(2);
    GradPair<P> w(sc, d);
    for (int j = 0; j < d; ++j) w.b[j] = -hh * pb[j];
    st.vjp(2, CP{}, w.b, pb, qb, acc);  // p' = p½ − h/2 ∂qH(t+h, p½, q')
    for (int j = 0; j < d; ++j) w.a[j] = h * qb[j];
    st.vjp(1, w.a, CP{}, pb, qb, acc);  // q' = q + h ∂pH(t+h/2, p½, q)
    for (int j = 0; j < d; ++j) w.b[j] = -hh * pb[j];
    st.vjp(0, CP{}, w.b, pb, qb, acc);  // p½ = p − h/2 ∂qH(t, p, q)
  }
};

struct RK4 : ExplicitScheme {
  static constexpr int kStages = 4;
  template <class P>
  struct Scratch {
    P gp, gq, a, b;
    P ap, aq;  // the accumulated increment (forward)
    P yp, yq;  // the stage point (forward)
    P ybp, ybq, tp, tq;  // ȳ of the later stage point; the input's cotangent gathered over the stages
    HINN_HD static long size(int d) { return 12L * d; }
    HINN_HD Scratch(P sc, int d) {
      Carve<P> c{sc};
      gp = c(d), gq = c(d), a = c(d), b = c(d), ap = c(d), aq = c(d);
      yp = c(d), yq = c(d), ybp = c(d), ybq = c(d), tp = c(d), tq = c(d);
    }
  };
  HINN_HD static long scratch(int d) { return Scratch<int*>::size(d); }
  template <class S>
  struct Tableau {
    S c[4], w[4];
    HINN_HD explicit Tableau(S h) : c{S(0), h / S(2), h / S(2), h}, w{h / S(6), h / S(3), h / S(3), h / S(6)} {}
  };

  template <bool Keep, bool Out = true, class St, class P, class V, class S>
  HINN_PASS static void forward(St& st, const Params&, P sc, V t, S h, P p, P q) {
    const int d = st.nd.d;
    Scratch<P> w(sc, d);
    const Tableau<S> tb(h);
    for (int j = 0; j < d; ++j) {
      w.ap[j] = V{};
      w.aq[j] = V{};
      w.yp[j] = p[j];
      w.yq[j] = q[j];
    }
    for (int s = 0; s < 4; ++s) {
      if (s < 3) st.template grad<Keep>(Keep ? s : 0, t + tb.c[s], w.yp, w.yq, w.gp, w.gq);  // k_s = (−gq, gp)
      else st.template grad<Keep, Out>(Keep ? s : 0, t + tb.c[s], w.yp, w.yq, w.gp, w.gq);
      if (!Out && s == 3) return;
      for (int j = 0; j < d; ++j) {
        w.ap[j] -= tb.w[s] * w.gq[j];
        w.aq[j] += tb.w[s] * w.gp[j];
        if (s < 3) {
          w.yp[j] = p[j] - tb.c[s + 1] * w.gq[j];
          w.yq[j] = q[j] + tb.c[s + 1] * w.gp[j];
        }
      }
    }
    for (int j = 0; j < d; ++j) {
      p[j] += w.ap[j];
      q[j] += w.aq[j];
    }
  }
  // k̄_s = w_s ȳ' + c_{s+1} ȳ_{s+1}; k = (−∂qH, ∂pH), so the cotangent on ∇H is (k̄_q, −k̄_p)
  template <class St, class P, class S, class Acc>
  HINN_PASS static void backward(St& st, const Params&, P sc, S h, P pb, P qb, Acc& acc) {
    using V = typename St::V;
    const int d = st.nd.d;
    Scratch<P> w(sc, d);
    const Tableau<S> tb(h);
    for (int j = 0; j < d; ++j) {
      w.ybp[j] = V{};
      w.ybq[j] = V{};
      w.tp[j] = V{};
      w.tq[j] = V{};
    }
    for (int s = 3; s >= 0; --s) {
      const S cn = s < 3 ? tb.c[s + 1] : S(0);
      for (int j = 0; j < d; ++j) {
        w.b[j] = -(tb.w[s] * pb[j] + cn * w.ybp[j]);
        w.a[j] = tb.w[s] * qb[j] + cn * w.ybq[j];
        w.ybp[j] = V{};
        w.ybq[j] = V{};
      }
      st.vjp(s, w.a, w.b, w.ybp, w.ybq, acc);
      for (int j = 0; j < d; ++j) {
        w.tp[j] += w.ybp[j];
        w.tq[j] += w.ybq[j];
      }
    }
    for (int j = 0; j < d; ++j) {
      pb[j] += w.tp[j];
      qb[j] += w.tq[j];
    }
  }
};

}  // namespace hinn::HINN_ISA
