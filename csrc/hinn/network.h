// Per-sample math of the hinn ResNet Hamiltonian, shared by the CPU and CUDA drivers.
//
//   u_0 = σ(x K_0 + b_0),  u_l = u_{l-1} + h_r σ(u_{l-1} K_l + b_l) (l = 1..L),  H = u_L k + b_out
//
// K is stored (in, out) row-major, as in hessQuik. The flat parameter vector is hessQuik's order:
// K_0, b_0, K_1, b_1, ..., K_L, b_L, k_out, b_out.
//
// V is the lane type (lanes.h), S the parameter scalar. W > 0 fixes the width at compile time (fast path);
// W = 0 reads it from the descriptor (any width). Every function works on caller-provided scratch, seen
// through a pointer-like type (strided.h: V* on the CPU, a strided view on CUDA).
#pragma once
#include "activation.h"
#include "strided.h"

namespace hinn::HINN_ISA {

// A stored primal pass at one input x: what the gradient and the vector–Jacobian product need.
// Layout (lane values): x (n_in) | σ'(z_l) (L+1)w | σ''(z_l) (L+1)w | u_{l-1} (row l >= 1; row 0 is
// work space) (L+1)w | u_L (w) | ∂H/∂u_l (L+1)w, written by a gradient sweep that keeps its adjoints.
// Depth 0: x (n_in) | σ(z) (w, tanh only; σ' and σ'' are two products of it). Every quantity of that
// network is a sum of per-channel terms, swept once over the channels (shallow_* below).
HINN_HD long primal_size(const NetDesc& nd) {
  return nd.n_in() + (nd.depth == 0 ? nd.width : 4L * (nd.depth + 1) * nd.width + nd.width);
}
// Where the adjoints ∂H/∂u_l of a stored pass start (row l = 0..L).
HINN_HD long adjoint_offset(const NetDesc& nd) { return nd.n_in() + 3L * (nd.depth + 1) * nd.width + nd.width; }
// Work space of grad_from_primal and vjp_from_primal, in lane values.
HINN_HD long work_size(const NetDesc& nd) { return nd.depth == 0 ? 0 : 5L * nd.width + 2L * (nd.depth + 1) * nd.width; }

// acc(i, a b + c d): a parameter cotangent that is a sum of two products. A driver may overload it for
// its accumulator (found by argument-dependent lookup) to fold the products straight into its sum.
template <class Acc, class V>
HINN_HD void acc_outer(Acc& acc, long i, const V& a, const V& b, const V& c, const V& d) {
  acc(i, a * b + c * d);
}

// acc(ol + j w + k, u_j z̄_k + u̇_j ż̄_k) for the w × w weights of a residual layer, weight by weight.
template <class Acc, class UP, class UDP, class ZP>
HINN_HD void fold_layer_weights(Acc& acc, long ol, int w, UP u, UDP ud, ZP z, ZP zd) {
  using V = elem_t<ZP>;
  for (int j = 0; j < w; ++j) {
    const V uj = u[j], udj = ud[j];
    for (int k = 0; k < w; ++k) acc_outer(acc, ol + (long)j * w + k, uj, V(z[k]), udj, V(zd[k]));
  }
}
// The same sums, the hook the reverse sweep calls: a driver may overload it (argument-dependent lookup)
// to form them over a block of samples as one matrix product (cpu.cpp).
template <class Acc, class UP, class UDP, class ZP>
HINN_HD void acc_layer_weights(Acc& acc, long ol, int w, UP u, UDP ud, ZP z, ZP zd) {
  fold_layer_weights(acc, ol, w, u, ud, z, zd);
}

// Depth 0, the HNN papers' one hidden layer, usually 200–5000 wide: H = σ(x K_0 + b_0)·k + b_out.
// H (WantH) and g = ∇_x H (WantG) in one sweep over the channels; with Keep, σ(z) into srow (a tanh
// pass's row). The general passes keep several rows of w lane values per sample, which at those widths
// leave the cache between sweeps. Act: the activation at compile time (tanh, the common case), or -1 to
// read it from nd: the channel's body is then one straight-line stream that the compiler interleaves
// across channels (as activate_layer).
template <int Act, bool WantH, bool WantG, bool Keep, class V, class S, class XP, class GP, class SP>
HINN_HD V shallow_value_grad_act(const NetDesc& nd, const S* th, XP x, GP g, SP srow) {
  const int w = nd.width, n_in = nd.n_in(), act = Act >= 0 ? Act : nd.act;
  const S* b0 = th + (long)n_in * w;
  const S* ko = th + nd.off_out();
  V H = splat<V>(ko[w]);
  if (WantG)
    for (int i = 0; i < n_in; ++i) g[i] = V{};
  for (int k = 0; k < w; ++k) {
    V z = splat<V>(b0[k]);
    for (int i = 0; i < n_in; ++i) z += x[i] * th[i * w + k];
    V s{}, d1{}, d2{};
    activate(act, z, s, d1, d2);
    if (Keep) srow[k] = s;
    if (WantH) H += s * ko[k];
    if (WantG) {
      const V c = d1 * ko[k];
      for (int i = 0; i < n_in; ++i) g[i] += c * th[i * w + k];
    }
  }
  return H;
}
// shallow_value_grad_act with the activation dispatched (Keep: only tanh keeps σ(z)).
template <bool WantH, bool WantG, bool Keep, class V, class S, class XP, class GP, class SP>
HINN_HD V shallow_value_grad(const NetDesc& nd, const S* th, XP x, GP g, SP srow) {
  if (nd.act == kTanh) return shallow_value_grad_act<kTanh, WantH, WantG, Keep, V>(nd, th, x, g, srow);
  return shallow_value_grad_act<-1, WantH, WantG, false, V>(nd, th, x, g, srow);
}
// The depth-0 pass at x into P (x, and σ(z) with Full and tanh); H (WantH) and g (WantG) on the way.
template <bool WantH, bool WantG, bool Full, class S, class XP, class PP, class GP>
HINN_HD elem_t<PP> shallow_pass(const NetDesc& nd, const S* th, XP x, PP P, GP g) {
  using V = elem_t<PP>;
  const int n_in = nd.n_in();
  for (int i = 0; i < n_in; ++i) P[i] = x[i];
  if (!WantH && !WantG && !(Full && nd.act == kTanh)) return V{};
  return shallow_value_grad<WantH, WantG, Full, V>(nd, th, x, g, P + n_in);
}

// vjp_from_primal at depth 0, one sweep over the channels of a Full pass. Per channel k, with a = k_out[k]
// (the adjoint ∂H/∂u_0 of a network without residual layers) and ż = v·K_0[:, k] the tangent:
// z̄ = σ'' a ż + σ' a cH, ż̄ = σ' a. Tanh reads σ(z) from the pass; other activations recompute it.
// ParamsOnly: cH = 0 and x̄ not wanted (a loss on ∇H at data points), each channel a few products less.
template <int Act, bool ParamsOnly, class V, class S, class PP, class VP, class XBP, class Acc>
HINN_HD void shallow_vjp_act(const NetDesc& nd, const S* th, PP P, VP v, V cH, XBP xbar, Acc& acc) {
  const int w = nd.width, n_in = nd.n_in(), act = Act >= 0 ? Act : nd.act;
  const long ob = (long)n_in * w, oo = nd.off_out();
  const S* b0 = th + ob;
  const S* ko = th + oo;
  const PP x = P, srow = P + n_in;
  for (int k = 0; k < w; ++k) {
    V zd{}, s{}, d1{}, d2{};
    for (int i = 0; i < n_in; ++i) zd += v[i] * th[i * w + k];
    if (Act == kTanh) {
      s = srow[k];
      d1 = S(1) - s * s;
      d2 = S(-2) * s * d1;
    } else {
      V z = splat<V>(b0[k]);
      for (int i = 0; i < n_in; ++i) z += x[i] * th[i * w + k];
      activate(act, z, s, d1, d2);
    }
    const S a = ko[k];
    acc(oo + k, ParamsOnly ? d1 * zd : cH * s + d1 * zd);
    const V zdb = d1 * a;
    const V zb = ParamsOnly ? a * (d2 * zd) : a * (d2 * zd + d1 * cH);
    for (int i = 0; i < n_in; ++i) {
      acc_outer(acc, (long)i * w + k, V(x[i]), zb, V(v[i]), zdb);
      if (!ParamsOnly) xbar[i] += zb * th[i * w + k];
    }
    acc(ob + k, zb);
  }
  acc(oo + w, cH);
}
template <bool ParamsOnly, class V, class S, class PP, class VP, class XBP, class Acc>
HINN_HD void shallow_vjp(const NetDesc& nd, const S* th, PP P, VP v, V cH, XBP xbar, Acc& acc) {
  if (nd.act == kTanh) shallow_vjp_act<kTanh, ParamsOnly>(nd, th, P, v, cH, xbar, acc);
  else shallow_vjp_act<-1, ParamsOnly>(nd, th, P, v, cH, xbar, acc);
}

// How many outputs a matrix–vector sweep computes at once: four for a block of 512-bit registers (16
// accumulators beside the block's 4 registers of input, of 32), else two.
template <class V>
HINN_HD constexpr int outputs_per_sweep() {
#if HINN_VEC_BYTES == 64
  return lanes<V>::n > lanes<base_t<V>>::n ? 4 : 2;
#else
  return 2;
#endif
}

// out(k, z_k) for every output k of z = b + u K (b null: zero), u of width w, K (w, w) row-major. Several
// outputs per sweep over u (outputs_per_sweep): as many times the independent FMA chains of one.
template <class V, class S, class UP, class Out>
HINN_HD void layer_outputs(int w, UP u, const S* K, const S* b, Out&& out) {
  int k = 0;
  if constexpr (outputs_per_sweep<V>() == 4)
    for (; k + 4 <= w; k += 4) {
      V z0 = b ? splat<V>(b[k]) : V{}, z1 = b ? splat<V>(b[k + 1]) : V{};
      V z2 = b ? splat<V>(b[k + 2]) : V{}, z3 = b ? splat<V>(b[k + 3]) : V{};
      for (int j = 0; j < w; ++j) {
        const V uj = u[j];
        const S* Kj = K + (long)j * w + k;
        z0 += uj * Kj[0];
        z1 += uj * Kj[1];
        z2 += uj * Kj[2];
        z3 += uj * Kj[3];
      }
      out(k, z0);
      out(k + 1, z1);
      out(k + 2, z2);
      out(k + 3, z3);
    }
  for (; k + 2 <= w; k += 2) {
    V z0 = b ? splat<V>(b[k]) : V{}, z1 = b ? splat<V>(b[k + 1]) : V{};
    for (int j = 0; j < w; ++j) madd2(z0, z1, V(u[j]), K[j * w + k], K[j * w + k + 1]);
    out(k, z0);
    out(k + 1, z1);
  }
  for (; k < w; ++k) {
    V zk = b ? splat<V>(b[k]) : V{};
    for (int j = 0; j < w; ++j) zk += u[j] * K[j * w + k];
    out(k, zk);
  }
}

// a += K c for a, c of width w, K (w, w) row-major: the reverse sweeps' product. Two rows of K per sweep
// over c, as layer_outputs takes two outputs per sweep over u.
template <class V, class S, class CP, class AP>
HINN_HD void add_rows_times(int w, const S* K, CP c, AP a) {
  int j = 0;
  if constexpr (outputs_per_sweep<V>() == 4)
    for (; j + 4 <= w; j += 4) {
      V a0 = a[j], a1 = a[j + 1], a2 = a[j + 2], a3 = a[j + 3];
      const S* Kj = K + (long)j * w;
      for (int k = 0; k < w; ++k) {
        const V ck = c[k];
        a0 += Kj[k] * ck;
        a1 += Kj[w + k] * ck;
        a2 += Kj[2 * w + k] * ck;
        a3 += Kj[3 * w + k] * ck;
      }
      a[j] = a0;
      a[j + 1] = a1;
      a[j + 2] = a2;
      a[j + 3] = a3;
    }
  for (; j + 2 <= w; j += 2) {
    V a0 = a[j], a1 = a[j + 1];
    for (int k = 0; k < w; ++k) madd2(a0, a1, V(c[k]), K[j * w + k], K[(j + 1) * w + k]);
    a[j] = a0;
    a[j + 1] = a1;
  }
  for (; j < w; ++j) {
    V acc = a[j];
    for (int k = 0; k < w; ++k) acc += K[j * w + k] * c[k];
    a[j] = acc;
  }
}

// Primal pass: stores x and the layer quantities in P (primal_size), returns H(x). With Full = false
// only what grad_from_primal reads (σ') is stored: the forward-only paths skip the rest. Without Value
// the caller ignores H, which a depth-0 pass then does not compute.
template <int W, bool Full = true, bool Value = true, class S, class XP, class PP>
HINN_PASS elem_t<PP> primal(const NetDesc& nd, const S* th, XP x, PP P) {
  using V = elem_t<PP>;
  if (nd.depth == 0) return shallow_pass<Value, false, Full>(nd, th, x, P, P);
  const int w = W ? W : nd.width;
  const int n_in = nd.n_in();
  const int L = nd.depth;
  const S hr = S(nd.hr);
  PP X = P;
  PP D1 = X + n_in;
  PP D2 = D1 + (L + 1) * w;
  PP UI = D2 + (L + 1) * w;
  V u[W ? W : 1], ucopy[W ? W : 1], zbuf[W ? W : 1];
  PP uu = W ? as_like(P, u) : UI;  // generic width: u lives in row 0 of UI (unused by the reverse sweeps)
  if (Full)
    for (int i = 0; i < n_in; ++i) X[i] = x[i];
  // a layer's pre-activations first, then its activations (activate_layer). Generic width: z goes in the
  // layer's σ'' row, each entry read before its σ'' overwrites it (without Full the row is unused).
  for (int k = 0; k < w; ++k) {
    V zk = splat<V>(th[n_in * w + k]);
    for (int i = 0; i < n_in; ++i) zk += x[i] * th[i * w + k];
    (W ? as_like(P, zbuf) : D2)[k] = zk;
  }
  activate_layer<V>(nd.act, w, W ? as_like(P, zbuf) : D2, [&](int k, V s, V d1, V d2) {
    uu[k] = s;
    D1[k] = d1;
    if (Full) D2[k] = d2;
  });
  for (int l = 1; l <= L; ++l) {
    const S* K = th + nd.off_layer(l);
    const S* b = K + w * w;
    PP ui = (Full || !W) ? UI + l * w : as_like(P, ucopy);
    PP zz = W ? as_like(P, zbuf) : D2 + l * w;
    for (int k = 0; k < w; ++k) ui[k] = uu[k];
    layer_outputs<V>(w, ui, K, b, [&](int k, V zk) { zz[k] = zk; });
    activate_layer<V>(nd.act, w, zz, [&](int k, V s, V d1, V d2) {
      uu[k] = ui[k] + hr * s;
      D1[l * w + k] = d1;
      if (Full) D2[l * w + k] = d2;
    });
  }
  const S* ko = th + nd.off_out();
  PP UL = UI + (L + 1) * w;
  V H = splat<V>(ko[w]);
  for (int k = 0; k < w; ++k) {
    if (Full) UL[k] = uu[k];
    H += uu[k] * ko[k];
  }
  return H;
}

// g = ∇_x H from a stored primal pass. work: work_size. keep: also store the adjoints a_l = ∂H/∂u_l in
// the pass (adjoint_offset), which a later vjp_from_primal reads instead of recomputing them.
template <int W, class S, class PP, class GP, class WP>
HINN_PASS void grad_from_primal(const NetDesc& nd, const S* th, PP P, GP g, WP work, bool keep = false) {
  using V = elem_t<WP>;
  if (nd.depth == 0) {  // from x alone (a pass without Full keeps nothing else)
    shallow_value_grad<false, true, false, V>(nd, th, P, g, P);
    return;
  }
  const int w = W ? W : nd.width;
  const int n_in = nd.n_in();
  const int L = nd.depth;
  const S hr = S(nd.hr);
  const PP D1 = P + n_in;
  WP a = work;
  WP c = a + w;
  const S* ko = th + nd.off_out();
  PP A = P + adjoint_offset(nd);
  for (int k = 0; k < w; ++k) a[k] = splat<V>(ko[k]);  // a = ∂H/∂u_l
  for (int l = L; l >= 1; --l) {
    const S* K = th + nd.off_layer(l);
    if (keep)
      for (int k = 0; k < w; ++k) A[l * w + k] = a[k];
    for (int k = 0; k < w; ++k) c[k] = hr * D1[l * w + k] * a[k];
    add_rows_times<V>(w, K, c, a);
  }
  if (keep)
    for (int k = 0; k < w; ++k) A[k] = a[k];
  for (int k = 0; k < w; ++k) c[k] = D1[k] * a[k];
  for (int i = 0; i < n_in; ++i) {
    V acc{};
    for (int k = 0; k < w; ++k) acc += th[i * w + k] * c[k];
    g[i] = acc;
  }
}

// H and g = ∇_x H at x, the pass kept in P: primal then grad_from_primal (Full, Value and keep as
// theirs), or at depth 0 one sweep for both.
template <int W, bool Full = true, bool Value = true, class S, class XP, class PP, class GP, class WP>
HINN_PASS elem_t<PP> value_and_grad(const NetDesc& nd, const S* th, XP x, PP P, GP g, WP work, bool keep = false) {
  using V = elem_t<PP>;
  if (nd.depth == 0) return shallow_pass<Value, true, Full>(nd, th, x, P, g);
  const V H = primal<W, Full>(nd, th, x, P);
  grad_from_primal<W>(nd, th, P, g, work, keep);
  return H;
}

// Vector–Jacobian product of (H, ∇_x H) at the stored x: with cotangents cH (on H) and v (on ∇_x H),
// accumulates  xbar += ∇_x (cH H + v·∇_x H)  and  acc(i, ∂/∂θ_i (cH H + v·∇_x H))  for every parameter.
// v·∇_x H is the forward-mode tangent of H along v: the tangent is pushed through the network (reusing
// the stored σ', σ''), then the primal-plus-tangent computation is swept in reverse; no Hessian is
// formed. The reverse sweep's cotangent of the tangent u̇_l is the gradient sweep's adjoint ∂H/∂u_l:
// with adjoints (kept by grad_from_primal) it is read, not recomputed. work: work_size. ParamsOnly: the
// caller passes cH = 0 and does not read x̄ (which a depth-0 pass then leaves untouched).
template <int W, bool ParamsOnly = false, class V, class S, class PP, class VP, class XP, class Acc, class WP>
HINN_PASS void vjp_from_primal(const NetDesc& nd, const S* th, PP P, VP v, V cH, XP xbar, Acc& acc, WP work,
                               bool adjoints = false) {
  if (nd.depth == 0) {
    shallow_vjp<ParamsOnly>(nd, th, P, v, cH, xbar, acc);
    return;
  }
  const int w = W ? W : nd.width;
  const int n_in = nd.n_in();
  const int L = nd.depth;
  const S hr = S(nd.hr);
  const PP x = P;
  const PP D1 = x + n_in;
  const PP D2 = D1 + (L + 1) * w;
  const PP UI = D2 + (L + 1) * w;
  WP ud = work;        // u̇_l
  WP z = ud + w;       // z̄
  WP zd = z + w;       // ż (forward), ż̄ (reverse)
  WP ub = zd + w;      // ū
  WP udb = ub + w;     // ū̇
  const PP uL = UI + (L + 1) * w;  // u_L
  const PP A = P + adjoint_offset(nd);
  WP ZD = udb + w;     // ż_l     (L+1) x w
  WP UDI = ZD + (L + 1) * w;  // u̇_{l-1} (row l >= 1)
  // ---- tangent along v
  for (int k = 0; k < w; ++k) {
    V a{};
    for (int i = 0; i < n_in; ++i) a += v[i] * th[i * w + k];
    ZD[k] = a;
    ud[k] = D1[k] * a;
  }
  for (int l = 1; l <= L; ++l) {
    const S* K = th + nd.off_layer(l);
    WP udi = UDI + l * w;
    for (int k = 0; k < w; ++k) udi[k] = ud[k];
    layer_outputs<V>(w, udi, K, (const S*)nullptr, [&](int k, V a) {
      ZD[l * w + k] = a;
      ud[k] = udi[k] + hr * D1[l * w + k] * a;
    });
  }
  // ---- reverse
  const S* ko = th + nd.off_out();
  const long oo = nd.off_out();
  for (int k = 0; k < w; ++k) {
    ub[k] = cH * ko[k];
    udb[k] = splat<V>(ko[k]);
    acc(oo + k, cH * uL[k] + ud[k]);
  }
  acc(oo + w, cH);
  for (int l = L; l >= 1; --l) {
    const long ol = nd.off_layer(l);
    const S* K = th + ol;
    const PP ui = UI + l * w;
    const WP udi = UDI + l * w;
    for (int k = 0; k < w; ++k) {
      const V d1 = D1[l * w + k];
      const V a = adjoints ? V(A[l * w + k]) : V(udb[k]);
      zd[k] = hr * a * d1;                                                // ż̄
      z[k] = D2[l * w + k] * (hr * a * ZD[l * w + k]) + hr * d1 * ub[k];  // z̄
    }
    // K's cotangent and the matrix–vector products in separate sweeps: together they need more registers
    // than a wide block of samples leaves
    acc_layer_weights(acc, ol, w, ui, udi, z, zd);
    if (adjoints) {  // ū only
      add_rows_times<V>(w, K, z, ub);
    } else {
      int j = 0;
      if constexpr (outputs_per_sweep<V>() == 4)  // two rows at a time: four accumulators, as layer_outputs
        for (; j + 2 <= w; j += 2) {
          V a0 = ub[j], b0 = udb[j], a1 = ub[j + 1], b1 = udb[j + 1];
          const S* Kj = K + (long)j * w;
          for (int k = 0; k < w; ++k) {
            const V zk = z[k], zdk = zd[k];
            a0 += Kj[k] * zk;
            b0 += Kj[k] * zdk;
            a1 += Kj[w + k] * zk;
            b1 += Kj[w + k] * zdk;
          }
          ub[j] = a0;
          udb[j] = b0;
          ub[j + 1] = a1;
          udb[j + 1] = b1;
        }
      for (; j < w; ++j) {
        V a = ub[j], b = udb[j];
        for (int k = 0; k < w; ++k) {
          a += K[j * w + k] * z[k];
          b += K[j * w + k] * zd[k];
        }
        ub[j] = a;
        udb[j] = b;
      }
    }
    for (int k = 0; k < w; ++k) acc(ol + w * w + k, z[k]);
  }
  for (int k = 0; k < w; ++k) {
    const V d1 = D1[k];
    const V a = adjoints ? V(A[k]) : V(udb[k]);
    zd[k] = a * d1;
    z[k] = D2[k] * (a * ZD[k]) + d1 * ub[k];
  }
  for (int i = 0; i < n_in; ++i) {
    V a{};
    for (int k = 0; k < w; ++k) {
      acc_outer(acc, i * w + k, x[i], z[k], v[i], zd[k]);
      a += th[i * w + k] * z[k];
    }
    xbar[i] += a;
  }
  for (int k = 0; k < w; ++k) acc(n_in * w + k, z[k]);
}

}  // namespace hinn::HINN_ISA
