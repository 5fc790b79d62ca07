// CUDA drivers: one thread per sample (lane type = float/double) running hinn/ops.h's op bodies in a
// grid-stride loop; what is here is the launch, the reduction and the memory.
//
// Parameter cotangents: each warp sums its 32 samples' contributions with shuffles and lane 0 adds them to
// the warp's own row of a partial-sum buffer; a second kernel adds the rows in a fixed order. The grid is
// a fixed function of (op, N, device), so results are bit-identical run to run. Parameters are staged in
// shared memory when they fit. No allocation here: the caller passes one workspace of workspace_bytes
// (the Python layer takes it from PyTorch's caching allocator, so it is reused across calls and
// capturable in CUDA graphs); each thread's scratch is interleaved with its neighbours' (strided.h) so
// that a warp's loads and stores are coalesced.
#include <cuda_runtime.h>

#include <algorithm>
#include <stdexcept>
#include <string>

#include "core.h"
#include "hinn/ops.h"

namespace hinn::cuda {
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

// Every thread of a launched warp runs the same number of iterations (past N: the dead block {N-1, 0}),
// so the shuffles in WarpAcc are always convergent.
template <Op op, class S>
__global__ void k_op(NetDesc nd, Call c, bool staged, S* scratch, S* partial) {
  extern __shared__ unsigned char smem_raw[];
  const S* th = c.theta.as<const S>();
  if (staged) {
    S* sh = reinterpret_cast<S*>(smem_raw);
    for (long i = threadIdx.x; i < nd.n_params(); i += blockDim.x) sh[i] = th[i];
    __syncthreads();
    th = sh;
  }
  const long tid = blockIdx.x * (long)blockDim.x + threadIdx.x;
  const long nthreads = (long)gridDim.x * blockDim.x;
  const Strided<S> sc{scratch + tid, nthreads};  // element i of this thread: scratch[i * nthreads + tid]
  WarpAcc<S> acc{is_backward(op) ? partial + (tid / 32) * nd.n_params() : nullptr};  // forward ops: unused
  const Driver<0, S, Strided<S>> drv(nd, c, th);
  const long iters = (c.N + nthreads - 1) / nthreads;
  for (long it = 0; it < iters; ++it) {
    const long s = it * nthreads + tid;
    drv.template run<op>(s < c.N ? Block{s, 1} : Block{c.N - 1, 0}, sc, acc);
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

// Values the call writes, for the memory cap.
long output_values(Op op, const NetDesc& nd, const Call& c) {
  const long N = c.N, Nd = c.N * nd.d, np = nd.n_params();
  switch (op) {
    case Op::Hamiltonian: return N;
    case Op::Grad: return N + 2 * Nd;
    case Op::Rollout: return (c.trajectory ? c.steps + 1 : 1) * 2 * N * cuda::state_dim(c.scheme, nd.d);
    case Op::RolloutBackward: return 2 * Nd + np;
    case Op::DerivativeLoss: return N + np;
    case Op::WindowError: return N;
    default: return N + 2 * Nd + np;  // grad_backward, window_loss
  }
}

template <class S>
Plan plan(Op op, const NetDesc& nd, const Call& c) {
  int dev = 0, sms = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev), "cudaDeviceGetAttribute");
  const long np = nd.n_params();
  const bool bwd = is_backward(op);
  const long values = op_scratch(op, nd, c);  // per thread
  const double per_thread = double(values) * sizeof(S);
  const double per_block = kThreads * per_thread + (bwd ? kThreads / 32 * double(np) * sizeof(S) : 0);
  const long wanted = std::min<long>((std::max<long>(c.N, 1) + kThreads - 1) / kThreads, (long)sms * kBlocksPerSM);
  const long by_memory = std::max<long>((long)sms * kMinBlocksPerSM,
                                        (long)(2.0 * output_values(op, nd, c) * sizeof(S) / per_block));
  Plan pl;
  pl.blocks = std::max<long>(1, std::min(wanted, by_memory));
  const long nthreads = pl.blocks * kThreads;
  pl.rows = bwd ? nthreads / 32 : 0;
  pl.scratch = (size_t(nthreads) * values * sizeof(S) + 255) / 256 * 256;
  pl.partial = size_t(pl.rows) * np * sizeof(S);
  return pl;
}

template <class S>
void launch(Op op, const NetDesc& nd, const Call& c) {
  cudaStream_t stream = reinterpret_cast<cudaStream_t>(c.stream);
  const Plan pl = plan<S>(op, nd, c);  // validate() has checked the workspace against this same plan
  const long np = nd.n_params();
  const size_t smem = np * sizeof(S);
  const bool staged = smem <= 48 * 1024;
  const size_t shm = staged ? smem : 0;
  S* scratch = c.work.as<S>();
  S* partial = reinterpret_cast<S*>(c.work.ptr + pl.scratch);
  if (pl.partial) check(cudaMemsetAsync(partial, 0, pl.partial, stream), "cudaMemsetAsync");
  switch (op) {
#define HINN_LAUNCH(id, name)                                                                \
  case Op::id: k_op<Op::id, S><<<pl.blocks, kThreads, shm, stream>>>(nd, c, staged, scratch, partial); \
    break;
    HINN_OPS(HINN_LAUNCH)
#undef HINN_LAUNCH
  }
  check(cudaGetLastError(), "kernel launch");
  if (pl.rows) {
    k_reduce_rows<S><<<(np + 255) / 256, 256, 0, stream>>>(partial, pl.rows, np, c.theta_bar.as<S>());
    check(cudaGetLastError(), "reduction launch");
  }
}

}  // namespace

size_t workspace_bytes(Op op, const NetDesc& nd, const Call& c) {
  if (c.N == 0) return 0;
  return c.dtype == kFloat64 ? plan<double>(op, nd, c).bytes() : plan<float>(op, nd, c).bytes();
}

void call(Op op, const NetDesc& nd, const Call& c) {
  if (c.N == 0) {
    if (is_backward(op))
      check(cudaMemsetAsync((void*)c.theta_bar.ptr, 0, nd.n_params() * (c.dtype == kFloat64 ? 8 : 4),
                            reinterpret_cast<cudaStream_t>(c.stream)),
            "cudaMemsetAsync");
    return;
  }
  if (c.dtype == kFloat64) launch<double>(op, nd, c);
  else launch<float>(op, nd, c);
}

}  // namespace hinn::cuda
