// Integrator steps and their adjoints, per sample, over the network math of network.h.
//
// Sign convention (physics): dq/dt = ∂H/∂p, dp/dt = −∂H/∂q.
//   euler             q' = q + h ∂pH(t,p,q);  p' = p − h ∂qH(t,p,q)
//   symplectic_euler  p' = p − h ∂qH(t,p,q);  q' = q + h ∂pH(t,p',q)
//   leapfrog          p½ = p − h/2 ∂qH(t,p,q); q' = q + h ∂pH(t+h/2,p½,q); p' = p½ − h/2 ∂qH(t+h,p½,q')
//   rk4               classical Runge–Kutta on (ṗ, q̇) = (−∂qH, ∂pH)
//   tao, tao4         Tao's explicit scheme (src/hinn/tao.py) of order 2 and 4 on the extended state
//                     P = (p | y), Q = (q | x): width 2d, the copies (x, y) of (q, p) start on the diagonal
//                     (lift_state) and the cotangents of both copies add up at the start (fold_cotangent)
//   implicit_midpoint z̄ = z + h/2 f(t + h/2, z̄), z' = 2z̄ − z with f = (−∂qH, ∂pH), z = (p, q): Newton per
//                     sample (src/hinn/implicit.py), its backward by the implicit function theorem
//   implicit_leapfrog p½ = p − h/2 ∂qH(t,p½,q); q' = q + h/2 [∂pH(t,p½,q) + ∂pH(t+h,p½,q')];
//                     p' = p½ − h/2 ∂qH(t+h,p½,q'): two solves of width d, the same Newton and adjoint
// Each backward recomputes the stage points of its step from the step's input, then applies the
// vector–Jacobian products of ∇H in reverse order.
#pragma once
#include <cmath>
#include <cstdint>

#include "network.h"

namespace hinn {

enum Scheme : int {
  kEuler = 0,
  kSymplecticEuler = 1,
  kLeapfrog = 2,
  kRK4 = 3,
  kTao = 4,
  kTao4 = 5,
  kImplicitMidpoint = 6,
  kImplicitLeapfrog = 7,
  kNumSchemes
};

// The names the Python layer knows the schemes by (its registry maps names to these codes).
constexpr const char* kSchemeNames[kNumSchemes] = {"euler", "symplectic_euler", "leapfrog", "rk4",
                                                   "tao",   "tao4",             "implicit_midpoint",
                                                   "implicit_leapfrog"};

// Whether a step solves an implicit equation (and may fail to converge: the call then sets its status).
HINN_HD bool scheme_solves(int scheme) { return scheme == kImplicitMidpoint || scheme == kImplicitLeapfrog; }

// A failed solve, from any thread: the call's status flag becomes non-zero.
HINN_HD void report_failure(std::uintptr_t status) {
#if defined(__CUDA_ARCH__)
  atomicOr(reinterpret_cast<int*>(status), 1);
#else
  __atomic_store_n(reinterpret_cast<int*>(status), 1, __ATOMIC_RELAXED);
#endif
}

HINN_HD bool is_tao(int scheme) { return scheme == kTao || scheme == kTao4; }
// Tao: order-2 steps per step (the triple jump composes three for order 4)
HINN_HD int tao_jumps(int scheme) { return scheme == kTao4 ? 3 : 1; }
// Size and start of Tao's order-2 step b within a step, as fractions of h: for order 4 the triple jump
// γ, 1 − 2γ, γ with γ = 1/(2 − 2^{1/3}).
HINN_HD double tao_fraction(int scheme, int b) {
  if (scheme != kTao4) return 1.0;
  const double g = 1.0 / (2.0 - cbrt(2.0));
  return b == 1 ? 1.0 - 2.0 * g : g;
}
HINN_HD double tao_offset(int scheme, int b) {
  if (scheme != kTao4) return 0.0;
  const double g = 1.0 / (2.0 - cbrt(2.0));
  return b == 0 ? 0.0 : b == 1 ? g : 1.0 - g;
}

// Parameter cotangents nobody wants (the Newton matrix's vector–Jacobian products).
struct NoAcc {
  template <class I, class X>
  HINN_HD void operator()(I, const X&) const {}
};

// b ← A⁻¹ b (or A⁻ᵀ b) for a small m × m matrix A (row-major, overwritten), by Gaussian elimination
// without pivoting: the Newton matrices here are I + O(h). A singular one gives non-finite values, which
// the solve's convergence test then rejects.
template <class Ptr>
HINN_HD void solve_small(Ptr A, Ptr b, int m, bool transpose) {
  auto at = [=](int i, int j) -> long { return transpose ? (long)j * m + i : (long)i * m + j; };
  for (int k = 0; k < m; ++k)
    for (int i = k + 1; i < m; ++i) {
      const auto f = A[at(i, k)] / A[at(k, k)];
      for (int j = k + 1; j < m; ++j) A[at(i, j)] -= f * A[at(k, j)];
      b[i] -= f * b[k];
    }
  for (int i = m - 1; i >= 0; --i) {
    auto acc = b[i];
    for (int j = i + 1; j < m; ++j) acc -= A[at(i, j)] * b[j];
    b[i] = acc / A[at(i, i)];
  }
}

// Width of the state a scheme carries from step to step (Tao's copies double it).
HINN_HD int state_dim(int scheme, int d) { return is_tao(scheme) ? 2 * d : d; }

// The scheme's state from an observed (p, q) in its first d entries: Tao's copies start at x = q, y = p.
template <class Ptr>
HINN_HD void lift_state(int scheme, int d, Ptr p, Ptr q) {
  if (is_tao(scheme))
    for (int j = 0; j < d; ++j) {
      p[d + j] = p[j];
      q[d + j] = q[j];
    }
}
// Its adjoint: the cotangent of the observed (p, q) in the first d entries of the state's.
template <class Ptr>
HINN_HD void fold_cotangent(int scheme, int d, Ptr pb, Ptr qb) {
  if (is_tao(scheme))
    for (int j = 0; j < d; ++j) {
      pb[j] += pb[d + j];
      qb[j] += qb[d + j];
    }
}

// The primal passes a scheme's backward keeps (one per gradient evaluation of the step); a forward
// step keeps one at a time.
HINN_HD int scheme_stages(int scheme) {
  if (is_tao(scheme)) return 4 * tao_jumps(scheme);
  if (scheme == kImplicitMidpoint) return 1;
  if (scheme == kImplicitLeapfrog) return 2;
  return scheme == kEuler ? 1 : scheme == kSymplecticEuler ? 2 : scheme == kLeapfrog ? 3 : 4;
}

// The Stepper's small-state scratch: 12 d (stage states, cotangents) and a 2d × 2d Newton matrix.
HINN_HD long st_size(int d) { return 12L * d + 4L * d * d; }

// Work space of one lane value for one step, in lane values: `stages` stored primal passes (1 for a
// forward step, scheme_stages(scheme) for its backward).
HINN_HD long step_scratch(const NetDesc& nd, int stages) {
  return 4L * nd.n_in() + st_size(nd.d) + work_size(nd) + (long)stages * primal_size(nd);
}

// Ptr: how the scratch is addressed (strided.h); the state arguments p, q, … are of the same kind.
template <int W, class V, class S, class Ptr = V*>
struct Stepper {
  using CPtr = cview_t<Ptr>;
  const NetDesc& nd;
  const S* th;
  Ptr x;     // n_in
  Ptr g;     // n_in
  Ptr v;     // n_in
  Ptr xb;    // n_in
  Ptr st;    // st_size(d): stage states and cotangents, a Newton matrix
  Ptr work;  // work_size
  Ptr prim;  // stored primal passes, one per stage
  // the scheme's parameters (CallArgs::params): Tao's coupling ω; a solve's tolerance (0: the default of
  // the precision, as in implicit.py) and iteration cap
  S omega, tol;
  int max_iter;
  bool failed = false;  // a solve of this lane value did not converge (the driver reports it)
  unsigned adjoints = 0;  // bit k: stage k's pass holds its gradient sweep's adjoints (grad<true>)

  HINN_HD Stepper(const NetDesc& nd_, const S* th_, Ptr scratch, const double* params = nullptr)
      : nd(nd_),
        th(th_),
        omega(params ? S(params[0]) : S(0)),
        tol(params && params[0] > 0 ? S(params[0]) : S(sizeof(S) == 8 ? 1e-13 : 1e-5)),
        max_iter(params ? int(params[1]) : 0) {
    const int n = nd.n_in();
    x = scratch;
    g = x + n;
    v = g + n;
    xb = v + n;
    st = xb + n;
    work = st + st_size(nd.d);
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
  // stores the primal pass at (t, p, q) in stage k (Full: everything a vjp_stage needs)
  template <bool Full = true>
  HINN_HDI V store(int k, V t, CPtr p, CPtr q) {
    load_x(t, p, q);
    adjoints &= ~(1u << k);
    return primal<W, Full>(nd, th, x, stage(k));
  }
  // gp = ∂pH, gq = ∂qH at (t, p, q), keeping the primal pass in stage k (for a later vjp_stage if Full)
  template <bool Full = true>
  HINN_HDI void grad(int k, V t, CPtr p, CPtr q, Ptr gp, Ptr gq) {
    store<Full>(k, t, p, q);
    grad_from_primal<W>(nd, th, stage(k), g, work, Full);
    if (Full) adjoints |= 1u << k;
    const int d = nd.d, o = nd.time;
    for (int j = 0; j < d; ++j) {
      gp[j] = g[o + j];
      gq[j] = g[o + d + j];
    }
  }
  // pb += ∂/∂p, qb += ∂/∂q of (vp·∂pH + vq·∂qH) at stage k's point (vp or vq null: zero);
  // parameter part to acc.
  template <class Acc>
  HINN_HDI void vjp_stage(int k, CPtr vp, CPtr vq, Ptr pb, Ptr qb, Acc& acc) {
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

  // Tao's three exact flows on the extended state P = (p | y), Q = (q | x) (tao.py). Full: keep the
  // primal passes of the four gradient evaluations of order-2 step b in stages 4b..4b+3.
  template <bool Full>
  HINN_HDI void tao_sweep(int scheme, V t, S h, Ptr P, Ptr Q) {
    for (int b = 0; b < tao_jumps(scheme); ++b) {
      const S dl = S(tao_fraction(scheme, b)) * h, half = dl / S(2);
      const V tb = t + S(tao_offset(scheme, b)) * h;
      const int k = Full ? 4 * b : 0;
      tao_flow_a<Full>(k, tb, half, P, Q);
      tao_flow_b<Full>(Full ? k + 1 : 0, tb + half, half, P, Q);
      tao_rotate(P, Q, 2.0 * double(omega) * double(dl));  // φ_C
      tao_flow_b<Full>(Full ? k + 2 : 0, tb + half, half, P, Q);
      tao_flow_a<Full>(Full ? k + 3 : 0, tb + dl, half, P, Q);
    }
  }
  // φ_A for a time δ: H(q, y) moves p and x (gradient at (t, y, q), kept in stage k)
  template <bool Full>
  HINN_HDI void tao_flow_a(int k, V t, S delta, Ptr P, Ptr Q) {
    const int d = nd.d;
    grad<Full>(k, t, P + d, Q, st, st + d);
    for (int j = 0; j < d; ++j) {
      P[j] -= delta * st[d + j];
      Q[d + j] += delta * st[j];
    }
  }
  // φ_B for a time δ: H(x, p) moves q and y
  template <bool Full>
  HINN_HDI void tao_flow_b(int k, V t, S delta, Ptr P, Ptr Q) {
    const int d = nd.d;
    grad<Full>(k, t, P, Q + d, st, st + d);
    for (int j = 0; j < d; ++j) {
      Q[j] += delta * st[j];
      P[d + j] -= delta * st[d + j];
    }
  }
  // Their adjoints at stage k's point, in place on the cotangents (PB, QB): p' = p − δ ∂qH(y, q),
  // x' = x + δ ∂pH(y, q) send their cotangents to (ȳ, q̄); φ_B's to (p̄, x̄).
  template <class Acc>
  HINN_HDI void tao_vjp_a(int k, S delta, Ptr PB, Ptr QB, Acc& acc) {
    const int d = nd.d;
    Ptr a = st + 2 * d;
    Ptr b = st + 3 * d;
    for (int j = 0; j < d; ++j) {
      a[j] = delta * QB[d + j];
      b[j] = -delta * PB[j];
    }
    vjp_stage(k, a, b, PB + d, QB, acc);
  }
  template <class Acc>
  HINN_HDI void tao_vjp_b(int k, S delta, Ptr PB, Ptr QB, Acc& acc) {
    const int d = nd.d;
    Ptr a = st + 2 * d;
    Ptr b = st + 3 * d;
    for (int j = 0; j < d; ++j) {
      a[j] = delta * QB[j];
      b[j] = -delta * PB[d + j];
    }
    vjp_stage(k, a, b, PB, QB + d, acc);
  }
  // φ_C: (q − x, p − y) rotated by `angle`, q + x and p + y fixed. Orthogonal, so its adjoint is the
  // rotation by −angle applied to the cotangents.
  HINN_HD void tao_rotate(Ptr P, Ptr Q, double angle) const {
    const S c = S(cos(angle)), sn = S(sin(angle));
    for (int j = 0; j < nd.d; ++j) {
      const int e = nd.d + j;
      const V u = Q[j] - Q[e], v = P[j] - P[e], sq = Q[j] + Q[e], sp = P[j] + P[e];
      const V u2 = c * u + sn * v, v2 = -sn * u + c * v;
      P[j] = (sp + v2) / S(2);
      Q[j] = (sq + u2) / S(2);
      Q[e] = (sq - u2) / S(2);
      P[e] = (sp - v2) / S(2);
    }
  }
  // Adjoint of tao_sweep from the step's input (P, Q); cotangents (PB, QB) of the output in, of the
  // input out.
  template <class Acc>
  HINN_HDI void tao_backward(int scheme, V t, S h, CPtr P0, CPtr Q0, Ptr PB, Ptr QB, Acc& acc, bool kept) {
    const int d = nd.d;
    Ptr P = st + 4 * d;  // 2d
    Ptr Q = st + 6 * d;  // 2d
    if (!kept) {
      for (int j = 0; j < 2 * d; ++j) {
        P[j] = P0[j];
        Q[j] = Q0[j];
      }
      tao_sweep<true>(scheme, t, h, P, Q);
    }
    for (int jb = tao_jumps(scheme) - 1; jb >= 0; --jb) {
      const S dl = S(tao_fraction(scheme, jb)) * h, half = dl / S(2);
      const int k = 4 * jb;
      tao_vjp_a(k + 3, half, PB, QB, acc);
      tao_vjp_b(k + 2, half, PB, QB, acc);
      tao_rotate(PB, QB, -2.0 * double(omega) * double(dl));
      tao_vjp_b(k + 1, half, PB, QB, acc);
      tao_vjp_a(k, half, PB, QB, acc);
    }
  }

  // An implicit equation on the block [lo, hi) of z = (p | q) held in Z (2d; the rest of Z is fixed):
  //   Z[lo:hi] = C[lo:hi] + hh f(tt, Z)[lo:hi],  f = (−∂qH, ∂pH),  C = (Cp | Cq)
  // (the implicit midpoint rule: the whole of z; the implicit leapfrog: p½, then q'). Newton from the
  // guess in Z until every lane's max|x − Φ(x)| / (1 + max|x|) ≤ tol over the block (implicit.py's test,
  // per sample), at most max_iter steps. On return stage k holds the full primal pass at the solution and
  // gp, gq (st, st + d) ∇H there; a lane that has not converged sets `failed`.
  HINN_HDI void solve(int k, V tt, S hh, int lo, int hi, CPtr Cp, CPtr Cq, Ptr Z) {
    const int d = nd.d, m = hi - lo;
    Ptr gp = st;
    Ptr gq = st + d;
    Ptr R = st + 6 * d;   // the residual, then the Newton step
    Ptr A = st + 12 * d;  // m × m
    for (int it = 0;; ++it) {
      grad(k, tt, Z, Z + d, gp, gq);
      for (int i = lo; i < hi; ++i)
        R[i - lo] = i < d ? Z[i] - (Cp[i] - hh * gq[i]) : Z[i] - (Cq[i - d] + hh * gp[i - d]);
      bool done = true;
      for (int l = 0; l < lanes<V>::n; ++l) {
        double rmax = 0, xmax = 0;
        bool finite = true;
        for (int i = 0; i < m; ++i) {
          const double r = fabs(double(lane(R[i], l))), x = fabs(double(lane(Z[lo + i], l)));
          finite = finite && r <= 1e300 && x <= 1e300;  // false for NaN
          rmax = r > rmax ? r : rmax;
          xmax = x > xmax ? x : xmax;
        }
        done = done && finite && rmax / (1.0 + xmax) <= double(tol);
      }
      if (done) return;
      if (it >= max_iter) {
        failed = true;
        return;
      }
      solve_matrix(k, hh, lo, hi, A);
      solve_small(A, R, m, false);
      for (int i = 0; i < m; ++i) Z[lo + i] -= R[i];
    }
  }
  // The Newton matrix of solve(): A = I − ∂Φ/∂x on the block [lo, hi) at the point of stage k, row by
  // row from vector–Jacobian products of ∇H (Φ_p = Cp − hh ∂qH, Φ_q = Cq + hh ∂pH).
  HINN_HDI void solve_matrix(int k, S hh, int lo, int hi, Ptr A) {
    const int d = nd.d, m = hi - lo;
    Ptr e = st + 2 * d;    // d: a unit vector
    Ptr row = st + 8 * d;  // 2d
    NoAcc none;
    for (int r = lo; r < hi; ++r) {
      for (int j = 0; j < d; ++j) e[j] = V{};
      e[r % d] = V{} + S(1);
      for (int i = 0; i < 2 * d; ++i) row[i] = V{};
      if (r < d) vjp_stage(k, CPtr{}, e, row, row + d, none);  // ∂(∂q_r H)/∂(p, q)
      else vjp_stage(k, e, CPtr{}, row, row + d, none);        // ∂(∂p_r H)/∂(p, q)
      const S sgn = r < d ? hh : -hh;
      for (int c = lo; c < hi; ++c) A[(long)(r - lo) * m + (c - lo)] = sgn * row[c] + (c == r ? S(1) : S(0));
    }
  }
  // Adjoint of solve() by the implicit function theorem, with the matrix A of stage k's solution: the
  // block's cotangent ḡ (in mu, m entries) becomes μ with Aᵀμ = ḡ, which is C's cotangent; θ's,
  // (∂Φ/∂θ)ᵀμ, goes to acc and the fixed part of z's, (∂Φ/∂z_fixed)ᵀμ, is added to (pb, qb) outside the
  // block (the block's own part is the solve's, already in μ).
  template <class Acc>
  HINN_HDI void solve_backward(int k, S hh, int lo, int hi, Ptr mu, Ptr pb, Ptr qb, Acc& acc) {
    const int d = nd.d, m = hi - lo;
    Ptr a = st + 2 * d;
    Ptr b = st + 3 * d;
    Ptr junk = st + 8 * d;  // 2d
    Ptr A = st + 12 * d;
    solve_matrix(k, hh, lo, hi, A);
    solve_small(A, mu, m, true);
    for (int j = 0; j < d; ++j) {  // μ_q weighs hh ∂pH, μ_p weighs −hh ∂qH
      b[j] = lo <= j && j < hi ? -hh * mu[j - lo] : V{};
      a[j] = lo <= d + j && d + j < hi ? hh * mu[d + j - lo] : V{};
    }
    for (int i = 0; i < 2 * d; ++i) junk[i] = V{};
    vjp_stage(k, a, b, junk, junk + d, acc);
    for (int j = 0; j < d; ++j) {
      if (!(lo <= j && j < hi)) pb[j] += junk[j];
      if (!(lo <= d + j && d + j < hi)) qb[j] += junk[d + j];
    }
  }

  // The implicit midpoint rule (forward: the midpoint z̄ in Z; stage k: the primal pass there).
  HINN_HDI void midpoint_solve(int k, V t, S h, CPtr p, CPtr q, Ptr Z) {
    const int d = nd.d;
    const S hh = h / S(2);
    grad<false>(k, t + hh, p, q, st, st + d);  // the guess Φ(z)
    for (int j = 0; j < d; ++j) {
      Z[j] = p[j] - hh * st[d + j];
      Z[d + j] = q[j] + hh * st[j];
    }
    solve(k, t + hh, hh, 0, 2 * d, p, q, Z);
  }
  // Its adjoint: z' = 2z̄ − z, so z̄'s cotangent is 2ḡ and the input's μ − ḡ.
  template <class Acc>
  HINN_HDI void midpoint_backward(V t, S h, CPtr p, CPtr q, Ptr pb, Ptr qb, Acc& acc, bool kept) {
    const int d = nd.d;
    Ptr Z = st + 4 * d;
    Ptr mu = st + 6 * d;  // 2d
    if (!kept) midpoint_solve(0, t, h, p, q, Z);
    for (int j = 0; j < d; ++j) {
      mu[j] = S(2) * pb[j];
      mu[d + j] = S(2) * qb[j];
    }
    for (int j = 0; j < d; ++j) {
      pb[j] = -pb[j];
      qb[j] = -qb[j];
    }
    solve_backward(0, h / S(2), 0, 2 * d, mu, pb, qb, acc);
    for (int j = 0; j < d; ++j) {
      pb[j] += mu[j];
      qb[j] += mu[d + j];
    }
  }

  // The implicit leapfrog's two solves into Z = (p½ | q') from (p, q) at t; stages k0 and k1 hold the
  // primal passes at (t, p½, q) and (t+h, p½, q'), and gq (st + d) ∂qH at the latter. The constant of the
  // q' equation, q + h/2 ∂pH(t, p½, q), goes to st + 10d.
  HINN_HDI void leapfrog_solve(int k0, int k1, V t, S h, CPtr p, CPtr q, Ptr Z) {
    const int d = nd.d;
    const S hh = h / S(2);
    Ptr gp = st;
    Ptr C = st + 10 * d;
    grad<false>(k0, t, p, q, gp, st + d);  // the guess Φ(p)
    for (int j = 0; j < d; ++j) {
      Z[j] = p[j] - hh * st[d + j];
      Z[d + j] = q[j];
    }
    solve(k0, t, hh, 0, d, p, CPtr{}, Z);  // p½ = p − h/2 ∂qH(t, p½, q)
    for (int j = 0; j < d; ++j) {
      C[j] = q[j] + hh * gp[j];
      Z[d + j] = q[j] + h * gp[j];
    }
    solve(k1, t + h, hh, d, 2 * d, CPtr{}, C, Z);  // q' = C + h/2 ∂pH(t+h, p½, q')
  }
  // Its adjoint, from p' = p½ − h/2 ∂qH(t+h, p½, q') back through both solves.
  template <class Acc>
  HINN_HDI void leapfrog_backward(V t, S h, CPtr p, CPtr q, Ptr pb, Ptr qb, Acc& acc, bool kept) {
    const int d = nd.d;
    const S hh = h / S(2);
    Ptr a = st + 2 * d;
    Ptr b = st + 3 * d;
    Ptr Z = st + 4 * d;
    Ptr mu = st + 6 * d;
    Ptr phb = st + 10 * d;  // p½'s cotangent
    Ptr q1b = st + 11 * d;  // q''s cotangent
    if (!kept) leapfrog_solve(0, 1, t, h, p, q, Z);
    for (int j = 0; j < d; ++j) {
      phb[j] = pb[j];
      q1b[j] = qb[j];
      b[j] = -hh * pb[j];
    }
    vjp_stage(1, CPtr{}, b, phb, q1b, acc);  // p' = p½ − h/2 ∂qH(t+h, p½, q')
    for (int j = 0; j < d; ++j) mu[j] = q1b[j];
    solve_backward(1, hh, d, 2 * d, mu, phb, qb, acc);  // q' = C + h/2 ∂pH(t+h, p½, q'): μ is C's
    for (int j = 0; j < d; ++j) {
      qb[j] = mu[j];
      a[j] = hh * mu[j];  // C = q + h/2 ∂pH(t, p½, q)
    }
    vjp_stage(0, a, CPtr{}, phb, qb, acc);
    for (int j = 0; j < d; ++j) mu[j] = phb[j];
    solve_backward(0, hh, 0, d, mu, pb, qb, acc);  // p½ = p − h/2 ∂qH(t, p½, q): μ is p's
    for (int j = 0; j < d; ++j) pb[j] = mu[j];
  }

  // In place: (p, q) at time t -> (p', q') at t + h (the scheme's state: state_dim wide). Keep: every
  // gradient evaluation keeps its full primal pass in the stage that backward() gives it, so that a
  // backward(kept = true) of this step right after it recomputes nothing.
  template <bool Keep = false>
  HINN_HD void forward(int scheme, V t, S h, Ptr p, Ptr q) {
    const int d = nd.d;
    Ptr gp = st;
    Ptr gq = st + d;
    auto slot = [](int k) { return Keep ? k : 0; };
    if (is_tao(scheme)) {
      tao_sweep<Keep>(scheme, t, h, p, q);
    } else if (scheme == kImplicitMidpoint) {
      Ptr Z = st + 4 * d;
      midpoint_solve(0, t, h, p, q, Z);
      for (int j = 0; j < d; ++j) {
        p[j] = S(2) * Z[j] - p[j];
        q[j] = S(2) * Z[d + j] - q[j];
      }
    } else if (scheme == kImplicitLeapfrog) {
      Ptr Z = st + 4 * d;
      leapfrog_solve(0, slot(1), t, h, p, q, Z);
      for (int j = 0; j < d; ++j) {
        p[j] = Z[j] - h / S(2) * gq[j];
        q[j] = Z[d + j];
      }
    } else if (scheme == kEuler) {
      grad<Keep>(0, t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) {
        q[j] += h * gp[j];
        p[j] -= h * gq[j];
      }
    } else if (scheme == kSymplecticEuler) {
      grad<Keep>(0, t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) p[j] -= h * gq[j];
      grad<Keep>(slot(1), t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) q[j] += h * gp[j];
    } else if (scheme == kLeapfrog) {
      const S hh = h / S(2);
      grad<Keep>(0, t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) p[j] -= hh * gq[j];
      grad<Keep>(slot(1), t + hh, p, q, gp, gq);
      for (int j = 0; j < d; ++j) q[j] += h * gp[j];
      grad<Keep>(slot(2), t + h, p, q, gp, gq);
      for (int j = 0; j < d; ++j) p[j] -= hh * gq[j];
    } else {  // rk4
      Ptr ap = st + 2 * d;  // accumulated increment
      Ptr aq = st + 3 * d;
      Ptr yp = st + 4 * d;  // stage point
      Ptr yq = st + 5 * d;
      const S c[4] = {S(0), h / S(2), h / S(2), h};
      const S wgt[4] = {h / S(6), h / S(3), h / S(3), h / S(6)};
      for (int j = 0; j < d; ++j) {
        ap[j] = V{};
        aq[j] = V{};
        yp[j] = p[j];
        yq[j] = q[j];
      }
      for (int s = 0; s < 4; ++s) {
        grad<Keep>(slot(s), t + c[s], yp, yq, gp, gq);  // k_s = (−gq, gp)
        for (int j = 0; j < d; ++j) {
          ap[j] -= wgt[s] * gq[j];
          aq[j] += wgt[s] * gp[j];
          if (s < 3) {
            yp[j] = p[j] - c[s + 1] * gq[j];
            yq[j] = q[j] + c[s + 1] * gp[j];
          }
        }
      }
      for (int j = 0; j < d; ++j) {
        p[j] += ap[j];
        q[j] += aq[j];
      }
    }
  }

  // Adjoint of forward(): (p, q) is the step's input (unchanged); pb, qb hold the cotangents of the
  // outputs on entry and those of the inputs on exit. Parameter cotangents go to acc. Each stage's
  // primal pass is computed once, kept, and reused by its vector–Jacobian product. kept: a
  // forward<true> of this very step ran last, and its stages (and scratch) are reused as they are.
  template <class Acc>
  HINN_HD void backward(int scheme, V t, S h, CPtr p, CPtr q, Ptr pb, Ptr qb, Acc& acc, bool kept = false) {
    const int d = nd.d;
    Ptr gp = st;
    Ptr gq = st + d;
    Ptr a = st + 2 * d;
    Ptr b = st + 3 * d;
    if (is_tao(scheme)) {
      tao_backward(scheme, t, h, p, q, pb, qb, acc, kept);
    } else if (scheme == kImplicitMidpoint) {
      midpoint_backward(t, h, p, q, pb, qb, acc, kept);
    } else if (scheme == kImplicitLeapfrog) {
      leapfrog_backward(t, h, p, q, pb, qb, acc, kept);
    } else if (scheme == kEuler) {
      if (!kept) store(0, t, p, q);
      for (int j = 0; j < d; ++j) {
        a[j] = h * qb[j];
        b[j] = -h * pb[j];
      }
      vjp_stage(0, a, b, pb, qb, acc);
    } else if (scheme == kSymplecticEuler) {
      if (!kept) {
        Ptr p1 = st + 4 * d;
        grad(0, t, p, q, gp, gq);
        for (int j = 0; j < d; ++j) p1[j] = p[j] - h * gq[j];
        store(1, t, p1, q);
      }
      for (int j = 0; j < d; ++j) a[j] = h * qb[j];
      vjp_stage(1, a, CPtr{}, pb, qb, acc);  // q' = q + h ∂pH(t, p', q)
      for (int j = 0; j < d; ++j) b[j] = -h * pb[j];
      vjp_stage(0, CPtr{}, b, pb, qb, acc);  // p' = p − h ∂qH(t, p, q)
    } else if (scheme == kLeapfrog) {
      const S hh = h / S(2);
      if (!kept) {
        Ptr pm = st + 4 * d;
        Ptr q1 = st + 5 * d;
        grad(0, t, p, q, gp, gq);
        for (int j = 0; j < d; ++j) pm[j] = p[j] - hh * gq[j];
        grad(1, t + hh, pm, q, gp, gq);
        for (int j = 0; j < d; ++j) q1[j] = q[j] + h * gp[j];
        store(2, t + h, pm, q1);
      }
      for (int j = 0; j < d; ++j) b[j] = -hh * pb[j];
      vjp_stage(2, CPtr{}, b, pb, qb, acc);  // p' = p½ − h/2 ∂qH(t+h, p½, q')
      for (int j = 0; j < d; ++j) a[j] = h * qb[j];
      vjp_stage(1, a, CPtr{}, pb, qb, acc);  // q' = q + h ∂pH(t+h/2, p½, q)
      for (int j = 0; j < d; ++j) b[j] = -hh * pb[j];
      vjp_stage(0, CPtr{}, b, pb, qb, acc);  // p½ = p − h/2 ∂qH(t, p, q)
    } else {  // rk4
      const S c[4] = {S(0), h / S(2), h / S(2), h};
      const S wgt[4] = {h / S(6), h / S(3), h / S(3), h / S(6)};
      Ptr yp = st + 4 * d;
      Ptr yq = st + 5 * d;
      Ptr ybp = st + 6 * d;  // ȳ of the later stage point
      Ptr ybq = st + 7 * d;
      Ptr tp = st + 8 * d;   // the input's cotangent, gathered over stages (pb/qb keep ȳ')
      Ptr tq = st + 9 * d;
      // stage points y_1 = (p, q), y_{s+1} = y + c_{s+1} k_s; their primal passes go to stages 0..3
      for (int s = 0; s < 4 && !kept; ++s) {
        const CPtr sp = s == 0 ? p : CPtr(yp);
        const CPtr sq = s == 0 ? q : CPtr(yq);
        if (s == 3) {
          store(3, t + c[3], sp, sq);
          break;
        }
        grad(s, t + c[s], sp, sq, gp, gq);
        for (int j = 0; j < d; ++j) {
          yp[j] = p[j] - c[s + 1] * gq[j];
          yq[j] = q[j] + c[s + 1] * gp[j];
        }
      }
      for (int j = 0; j < d; ++j) {
        ybp[j] = V{};
        ybq[j] = V{};
        tp[j] = V{};
        tq[j] = V{};
      }
      // k̄_s = wgt_s ȳ' + c_{s+1} ȳ_{s+1}; k = (−∂qH, ∂pH), so the cotangent on ∇H is (k̄_q, −k̄_p)
      for (int s = 3; s >= 0; --s) {
        const S cn = s < 3 ? c[s + 1] : S(0);
        for (int j = 0; j < d; ++j) {
          b[j] = -(wgt[s] * pb[j] + cn * ybp[j]);
          a[j] = wgt[s] * qb[j] + cn * ybq[j];
          ybp[j] = V{};
          ybq[j] = V{};
        }
        vjp_stage(s, a, b, ybp, ybq, acc);
        for (int j = 0; j < d; ++j) {
          tp[j] += ybp[j];
          tq[j] += ybq[j];
        }
      }
      for (int j = 0; j < d; ++j) {
        pb[j] += tp[j];
        qb[j] += tq[j];
      }
    }
  }

  // A training window, forward and backward in one pass: from the observed (p0, q0) (first d entries of
  // TP, TQ) at time t, K steps into TP, TQ ((K+1) ds each, ds = state_dim; row 0 = the start), the
  // squared error of the observed part against the targets GP, GQ (K d each, row k = the state after
  // step k+1), then the reverse sweep with cotangents 2·scale·m·error. m is 1 on live lanes and 0 on
  // padding. Returns scale·m·Σ error² (this lane's share of the loss); the cotangents of (p0, q0) end in
  // pb, qb (ds each; the first d entries are the result), those of θ in acc. Nothing leaves the
  // per-sample scratch in between.
  template <class Acc>
  HINN_HD V window_loss(int scheme, V t, S h, long K, Ptr TP, Ptr TQ, CPtr GP, CPtr GQ, V m, S scale, Ptr pb,
                        Ptr qb, Acc& acc) {
    const int d = nd.d, ds = state_dim(scheme, d);
    lift_state(scheme, d, TP, TQ);
    for (long k = 0; k < K; ++k) {
      Ptr p = TP + (k + 1) * ds;
      Ptr q = TQ + (k + 1) * ds;
      for (int j = 0; j < ds; ++j) {
        p[j] = TP[k * ds + j];
        q[j] = TQ[k * ds + j];
      }
      // the last step keeps its stages: the backward sweep starts with it
      if (k == K - 1) forward<true>(scheme, t + S(k) * h, h, p, q);
      else forward(scheme, t + S(k) * h, h, p, q);
    }
    V loss{};
    for (int j = 0; j < ds; ++j) {
      pb[j] = V{};
      qb[j] = V{};
    }
    for (long k = K - 1; k >= 0; --k) {
      const CPtr p1 = TP + (k + 1) * ds;
      const CPtr q1 = TQ + (k + 1) * ds;
      for (int j = 0; j < d; ++j) {
        const V ep = m * (p1[j] - GP[k * d + j]);
        const V eq = m * (q1[j] - GQ[k * d + j]);
        loss += ep * ep + eq * eq;
        pb[j] += S(2) * scale * ep;
        qb[j] += S(2) * scale * eq;
      }
      backward(scheme, t + S(k) * h, h, TP + k * ds, TQ + k * ds, pb, qb, acc, k == K - 1);
    }
    fold_cotangent(scheme, d, pb, qb);
    return scale * loss;
  }
};

// Scratch of window_loss beyond step_scratch: the window's states and targets, in lane values.
HINN_HD long window_scratch(const NetDesc& nd, int scheme, long K) {
  return 2L * (K + 1) * state_dim(scheme, nd.d) + 2L * K * nd.d;
}

}  // namespace hinn
