// The core's own argument check (core.h: validate), its single entry point (run), and the scheme table
// as the bindings export it. Compiled for the module's baseline (HINN_ISA = host).
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#include "core.h"
#include "hinn/ops.h"

namespace hinn {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument("hinn._core: " + msg); }

struct Need {
  const char* name;
  const Buf* buf;
  long want;
};

}  // namespace

std::vector<SchemeInfo> scheme_table() {
  std::vector<SchemeInfo> out;
  for (int code = 0; code < host::kNumSchemes; ++code)
    host::visit_scheme(code, [&](auto sch) {
      using Sc = decltype(sch);
      SchemeInfo info{host::kSchemeNames[code], {}, Sc::kStateMult, Sc::kSolves};
      std::string names = Sc::Params::kNames, w;
      for (char ch : names + " ")
        if (ch != ' ') w += ch;
        else if (!w.empty()) info.params.push_back(w), w.clear();
      out.push_back(info);
    });
  return out;
}

void validate(Op op, const NetDesc& nd, const Call& c) {
  if (static_cast<int>(op) < 0 || static_cast<int>(op) >= kNumOps) fail("unknown operation " + std::to_string(static_cast<int>(op)));
  const std::string opn = kOpNames[static_cast<int>(op)];
  if (nd.d < 1 || nd.width < 1 || nd.depth < 0 || (nd.time != 0 && nd.time != 1))
    fail("invalid network structure (need d >= 1, width >= 1, depth >= 0, time 0 or 1)");
  if (nd.act < 0 || nd.act >= kNumActivations) fail("unknown activation code " + std::to_string(nd.act));
  if (!std::isfinite(nd.hr)) fail("the residual step must be finite");
  if (c.dtype != kFloat32 && c.dtype != kFloat64) fail("unknown dtype code " + std::to_string(c.dtype));
  if (c.N < 0) fail("N must be >= 0, got " + std::to_string(c.N));
  if (c.nthreads < 1) fail("nthreads must be >= 1");
  const bool stepping = steps_in_time(op);
  bool solves = false;
  int ds = nd.d;
  if (stepping) {
    if (c.scheme < 0 || c.scheme >= host::kNumSchemes) fail("unknown scheme code " + std::to_string(c.scheme));
    if (!std::isfinite(c.h)) fail("the time step must be finite");
    const char* bad = host::visit_scheme(c.scheme, [&](auto sch) { return decltype(sch)::Params::check(c.args); });
    if (bad) fail(std::string(host::kSchemeNames[c.scheme]) + ": " + bad);
    solves = host::scheme_solves(c.scheme);
    ds = host::state_dim(c.scheme, nd.d);
    if (op == Op::WindowLoss || op == Op::WindowError) {
      if (c.steps < 1) fail("a training window has steps >= 1, got " + std::to_string(c.steps));
      if (!std::isfinite(c.scale)) fail("the loss scale must be finite");
    } else if (c.steps < 0 || (!c.trajectory && c.steps != 1)) {
      fail("steps must be >= 0 for a trajectory and 1 for a single step, got " + std::to_string(c.steps));
    }
  }
  const long N = c.N, Nd = c.N * nd.d, np = nd.n_params();
  // a rollout's outputs are in the scheme's state (ds wide), its inputs and their cotangents observed (d)
  const long states = (c.trajectory ? c.steps + 1 : 1) * N * ds;
  Need need[12];
  int n = 0;
  auto add = [&](const char* name, const Buf& b, long want) { need[n++] = {name, &b, want}; };
  add("theta", c.theta, np);
  add("t", c.t, N);
  switch (op) {
    case Op::Hamiltonian:
      add("p", c.p, Nd), add("q", c.q, Nd), add("H", c.H, N);
      break;
    case Op::Grad:
      add("p", c.p, Nd), add("q", c.q, Nd), add("H", c.H, N), add("dH_dp", c.dH_dp, Nd), add("dH_dq", c.dH_dq, Nd);
      break;
    case Op::GradBackward:
      add("p", c.p, Nd), add("q", c.q, Nd), add("H_bar", c.H_bar, N), add("dH_dp_bar", c.dH_dp_bar, Nd);
      add("dH_dq_bar", c.dH_dq_bar, Nd), add("t_bar", c.t_bar, N), add("p_bar", c.p_bar, Nd), add("q_bar", c.q_bar, Nd);
      add("theta_bar", c.theta_bar, np);
      break;
    case Op::Rollout:
      add("p", c.p, Nd), add("q", c.q, Nd), add("P", c.P, states), add("Q", c.Q, states);
      break;
    case Op::RolloutBackward:
      add("P", c.P, c.trajectory ? states : Nd), add("Q", c.Q, c.trajectory ? states : Nd);
      add("P_bar", c.P_bar, states), add("Q_bar", c.Q_bar, states), add("p_bar", c.p_bar, Nd);
      add("q_bar", c.q_bar, Nd), add("theta_bar", c.theta_bar, np);
      break;
    case Op::DerivativeLoss:
      if (!std::isfinite(c.scale)) fail("the loss scale must be finite");
      add("p", c.p, Nd), add("q", c.q, Nd), add("target_p", c.target_p, Nd), add("target_q", c.target_q, Nd);
      add("losses", c.losses, N), add("theta_bar", c.theta_bar, np);
      break;
    case Op::WindowError:
      add("p", c.p, Nd), add("q", c.q, Nd), add("target_p", c.target_p, c.steps * Nd);
      add("target_q", c.target_q, c.steps * Nd), add("losses", c.losses, N);
      break;
    case Op::WindowLoss:
      add("p", c.p, Nd), add("q", c.q, Nd), add("target_p", c.target_p, c.steps * Nd);
      add("target_q", c.target_q, c.steps * Nd), add("losses", c.losses, N), add("p_bar", c.p_bar, Nd);
      add("q_bar", c.q_bar, Nd), add("theta_bar", c.theta_bar, np);
      break;
  }
  if ((op == Op::Rollout || op == Op::RolloutBackward) && (c.kept.ptr || c.kept.n)) {
    if (c.cuda) fail(opn + ": kept stages are a CPU option");
    add("kept", c.kept, host::kept_size(nd, c));
  }
  if (solves) add("status", c.status, 1);
  for (int i = 0; i < n; ++i) {
    const Need& k = need[i];
    if (k.buf->n != k.want)
      fail(opn + ": " + k.name + " has " + std::to_string(k.buf->n) + " elements; this call needs " + std::to_string(k.want));
    if (k.want > 0 && k.buf->ptr == 0) fail(opn + ": " + k.name + " is a null pointer");
  }
  // and no buffer the operation does not take (a misplaced one would be silently ignored)
  auto unused = [&](const char* name, const Buf& b) {
    if (std::strcmp(name, "work") == 0 || (b.ptr == 0 && b.n == 0)) return;
    for (int i = 0; i < n; ++i)
      if (need[i].buf == &b) return;
    fail(opn + " takes no buffer '" + name + "'");
  };
#define HINN_CHECK_UNUSED(name) unused(#name, c.name);
  HINN_BUFFERS(HINN_CHECK_UNUSED)
#undef HINN_CHECK_UNUSED
#ifdef HINN_WITH_CUDA
  if (c.cuda) {
    const size_t want = cuda::workspace_bytes(op, nd, c);
    if (c.work.n < (long)want || (want > 0 && c.work.ptr == 0))
      fail("the CUDA workspace has " + std::to_string(c.work.n) + " bytes; this call needs " + std::to_string(want) +
           " (hinn._core.workspace_bytes)");
  }
#endif
}

long kept_size(const NetDesc& nd, const Call& c) {
  if (c.scheme < 0 || c.scheme >= host::kNumSchemes) fail("unknown scheme code " + std::to_string(c.scheme));
  if (c.N < 0 || c.steps < 0) fail("kept_size: N and steps must be >= 0");
  return c.cuda ? 0 : host::kept_size(nd, c);
}

void run(Op op, const NetDesc& nd, const Call& c) {
  validate(op, nd, c);
  if (c.cuda) {
#ifdef HINN_WITH_CUDA
    cuda::call(op, nd, c);
#else
    fail("this module was built without CUDA");
#endif
  } else {
    cpu_call(op, nd, c);
  }
}

}  // namespace hinn
