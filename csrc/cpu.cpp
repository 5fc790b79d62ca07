// CPU drivers: samples are packed across SIMD lanes (lanes.h), blocks of samples are split statically
// over OpenMP threads, and parameter cotangents are summed per thread in lane registers, then reduced in
// a fixed order (so a given thread count is deterministic).
// Each instruction-set build renames the namespace of everything it compiles, so that the linker never
// merges an AVX-512 copy of an inline function into the generic path; the two meet only through their
// extern "C" entry points.
#ifndef HINN_CPU_ENTRY
#define HINN_CPU_ENTRY hinn_cpu_call_generic
#endif
#ifndef HINN_CPU_NAMESPACE
#define HINN_CPU_NAMESPACE hinn_generic
#endif
#define hinn HINN_CPU_NAMESPACE

#include "cpu.h"

#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "hinn/integrators.h"

namespace hinn {
namespace {

constexpr long kMinSamplesPerThread = 256;
// From this width on, samples go through the network kBlockRegs registers at a time (lanes.h: vblock).
#ifndef HINN_BLOCK_REGS
#define HINN_BLOCK_REGS 4
#endif
#ifndef HINN_BLOCK_MIN_WIDTH
#define HINN_BLOCK_MIN_WIDTH 8
#endif
constexpr int kBlockRegs = HINN_BLOCK_REGS;
constexpr int kBlockMinWidth = HINN_BLOCK_MIN_WIDTH;

// Parameter cotangents, one register's lanes per parameter (a block first sums its registers).
template <class V>
struct AccLanes {
  base_t<V>* g;
  void operator()(long i, const V& val) { g[i] += fold(val); }
};
// A block's a b + c d summed over its registers as one chain of FMAs into the accumulator: no products
// or partial sums in between (the weight cotangents of wide layers are half of a backward's arithmetic).
template <class B, int NB>
inline void acc_outer(AccLanes<vblock<B, NB>>& acc, long i, const vblock<B, NB>& a, const vblock<B, NB>& b,
                      const vblock<B, NB>& c, const vblock<B, NB>& d) {
  B t = acc.g[i];
#pragma GCC unroll 16
  for (int r = 0; r < NB; ++r) t = c.v[r] * d.v[r] + (a.v[r] * b.v[r] + t);
  acc.g[i] = t;
}

// How a block's scratch is addressed (strided.h). The scalar build, which runs a CUDA thread's arithmetic,
// also takes its memory access: a strided view, here with stride 2 and consecutive blocks alternating
// between the two interleaved copies, so that an index that bypassed the stride would read the previous
// block's values and fail the oracle tests.
#ifdef HINN_CPU_SCALAR
constexpr long kScratchStride = 2;
template <class V>
using ScratchPtr = Strided<V>;
template <class V>
inline ScratchPtr<V> scratch_view(V* sc, long block) {
  return {sc + (block & 1), kScratchStride};
}
#else
constexpr long kScratchStride = 1;
template <class V>
using ScratchPtr = V*;
template <class V>
inline ScratchPtr<V> scratch_view(V* sc, long) {
  return sc;
}
#endif

// Lane loads with a partial last block: missing lanes repeat the last sample (finite values), or are
// zero for cotangents, so that they contribute nothing to parameter sums.
template <class P, class S>
inline void gather(P dst, const S* src, long n0, int cnt, int d, bool zero_pad) {
  using V = elem_t<P>;
  for (int j = 0; j < d; ++j) {
    V v{};
    for (int l = 0; l < lanes<V>::n; ++l) {
      const int ll = l < cnt ? l : cnt - 1;
      lane(v, l) = (l < cnt || !zero_pad) ? src[(n0 + ll) * d + j] : S(0);
    }
    dst[j] = v;
  }
}

template <class S, class P>
inline void scatter(S* dst, P src, long n0, int cnt, int d) {
  for (int l = 0; l < cnt; ++l)
    for (int j = 0; j < d; ++j) dst[(n0 + l) * d + j] = lane(src[j], l);
}

template <class V, class S>
inline V time_lanes(const S* t, long n0, int cnt) {
  V v;
  gather(&v, t, n0, cnt, 1, false);
  return v;
}

// Runs body(n0, cnt, scratch, acc) over all blocks of lanes<V>::n samples. When thb is non-null, the
// parameter cotangents that body passes to acc are reduced into thb (length n_params).
template <class V, class Body>
void run_blocks(const NetDesc& nd, long N, int nthreads, long scratch_len, scalar_t<V>* thb, Body body) {
  using S = scalar_t<V>;
  constexpr int P = lanes<V>::n;
  const long nblocks = (N + P - 1) / P;
  const long np = thb ? nd.n_params() : 0;
  // A thread only pays for itself with enough samples: below kMinSamplesPerThread each, fewer threads.
  // Training minibatches (100 samples) then run on one thread and open no OpenMP region at all, whose
  // spin-waiting workers would otherwise burn a core that other processes need (benchmarks/RESULTS.md).
  const long max_useful = std::max<long>(1, N / kMinSamplesPerThread);
  const int nt = (int)std::max<long>(1, std::min<long>(std::min<long>(nthreads, nblocks), max_useful));
  using G = base_t<V>;
  std::vector<std::vector<G>> partial(nt);
  auto work = [&](int tid) {
    std::vector<V> scratch(scratch_len * kScratchStride);
    std::vector<G>& acc_buf = partial[tid];
    acc_buf.assign(np, G{});
    AccLanes<V> acc{acc_buf.data()};
    const long b0 = nblocks * tid / nt, b1 = nblocks * (tid + 1) / nt;
    for (long b = b0; b < b1; ++b) {
      const long n0 = b * P;
      const int cnt = (int)std::min<long>(P, N - n0);
      body(n0, cnt, scratch_view(scratch.data(), b), acc);
    }
  };
  if (nt == 1) {
    work(0);
  } else {
#pragma omp parallel num_threads(nt)
    work(omp_get_thread_num());
  }
  if (thb) {
    for (long i = 0; i < np; ++i) {
      double s = 0;  // lanes and threads summed in a fixed order
      for (int tid = 0; tid < nt; ++tid)
        for (int l = 0; l < lanes<G>::n; ++l) s += lane(partial[tid][i], l);
      thb[i] = S(s);
    }
  }
}

template <int W, class V>
struct Kernels {
  using S = scalar_t<V>;
  using P = ScratchPtr<V>;
  static long scratch(Op op, const NetDesc& nd, const CallArgs& a) { return op_scratch(op, nd, a.scheme, a.steps); }

  static void ham_fwd(const NetDesc& nd, const CallArgs& a) {
    const S* th = (const S*)a.theta;
    const int d = nd.d, n = nd.n_in(), o = nd.time;
    run_blocks<V>(nd, a.N, a.nthreads, scratch(Op::HamFwd, nd, a), nullptr, [&](long n0, int cnt, P sc, AccLanes<V>&) {
      P x = sc;
      if (o) x[0] = time_lanes<V>((const S*)a.t, n0, cnt);
      gather(x + o, (const S*)a.p, n0, cnt, d, false);
      gather(x + o + d, (const S*)a.q, n0, cnt, d, false);
      const V H = primal<W, false>(nd, th, x, x + n);
      scatter((S*)a.out0, &H, n0, cnt, 1);
    });
  }

  static void grad_fwd(const NetDesc& nd, const CallArgs& a) {
    const S* th = (const S*)a.theta;
    const int d = nd.d, n = nd.n_in(), o = nd.time;
    run_blocks<V>(nd, a.N, a.nthreads, scratch(Op::GradFwd, nd, a), nullptr,
                  [&](long n0, int cnt, P sc, AccLanes<V>&) {
                    P x = sc;
                    P g = x + n;
                    P prim = g + n;
                    P work = prim + primal_size(nd);
                    if (o) x[0] = time_lanes<V>((const S*)a.t, n0, cnt);
                    gather(x + o, (const S*)a.p, n0, cnt, d, false);
                    gather(x + o + d, (const S*)a.q, n0, cnt, d, false);
                    V H = primal<W, false>(nd, th, x, prim);
                    grad_from_primal<W>(nd, th, prim, g, work);
                    scatter((S*)a.out0, &H, n0, cnt, 1);
                    scatter((S*)a.out1, g + o, n0, cnt, d);
                    scatter((S*)a.out2, g + o + d, n0, cnt, d);
                  });
  }

  static void grad_bwd(const NetDesc& nd, const CallArgs& a) {
    const S* th = (const S*)a.theta;
    const int d = nd.d, n = nd.n_in(), o = nd.time;
    run_blocks<V>(nd, a.N, a.nthreads, scratch(Op::GradBwd, nd, a), (S*)a.thb,
                  [&](long n0, int cnt, P sc, AccLanes<V>& acc) {
                    P x = sc;
                    P v = x + n;
                    P xb = v + n;
                    P prim = xb + n;
                    P work = prim + primal_size(nd);
                    if (o) {
                      x[0] = time_lanes<V>((const S*)a.t, n0, cnt);
                      v[0] = V{};
                    }
                    gather(x + o, (const S*)a.p, n0, cnt, d, false);
                    gather(x + o + d, (const S*)a.q, n0, cnt, d, false);
                    gather(v + o, (const S*)a.in_b1, n0, cnt, d, true);
                    gather(v + o + d, (const S*)a.in_b2, n0, cnt, d, true);
                    V cH;
                    gather(&cH, (const S*)a.in_b0, n0, cnt, 1, true);
                    for (int i = 0; i < n; ++i) xb[i] = V{};
                    primal<W>(nd, th, x, prim);
                    vjp_from_primal<W>(nd, th, prim, v, cH, xb, acc, work);
                    if (o) scatter((S*)a.out0, xb, n0, cnt, 1);
                    scatter((S*)a.out1, xb + o, n0, cnt, d);
                    scatter((S*)a.out2, xb + o + d, n0, cnt, d);
                  });
  }

  // (t, p, q) -> (p', q'); with steps > 1 writes the whole trajectory, (steps+1, N, ds), in the scheme's
  // state (ds = state_dim).
  static void rollout_fwd(const NetDesc& nd, const CallArgs& a) {
    const S* th = (const S*)a.theta;
    const int d = nd.d, ds = state_dim(a.scheme, d);
    const long Nds = a.N * ds;
    const bool traj = a.trajectory;
    run_blocks<V>(nd, a.N, a.nthreads, scratch(Op::RolloutFwd, nd, a), nullptr,
                  [&](long n0, int cnt, P sc, AccLanes<V>&) {
                    P p = sc;
                    P q = p + ds;
                    Stepper<W, V, S, P> stp(nd, th, q + ds, a.params);
                    V t = time_lanes<V>((const S*)a.t, n0, cnt);
                    gather(p, (const S*)a.p, n0, cnt, d, false);
                    gather(q, (const S*)a.q, n0, cnt, d, false);
                    lift_state(a.scheme, d, p, q);
                    if (traj) {
                      scatter((S*)a.out1, p, n0, cnt, ds);
                      scatter((S*)a.out2, q, n0, cnt, ds);
                    }
                    for (long k = 0; k < a.steps; ++k) {
                      stp.forward(a.scheme, t + S(k) * S(a.h), S(a.h), p, q);
                      const long off = traj ? (k + 1) * Nds : 0;
                      if (traj || k == a.steps - 1) {
                        scatter((S*)a.out1 + off, p, n0, cnt, ds);
                        scatter((S*)a.out2 + off, q, n0, cnt, ds);
                      }
                    }
                    if (stp.failed) report_failure(a.status);
                  });
  }

  // Reverse sweep over a stored trajectory (or a single step): recomputes each step's internals from its
  // stored input state. Cotangents of every stored state (trajectory) or of the output (single step).
  static void rollout_bwd(const NetDesc& nd, const CallArgs& a) {
    const S* th = (const S*)a.theta;
    const int d = nd.d, ds = state_dim(a.scheme, d);
    const long Nds = a.N * ds;
    const bool traj = a.trajectory;
    run_blocks<V>(nd, a.N, a.nthreads, scratch(Op::RolloutBwd, nd, a), (S*)a.thb,
                  [&](long n0, int cnt, P sc, AccLanes<V>& acc) {
                    P p = sc;
                    P q = p + ds;
                    P pb = q + ds;
                    P qb = pb + ds;
                    P tmp = qb + ds;
                    Stepper<W, V, S, P> stp(nd, th, tmp + ds, a.params);
                    const V t = time_lanes<V>((const S*)a.t, n0, cnt);
                    const long last = traj ? a.steps * Nds : 0;
                    gather(pb, (const S*)a.in_b1 + last, n0, cnt, ds, true);
                    gather(qb, (const S*)a.in_b2 + last, n0, cnt, ds, true);
                    for (long k = a.steps - 1; k >= 0; --k) {
                      if (traj) {
                        gather(p, (const S*)a.p + k * Nds, n0, cnt, ds, false);
                        gather(q, (const S*)a.q + k * Nds, n0, cnt, ds, false);
                      } else {
                        gather(p, (const S*)a.p, n0, cnt, d, false);
                        gather(q, (const S*)a.q, n0, cnt, d, false);
                        lift_state(a.scheme, d, p, q);
                      }
                      stp.backward(a.scheme, t + S(k) * S(a.h), S(a.h), p, q, pb, qb, acc);
                      if (traj) {
                        gather(tmp, (const S*)a.in_b1 + k * Nds, n0, cnt, ds, true);
                        for (int j = 0; j < ds; ++j) pb[j] += tmp[j];
                        gather(tmp, (const S*)a.in_b2 + k * Nds, n0, cnt, ds, true);
                        for (int j = 0; j < ds; ++j) qb[j] += tmp[j];
                      }
                    }
                    fold_cotangent(a.scheme, d, pb, qb);
                    scatter((S*)a.out1, pb, n0, cnt, d);
                    scatter((S*)a.out2, qb, n0, cnt, d);
                    if (stp.failed) report_failure(a.status);
                  });
  }

  // Training windows: forward, squared error and backward per block of samples (integrators.h:
  // window_loss); no trajectory goes to memory.
  static void loss_grad(const NetDesc& nd, const CallArgs& a) {
    const S* th = (const S*)a.theta;
    const int d = nd.d, ds = state_dim(a.scheme, d);
    const long K = a.steps, Nd = a.N * d;
    run_blocks<V>(nd, a.N, a.nthreads, scratch(Op::LossGrad, nd, a), (S*)a.thb,
                  [&](long n0, int cnt, P sc, AccLanes<V>& acc) {
                    P pb = sc;
                    P qb = pb + ds;
                    P TP = qb + ds;
                    P TQ = TP + (K + 1) * ds;
                    P GP = TQ + (K + 1) * ds;
                    P GQ = GP + K * d;
                    Stepper<W, V, S, P> stp(nd, th, GQ + K * d, a.params);
                    const V t = time_lanes<V>((const S*)a.t, n0, cnt);
                    gather(TP, (const S*)a.p, n0, cnt, d, false);
                    gather(TQ, (const S*)a.q, n0, cnt, d, false);
                    for (long k = 0; k < K; ++k) {
                      gather(GP + k * d, (const S*)a.in_b1 + k * Nd, n0, cnt, d, false);
                      gather(GQ + k * d, (const S*)a.in_b2 + k * Nd, n0, cnt, d, false);
                    }
                    V m{};
                    for (int l = 0; l < cnt; ++l) lane(m, l) = S(1);
                    const V loss = stp.window_loss(a.scheme, t, S(a.h), K, TP, TQ, GP, GQ, m, S(a.scale), pb, qb, acc);
                    scatter((S*)a.out0, &loss, n0, cnt, 1);
                    scatter((S*)a.out1, pb, n0, cnt, d);
                    scatter((S*)a.out2, qb, n0, cnt, d);
                    if (stp.failed) report_failure(a.status);
                  });
  }
};

template <template <int, class> class K, class V>
void dispatch_width(Op op, const NetDesc& nd, const CallArgs& a) {
  auto run = [&](auto kernels) {
    using KK = decltype(kernels);
    switch (op) {
      case Op::HamFwd: KK::ham_fwd(nd, a); break;
      case Op::GradFwd: KK::grad_fwd(nd, a); break;
      case Op::GradBwd: KK::grad_bwd(nd, a); break;
      case Op::RolloutFwd: KK::rollout_fwd(nd, a); break;
      case Op::RolloutBwd: KK::rollout_bwd(nd, a); break;
      case Op::LossGrad: KK::loss_grad(nd, a); break;
    }
  };
  // The poster's width gets a compile-time body (fully unrolled); every other width runs the generic one.
  // The scalar build runs exactly what a CUDA thread runs: one sample, runtime width.
#ifdef HINN_CPU_SCALAR
  run(K<0, V>{});
#else
  if (nd.width == 3) run(K<3, V>{});
  else if (nd.width >= kBlockMinWidth) run(K<0, vblock<V, kBlockRegs>>{});
  else run(K<0, V>{});
#endif
}

}  // namespace

void cpu_call_impl(Op op, const NetDesc& nd, const CallArgs& a) {
  if (a.N == 0) {
    if (a.thb) std::memset((void*)a.thb, 0, nd.n_params() * (a.dtype == kFloat64 ? 8 : 4));
    return;
  }
#ifdef HINN_CPU_SCALAR
  if (a.dtype == kFloat64) dispatch_width<Kernels, double>(op, nd, a);
  else dispatch_width<Kernels, float>(op, nd, a);
#else
  if (a.dtype == kFloat64) dispatch_width<Kernels, dvec>(op, nd, a);
  else dispatch_width<Kernels, fvec>(op, nd, a);
#endif
}

}  // namespace hinn

// Compiled once per instruction set (CMakeLists.txt); cpu_dispatch.cpp picks one at run time.
extern "C" void HINN_CPU_ENTRY(int op, const void* nd, const void* a) {
  hinn::cpu_call_impl(static_cast<hinn::Op>(op), *static_cast<const hinn::NetDesc*>(nd),
                      *static_cast<const hinn::CallArgs*>(a));
}
