// Integrator steps and their adjoints, per sample, over the network math of network.h.
//
// Sign convention (physics): dq/dt = ∂H/∂p, dp/dt = −∂H/∂q.
//   euler             q' = q + h ∂pH(t,p,q);  p' = p − h ∂qH(t,p,q)
//   symplectic_euler  p' = p − h ∂qH(t,p,q);  q' = q + h ∂pH(t,p',q)
//   leapfrog          p½ = p − h/2 ∂qH(t,p,q); q' = q + h ∂pH(t+h/2,p½,q); p' = p½ − h/2 ∂qH(t+h,p½,q')
//   rk4               classical Runge–Kutta on (ṗ, q̇) = (−∂qH, ∂pH)
// Each backward recomputes the stage points of its step from the step's input, then applies the
// vector–Jacobian products of ∇H in reverse order.
#pragma once
#include "network.h"

namespace hinn {

enum Scheme : int { kEuler = 0, kSymplecticEuler = 1, kLeapfrog = 2, kRK4 = 3, kNumSchemes };

// The names the Python layer knows the schemes by (its registry maps names to these codes).
constexpr const char* kSchemeNames[kNumSchemes] = {"euler", "symplectic_euler", "leapfrog", "rk4"};

// The primal passes a scheme's backward keeps (one per gradient evaluation of the step); a forward
// step keeps one at a time.
HINN_HD int scheme_stages(int scheme) {
  return scheme == kEuler ? 1 : scheme == kSymplecticEuler ? 2 : scheme == kLeapfrog ? 3 : 4;
}

// Work space of one lane value for one step, in lane values: `stages` stored primal passes (1 for a
// forward step, scheme_stages(scheme) for its backward).
HINN_HD long step_scratch(const NetDesc& nd, int stages) {
  return 4L * nd.n_in() + 12L * nd.d + work_size(nd) + (long)stages * primal_size(nd);
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
  Ptr st;    // 12 d: stage states and cotangents
  Ptr work;  // work_size
  Ptr prim;  // up to 4 stored primal passes, one per stage

  HINN_HD Stepper(const NetDesc& nd_, const S* th_, Ptr scratch) : nd(nd_), th(th_) {
    const int n = nd.n_in();
    x = scratch;
    g = x + n;
    v = g + n;
    xb = v + n;
    st = xb + n;
    work = st + 12 * nd.d;
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
  HINN_HD V store(int k, V t, CPtr p, CPtr q) {
    load_x(t, p, q);
    return primal<W, Full>(nd, th, x, stage(k));
  }
  // gp = ∂pH, gq = ∂qH at (t, p, q), keeping the primal pass in stage k (for a later vjp_stage if Full)
  template <bool Full = true>
  HINN_HD void grad(int k, V t, CPtr p, CPtr q, Ptr gp, Ptr gq) {
    store<Full>(k, t, p, q);
    grad_from_primal<W>(nd, th, stage(k), g, work);
    const int d = nd.d, o = nd.time;
    for (int j = 0; j < d; ++j) {
      gp[j] = g[o + j];
      gq[j] = g[o + d + j];
    }
  }
  // pb += ∂/∂p, qb += ∂/∂q of (vp·∂pH + vq·∂qH) at stage k's point (vp or vq null: zero);
  // parameter part to acc.
  template <class Acc>
  HINN_HD void vjp_stage(int k, CPtr vp, CPtr vq, Ptr pb, Ptr qb, Acc& acc) {
    const int d = nd.d, o = nd.time, n = nd.n_in();
    for (int i = 0; i < n; ++i) {
      v[i] = V{};
      xb[i] = V{};
    }
    for (int j = 0; j < d; ++j) {
      if (vp) v[o + j] = vp[j];
      if (vq) v[o + d + j] = vq[j];
    }
    vjp_from_primal<W>(nd, th, stage(k), v, V{}, xb, acc, work);
    for (int j = 0; j < d; ++j) {
      pb[j] += xb[o + j];
      qb[j] += xb[o + d + j];
    }
  }

  // In place: (p, q) at time t -> (p', q') at t + h.
  HINN_HD void forward(int scheme, V t, S h, Ptr p, Ptr q) {
    const int d = nd.d;
    Ptr gp = st;
    Ptr gq = st + d;
    if (scheme == kEuler) {
      grad<false>(0, t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) {
        q[j] += h * gp[j];
        p[j] -= h * gq[j];
      }
    } else if (scheme == kSymplecticEuler) {
      grad<false>(0, t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) p[j] -= h * gq[j];
      grad<false>(0, t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) q[j] += h * gp[j];
    } else if (scheme == kLeapfrog) {
      const S hh = h / S(2);
      grad<false>(0, t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) p[j] -= hh * gq[j];
      grad<false>(0, t + hh, p, q, gp, gq);
      for (int j = 0; j < d; ++j) q[j] += h * gp[j];
      grad<false>(0, t + h, p, q, gp, gq);
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
        grad<false>(0, t + c[s], yp, yq, gp, gq);  // k_s = (−gq, gp)
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
  // primal pass is computed once, kept, and reused by its vector–Jacobian product.
  template <class Acc>
  HINN_HD void backward(int scheme, V t, S h, CPtr p, CPtr q, Ptr pb, Ptr qb, Acc& acc) {
    const int d = nd.d;
    Ptr gp = st;
    Ptr gq = st + d;
    Ptr a = st + 2 * d;
    Ptr b = st + 3 * d;
    if (scheme == kEuler) {
      store(0, t, p, q);
      for (int j = 0; j < d; ++j) {
        a[j] = h * qb[j];
        b[j] = -h * pb[j];
      }
      vjp_stage(0, a, b, pb, qb, acc);
    } else if (scheme == kSymplecticEuler) {
      Ptr p1 = st + 4 * d;
      grad(0, t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) p1[j] = p[j] - h * gq[j];
      store(1, t, p1, q);
      for (int j = 0; j < d; ++j) a[j] = h * qb[j];
      vjp_stage(1, a, CPtr{}, pb, qb, acc);  // q' = q + h ∂pH(t, p', q)
      for (int j = 0; j < d; ++j) b[j] = -h * pb[j];
      vjp_stage(0, CPtr{}, b, pb, qb, acc);  // p' = p − h ∂qH(t, p, q)
    } else if (scheme == kLeapfrog) {
      const S hh = h / S(2);
      Ptr pm = st + 4 * d;
      Ptr q1 = st + 5 * d;
      grad(0, t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) pm[j] = p[j] - hh * gq[j];
      grad(1, t + hh, pm, q, gp, gq);
      for (int j = 0; j < d; ++j) q1[j] = q[j] + h * gp[j];
      store(2, t + h, pm, q1);
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
      for (int s = 0; s < 4; ++s) {
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

  // A training window, forward and backward in one pass: from (p0, q0) at time t, K steps into TP, TQ
  // ((K+1) d each; row 0 = the start), the squared error against the targets GP, GQ (K d each, row k =
  // the state after step k+1), then the reverse sweep with cotangents 2·scale·m·error. m is 1 on live
  // lanes and 0 on padding. Returns scale·m·Σ error² (this lane's share of the loss); the cotangents of
  // (p0, q0) end in pb, qb, those of θ in acc. Nothing leaves the per-sample scratch in between.
  template <class Acc>
  HINN_HD V window_loss(int scheme, V t, S h, long K, Ptr TP, Ptr TQ, CPtr GP, CPtr GQ, V m, S scale, Ptr pb,
                        Ptr qb, Acc& acc) {
    const int d = nd.d;
    for (long k = 0; k < K; ++k) {
      Ptr p = TP + (k + 1) * d;
      Ptr q = TQ + (k + 1) * d;
      for (int j = 0; j < d; ++j) {
        p[j] = TP[k * d + j];
        q[j] = TQ[k * d + j];
      }
      forward(scheme, t + S(k) * h, h, p, q);
    }
    V loss{};
    for (int j = 0; j < d; ++j) {
      pb[j] = V{};
      qb[j] = V{};
    }
    for (long k = K - 1; k >= 0; --k) {
      const CPtr p1 = TP + (k + 1) * d;
      const CPtr q1 = TQ + (k + 1) * d;
      for (int j = 0; j < d; ++j) {
        const V ep = m * (p1[j] - GP[k * d + j]);
        const V eq = m * (q1[j] - GQ[k * d + j]);
        loss += ep * ep + eq * eq;
        pb[j] += S(2) * scale * ep;
        qb[j] += S(2) * scale * eq;
      }
      backward(scheme, t + S(k) * h, h, TP + k * d, TQ + k * d, pb, qb, acc);
    }
    return scale * loss;
  }
};

// Scratch of window_loss beyond step_scratch: the window's states and targets, in lane values.
HINN_HD long window_scratch(const NetDesc& nd, long K) { return 2L * (K + 1) * nd.d + 2L * K * nd.d; }

}  // namespace hinn
