// CUDA drivers over the shared per-sample math: one thread per sample (lane type = float/double).
//
// Parameter cotangents: each warp sums its 32 samples' contributions with shuffles and lane 0 adds them to
// the warp's own row of a partial-sum buffer; a second kernel adds the rows in a fixed order. The grid is
// a fixed function of (op, N, device), so results are bit-identical run to run (the deterministic mode
// costs nothing extra). Parameters are staged in shared memory when they fit.
//
// Memory: no allocation here. The caller passes one workspace of cuda_workspace_bytes (the Python layer
// takes it from PyTorch's caching allocator, so it is reused across calls and capturable in CUDA
// graphs); each thread's scratch is interleaved with its neighbours' (strided.h) so that a warp's loads
// and stores are coalesced.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "cpu.h"
#include "hinn/integrators.h"

namespace hinn {
namespace {

constexpr int kThreads = 128;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw std::runtime_error(std::string("hinn CUDA error in ") + what + ": " + cudaGetErrorString(e));
}

template <class S>
struct WarpAcc {
  S* row;  // this warp's partial sums (length n_params)
  __device__ void operator()(long i, S v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) row[i] += v;
  }
};

struct NoAcc {
  template <class S>
  __device__ void operator()(long, S) {}
};

template <class S>
__device__ const S* stage_params(const NetDesc& nd, const S* theta, bool use_shared) {
  extern __shared__ unsigned char smem_raw[];
  if (!use_shared) return theta;
  S* sh = reinterpret_cast<S*>(smem_raw);
  for (long i = threadIdx.x; i < nd.n_params(); i += blockDim.x) sh[i] = theta[i];
  __syncthreads();
  return sh;
}

// Every thread of a launched warp runs the same instruction stream (samples past N repeat sample N-1
// with zero cotangents), so the shuffles in WarpAcc are always convergent.
template <class S>
__global__ void k_grad_fwd(NetDesc nd, CallArgs a, bool sh, S* scratch) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  const Strided<S> sc{scratch + tid, nthreads};  // element i of this thread: scratch[i * nthreads + tid]
  const int d = nd.d, o = nd.time, n = nd.n_in();
  for (long s = tid; s < a.N; s += nthreads) {
    const Strided<S> x = sc, g = x + n, prim = g + n;
    if (o) x[0] = ((const S*)a.t)[s];
    for (int j = 0; j < d; ++j) {
      x[o + j] = ((const S*)a.p)[s * d + j];
      x[o + d + j] = ((const S*)a.q)[s * d + j];
    }
    const S H = primal<0, false>(nd, th, x, prim);
    grad_from_primal<0>(nd, th, prim, g, prim + primal_size(nd));
    ((S*)a.out0)[s] = H;
    for (int j = 0; j < d; ++j) {
      ((S*)a.out1)[s * d + j] = g[o + j];
      ((S*)a.out2)[s * d + j] = g[o + d + j];
    }
  }
}

template <class S>
__global__ void k_ham_fwd(NetDesc nd, CallArgs a, bool sh, S* scratch) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  const Strided<S> x{scratch + tid, nthreads};
  const int d = nd.d, o = nd.time;
  for (long s = tid; s < a.N; s += nthreads) {
    if (o) x[0] = ((const S*)a.t)[s];
    for (int j = 0; j < d; ++j) {
      x[o + j] = ((const S*)a.p)[s * d + j];
      x[o + d + j] = ((const S*)a.q)[s * d + j];
    }
    ((S*)a.out0)[s] = primal<0, false>(nd, th, x, x + nd.n_in());
  }
}

template <class S>
__global__ void k_grad_bwd(NetDesc nd, CallArgs a, bool sh, S* scratch, S* partial) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  const Strided<S> sc{scratch + tid, nthreads};  // element i of this thread: scratch[i * nthreads + tid]
  WarpAcc<S> acc{partial + (tid / 32) * nd.n_params()};
  const int d = nd.d, o = nd.time, n = nd.n_in();
  const long iters = (a.N + nthreads - 1) / nthreads;
  for (long it = 0; it < iters; ++it) {
    const long s0 = it * nthreads + tid;
    const bool live = s0 < a.N;
    const long s = live ? s0 : a.N - 1;
    const Strided<S> x = sc, v = x + n, xb = v + n;
    const S z = live ? S(1) : S(0);
    if (o) {
      x[0] = ((const S*)a.t)[s];
      v[0] = S(0);
    }
    for (int j = 0; j < d; ++j) {
      x[o + j] = ((const S*)a.p)[s * d + j];
      x[o + d + j] = ((const S*)a.q)[s * d + j];
      v[o + j] = z * ((const S*)a.in_b1)[s * d + j];
      v[o + d + j] = z * ((const S*)a.in_b2)[s * d + j];
    }
    for (int i = 0; i < n; ++i) xb[i] = S(0);
    const Strided<S> prim = xb + n;
    primal<0>(nd, th, x, prim);
    vjp_from_primal<0>(nd, th, prim, v, z * ((const S*)a.in_b0)[s], xb, acc, prim + primal_size(nd));
    if (live) {
      if (o) ((S*)a.out0)[s] = xb[0];
      for (int j = 0; j < d; ++j) {
        ((S*)a.out1)[s * d + j] = xb[o + j];
        ((S*)a.out2)[s * d + j] = xb[o + d + j];
      }
    }
  }
}

template <class S>
__global__ void k_rollout_fwd(NetDesc nd, CallArgs a, bool sh, S* scratch) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  const Strided<S> sc{scratch + tid, nthreads};  // element i of this thread: scratch[i * nthreads + tid]
  const int d = nd.d, ds = state_dim(a.scheme, d);
  const long Nds = a.N * ds;
  for (long s = tid; s < a.N; s += nthreads) {
    const Strided<S> p = sc, q = p + ds;
    Stepper<0, S, S, Strided<S>> stp(nd, th, q + ds, a.params);
    const S t = ((const S*)a.t)[s];
    for (int j = 0; j < d; ++j) {
      p[j] = ((const S*)a.p)[s * d + j];
      q[j] = ((const S*)a.q)[s * d + j];
    }
    lift_state(a.scheme, d, p, q);
    if (a.trajectory)
      for (int j = 0; j < ds; ++j) {
        ((S*)a.out1)[s * ds + j] = p[j];
        ((S*)a.out2)[s * ds + j] = q[j];
      }
    for (long k = 0; k < a.steps; ++k) {
      stp.forward(a.scheme, t + S(k) * S(a.h), S(a.h), p, q);
      if (a.trajectory || k == a.steps - 1) {
        const long off = a.trajectory ? (k + 1) * Nds : 0;
        for (int j = 0; j < ds; ++j) {
          ((S*)a.out1)[off + s * ds + j] = p[j];
          ((S*)a.out2)[off + s * ds + j] = q[j];
        }
      }
    }
    if (stp.failed) report_failure(a.status);
  }
}

template <class S>
__global__ void k_rollout_bwd(NetDesc nd, CallArgs a, bool sh, S* scratch, S* partial) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  const Strided<S> sc{scratch + tid, nthreads};  // element i of this thread: scratch[i * nthreads + tid]
  WarpAcc<S> acc{partial + (tid / 32) * nd.n_params()};
  const int d = nd.d, ds = state_dim(a.scheme, d);
  const long Nds = a.N * ds;
  const long iters = (a.N + nthreads - 1) / nthreads;
  for (long it = 0; it < iters; ++it) {
    const long s0 = it * nthreads + tid;
    const bool live = s0 < a.N;
    const long s = live ? s0 : a.N - 1;
    const S z = live ? S(1) : S(0);
    const Strided<S> p = sc, q = p + ds, pb = q + ds, qb = pb + ds;
    // op_scratch's layout: p q p̄ q̄ (unused ds) | step
    Stepper<0, S, S, Strided<S>> stp(nd, th, qb + 2 * ds, a.params);
    const S t = ((const S*)a.t)[s];
    const long last = a.trajectory ? a.steps * Nds : 0;
    for (int j = 0; j < ds; ++j) {
      pb[j] = z * ((const S*)a.in_b1)[last + s * ds + j];
      qb[j] = z * ((const S*)a.in_b2)[last + s * ds + j];
    }
    for (long k = a.steps - 1; k >= 0; --k) {
      if (a.trajectory) {
        for (int j = 0; j < ds; ++j) {
          p[j] = ((const S*)a.p)[k * Nds + s * ds + j];
          q[j] = ((const S*)a.q)[k * Nds + s * ds + j];
        }
      } else {
        for (int j = 0; j < d; ++j) {
          p[j] = ((const S*)a.p)[s * d + j];
          q[j] = ((const S*)a.q)[s * d + j];
        }
        lift_state(a.scheme, d, p, q);
      }
      stp.backward(a.scheme, t + S(k) * S(a.h), S(a.h), p, q, pb, qb, acc);
      if (a.trajectory)
        for (int j = 0; j < ds; ++j) {
          pb[j] += z * ((const S*)a.in_b1)[k * Nds + s * ds + j];
          qb[j] += z * ((const S*)a.in_b2)[k * Nds + s * ds + j];
        }
    }
    fold_cotangent(a.scheme, d, pb, qb);
    if (stp.failed) report_failure(a.status);
    if (live)
      for (int j = 0; j < d; ++j) {
        ((S*)a.out1)[s * d + j] = pb[j];
        ((S*)a.out2)[s * d + j] = qb[j];
      }
  }
}

template <class S>
__global__ void k_loss_grad(NetDesc nd, CallArgs a, bool sh, S* scratch, S* partial) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  const Strided<S> sc{scratch + tid, nthreads};  // element i of this thread: scratch[i * nthreads + tid]
  WarpAcc<S> acc{partial + (tid / 32) * nd.n_params()};
  const int d = nd.d, ds = state_dim(a.scheme, d);
  const long K = a.steps, Nd = a.N * d;
  const long iters = (a.N + nthreads - 1) / nthreads;
  for (long it = 0; it < iters; ++it) {
    const long s0 = it * nthreads + tid;
    const bool live = s0 < a.N;
    const long s = live ? s0 : a.N - 1;
    const Strided<S> pb = sc, qb = pb + ds, TP = qb + ds, TQ = TP + (K + 1) * ds, GP = TQ + (K + 1) * ds,
                     GQ = GP + K * d;
    Stepper<0, S, S, Strided<S>> stp(nd, th, GQ + K * d, a.params);
    for (int j = 0; j < d; ++j) {
      TP[j] = ((const S*)a.p)[s * d + j];
      TQ[j] = ((const S*)a.q)[s * d + j];
    }
    for (long k = 0; k < K; ++k)
      for (int j = 0; j < d; ++j) {
        GP[k * d + j] = ((const S*)a.in_b1)[k * Nd + s * d + j];
        GQ[k * d + j] = ((const S*)a.in_b2)[k * Nd + s * d + j];
      }
    const S loss = stp.window_loss(a.scheme, ((const S*)a.t)[s], S(a.h), K, TP, TQ, GP, GQ, live ? S(1) : S(0),
                                   S(a.scale), pb, qb, acc);
    if (stp.failed) report_failure(a.status);
    if (live) {
      ((S*)a.out0)[s] = loss;
      for (int j = 0; j < d; ++j) {
        ((S*)a.out1)[s * d + j] = pb[j];
        ((S*)a.out2)[s * d + j] = qb[j];
      }
    }
  }
}

template <class S>
__global__ void k_reduce_rows(const S* partial, long rows, long n, S* out) {
  const long i = blockIdx.x * (long)blockDim.x + threadIdx.x;
  if (i >= n) return;
  double s = 0;  // in double for float32 too, as on the CPU; fixed order: deterministic
  for (long r = 0; r < rows; ++r) s += partial[r * n + i];
  out[i] = S(s);
}

// How one call runs: its grid and the workspace it needs (scratch of every thread, then the warps'
// partial-sum rows). The grid fills the card when there are samples enough, but its scratch is capped at
// twice the bytes the call returns (each thread then loops over more samples), with a floor of
// kMinBlocksPerSM blocks per multiprocessor so that small calls keep the card busy.
constexpr long kMinBlocksPerSM = 1;
constexpr long kBlocksPerSM = 16;

struct Plan {
  long blocks = 1, rows = 0;
  size_t scratch = 0, partial = 0;  // bytes; partial starts at `scratch` (a multiple of 256)
  size_t bytes() const { return scratch + partial; }
};

bool is_backward(Op op) { return op == Op::GradBwd || op == Op::RolloutBwd || op == Op::LossGrad; }

// Values the call writes, for the memory cap.
long output_values(Op op, const NetDesc& nd, const CallArgs& a) {
  const long N = a.N, Nd = a.N * nd.d, np = nd.n_params();
  switch (op) {
    case Op::HamFwd: return N;
    case Op::GradFwd: return N + 2 * Nd;
    case Op::GradBwd: return N + 2 * Nd + np;
    case Op::RolloutFwd: return (a.trajectory ? a.steps + 1 : 1) * 2 * N * state_dim(a.scheme, nd.d);
    case Op::RolloutBwd: return 2 * Nd + np;
    case Op::LossGrad: return N + 2 * Nd + np;
  }
  return N;
}

template <class S>
Plan plan(Op op, const NetDesc& nd, const CallArgs& a) {
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  const long np = nd.n_params();
  const bool bwd = is_backward(op);
  const long values = op_scratch(op, nd, a.scheme, a.steps);  // per thread
  const double per_thread = double(values) * sizeof(S);
  const double per_block = kThreads * per_thread + (bwd ? kThreads / 32 * double(np) * sizeof(S) : 0);
  const long wanted = std::min<long>((std::max<long>(a.N, 1) + kThreads - 1) / kThreads, (long)sms * kBlocksPerSM);
  const long by_memory = std::max<long>((long)sms * kMinBlocksPerSM,
                                        (long)(2.0 * output_values(op, nd, a) * sizeof(S) / per_block));
  Plan pl;
  pl.blocks = std::max<long>(1, std::min(wanted, by_memory));
  const long nthreads = pl.blocks * kThreads;
  pl.rows = bwd ? nthreads / 32 : 0;
  pl.scratch = (size_t(nthreads) * values * sizeof(S) + 255) / 256 * 256;
  pl.partial = size_t(pl.rows) * np * sizeof(S);
  return pl;
}

template <class S>
void launch(Op op, const NetDesc& nd, const CallArgs& a) {
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(a.stream);
  const Plan pl = plan<S>(op, nd, a);  // validate() has checked the workspace against this same plan
  const long np = nd.n_params();
  const size_t smem = np * sizeof(S);
  const bool sh = smem <= 48 * 1024;
  const size_t shm = sh ? smem : 0;
  S* scratch = reinterpret_cast<S*>(a.work);
  S* partial = reinterpret_cast<S*>(a.work + pl.scratch);
  if (pl.partial) check(cudaMemsetAsync(partial, 0, pl.partial, stream), "cudaMemsetAsync");
  const long blocks = pl.blocks;
  switch (op) {
    case Op::HamFwd: k_ham_fwd<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch); break;
    case Op::GradFwd: k_grad_fwd<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch); break;
    case Op::GradBwd: k_grad_bwd<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch, partial); break;
    case Op::RolloutFwd: k_rollout_fwd<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch); break;
    case Op::RolloutBwd: k_rollout_bwd<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch, partial); break;
    case Op::LossGrad: k_loss_grad<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch, partial); break;
  }
  check(cudaGetLastError(), "kernel launch");
  if (pl.rows) {
    k_reduce_rows<S><<<(np + 255) / 256, 256, 0, stream>>>(partial, pl.rows, np, (S*)a.thb);
    check(cudaGetLastError(), "reduction launch");
  }
}

}  // namespace

size_t cuda_workspace_bytes(Op op, const NetDesc& nd, const CallArgs& a) {
  if (a.N == 0) return 0;
  return a.dtype == kFloat64 ? plan<double>(op, nd, a).bytes() : plan<float>(op, nd, a).bytes();
}

void cuda_call(Op op, const NetDesc& nd, const CallArgs& a) {
  if (a.N == 0) {
    if (a.thb)
      check(cudaMemsetAsync((void*)a.thb, 0, nd.n_params() * (a.dtype == kFloat64 ? 8 : 4),
                            reinterpret_cast<cudaStream_t>(a.stream)), "cudaMemsetAsync");
    return;
  }
  if (a.dtype == kFloat64) launch<double>(op, nd, a);
  else launch<float>(op, nd, a);
}

}  // namespace hinn
