// CUDA drivers over the shared per-sample math: one thread per sample (lane type = float/double).
//
// Parameter cotangents: each warp sums its 32 samples' contributions with shuffles and lane 0 adds them to
// the warp's own row of a partial-sum buffer; a second kernel adds the rows in a fixed order. The grid is
// a fixed function of (N, device), so results are bit-identical run to run (the deterministic mode costs
// nothing extra). Parameters are staged in shared memory when they fit.
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
__global__ void k_grad_fwd(NetDesc nd, CallArgs a, bool sh, S* scratch, long per_thread) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  S* sc = scratch + tid * per_thread;
  const int d = nd.d, o = nd.time, n = nd.n_in();
  for (long s = tid; s < a.N; s += nthreads) {
    S* x = sc;
    S* g = x + n;
    S* P = g + n;
    if (o) x[0] = ((const S*)a.t)[s];
    for (int j = 0; j < d; ++j) {
      x[o + j] = ((const S*)a.p)[s * d + j];
      x[o + d + j] = ((const S*)a.q)[s * d + j];
    }
    const S H = primal<0, false>(nd, th, x, P);
    grad_from_primal<0>(nd, th, P, g, P + primal_size(nd));
    ((S*)a.out0)[s] = H;
    for (int j = 0; j < d; ++j) {
      ((S*)a.out1)[s * d + j] = g[o + j];
      ((S*)a.out2)[s * d + j] = g[o + d + j];
    }
  }
}

template <class S>
__global__ void k_ham_fwd(NetDesc nd, CallArgs a, bool sh, S* scratch, long per_thread) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  S* x = scratch + tid * per_thread;
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
__global__ void k_grad_bwd(NetDesc nd, CallArgs a, bool sh, S* scratch, long per_thread, S* partial) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  S* sc = scratch + tid * per_thread;
  WarpAcc<S> acc{partial + (tid / 32) * nd.n_params()};
  const int d = nd.d, o = nd.time, n = nd.n_in();
  const long iters = (a.N + nthreads - 1) / nthreads;
  for (long it = 0; it < iters; ++it) {
    const long s0 = it * nthreads + tid;
    const bool live = s0 < a.N;
    const long s = live ? s0 : a.N - 1;
    S* x = sc;
    S* v = x + n;
    S* xb = v + n;
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
    S* P = xb + n;
    primal<0>(nd, th, x, P);
    vjp_from_primal<0>(nd, th, P, v, z * ((const S*)a.in_b0)[s], xb, acc, P + primal_size(nd));
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
__global__ void k_rollout_fwd(NetDesc nd, CallArgs a, bool sh, S* scratch, long per_thread) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  S* sc = scratch + tid * per_thread;
  const int d = nd.d;
  const long Nd = a.N * d;
  for (long s = tid; s < a.N; s += nthreads) {
    S* p = sc;
    S* q = p + d;
    Stepper<0, S, S> stp(nd, th, q + d);
    const S t = ((const S*)a.t)[s];
    for (int j = 0; j < d; ++j) {
      p[j] = ((const S*)a.p)[s * d + j];
      q[j] = ((const S*)a.q)[s * d + j];
      if (a.trajectory) {
        ((S*)a.out1)[s * d + j] = p[j];
        ((S*)a.out2)[s * d + j] = q[j];
      }
    }
    for (long k = 0; k < a.steps; ++k) {
      stp.forward(a.scheme, t + S(k) * S(a.h), S(a.h), p, q);
      if (a.trajectory || k == a.steps - 1) {
        const long off = a.trajectory ? (k + 1) * Nd : 0;
        for (int j = 0; j < d; ++j) {
          ((S*)a.out1)[off + s * d + j] = p[j];
          ((S*)a.out2)[off + s * d + j] = q[j];
        }
      }
    }
  }
}

template <class S>
__global__ void k_rollout_bwd(NetDesc nd, CallArgs a, bool sh, S* scratch, long per_thread, S* partial) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  S* sc = scratch + tid * per_thread;
  WarpAcc<S> acc{partial + (tid / 32) * nd.n_params()};
  const int d = nd.d;
  const long Nd = a.N * d;
  const long iters = (a.N + nthreads - 1) / nthreads;
  for (long it = 0; it < iters; ++it) {
    const long s0 = it * nthreads + tid;
    const bool live = s0 < a.N;
    const long s = live ? s0 : a.N - 1;
    const S z = live ? S(1) : S(0);
    S* p = sc;
    S* q = p + d;
    S* pb = q + d;
    S* qb = pb + d;
    Stepper<0, S, S> stp(nd, th, qb + d);
    const S t = ((const S*)a.t)[s];
    const long last = a.trajectory ? a.steps * Nd : 0;
    for (int j = 0; j < d; ++j) {
      pb[j] = z * ((const S*)a.in_b1)[last + s * d + j];
      qb[j] = z * ((const S*)a.in_b2)[last + s * d + j];
    }
    for (long k = a.steps - 1; k >= 0; --k) {
      const long off = a.trajectory ? k * Nd : 0;
      for (int j = 0; j < d; ++j) {
        p[j] = ((const S*)a.p)[off + s * d + j];
        q[j] = ((const S*)a.q)[off + s * d + j];
      }
      stp.backward(a.scheme, t + S(k) * S(a.h), S(a.h), p, q, pb, qb, acc);
      if (a.trajectory)
        for (int j = 0; j < d; ++j) {
          pb[j] += z * ((const S*)a.in_b1)[off + s * d + j];
          qb[j] += z * ((const S*)a.in_b2)[off + s * d + j];
        }
    }
    if (live)
      for (int j = 0; j < d; ++j) {
        ((S*)a.out1)[s * d + j] = pb[j];
        ((S*)a.out2)[s * d + j] = qb[j];
      }
  }
}

template <class S>
__global__ void k_loss_grad(NetDesc nd, CallArgs a, bool sh, S* scratch, long per_thread, S* partial) {
  const S* th = stage_params(nd, (const S*)a.theta, sh);
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  S* sc = scratch + tid * per_thread;
  WarpAcc<S> acc{partial + (tid / 32) * nd.n_params()};
  const int d = nd.d;
  const long K = a.steps, Nd = a.N * d;
  const long iters = (a.N + nthreads - 1) / nthreads;
  for (long it = 0; it < iters; ++it) {
    const long s0 = it * nthreads + tid;
    const bool live = s0 < a.N;
    const long s = live ? s0 : a.N - 1;
    S* pb = sc;
    S* qb = pb + d;
    S* TP = qb + d;
    S* TQ = TP + (K + 1) * d;
    S* GP = TQ + (K + 1) * d;
    S* GQ = GP + K * d;
    Stepper<0, S, S> stp(nd, th, GQ + K * d);
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

template <class S>
void launch(Op op, const NetDesc& nd, const CallArgs& a) {
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(a.stream);
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  const long np = nd.n_params();
  const bool bwd = op == Op::GradBwd || op == Op::RolloutBwd || op == Op::LossGrad;
  // enough threads to fill the card, fewer when there are few samples
  long blocks = std::max<long>(1, std::min<long>((a.N + kThreads - 1) / kThreads, (long)sms * 16));
  if (bwd) {  // bound the partial-sum buffer (rows x n_params) to about 256 MiB
    const long max_warps = std::max<long>(1, (256L << 20) / (np * (long)sizeof(S)));
    blocks = std::max<long>(1, std::min<long>(blocks, max_warps / (kThreads / 32)));
  }
  const long nthreads = blocks * kThreads;
  // covers the grad kernels (3 n_in + primal + work) and the step kernels (4 d + step_scratch)
  long per_thread = 3L * nd.n_in() + 4L * nd.d + step_scratch(nd);
  if (op == Op::LossGrad) per_thread = 2L * nd.d + window_scratch(nd, a.steps) + step_scratch(nd);
  const size_t smem = np * sizeof(S);
  const bool sh = smem <= 48 * 1024;
  S* scratch = nullptr;
  S* partial = nullptr;
  const long rows = nthreads / 32;
  check(cudaMallocAsync((void**)&scratch, nthreads * per_thread * sizeof(S), stream), "cudaMallocAsync");
  if (bwd) {
    check(cudaMallocAsync((void**)&partial, rows * np * sizeof(S), stream), "cudaMallocAsync");
    check(cudaMemsetAsync(partial, 0, rows * np * sizeof(S), stream), "cudaMemsetAsync");
  }
  const size_t shm = sh ? smem : 0;
  switch (op) {
    case Op::HamFwd: k_ham_fwd<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch, per_thread); break;
    case Op::GradFwd: k_grad_fwd<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch, per_thread); break;
    case Op::GradBwd:
      k_grad_bwd<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch, per_thread, partial);
      break;
    case Op::RolloutFwd: k_rollout_fwd<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch, per_thread); break;
    case Op::RolloutBwd:
      k_rollout_bwd<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch, per_thread, partial);
      break;
    case Op::LossGrad:
      k_loss_grad<S><<<blocks, kThreads, shm, stream>>>(nd, a, sh, scratch, per_thread, partial);
      break;
  }
  check(cudaGetLastError(), "kernel launch");
  if (bwd) {
    k_reduce_rows<S><<<(np + 255) / 256, 256, 0, stream>>>(partial, rows, np, (S*)a.thb);
    check(cudaGetLastError(), "reduction launch");
    check(cudaFreeAsync(partial, stream), "cudaFreeAsync");
  }
  check(cudaFreeAsync(scratch, stream), "cudaFreeAsync");
}

}  // namespace

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
