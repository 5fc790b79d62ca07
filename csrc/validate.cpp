// The core's own argument check (cpu.h: validate) and its single entry point (run).
#include <cmath>
#include <stdexcept>
#include <string>

#include "cpu.h"
#include "hinn/integrators.h"

namespace hinn {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument("hinn._core: " + msg); }

void need(const char* name, std::uintptr_t ptr, long have, long want) {
  if (have != want)
    fail(std::string(name) + " has " + std::to_string(have) + " elements; this call needs " + std::to_string(want));
  if (want > 0 && ptr == 0) fail(std::string(name) + " is a null pointer");
}

}  // namespace

void validate(Op op, const NetDesc& nd, const CallArgs& a) {
  if (nd.d < 1 || nd.width < 1 || nd.depth < 0 || (nd.time != 0 && nd.time != 1))
    fail("invalid network structure (need d >= 1, width >= 1, depth >= 0, time 0 or 1)");
  if (nd.act < 0 || nd.act >= kNumActivations) fail("unknown activation code " + std::to_string(nd.act));
  if (!std::isfinite(nd.hr)) fail("the residual step must be finite");
  if (a.dtype != kFloat32 && a.dtype != kFloat64) fail("unknown dtype code " + std::to_string(a.dtype));
  if (a.N < 0) fail("N must be >= 0, got " + std::to_string(a.N));
  if (a.nthreads < 1) fail("nthreads must be >= 1");
  const bool rollout = op == Op::RolloutFwd || op == Op::RolloutBwd || op == Op::LossGrad;
  if (rollout) {
    if (a.scheme < 0 || a.scheme >= kNumSchemes) fail("unknown scheme code " + std::to_string(a.scheme));
    if (!std::isfinite(a.h)) fail("the time step must be finite");
    if (is_tao(a.scheme) && !(std::isfinite(a.params[0]) && a.params[0] > 0))
      fail("Tao's scheme needs a finite coupling omega > 0, got " + std::to_string(a.params[0]));
    if (scheme_solves(a.scheme)) {
      if (!(std::isfinite(a.params[0]) && a.params[0] >= 0))
        fail("the solver tolerance must be >= 0 (0: the default), got " + std::to_string(a.params[0]));
      if (!(a.params[1] >= 1 && a.params[1] <= 1e6))
        fail("the solver's max_iter must be in [1, 1e6], got " + std::to_string(a.params[1]));
      need("the solver status", a.status, a.n_status, 1);
    }
    if (op == Op::LossGrad) {
      if (a.steps < 1) fail("a training window has steps >= 1, got " + std::to_string(a.steps));
      if (!std::isfinite(a.scale)) fail("the loss scale must be finite");
    } else if (a.steps < 0 || (!a.trajectory && a.steps != 1)) {
      fail("steps must be >= 0 for a trajectory and 1 for a single step, got " + std::to_string(a.steps));
    }
  }
  const long N = a.N, Nd = a.N * nd.d, np = nd.n_params();
  // a rollout's outputs are in the scheme's state (ds wide), its inputs and their cotangents observed (d)
  const long Nds = rollout ? a.N * state_dim(a.scheme, nd.d) : Nd;
  const long states = a.trajectory ? (a.steps + 1) * Nds : Nds;
  need("theta", a.theta, a.n_theta, np);
  need("t", a.t, a.n_t, N);
  switch (op) {
    case Op::HamFwd:
      need("p", a.p, a.n_p, Nd);
      need("q", a.q, a.n_q, Nd);
      need("H", a.out0, a.n_out0, N);
      break;
    case Op::GradFwd:
      need("p", a.p, a.n_p, Nd);
      need("q", a.q, a.n_q, Nd);
      need("H", a.out0, a.n_out0, N);
      need("dH/dp", a.out1, a.n_out1, Nd);
      need("dH/dq", a.out2, a.n_out2, Nd);
      break;
    case Op::GradBwd:
      need("p", a.p, a.n_p, Nd);
      need("q", a.q, a.n_q, Nd);
      need("the cotangent of H", a.in_b0, a.n_in_b0, N);
      need("the cotangent of dH/dp", a.in_b1, a.n_in_b1, Nd);
      need("the cotangent of dH/dq", a.in_b2, a.n_in_b2, Nd);
      need("the cotangent of t", a.out0, a.n_out0, N);
      need("the cotangent of p", a.out1, a.n_out1, Nd);
      need("the cotangent of q", a.out2, a.n_out2, Nd);
      need("the cotangent of theta", a.thb, a.n_thb, np);
      break;
    case Op::RolloutFwd:
      need("p", a.p, a.n_p, Nd);
      need("q", a.q, a.n_q, Nd);
      need("the output p", a.out1, a.n_out1, states);
      need("the output q", a.out2, a.n_out2, states);
      break;
    case Op::RolloutBwd:
      need("the stored p", a.p, a.n_p, a.trajectory ? states : Nd);
      need("the stored q", a.q, a.n_q, a.trajectory ? states : Nd);
      need("the cotangent of the output p", a.in_b1, a.n_in_b1, states);
      need("the cotangent of the output q", a.in_b2, a.n_in_b2, states);
      need("the cotangent of p0", a.out1, a.n_out1, Nd);
      need("the cotangent of q0", a.out2, a.n_out2, Nd);
      need("the cotangent of theta", a.thb, a.n_thb, np);
      break;
    case Op::LossGrad:
      need("p0", a.p, a.n_p, Nd);
      need("q0", a.q, a.n_q, Nd);
      need("the target P", a.in_b1, a.n_in_b1, a.steps * Nd);
      need("the target Q", a.in_b2, a.n_in_b2, a.steps * Nd);
      need("the window losses", a.out0, a.n_out0, N);
      need("the cotangent of p0", a.out1, a.n_out1, Nd);
      need("the cotangent of q0", a.out2, a.n_out2, Nd);
      need("the cotangent of theta", a.thb, a.n_thb, np);
      break;
    default: fail("unknown operation " + std::to_string(static_cast<int>(op)));
  }
#ifdef HINN_WITH_CUDA
  if (a.cuda) {
    const size_t want = cuda_workspace_bytes(op, nd, a);
    if (a.n_work < (long)want || (want > 0 && a.work == 0))
      fail("the CUDA workspace has " + std::to_string(a.n_work) + " bytes; this call needs " + std::to_string(want) +
           " (hinn._core.workspace_bytes)");
  }
#endif
}

void run(Op op, const NetDesc& nd, const CallArgs& a) {
  validate(op, nd, a);
  if (a.cuda) {
#ifdef HINN_WITH_CUDA
    cuda_call(op, nd, a);
#else
    fail("this module was built without CUDA");
#endif
  } else {
    cpu_call(op, nd, a);
  }
}

}  // namespace hinn
