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

enum Scheme : int { kEuler = 0, kSymplecticEuler = 1, kLeapfrog = 2, kRK4 = 3 };

// Work space of one lane value for one step (forward or backward), in lane values.
HINN_HD long step_scratch(const NetDesc& nd) {
  const long n = nd.n_in();
  return 4 * n + 12L * nd.d + nd.scratch_vjp();  // scratch_vjp >= scratch_grad
}

template <int W, class V, class S>
struct Stepper {
  const NetDesc& nd;
  const S* th;
  V* x;     // n_in
  V* g;     // n_in
  V* v;     // n_in
  V* xb;    // n_in
  V* st;    // 12 d: stage states
  V* net;   // network scratch

  HINN_HD Stepper(const NetDesc& nd_, const S* th_, V* scratch) : nd(nd_), th(th_) {
    const int n = nd.n_in();
    x = scratch;
    g = x + n;
    v = g + n;
    xb = v + n;
    st = xb + n;
    net = st + 12 * nd.d;
  }

  HINN_HD void load_x(V t, const V* p, const V* q) {
    const int d = nd.d, o = nd.time;
    if (o) x[0] = t;
    for (int j = 0; j < d; ++j) {
      x[o + j] = p[j];
      x[o + d + j] = q[j];
    }
  }
  // gp = ∂pH, gq = ∂qH at (t, p, q); returns H
  HINN_HD V grad(V t, const V* p, const V* q, V* gp, V* gq) {
    load_x(t, p, q);
    const V H = forward_grad<W>(nd, th, x, g, net);
    const int d = nd.d, o = nd.time;
    for (int j = 0; j < d; ++j) {
      gp[j] = g[o + j];
      gq[j] = g[o + d + j];
    }
    return H;
  }
  // pb += ∂/∂p and qb += ∂/∂q of (vp·∂pH + vq·∂qH) at (t, p, q); parameter part to acc.
  // vp or vq may be null (zero). Returns ∂/∂t of the same (0 without time input).
  template <class Acc>
  HINN_HD V vjp_pq(V t, const V* p, const V* q, const V* vp, const V* vq, V* pb, V* qb, Acc& acc) {
    load_x(t, p, q);
    const int d = nd.d, o = nd.time, n = nd.n_in();
    for (int i = 0; i < n; ++i) {
      v[i] = V{};
      xb[i] = V{};
    }
    for (int j = 0; j < d; ++j) {
      if (vp) v[o + j] = vp[j];
      if (vq) v[o + d + j] = vq[j];
    }
    vjp<W>(nd, th, x, v, V{}, xb, acc, net);
    for (int j = 0; j < d; ++j) {
      pb[j] += xb[o + j];
      qb[j] += xb[o + d + j];
    }
    return o ? xb[0] : V{};
  }

  // In place: (p, q) at time t -> (p', q') at t + h.
  HINN_HD void forward(int scheme, V t, S h, V* p, V* q) {
    const int d = nd.d;
    V* gp = st;
    V* gq = st + d;
    if (scheme == kEuler) {
      grad(t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) {
        q[j] += h * gp[j];
        p[j] -= h * gq[j];
      }
    } else if (scheme == kSymplecticEuler) {
      grad(t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) p[j] -= h * gq[j];
      grad(t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) q[j] += h * gp[j];
    } else if (scheme == kLeapfrog) {
      const S hh = h / S(2);
      grad(t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) p[j] -= hh * gq[j];
      grad(t + hh, p, q, gp, gq);
      for (int j = 0; j < d; ++j) q[j] += h * gp[j];
      grad(t + h, p, q, gp, gq);
      for (int j = 0; j < d; ++j) p[j] -= hh * gq[j];
    } else {  // rk4
      V* ap = st + 2 * d;  // accumulated increment
      V* aq = st + 3 * d;
      V* yp = st + 4 * d;  // stage point
      V* yq = st + 5 * d;
      const S c[4] = {S(0), h / S(2), h / S(2), h};
      const S wgt[4] = {h / S(6), h / S(3), h / S(3), h / S(6)};
      for (int j = 0; j < d; ++j) {
        ap[j] = V{};
        aq[j] = V{};
        yp[j] = p[j];
        yq[j] = q[j];
      }
      for (int s = 0; s < 4; ++s) {
        grad(t + c[s], yp, yq, gp, gq);  // k_s = (−gq, gp)
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
  // outputs on entry and those of the inputs on exit. Parameter cotangents go to acc.
  template <class Acc>
  HINN_HD void backward(int scheme, V t, S h, const V* p, const V* q, V* pb, V* qb, Acc& acc) {
    const int d = nd.d;
    V* gp = st;
    V* gq = st + d;
    V* a = st + 2 * d;   // d
    V* b = st + 3 * d;   // d
    if (scheme == kEuler) {
      for (int j = 0; j < d; ++j) {
        a[j] = h * qb[j];
        b[j] = -h * pb[j];
      }
      vjp_pq(t, p, q, a, b, pb, qb, acc);
    } else if (scheme == kSymplecticEuler) {
      V* p1 = st + 4 * d;
      grad(t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) {
        p1[j] = p[j] - h * gq[j];
        a[j] = h * qb[j];
      }
      vjp_pq(t, p1, q, a, (const V*)nullptr, pb, qb, acc);  // q' = q + h ∂pH(t, p', q)
      for (int j = 0; j < d; ++j) b[j] = -h * pb[j];
      vjp_pq(t, p, q, (const V*)nullptr, b, pb, qb, acc);   // p' = p − h ∂qH(t, p, q)
    } else if (scheme == kLeapfrog) {
      const S hh = h / S(2);
      V* pm = st + 4 * d;
      V* q1 = st + 5 * d;
      grad(t, p, q, gp, gq);
      for (int j = 0; j < d; ++j) pm[j] = p[j] - hh * gq[j];
      grad(t + hh, pm, q, gp, gq);
      for (int j = 0; j < d; ++j) {
        q1[j] = q[j] + h * gp[j];
        b[j] = -hh * pb[j];
      }
      vjp_pq(t + h, pm, q1, (const V*)nullptr, b, pb, qb, acc);  // p' = p½ − h/2 ∂qH(t+h, p½, q')
      for (int j = 0; j < d; ++j) a[j] = h * qb[j];
      vjp_pq(t + hh, pm, q, a, (const V*)nullptr, pb, qb, acc);  // q' = q + h ∂pH(t+h/2, p½, q)
      for (int j = 0; j < d; ++j) b[j] = -hh * pb[j];
      vjp_pq(t, p, q, (const V*)nullptr, b, pb, qb, acc);        // p½ = p − h/2 ∂qH(t, p, q)
    } else {  // rk4
      const S c[4] = {S(0), h / S(2), h / S(2), h};
      const S wgt[4] = {h / S(6), h / S(3), h / S(3), h / S(6)};
      V* Y = st + 4 * d;   // stage points 2..4: 6 d  (p then q for each)
      V* kbp = a;          // cotangent of the current stage's k, p part
      V* kbq = b;
      V* tp = st + 10 * d;  // vjp result
      V* tq = st + 11 * d;
      // recompute stage points y_2, y_3, y_4
      const V* yp = p;
      const V* yq = q;
      for (int s = 0; s < 3; ++s) {
        grad(t + c[s], yp, yq, gp, gq);
        V* np = Y + 2 * s * d;
        V* nq = np + d;
        for (int j = 0; j < d; ++j) {
          np[j] = p[j] - c[s + 1] * gq[j];
          nq[j] = q[j] + c[s + 1] * gp[j];
        }
        yp = np;
        yq = nq;
      }
      // k̄_s = wgt_s ȳ' + c_{s+1} ȳ_{s+1}; the input's ȳ gathers every stage point's cotangent
      // ȳ_{s+1} (cotangent of the later stage point) lives in gp/gq; the input cotangent accumulates in
      // tp/tq so that pb/qb keep ȳ' for the whole sweep.
      V* ybp = gp;
      V* ybq = gq;
      for (int j = 0; j < d; ++j) {
        ybp[j] = V{};
        ybq[j] = V{};
        tp[j] = V{};
        tq[j] = V{};
      }
      for (int s = 3; s >= 0; --s) {
        for (int j = 0; j < d; ++j) {
          const S cn = s < 3 ? c[s + 1] : S(0);
          kbp[j] = wgt[s] * pb[j] + cn * ybp[j];
          kbq[j] = wgt[s] * qb[j] + cn * ybq[j];
        }
        const V* sp = s == 0 ? p : Y + 2 * (s - 1) * d;
        const V* sq = s == 0 ? q : sp + d;
        // k = (−∂qH, ∂pH): cotangent on ∇H is (∂pH ← k̄_q, ∂qH ← −k̄_p)
        for (int j = 0; j < d; ++j) {
          ybp[j] = V{};
          ybq[j] = V{};
          kbp[j] = -kbp[j];
        }
        vjp_pq(t + c[s], sp, sq, kbq, kbp, ybp, ybq, acc);
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
};

}  // namespace hinn
