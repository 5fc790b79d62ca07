// Per-sample math of the hinn ResNet Hamiltonian, shared by the CPU and CUDA drivers.
//
//   u_0 = σ(x K_0 + b_0),  u_l = u_{l-1} + h_r σ(u_{l-1} K_l + b_l) (l = 1..L),  H = u_L k + b_out
//
// K is stored (in, out) row-major, as in hessQuik. The flat parameter vector is hessQuik's order:
// K_0, b_0, K_1, b_1, ..., K_L, b_L, k_out, b_out.
//
// V is the lane type (lanes.h), S the parameter scalar. W > 0 fixes the width at compile time (fast path);
// W = 0 reads it from the descriptor (any width). Every function works on caller-provided scratch.
#pragma once
#include "activation.h"

namespace hinn {

struct NetDesc {
  int d = 1;        // phase-space half dimension: p, q in R^d
  int time = 1;     // 1: input is [t, p, q]; 0: input is [p, q]
  int width = 3;    // w
  int depth = 20;   // L (residual layers)
  int act = kTanh;  // Activation
  double hr = 1.0;  // residual step h_r

  HINN_HD int n_in() const { return 2 * d + time; }
  HINN_HD long off_layer(int l) const {  // offset of K_l (l = 1..L); K_0 is at 0
    return (long)n_in() * width + width + (long)(l - 1) * (width * width + width);
  }
  HINN_HD long off_out() const { return off_layer(depth + 1); }
  HINN_HD long n_params() const { return off_out() + width + 1; }
  // scratch (in lane values) needed by forward_grad and vjp
  HINN_HD long scratch_grad() const { return 3L * width + (long)(depth + 1) * width; }
  HINN_HD long scratch_vjp() const { return 6L * width + 5L * (depth + 1) * width; }
};

// H(x) and g = ∇_x H(x) for one lane value. scratch: desc.scratch_grad().
template <int W, class V, class S>
HINN_HD V forward_grad(const NetDesc& nd, const S* th, const V* x, V* g, V* scratch) {
  const int w = W ? W : nd.width;
  const int n_in = nd.n_in();
  const int L = nd.depth;
  const S hr = S(nd.hr);
  V* u = scratch;
  V* z = u + w;
  V* a = z + w;
  V* D1 = a + w;  // σ'(z_l), (L+1) x w
  // opening layer
  for (int k = 0; k < w; ++k) z[k] = splat<V>(th[n_in * w + k]);
  for (int i = 0; i < n_in; ++i)
    for (int k = 0; k < w; ++k) z[k] += x[i] * th[i * w + k];
  for (int k = 0; k < w; ++k) {
    V s, d1, d2;
    activate(nd.act, z[k], s, d1, d2);
    u[k] = s;
    D1[k] = d1;
  }
  // residual layers
  for (int l = 1; l <= L; ++l) {
    const S* K = th + nd.off_layer(l);
    const S* b = K + w * w;
    for (int k = 0; k < w; ++k) z[k] = splat<V>(b[k]);
    for (int j = 0; j < w; ++j)
      for (int k = 0; k < w; ++k) z[k] += u[j] * K[j * w + k];
    V* D = D1 + l * w;
    for (int k = 0; k < w; ++k) {
      V s, d1, d2;
      activate(nd.act, z[k], s, d1, d2);
      u[k] += hr * s;
      D[k] = d1;
    }
  }
  const S* ko = th + nd.off_out();
  V H = splat<V>(ko[w]);
  for (int k = 0; k < w; ++k) H += u[k] * ko[k];
  // reverse sweep: a = ∂H/∂u_l
  for (int k = 0; k < w; ++k) a[k] = splat<V>(ko[k]);
  for (int l = L; l >= 1; --l) {
    const S* K = th + nd.off_layer(l);
    const V* D = D1 + l * w;
    for (int k = 0; k < w; ++k) z[k] = hr * D[k] * a[k];
    for (int j = 0; j < w; ++j) {
      V acc = a[j];
      for (int k = 0; k < w; ++k) acc += K[j * w + k] * z[k];
      a[j] = acc;
    }
  }
  for (int k = 0; k < w; ++k) z[k] = D1[k] * a[k];
  for (int i = 0; i < n_in; ++i) {
    V acc{};
    for (int k = 0; k < w; ++k) acc += th[i * w + k] * z[k];
    g[i] = acc;
  }
  return H;
}

// Vector–Jacobian product of (H, ∇_x H) at x: with cotangents cH (on H) and v (on ∇_x H), accumulates
//   xbar += ∇_x (cH H + v·∇_x H)   and   acc(i, ∂/∂θ_i (cH H + v·∇_x H)) for every parameter i.
// v·∇_x H is the forward-mode tangent of H along v; we push that tangent through the network and sweep
// the primal-plus-tangent computation in reverse, so no Hessian is formed. scratch: desc.scratch_vjp().
template <int W, class V, class S, class Acc>
HINN_HD void vjp(const NetDesc& nd, const S* th, const V* x, const V* v, V cH, V* xbar, Acc& acc,
                 V* scratch) {
  const int w = W ? W : nd.width;
  const int n_in = nd.n_in();
  const int L = nd.depth;
  const S hr = S(nd.hr);
  V* u = scratch;      // u_l
  V* ud = u + w;       // u̇_l
  V* z = ud + w;       // work
  V* zd = z + w;       // work
  V* ub = zd + w;      // ū
  V* udb = ub + w;     // ū̇
  V* D1 = udb + w;     // σ'(z_l)        (L+1) x w
  V* D2 = D1 + (L + 1) * w;  // σ''(z_l)
  V* ZD = D2 + (L + 1) * w;  // ż_l
  V* UI = ZD + (L + 1) * w;  // u_{l-1}  (row l, l >= 1)
  V* UDI = UI + (L + 1) * w; // u̇_{l-1}
  // ---- forward: primal and tangent
  for (int k = 0; k < w; ++k) {
    z[k] = splat<V>(th[n_in * w + k]);
    zd[k] = V{};
  }
  for (int i = 0; i < n_in; ++i)
    for (int k = 0; k < w; ++k) {
      z[k] += x[i] * th[i * w + k];
      zd[k] += v[i] * th[i * w + k];
    }
  for (int k = 0; k < w; ++k) {
    V s, d1, d2;
    activate(nd.act, z[k], s, d1, d2);
    u[k] = s;
    ud[k] = d1 * zd[k];
    D1[k] = d1;
    D2[k] = d2;
    ZD[k] = zd[k];
  }
  for (int l = 1; l <= L; ++l) {
    const S* K = th + nd.off_layer(l);
    const S* b = K + w * w;
    V* ui = UI + l * w;
    V* udi = UDI + l * w;
    for (int k = 0; k < w; ++k) {
      ui[k] = u[k];
      udi[k] = ud[k];
      z[k] = splat<V>(b[k]);
      zd[k] = V{};
    }
    for (int j = 0; j < w; ++j)
      for (int k = 0; k < w; ++k) {
        z[k] += ui[j] * K[j * w + k];
        zd[k] += udi[j] * K[j * w + k];
      }
    for (int k = 0; k < w; ++k) {
      V s, d1, d2;
      activate(nd.act, z[k], s, d1, d2);
      u[k] += hr * s;
      ud[k] += hr * d1 * zd[k];
      D1[l * w + k] = d1;
      D2[l * w + k] = d2;
      ZD[l * w + k] = zd[k];
    }
  }
  // ---- reverse
  const S* ko = th + nd.off_out();
  const long oo = nd.off_out();
  for (int k = 0; k < w; ++k) {
    ub[k] = cH * ko[k];
    udb[k] = splat<V>(ko[k]);
    acc(oo + k, cH * u[k] + ud[k]);
  }
  acc(oo + w, cH);
  for (int l = L; l >= 1; --l) {
    const long ol = nd.off_layer(l);
    const S* K = th + ol;
    const V* ui = UI + l * w;
    const V* udi = UDI + l * w;
    for (int k = 0; k < w; ++k) {
      const V d1 = D1[l * w + k];
      zd[k] = hr * udb[k] * d1;                                      // ż̄
      z[k] = D2[l * w + k] * (hr * udb[k] * ZD[l * w + k]) + hr * d1 * ub[k];  // z̄
    }
    for (int j = 0; j < w; ++j) {
      V a = ub[j], b = udb[j];
      for (int k = 0; k < w; ++k) {
        acc(ol + j * w + k, ui[j] * z[k] + udi[j] * zd[k]);
        a += K[j * w + k] * z[k];
        b += K[j * w + k] * zd[k];
      }
      ub[j] = a;
      udb[j] = b;
    }
    for (int k = 0; k < w; ++k) acc(ol + w * w + k, z[k]);
  }
  for (int k = 0; k < w; ++k) {
    const V d1 = D1[k];
    zd[k] = udb[k] * d1;
    z[k] = D2[k] * (udb[k] * ZD[k]) + d1 * ub[k];
  }
  for (int i = 0; i < n_in; ++i) {
    V a{};
    for (int k = 0; k < w; ++k) {
      acc(i * w + k, x[i] * z[k] + v[i] * zd[k]);
      a += th[i * w + k] * z[k];
    }
    xbar[i] += a;
  }
  for (int k = 0; k < w; ++k) acc(n_in * w + k, z[k]);
}

}  // namespace hinn
