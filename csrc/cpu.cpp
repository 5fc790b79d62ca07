// CPU drivers: samples are packed across SIMD lanes (lanes.h), blocks of samples are split statically
// over OpenMP threads, and parameter cotangents are summed per thread in lane registers, then reduced in
// a fixed order (so a given thread count is deterministic). The op bodies are hinn/ops.h's.
// Compiled once per instruction set, in namespace hinn::HINN_ISA (CMakeLists.txt).
#include <omp.h>
#if defined(__AVX__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cstring>
#include <memory>
#include <type_traits>
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

// Parameter cotangents, one register's lanes per parameter (a block first sums its registers). Blocks
// keep the residual layers' weights apart (acc_layer_weights below): gw, one row of nv registers per
// input j of each layer (columns k >= width are zero), and zt, the transposition buffer.
template <class V>
struct AccLanes {
  using B = base_t<V>;
  B* g;
  B* gw = nullptr;
  B* zt = nullptr;
  long first = 0, layer_size = 0;  // offset of K_1, and from one residual layer's K to the next
  int nv = 0;                      // registers per row of gw and zt
  void operator()(long i, const V& val) { g[i] += fold(val); }
  B* layer_gw(long ol, int w) const { return gw + (ol - first) / layer_size * w * nv; }
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

// The weight cotangent of a residual layer over a block of samples, Σ_s u_s z̄_sᵀ + u̇_s ż̄_sᵀ, as a matrix
// product: z̄ and ż̄ transposed into zt (sample-major, 2·Pn rows of nv registers), then tiles of RJ inputs ×
// CK registers of outputs held in registers over the 2·Pn samples, each u_j broadcast from the block's
// own storage. Per block every weight is read and written once, as a scalar, instead of a
// load-fold-store of a whole register per weight (w = 256, float32: 4 MB of per-lane accumulator, past
// L2, against 256 KB). RJ × CK accumulators fit the register file with the operands beside them.
#if HINN_VEC_BYTES == 64
constexpr int kTileRows = 4, kTileRegs = 4;
#else
constexpr int kTileRows = 4, kTileRegs = 2;
#endif

#ifndef HINN_BY_LAYER_MIN_WIDTH
#define HINN_BY_LAYER_MIN_WIDTH 64
#endif
constexpr int kByLayerMinWidth = HINN_BY_LAYER_MIN_WIDTH;

template <int RJ, int CK, class B, int NB>
inline void weight_tile(const vblock<B, NB>* u, const vblock<B, NB>* ud, const B* zt, int nv, B* g) {
  using S = scalar_t<B>;
  constexpr int Pn = NB * lanes<B>::n;
  B c[RJ][CK];
#pragma GCC unroll 16
  for (int r = 0; r < RJ; ++r)
#pragma GCC unroll 16
    for (int k = 0; k < CK; ++k) c[r][k] = B{};
  for (int half = 0; half < 2; ++half) {
    const vblock<B, NB>* src = half ? ud : u;
    const B* rows = zt + (long)half * Pn * nv;
    for (int s = 0; s < Pn; ++s) {
      const B* zrow = rows + (long)s * nv;
#pragma GCC unroll 16
      for (int r = 0; r < RJ; ++r) {
        const S us = reinterpret_cast<const S*>(&src[r])[s];
#pragma GCC unroll 16
        for (int k = 0; k < CK; ++k) c[r][k] += us * zrow[k];
      }
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < RJ; ++r)
#pragma GCC unroll 16
    for (int k = 0; k < CK; ++k) g[(long)r * nv + k] += c[r][k];
}

template <int RJ, class B, int NB>
inline void weight_tiles_of_rows(const vblock<B, NB>* u, const vblock<B, NB>* ud, const B* zt, int nv, B* g) {
  int k = 0;
  for (; k + kTileRegs <= nv; k += kTileRegs) weight_tile<RJ, kTileRegs>(u, ud, zt + k, nv, g + k);
  switch (nv - k) {  // the last registers of a row: fewer than a tile's
    case 3: weight_tile<RJ, 3>(u, ud, zt + k, nv, g + k); break;
    case 2: weight_tile<RJ, 2>(u, ud, zt + k, nv, g + k); break;
    case 1: weight_tile<RJ, 1>(u, ud, zt + k, nv, g + k); break;
    default: break;
  }
}

// Lanes j of n registers x_0 … x_{n-1} gathered into register j, in place (an n × n transposition). With
// AVX, the 256-bit registers' unpack/shuffle/lane-permute network: 24 (float) or 8 (double) shuffles for
// n² elements, where element by element it is n² loads and n² stores (weights_as_product's scalar copy
// took a third as many cycles as the weight tiles at width 64, float32).
#if defined(__AVX__) && HINN_VEC_BYTES == 32
constexpr bool kRegisterTranspose = true;
inline void transpose_regs(fvec* x) {
  __m256 t[8], u[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(x[i], x[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(x[i], x[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    x[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
    x[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
  }
}
inline void transpose_regs(dvec* x) {
  const __m256d t0 = _mm256_unpacklo_pd(x[0], x[1]), t1 = _mm256_unpackhi_pd(x[0], x[1]);
  const __m256d t2 = _mm256_unpacklo_pd(x[2], x[3]), t3 = _mm256_unpackhi_pd(x[2], x[3]);
  x[0] = _mm256_permute2f128_pd(t0, t2, 0x20);
  x[1] = _mm256_permute2f128_pd(t1, t3, 0x20);
  x[2] = _mm256_permute2f128_pd(t0, t2, 0x31);
  x[3] = _mm256_permute2f128_pd(t1, t3, 0x31);
}
#else
constexpr bool kRegisterTranspose = false;  // AVX-512 and 128-bit builds: the element-by-element copy
#endif

// zt's rows s = 0 … Pn−1 (sample s of the block), columns k < w: lane s of z[k].
template <class B, int NB>
inline void transpose_block(scalar_t<B>* zt, long row, int w, const vblock<B, NB>* z) {
  constexpr int n = lanes<B>::n;
  int k0 = 0;
  if constexpr (kRegisterTranspose && (std::is_same_v<B, fvec> || std::is_same_v<B, dvec>)) {
    for (; k0 + n <= w; k0 += n)
      for (int r = 0; r < NB; ++r) {
        B x[n];
#pragma GCC unroll 16
        for (int i = 0; i < n; ++i) x[i] = z[k0 + i].v[r];
        transpose_regs(x);
#pragma GCC unroll 16
        for (int j = 0; j < n; ++j) *reinterpret_cast<B*>(zt + (r * n + j) * row + k0) = x[j];  // row % n == 0
      }
  }
  for (int s = 0; s < NB * n; ++s)
    for (int k = k0; k < w; ++k) zt[s * row + k] = lane(z[k], s);
}

template <class B, int NB>
inline void weights_as_product(B* g, B* zt, int nv, int w, const vblock<B, NB>* u, const vblock<B, NB>* ud,
                               const vblock<B, NB>* z, const vblock<B, NB>* zd) {
  using S = scalar_t<B>;
  constexpr int Pn = NB * lanes<B>::n;
  S* zts = reinterpret_cast<S*>(zt);
  const long row = (long)nv * lanes<B>::n;
  transpose_block(zts, row, w, z);
  transpose_block(zts + Pn * row, row, w, zd);
  int j = 0;
  for (; j + kTileRows <= w; j += kTileRows) weight_tiles_of_rows<kTileRows>(u + j, ud + j, zt, nv, g + (long)j * nv);
  for (; j < w; ++j) weight_tiles_of_rows<1>(u + j, ud + j, zt, nv, g + (long)j * nv);
}

// A block's registers, or the narrow driver's single register (a wide network's last few samples:
// run_narrow) as a block of one: the same storage, only addresses and lanes are read through it.
template <class B, int NB>
inline const vblock<B, NB>* as_block(const vblock<B, NB>* x) {
  return x;
}
template <class B>
inline const vblock<B, 1>* as_block(const B* x) {
  return reinterpret_cast<const vblock<B, 1>*>(x);
}

// The narrow driver's register goes into the same product as a block's, so that a wide network's residual
// weights never touch the per-lane accumulator.
template <class V>
inline void acc_layer_weights(AccLanes<V>& acc, long ol, int w, V* u, V* ud, V* z, V* zd) {
  if (!acc.gw) {  // below kByLayerMinWidth
    fold_layer_weights(acc, ol, w, u, ud, z, zd);
    return;
  }
  weights_as_product(acc.layer_gw(ol, w), acc.zt, acc.nv, w, as_block(u), as_block(ud), as_block(z), as_block(zd));
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

// A block's part of a rollout's kept stages (ops.h: kept_size), or null: its lane values one after the
// other from sample n0's offset (per_sample: the values of one sample); the scalar build lays them out as
// CUDA threads would, element i of sample s at i·Npad + s.
template <class V>
inline ScratchPtr<V> kept_view(const Call& c, long per_sample, long n0) {
  using S = scalar_t<V>;
  if (!c.kept.ptr) return ScratchPtr<V>{};
#ifdef HINN_CPU_SCALAR
  (void)per_sample;
  return {c.kept.as<S>() + n0, kept_padded(c.N)};
#else
  return reinterpret_cast<V*>(c.kept.as<S>() + n0 * per_sample);
#endif
}

#ifndef HINN_NARROW_TAIL_REGS
#define HINN_NARROW_TAIL_REGS 2
#endif
constexpr int kNarrowTailRegs = HINN_NARROW_TAIL_REGS;

// The samples from n0 on, one register of them at a time (the driver of narrow networks), parameter
// cotangents folded into acc's per-lane sums.
template <Op op, int W, class G>
void run_narrow(const NetDesc& nd, const Call& c, long n0, long scratch_len, long kept_len, AccLanes<G> acc) {
  constexpr int n = lanes<G>::n;
  const Driver<W, G, ScratchPtr<G>> drv(nd, c, c.theta.as<const scalar_t<G>>());
  std::vector<G> scratch(scratch_len * kScratchStride);
  for (; n0 < c.N; n0 += n)
    drv.template run<op>(Block{n0, (int)std::min<long>(n, c.N - n0)}, scratch_view(scratch.data(), 0), acc,
                         kept_view<G>(c, kept_len, n0));
}

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
  const long kept_len = c.kept.ptr ? c.steps * kept_values(nd, c.scheme) : 0;  // per sample
  // A thread only pays for itself with enough samples: below kMinSamplesPerThread each, fewer threads.
  // Training minibatches (100 samples) then run on one thread and open no OpenMP region at all, whose
  // spin-waiting workers would otherwise burn a core that other processes need (benchmarks/RESULTS.md).
  const long max_useful = std::max<long>(1, c.N / kMinSamplesPerThread);
  const int nt = (int)std::max<long>(1, std::min<long>(std::min<long>(c.nthreads, nblocks), max_useful));
  std::vector<std::unique_ptr<G[]>> partial(nt);
  // A last block with at most kNarrowTailRegs registers of live samples runs them one register at a time
  // (run_narrow) instead of as a whole block: at N = 100 in float64 (blocks of 32 samples) the fourth
  // block holds 4 samples and cost as much as each full one; one register alone costs a quarter to a
  // third of a block, so three would not pay (measured, benchmarks/RESULTS.md).
  constexpr bool blocked = lanes<V>::n > lanes<G>::n;
  const long tail = c.N % Pn;
  const bool narrow_tail = blocked && tail && (tail + lanes<G>::n - 1) / lanes<G>::n <= kNarrowTailRegs;
  // From kByLayerMinWidth on, blocks of registers keep the residual layers' weight cotangents apart
  // (acc_layer_weights): below it, transposing z̄ and ż̄ costs more than the per-lane accumulator, which
  // then fits L2 anyway (benchmarks/RESULTS.md).
  const bool by_layer = blocked && nd.width >= kByLayerMinWidth;
  const int w = nd.width, nv = (w + lanes<G>::n - 1) / lanes<G>::n;
  const long gw_len = by_layer && np ? (long)nd.depth * w * nv : 0;
  // The parameters summed per lane: all of them, or, when the residual weights go to gw, the rest (the
  // per-lane sums of the weights would be zeros to clear and add: 0.5 MB at 64 x 4 in float32).
  auto lane_summed = [&](auto&& f) {
    if (!gw_len) return f(0L, np);
    f(0L, nd.off_layer(1));
    for (int l = 1; l <= nd.depth; ++l) f(nd.off_layer(l) + (long)w * w, nd.off_layer(l + 1));
    f(nd.off_out(), np);
  };
  std::vector<std::vector<G>> partial_w(nt);
  auto work = [&](int tid) {
    std::vector<V> scratch(scratch_len * kScratchStride);
    partial[tid].reset(new G[np]);
    G* acc_buf = partial[tid].get();
    lane_summed([&](long a, long b) { std::fill(acc_buf + a, acc_buf + b, G{}); });
    partial_w[tid].assign(gw_len, G{});
    std::vector<G> zt(gw_len ? 2L * lanes<V>::n * nv : 0, G{});
    AccLanes<V> acc{acc_buf, gw_len ? partial_w[tid].data() : nullptr, zt.data(), nd.off_layer(1),
                    (long)w * w + w, nv};
    const long b0 = nblocks * tid / nt, b1 = nblocks * (tid + 1) / nt;
    for (long b = b0; b < b1; ++b) {
      const long n0 = b * Pn;
      if constexpr (blocked) {
        if (narrow_tail && b == nblocks - 1) {
          run_narrow<op, W>(nd, c, n0, scratch_len, kept_len,
                            AccLanes<G>{acc_buf, acc.gw, acc.zt, acc.first, acc.layer_size, nv});
          continue;
        }
      }
      const Block blk{n0, (int)std::min<long>(Pn, c.N - n0)};
      drv.template run<op>(blk, scratch_view(scratch.data(), b), acc, kept_view<V>(c, kept_len, n0));
    }
  };
  if (nt == 1) {
    work(0);
  } else {
#pragma omp parallel num_threads(nt)
    work(omp_get_thread_num());
  }
  // Lanes and threads summed in a fixed order, in double.
  S* thb = c.theta_bar.as<S>();
  lane_summed([&](long a, long b) {
    for (long i = a; i < b; ++i) {
      double s = 0;
      for (int tid = 0; tid < nt; ++tid)
        for (int l = 0; l < lanes<G>::n; ++l) s += lane(partial[tid][i], l);
      thb[i] = S(s);
    }
  });
  for (int l = 1; l <= nd.depth && gw_len; ++l)
    for (int j = 0; j < w; ++j)
      for (int k = 0; k < w; ++k) {
        double s = 0;
        for (int tid = 0; tid < nt; ++tid)
          s += lane(partial_w[tid][((long)(l - 1) * w + j) * nv + k / lanes<G>::n], k % lanes<G>::n);
        thb[nd.off_layer(l) + (long)j * w + k] = S(s);
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
