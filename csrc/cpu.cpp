// CPU drivers: samples are packed across SIMD lanes (lanes.h), blocks of samples are split statically
// over OpenMP threads, and parameter cotangents are summed per thread in lane registers, then reduced in
// a fixed order (so a given thread count is deterministic). The op bodies are hinn/ops.h's.
// Compiled once per instruction set, in namespace hinn::HINN_ISA (CMakeLists.txt).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "core.h"
#include "hinn/ops.h"

namespace hinn::HINN_ISA {
namespace {

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

// Runs the body of `op` over all blocks of lanes<V>::n samples; parameter cotangents into c.theta_bar.
template <Op op, int W, class V>
void run_blocks(const NetDesc& nd, const Call& c) {
  using S = scalar_t<V>;
  using G = base_t<V>;
  constexpr int Pn = lanes<V>::n;
  const Driver<W, V, ScratchPtr<V>> drv(nd, c, c.theta.as<const S>());
  const long nblocks = (c.N + Pn - 1) / Pn;
  const long np = is_backward(op) ? nd.n_params() : 0;
  const long scratch_len = op_scratch(op, nd, c);
  // A thread only pays for itself with enough samples: below kMinSamplesPerThread each, fewer threads.
  // Training minibatches (100 samples) then run on one thread and open no OpenMP region at all, whose
  // spin-waiting workers would otherwise burn a core that other processes need (benchmarks/RESULTS.md).
  const long max_useful = std::max<long>(1, c.N / kMinSamplesPerThread);
  const int nt = (int)std::max<long>(1, std::min<long>(std::min<long>(c.nthreads, nblocks), max_useful));
  std::vector<std::vector<G>> partial(nt);
  auto work = [&](int tid) {
    std::vector<V> scratch(scratch_len * kScratchStride);
    std::vector<G>& acc_buf = partial[tid];
    acc_buf.assign(np, G{});
    AccLanes<V> acc{acc_buf.data()};
    const long b0 = nblocks * tid / nt, b1 = nblocks * (tid + 1) / nt;
    for (long b = b0; b < b1; ++b) {
      const long n0 = b * Pn;
      const Block blk{n0, (int)std::min<long>(Pn, c.N - n0)};
      drv.template run<op>(blk, scratch_view(scratch.data(), b), acc);
    }
  };
  if (nt == 1) {
    work(0);
  } else {
#pragma omp parallel num_threads(nt)
    work(omp_get_thread_num());
  }
  S* thb = c.theta_bar.as<S>();
  for (long i = 0; i < np; ++i) {
    double s = 0;  // lanes and threads summed in a fixed order
    for (int tid = 0; tid < nt; ++tid)
      for (int l = 0; l < lanes<G>::n; ++l) s += lane(partial[tid][i], l);
    thb[i] = S(s);
  }
}

template <int W, class V>
void run_op(Op op, const NetDesc& nd, const Call& c) {
  switch (op) {
#define HINN_RUN_OP(id, name) \
  case Op::id: return run_blocks<Op::id, W, V>(nd, c);
    HINN_OPS(HINN_RUN_OP)
#undef HINN_RUN_OP
  }
}

template <class V>
void dispatch_width(Op op, const NetDesc& nd, const Call& c) {
  // The poster's width gets a compile-time body (fully unrolled); every other width runs the generic one.
  // The scalar build runs exactly what a CUDA thread runs: one sample, runtime width.
#ifdef HINN_CPU_SCALAR
  run_op<0, V>(op, nd, c);
#else
  if (nd.width == 3) run_op<3, V>(op, nd, c);
  else if (nd.width >= kBlockMinWidth) run_op<0, vblock<V, kBlockRegs>>(op, nd, c);
  else run_op<0, V>(op, nd, c);
#endif
}

}  // namespace

void call(Op op, const NetDesc& nd, const Call& c) {
  if (c.N == 0) {
    if (is_backward(op)) std::memset((void*)c.theta_bar.ptr, 0, nd.n_params() * (c.dtype == kFloat64 ? 8 : 4));
    return;
  }
#ifdef HINN_CPU_SCALAR
  if (c.dtype == kFloat64) dispatch_width<double>(op, nd, c);
  else dispatch_width<float>(op, nd, c);
#else
  if (c.dtype == kFloat64) dispatch_width<dvec>(op, nd, c);
  else dispatch_width<fvec>(op, nd, c);
#endif
}

}  // namespace hinn::HINN_ISA
