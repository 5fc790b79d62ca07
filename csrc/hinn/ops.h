// The operations' drivers, written once: the body of each op for one lane value of samples (a block of
// SIMD lanes on the CPU, one sample per CUDA thread), run by cpu.cpp's block loop and by cuda.cu's
// grid-stride loop alike. The scalar CPU build runs exactly what a CUDA thread runs, layouts, offsets and
// padding included; what is left to cpu.cpp and cuda.cu is the loop, the parameter-cotangent reduction
// and the memory.
#pragma once
#include <cstdint>

#include "schemes.h"

namespace hinn::HINN_ISA {

// Samples [n0, n0 + cnt) as one lane value. Lanes past cnt repeat sample n0 + cnt − 1 (finite values),
// or read zero where the values are cotangents, so that they add nothing to parameter sums; a CUDA
// thread past N is the block {N − 1, 0}: the last sample, computed for nothing and never stored.
struct Block {
  long n0;
  int cnt;
};

// dst[j] ← sample rows of src (row-major (N, width)), j < width
template <class P, class S>
HINN_HD void load(const Block& b, P dst, const S* src, int width, bool zero_pad) {
  using V = elem_t<P>;
  for (int j = 0; j < width; ++j) {
    V v{};
    for (int l = 0; l < lanes<V>::n; ++l) {
      const int ll = l < b.cnt ? l : (b.cnt > 0 ? b.cnt - 1 : 0);
      lane(v, l) = (l < b.cnt || !zero_pad) ? src[(b.n0 + ll) * width + j] : S(0);
    }
    dst[j] = v;
  }
}
template <class S, class P>
HINN_HD void store(const Block& b, S* dst, P src, int width) {
  for (int l = 0; l < b.cnt; ++l)
    for (int j = 0; j < width; ++j) dst[(b.n0 + l) * width + j] = lane(src[j], l);
}
// 1 on the block's samples, 0 on padding
template <class V>
HINN_HD V live_mask(const Block& b) {
  V m{};
  for (int l = 0; l < b.cnt && l < lanes<V>::n; ++l) lane(m, l) = scalar_t<V>(1);
  return m;
}

// The scheme's state from an observed (p, q) in its first d entries: Tao's copies start at x = q, y = p;
// and its adjoint, the cotangent of the observed (p, q) gathered in the first d entries.
template <class Sc, class P>
HINN_HD void lift_state(int d, P p, P q) {
  for (int c = 1; c < Sc::kStateMult; ++c)
    for (int j = 0; j < d; ++j) {
      p[c * d + j] = p[j];
      q[c * d + j] = q[j];
    }
}
template <class Sc, class P>
HINN_HD void fold_cotangent(int d, P pb, P qb) {
  for (int c = 1; c < Sc::kStateMult; ++c)
    for (int j = 0; j < d; ++j) {
      pb[j] += pb[c * d + j];
      qb[j] += qb[c * d + j];
    }
}

// Lane values of scratch that one lane value of `op` needs, in the order its body lays it out.
inline long op_scratch(Op op, const NetDesc& nd, const Call& c) {
  const long n = nd.n_in();
  switch (op) {
    case Op::Hamiltonian: return n + primal_size(nd);                       // x | pass
    case Op::Grad: return 2 * n + primal_size(nd) + work_size(nd);          // x g | pass | work
    case Op::GradBackward:                                                    // x v x̄ | pass | work
    case Op::DerivativeLoss: return 3 * n + primal_size(nd) + work_size(nd);  // x g(→v) x̄ | pass | work
    default: break;
  }
  const SchemeShape& sh = kSchemeShapes[c.scheme];
  const long ds = sh.state_mult * nd.d, K = c.steps;
  const bool bwd = op != Op::Rollout && op != Op::WindowError;
  const long step = sh.scratch(nd.d) + stages_scratch(nd, bwd ? sh.stages : sh.forward_stages);
  if (op == Op::Rollout) return 2 * ds + step;                         // p q | step
  if (op == Op::WindowError) return 2 * ds + 2 * nd.d + step;          // p q | targets | step
  if (op == Op::RolloutBackward) return 4 * ds + step;                 // p q p̄ q̄ | step
  return 2 * ds + 2 * (K + 1) * ds + 2 * K * nd.d + step;              // p̄ q̄ | states | targets | step
}

// What a differentiated rollout may keep for its backward (the buffer `kept`, optional): per sample and
// step, its stages' adjoint flags (one lane value), the scheme's scratch and its stages' passes, which
// the backward then reads instead of recomputing the step's network evaluations. Samples are padded to
// kKeptPad; the driver lays them out (cpu.cpp: kept_view).
constexpr long kKeptPad = 64;  // a multiple of every CPU block's samples
HINN_HD long kept_padded(long N) { return (N + kKeptPad - 1) / kKeptPad * kKeptPad; }
HINN_HD long kept_values(const NetDesc& nd, long scheme_scratch, int stages) {  // per sample and step
  return 1 + scheme_scratch + (long)stages * primal_size(nd);
}
template <class Sc>
HINN_HD long kept_values(const NetDesc& nd) {
  return kept_values(nd, Sc::scratch(nd.d), Sc::kStages);
}
inline long kept_values(const NetDesc& nd, int scheme) {
  const SchemeShape& sh = kSchemeShapes[scheme];
  return kept_values(nd, sh.scratch(nd.d), sh.stages);
}
inline long kept_size(const NetDesc& nd, const Call& c) { return kept_padded(c.N) * c.steps * kept_values(nd, c.scheme); }

// W: the network's width at compile time (0: any); V: the lane type; P: how scratch is addressed.
template <int W, class V, class P>
struct Driver {
  using S = scalar_t<V>;
  using St = Stages<W, V, P>;
  const NetDesc& nd;
  const Call& c;
  const S* th;

  HINN_HD Driver(const NetDesc& nd_, const Call& c_, const S* th_) : nd(nd_), c(c_), th(th_) {}

  template <class Sc>
  HINN_HD St stages(P sc) const {
    return St(nd, th, sc + Sc::scratch(nd.d));
  }
  HINN_HD V time(const Block& b) const {
    V t;
    load(b, &t, c.t.as<const S>(), 1, false);
    return t;
  }
  // A window's start: the block's (p, q) in the scheme's state (lifted); returns its t
  template <class Sc>
  HINN_HD V load_start(const Block& b, P p, P q) const {
    load(b, p, c.p.as<const S>(), nd.d, false);
    load(b, q, c.q.as<const S>(), nd.d, false);
    lift_state<Sc>(nd.d, p, q);
    return time(b);
  }
  // x = (t, p, q) of the block
  HINN_HD void load_x(const Block& b, P x) const {
    const int d = nd.d, o = nd.time;
    if (o) load(b, x, c.t.as<const S>(), 1, false);
    load(b, x + o, c.p.as<const S>(), d, false);
    load(b, x + o + d, c.q.as<const S>(), d, false);
  }

  HINN_HD void hamiltonian(const Block& b, P sc) const {
    const int n = nd.n_in();
    load_x(b, sc);
    const V H = primal<W, false>(nd, th, sc, sc + n);
    store(b, c.H.as<S>(), &H, 1);
  }

  HINN_HD void grad(const Block& b, P sc) const {
    const int d = nd.d, n = nd.n_in(), o = nd.time;
    P x = sc, g = x + n, pass = g + n;
    load_x(b, x);
    const V H = value_and_grad<W, false>(nd, th, x, pass, g, pass + primal_size(nd));
    store(b, c.H.as<S>(), &H, 1);
    store(b, c.dH_dp.as<S>(), g + o, d);
    store(b, c.dH_dq.as<S>(), g + o + d, d);
  }

  template <class Acc>
  HINN_HD void grad_backward(const Block& b, P sc, Acc& acc) const {
    const int d = nd.d, n = nd.n_in(), o = nd.time;
    P x = sc, v = x + n, xb = v + n, pass = xb + n;
    load_x(b, x);
    if (o) v[0] = V{};
    load(b, v + o, c.dH_dp_bar.as<const S>(), d, true);
    load(b, v + o + d, c.dH_dq_bar.as<const S>(), d, true);
    V cH;
    load(b, &cH, c.H_bar.as<const S>(), 1, true);
    for (int i = 0; i < n; ++i) xb[i] = V{};
    primal<W, true, false>(nd, th, x, pass);
    vjp_from_primal<W>(nd, th, pass, v, cH, xb, acc, pass + primal_size(nd));
    if (o) store(b, c.t_bar.as<S>(), xb, 1);
    store(b, c.p_bar.as<S>(), xb + o, d);
    store(b, c.q_bar.as<S>(), xb + o + d, d);
  }

  // HNN's loss at (t, p, q) and its θ-gradient in one pass: ∇H (the primal and gradient sweeps kept),
  // the error e = m·(∇H − target) (m: 1 on live lanes, 0 on padding), then the vector–Jacobian product
  // with cotangent 2·scale·e on ∇H, reading the kept pass and adjoints instead of recomputing them.
  template <class Acc>
  HINN_HD void derivative_loss(const Block& b, P sc, Acc& acc) const {
    const int d = nd.d, n = nd.n_in(), o = nd.time;
    const S scale = S(c.scale);
    P x = sc, g = x + n, xb = g + n, pass = xb + n;
    load_x(b, x);
    value_and_grad<W, true, false>(nd, th, x, pass, g, pass + primal_size(nd), true);
    load(b, xb + o, c.target_p.as<const S>(), d, false);  // x̄ holds the targets until the cotangent is formed
    load(b, xb + o + d, c.target_q.as<const S>(), d, false);
    const V m = live_mask<V>(b);
    V loss{};
    if (o) g[0] = V{};  // g becomes the cotangent v on ∇H (none on ∂H/∂t)
    for (int j = o; j < n; ++j) {
      const V e = m * (g[j] - xb[j]);
      loss += e * e;
      g[j] = S(2) * scale * e;
    }
    for (int i = 0; i < n; ++i) xb[i] = V{};
    vjp_from_primal<W, true>(nd, th, pass, g, V{}, xb, acc, pass + primal_size(nd), true);
    loss = scale * loss;
    store(b, c.losses.as<S>(), &loss, 1);
  }

  // window_loss's losses without its backward: the state stepped in place, its observed part compared
  // with each step's targets
  template <class Sc>
  HINN_HD void window_error(const Block& b, P sc) const {
    const int d = nd.d, ds = Sc::kStateMult * d;
    const long Nd = c.N * d;
    const S h = S(c.h);
    const typename Sc::Params prm(c.args);
    P p = sc, q = p + ds, tp = q + ds, tq = tp + d, ssc = tq + d;
    St st = stages<Sc>(ssc);
    const V t = load_start<Sc>(b, p, q);
    V loss{};
    for (long k = 0; k < c.steps; ++k) {
      Sc::template forward<false>(st, prm, ssc, t + S(k) * h, h, p, q);
      load(b, tp, c.target_p.as<const S>() + k * Nd, d, false);
      load(b, tq, c.target_q.as<const S>() + k * Nd, d, false);
      for (int j = 0; j < d; ++j) {
        const V ep = p[j] - tp[j], eq = q[j] - tq[j];
        loss += ep * ep + eq * eq;
      }
    }
    loss = S(c.scale) * loss;
    store(b, c.losses.as<S>(), &loss, 1);
    if (st.failed) report_failure(c.status.ptr);
  }

  // Step k's part r of the block's kept stages, the passes made st's: r[0] the adjoint flags, r + 1 the
  // scheme's scratch.
  template <class Sc>
  HINN_HD P kept_step(St& st, P kept, long k) const {
    const P r = kept + k * kept_values<Sc>(nd);
    st.prim = r + 1 + Sc::scratch(nd.d);
    return r;
  }

  // (t, p, q) -> the final state, or every state with `trajectory` ((steps+1, N, ds), the scheme's state);
  // with `kept` (the block's part of it), each step keeps its stages there for rollout_backward.
  template <class Sc>
  HINN_HD void rollout(const Block& b, P sc, P kept) const {
    const int d = nd.d, ds = Sc::kStateMult * d;
    const long Nds = c.N * ds;
    const S h = S(c.h);
    const typename Sc::Params prm(c.args);
    P p = sc, q = p + ds, ssc = q + ds;
    St st = stages<Sc>(ssc);
    const V t = load_start<Sc>(b, p, q);
    if (c.trajectory) {
      store(b, c.P.as<S>(), p, ds);
      store(b, c.Q.as<S>(), q, ds);
    }
    for (long k = 0; k < c.steps; ++k) {
      if (kept) {
        const P r = kept_step<Sc>(st, kept, k);
        Sc::template forward<true>(st, prm, r + 1, t + S(k) * h, h, p, q);
        r[0] = splat<V>(S(st.adjoints));
      } else {
        Sc::template forward<false>(st, prm, ssc, t + S(k) * h, h, p, q);
      }
      if (c.trajectory || k == c.steps - 1) {
        const long off = c.trajectory ? (k + 1) * Nds : 0;
        store(b, c.P.as<S>() + off, p, ds);
        store(b, c.Q.as<S>() + off, q, ds);
      }
    }
    if (st.failed) report_failure(c.status.ptr);
  }

  // The reverse sweep over what the forward saw (the trajectory, or the single step's input): each step's
  // stages recomputed by the scheme's forward<true> from its stored input, or read from `kept` where the
  // forward kept them, then its backward.
  template <class Sc, class Acc>
  HINN_HD void rollout_backward(const Block& b, P sc, Acc& acc, P kept) const {
    const int d = nd.d, ds = Sc::kStateMult * d;
    const long Nds = c.N * ds;
    const S h = S(c.h);
    const typename Sc::Params prm(c.args);
    P p = sc, q = p + ds, pb = q + ds, qb = pb + ds, ssc = qb + ds;
    St st = stages<Sc>(ssc);
    const V t = time(b);
    const long last = c.trajectory ? c.steps * Nds : 0;
    load(b, pb, c.P_bar.as<const S>() + last, ds, true);
    load(b, qb, c.Q_bar.as<const S>() + last, ds, true);
    for (long k = c.steps - 1; k >= 0; --k) {
      P stage_scratch = ssc;  // the step's stages: kept by the forward, or recomputed here
      if (kept) {
        const P r = kept_step<Sc>(st, kept, k);
        st.adjoints = unsigned(lane(r[0], 0));
        stage_scratch = r + 1;
      } else {
        if (c.trajectory) {
          load(b, p, c.P.as<const S>() + k * Nds, ds, false);
          load(b, q, c.Q.as<const S>() + k * Nds, ds, false);
        } else {
          load(b, p, c.P.as<const S>(), d, false);
          load(b, q, c.Q.as<const S>(), d, false);
          lift_state<Sc>(d, p, q);
        }
        Sc::template forward<true, false>(st, prm, ssc, t + S(k) * h, h, p, q);
      }
      Sc::backward(st, prm, stage_scratch, h, pb, qb, acc);
      if (c.trajectory) {  // the cotangent of state k itself (p, q are free again)
        load(b, p, c.P_bar.as<const S>() + k * Nds, ds, true);
        load(b, q, c.Q_bar.as<const S>() + k * Nds, ds, true);
        for (int j = 0; j < ds; ++j) {
          pb[j] += p[j];
          qb[j] += q[j];
        }
      }
    }
    fold_cotangent<Sc>(d, pb, qb);
    store(b, c.p_bar.as<S>(), pb, d);
    store(b, c.q_bar.as<S>(), qb, d);
    if (st.failed) report_failure(c.status.ptr);
  }

  // Training windows, forward and backward in one pass: K steps from the observed (p0, q0) into TP, TQ
  // ((K+1) ds each; row 0 = the start), the squared error of the observed part against the targets
  // (row k: the state after step k+1), then the reverse sweep with cotangents 2·scale·m·error (m: 1 on
  // live lanes, 0 on padding). The losses scale·m·Σ error², the cotangents of (p0, q0) and θ (to acc).
  // Nothing leaves the per-sample scratch in between; the last step keeps its stages, every other is
  // recomputed in place from its input, on the row of its output (no longer needed by then).
  template <class Sc, class Acc>
  HINN_HD void window_loss(const Block& b, P sc, Acc& acc) const {
    const int d = nd.d, ds = Sc::kStateMult * d;
    const long K = c.steps, Nd = c.N * d;
    const S h = S(c.h), scale = S(c.scale);
    const typename Sc::Params prm(c.args);
    P pb = sc, qb = pb + ds, TP = qb + ds, TQ = TP + (K + 1) * ds, GP = TQ + (K + 1) * ds, GQ = GP + K * d,
      ssc = GQ + K * d;
    St st = stages<Sc>(ssc);
    const V t = load_start<Sc>(b, TP, TQ);
    for (long k = 0; k < K; ++k) {
      load(b, GP + k * d, c.target_p.as<const S>() + k * Nd, d, false);
      load(b, GQ + k * d, c.target_q.as<const S>() + k * Nd, d, false);
    }
    const V m = live_mask<V>(b);
    for (long k = 0; k < K; ++k) {
      P p = TP + (k + 1) * ds, q = TQ + (k + 1) * ds;
      for (int j = 0; j < ds; ++j) {
        p[j] = TP[k * ds + j];
        q[j] = TQ[k * ds + j];
      }
      if (k == K - 1) Sc::template forward<true>(st, prm, ssc, t + S(k) * h, h, p, q);
      else Sc::template forward<false>(st, prm, ssc, t + S(k) * h, h, p, q);
    }
    V loss{};
    for (int j = 0; j < ds; ++j) {
      pb[j] = V{};
      qb[j] = V{};
    }
    for (long k = K - 1; k >= 0; --k) {
      P p1 = TP + (k + 1) * ds, q1 = TQ + (k + 1) * ds;
      for (int j = 0; j < d; ++j) {
        const V ep = m * (p1[j] - GP[k * d + j]);
        const V eq = m * (q1[j] - GQ[k * d + j]);
        loss += ep * ep + eq * eq;
        pb[j] += S(2) * scale * ep;
        qb[j] += S(2) * scale * eq;
      }
      if (k < K - 1) {
        for (int j = 0; j < ds; ++j) {
          p1[j] = TP[k * ds + j];
          q1[j] = TQ[k * ds + j];
        }
        Sc::template forward<true, false>(st, prm, ssc, t + S(k) * h, h, p1, q1);
      }
      Sc::backward(st, prm, ssc, h, pb, qb, acc);
    }
    fold_cotangent<Sc>(d, pb, qb);
    loss = scale * loss;
    store(b, c.losses.as<S>(), &loss, 1);
    store(b, c.p_bar.as<S>(), pb, d);
    store(b, c.q_bar.as<S>(), qb, d);
    if (st.failed) report_failure(c.status.ptr);
  }

  // The body of `op` for one block (Acc: where parameter cotangents go; kept: the block's part of a
  // rollout's kept stages, or null).
  template <Op op, class Acc>
  HINN_HD void run(const Block& b, P sc, Acc& acc, P kept = P{}) const {
    if constexpr (op == Op::Hamiltonian) hamiltonian(b, sc);
    else if constexpr (op == Op::Grad) grad(b, sc);
    else if constexpr (op == Op::GradBackward) grad_backward(b, sc, acc);
    else if constexpr (op == Op::DerivativeLoss) derivative_loss(b, sc, acc);
    else
      visit_scheme(c.scheme, [&](auto sch) {
        using Sc = decltype(sch);
        if constexpr (op == Op::Rollout) rollout<Sc>(b, sc, kept);
        else if constexpr (op == Op::RolloutBackward) rollout_backward<Sc>(b, sc, acc, kept);
        else if constexpr (op == Op::WindowError) window_error<Sc>(b, sc);
        else window_loss<Sc>(b, sc, acc);
      });
  }
};

}  // namespace hinn::HINN_ISA
