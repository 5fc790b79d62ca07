// The implicit schemes' common part: collocation-type equations on the state z = (p | q), solved per
// sample by Newton's method, and their adjoint by the implicit function theorem (src/hinn/implicit.py
// does the same in Python). For s stage states Z_i (2d each) and a block [lo, hi) of their entries,
//
//   Z_i[lo:hi] = C[lo:hi] + h Σ_j a_ij f(t_j, Z_j)[lo:hi],   f = (−∂qH, ∂pH),   i = 1..s,
//
// the entries of Z_i outside the block being fixed. The implicit midpoint rule is s = 1 on the whole
// state; the implicit leapfrog two solves of s = 1 on the halves; Gauss–Legendre s = 2 on the whole.
#pragma once
#include <cmath>

#include "stages.h"

namespace hinn::HINN_ISA {

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

// The default tolerance of a solve in precision S.
template <class S>
HINN_HD S default_tol() {
  return S(sizeof(S) == 8 ? kDefaultTolFloat64 : kDefaultTolFloat32);
}

// Lane values of scratch of a system of s stages for state width d (its block at most 2d wide).
HINN_HD long collocation_scratch(int s, int d) {
  const long n = (long)s * 2 * d;
  return 2L * s * d + n + n * n + 2L * d + d;  // F | R | A | row | e
}

// One collocation system with s stages; k0 is the first of the s stages (Stages) that hold the passes.
template <int s, class St>
struct Collocation {
  using V = typename St::V;
  using S = typename St::S;
  using Ptr = typename St::Ptr;
  using CPtr = typename St::CPtr;
  static constexpr int kStages = s;

  St& st;
  S a[s][s];
  S h;
  int lo, hi, k0;
  Ptr F;    // s × 2d: f(t_j, Z_j), the whole state, at the last iterate (the solution on success)
  Ptr R;    // s·m: the residual, then the Newton step; the adjoint's right-hand side
  Ptr A;    // (s·m)²: the Newton matrix I − h (a_ij ∂f_block/∂z_block(Z_j))
  Ptr row;  // 2d
  Ptr e;    // d

  HINN_HD Collocation(St& st_, Ptr scratch, int lo_, int hi_, int k0_ = 0) : st(st_), lo(lo_), hi(hi_), k0(k0_) {
    const int d = st.nd.d;
    Carve<Ptr> c{scratch};
    F = c(2L * s * d);
    R = c((long)s * (hi - lo));
    A = c((long)s * (hi - lo) * s * (hi - lo));
    row = c(2L * d);
    e = c(d);
  }

  // f at stage j's point Z_j: F_j = (−∂qH, ∂pH), the pass kept (with its adjoints) in stage k0 + j.
  HINN_HDI void eval(int j, V tj, CPtr Z) {
    const int d = st.nd.d;
    Ptr Fj = F + 2L * j * d;
    st.template grad<true>(k0 + j, tj, Z, Z + d, Fj + d, Fj);  // gp to the q half, gq to the p half
    for (int r = 0; r < d; ++r) Fj[r] = -Fj[r];
  }

  // Newton from the guess in Z (s × 2d, stage i at Z + 2d i), C = (Cp | Cq) (only its block is read), until every lane's
  // max|residual| / (1 + max|Z block|) ≤ tol, at most max_iter steps. On return F holds f at the
  // solution and the stages its passes; a lane that has not converged sets st.failed.
  HINN_PASS void solve(const V* tj, CPtr Cp, CPtr Cq, Ptr Z, S tol, long max_iter) {
    const int d = st.nd.d, m = hi - lo, n = s * m;
    for (long it = 0;; ++it) {
      for (int j = 0; j < s; ++j) eval(j, tj[j], Z + 2L * j * d);
      for (int i = 0; i < s; ++i)
        for (int r = 0; r < m; ++r) {
          const int c = lo + r;
          V acc = c < d ? V(Cp[c]) : V(Cq[c - d]);
          for (int j = 0; j < s; ++j) acc += (h * a[i][j]) * F[2L * j * d + lo + r];
          R[i * m + r] = Z[2L * i * d + lo + r] - acc;
        }
      bool done = true;
      for (int l = 0; l < lanes<V>::n; ++l) {
        double rmax = 0, xmax = 0;
        bool finite = true;
        for (int i = 0; i < s; ++i)
          for (int r = 0; r < m; ++r) {
            const double rr = fabs(double(lane(R[i * m + r], l)));
            const double x = fabs(double(lane(Z[2L * i * d + lo + r], l)));
            finite = finite && rr <= 1e300 && x <= 1e300;  // false for NaN
            rmax = rr > rmax ? rr : rmax;
            xmax = x > xmax ? x : xmax;
          }
        done = done && finite && rmax / (1.0 + xmax) <= double(tol);
      }
      if (done) return;
      if (it >= max_iter) {
        st.failed = true;
        return;
      }
      matrix();
      solve_small(A, R, n, false);
      for (int i = 0; i < s; ++i)
        for (int r = 0; r < m; ++r) Z[2L * i * d + lo + r] -= R[i * m + r];
    }
  }

  // The Newton matrix at the kept stages, block (i, j) = δ_ij I − h a_ij ∂f_block/∂z_block(Z_j), each
  // ∂f row from a vector–Jacobian product of ∇H.
  HINN_PASS void matrix() {
    const int d = st.nd.d, m = hi - lo, n = s * m;
    NoAcc none;
    for (int j = 0; j < s; ++j)
      for (int r = lo; r < hi; ++r) {
        for (int c = 0; c < d; ++c) e[c] = V{};
        e[r % d] = V{} + S(1);
        for (int c = 0; c < 2 * d; ++c) row[c] = V{};
        // f_r = −∂q_r H for r < d, ∂p_{r−d} H after: row = ±∂f_r/∂z
        if (r < d) st.vjp(k0 + j, CPtr{}, e, row, row + d, none);
        else st.vjp(k0 + j, e, CPtr{}, row, row + d, none);
        const S sgn = r < d ? S(1) : S(-1);  // −∂f_r/∂z = sgn · row
        for (int i = 0; i < s; ++i) {
          const S ha = h * a[i][j];
          for (int c = lo; c < hi; ++c)
            A[(long)(i * m + r - lo) * n + j * m + (c - lo)] = ha * sgn * row[c] + (i == j && c == r ? S(1) : S(0));
        }
      }
  }

  // The adjoint at the solution: the cotangent of the stages' blocks comes in mu (s·m) and leaves as μ
  // with Mᵀμ = that, which is the cotangent of C's block in every equation (the caller sums it over i);
  // θ's goes to acc, and that of the entries of Z_j outside the block (held fixed) to (pb, qb).
  template <class Acc>
  HINN_PASS void backward(Ptr mu, Ptr pb, Ptr qb, Acc& acc) {
    const int d = st.nd.d, m = hi - lo;
    matrix();
    solve_small(A, mu, s * m, true);
    Ptr cp = row;  // cotangents on (∂pH, ∂qH) of stage j
    Ptr cq = row + d;
    Ptr junk = F;  // F is spent: the x̄ of each vjp
    for (int j = 0; j < s; ++j) {
      for (int c = 0; c < d; ++c) {
        cp[c] = V{};
        cq[c] = V{};
      }
      for (int i = 0; i < s; ++i)
        for (int r = lo; r < hi; ++r) {
          const V w = (h * a[i][j]) * mu[i * m + r - lo];  // on f_r
          if (r < d) cq[r] -= w;
          else cp[r - d] += w;
        }
      for (int c = 0; c < 2 * d; ++c) junk[c] = V{};
      st.vjp(k0 + j, cp, cq, junk, junk + d, acc);
      for (int c = 0; c < d; ++c) {
        if (!(lo <= c && c < hi)) pb[c] += junk[c];
        if (!(lo <= d + c && d + c < hi)) qb[c] += junk[d + c];
      }
    }
  }
};

}  // namespace hinn::HINN_ISA
