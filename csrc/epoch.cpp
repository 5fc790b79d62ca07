// A training epoch inside the core (core.h: train_epoch): every minibatch gathered from the whole data
// set, its loss and θ-gradient by the op's driver, the optimizer's update of θ, with no return to Python
// in between. At the minibatch sizes training uses (100 samples of the poster's network) the compiled
// loss-and-gradient takes 60 µs and the Python around it (gathers, argument checks, the optimizer's
// tensor operations) took three times that. Compiled for the module's baseline: the loop itself is
// gathers and one pass over θ; the op runs in the build cpu_call picks.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core.h"

namespace hinn {
namespace {

[[noreturn]] void fail(const std::string& msg) { throw std::invalid_argument("hinn._core.train_epoch: " + msg); }

void need(const char* name, const Buf& b, long want) {
  if (b.n != want)
    fail(std::string(name) + " has " + std::to_string(b.n) + " elements; this epoch needs " + std::to_string(want));
  if (want > 0 && b.ptr == 0) fail(std::string(name) + " is a null pointer");
}

void check_optim(const char* who, const Optim& o) {
  if (o.kind != kOptimGD && o.kind != kOptimAdam) fail(std::string(who) + ": unknown optimizer code " + std::to_string(o.kind));
  if (!(o.lr > 0 && std::isfinite(o.lr) && o.weight_decay >= 0 && std::isfinite(o.weight_decay) && o.count >= 0))
    fail(std::string(who) + ": need a finite lr > 0, a finite weight_decay >= 0 and a step count >= 0");
  if (o.kind == kOptimAdam && !(o.beta1 >= 0 && o.beta1 < 1 && o.beta2 >= 0 && o.beta2 < 1 && o.eps >= 0))
    fail(std::string(who) + ": Adam needs betas in [0, 1) and eps >= 0");
}

// torch.optim.SGD (no momentum) and torch.optim.Adam's updates of x (n values) from its gradient g at
// step `count`, element by element in x's precision with the scalars rounded to it as torch rounds them
// (src/hinn/optim.py is the same update in Python).
template <class S>
void update(const Optim& o, long count, S* x, const S* g, S* m, S* v, long n) {
  const S wd = S(o.weight_decay);
  if (o.kind == kOptimGD) {
    const S step = S(-o.lr);
    for (long i = 0; i < n; ++i) x[i] = x[i] + step * (g[i] + wd * x[i]);
    return;
  }
  const double b1 = o.beta1, b2 = o.beta2;
  const S w1 = S(1 - b1), sb2 = S(b2), w2 = S(1 - b2), eps = S(o.eps);
  const S step = S(-(o.lr / (1 - std::pow(b1, double(count)))));
  const S bc2_sqrt = S(std::sqrt(1 - std::pow(b2, double(count))));
  for (long i = 0; i < n; ++i) {
    const S gi = g[i] + wd * x[i];
    m[i] = m[i] + w1 * (gi - m[i]);  // lerp toward g by 1 − β₁
    v[i] = v[i] * sb2 + w2 * gi * gi;
    x[i] = x[i] + step * m[i] / (std::sqrt(v[i]) / bc2_sqrt + eps);
  }
}

template <class S>
long run_epoch(Op op, const NetDesc& nd, const Call& data, const EpochArgs& e) {
  const long M = data.N, d = nd.d, np = nd.n_params();
  const long K = op == Op::WindowLoss ? data.steps : 1;
  if (e.bounds.n < 1 || e.bounds.ptr == 0) fail("bounds must hold n_batches + 1 offsets");
  const long nb = e.bounds.n - 1;
  const auto* bounds = e.bounds.as<const std::int64_t>();
  const auto* index = e.index.as<const std::int64_t>();
  if (bounds[0] != 0 || bounds[nb] != e.index.n) fail("bounds must run from 0 to the number of indices");
  long most = 0;
  for (long b = 0; b < nb; ++b) {
    if (bounds[b + 1] <= bounds[b]) fail("every minibatch needs at least one sample (bounds must increase)");
    most = std::max<long>(most, bounds[b + 1] - bounds[b]);
  }
  for (long i = 0; i < e.index.n; ++i)
    if (index[i] < 0 || index[i] >= M)
      fail("sample index " + std::to_string(index[i]) + " is outside the data's " + std::to_string(M) + " samples");
  need("theta", data.theta, np);
  need("t", data.t, M), need("p", data.p, M * d), need("q", data.q, M * d);
  need("target_p", data.target_p, K * M * d), need("target_q", data.target_q, K * M * d);
  need("batch_losses", e.batch_losses, nb);
  if (e.mask.n != 0) need("mask", e.mask, np);
  check_optim("the optimizer", e.opt);
  if (e.opt.kind == kOptimAdam) need("m", e.m, np), need("v", e.v, np);
  const bool fitted = e.starts_p.n != 0 || e.starts_q.n != 0;
  if (fitted) {
    if (op != Op::WindowLoss) fail("fitted starts are the window loss's");
    need("starts_p", e.starts_p, M * d), need("starts_q", e.starts_q, M * d);
    if (e.starts_step) {
      check_optim("the starts' optimizer", e.starts_opt);
      if (e.starts_opt.kind == kOptimAdam) {
        need("starts_mp", e.starts_mp, M * d), need("starts_vp", e.starts_vp, M * d);
        need("starts_mq", e.starts_mq, M * d), need("starts_vq", e.starts_vq, M * d);
      }
    }
  } else if (e.starts_step) {
    fail("starts_step without fitted starts (starts_p, starts_q)");
  }

  // one minibatch's samples, gathered; its outputs
  std::vector<S> t(most), p(most * d), q(most * d), tp(K * most * d), tq(K * most * d);
  std::vector<S> losses(most), pb(most * d), qb(most * d), g(np);
  std::vector<S> po(fitted ? most * d : 0), qo(fitted ? most * d : 0);  // the observed starts
  std::vector<S> gs(e.starts_step ? 2 * M * d : 0);                     // the starts' gradient, zero off the batch
  const S* T = data.t.as<const S>();
  const S* obs[2] = {data.p.as<const S>(), data.q.as<const S>()};
  const S* from[2] = {fitted ? e.starts_p.as<const S>() : obs[0], fitted ? e.starts_q.as<const S>() : obs[1]};
  const S* Tg[2] = {data.target_p.as<const S>(), data.target_q.as<const S>()};
  const S* mask = e.mask.n ? e.mask.as<const S>() : nullptr;
  S* theta = data.theta.as<S>();
  double* out = e.batch_losses.as<double>();
  const int* status = data.status.as<const int>();
  auto buf = [](std::vector<S>& x, long n) { return Buf{reinterpret_cast<std::uintptr_t>(x.data()), n}; };
  for (long b = 0; b < nb; ++b) {
    const long n = bounds[b + 1] - bounds[b];
    const std::int64_t* ix = index + bounds[b];
    for (long i = 0; i < n; ++i) {
      t[i] = T[ix[i]];
      for (long j = 0; j < d; ++j) p[i * d + j] = from[0][ix[i] * d + j], q[i * d + j] = from[1][ix[i] * d + j];
      if (fitted)
        for (long j = 0; j < d; ++j) po[i * d + j] = obs[0][ix[i] * d + j], qo[i * d + j] = obs[1][ix[i] * d + j];
      for (long k = 0; k < K; ++k)
        for (long j = 0; j < d; ++j) {
          tp[(k * n + i) * d + j] = Tg[0][(k * M + ix[i]) * d + j];
          tq[(k * n + i) * d + j] = Tg[1][(k * M + ix[i]) * d + j];
        }
    }
    Call c = data;
    c.N = n;
    c.t = buf(t, n), c.p = buf(p, n * d), c.q = buf(q, n * d);
    c.target_p = buf(tp, K * n * d), c.target_q = buf(tq, K * n * d);
    c.losses = buf(losses, n), c.theta_bar = buf(g, np);
    if (op == Op::WindowLoss) c.p_bar = buf(pb, n * d), c.q_bar = buf(qb, n * d);
    c.scale = data.scale / double(n);  // the loss is a mean over the minibatch
    run(op, nd, c);
    if (status && *status) return b;  // an implicit solve failed: no update from this minibatch
    double s = 0;
    for (long i = 0; i < n; ++i) s += losses[i];
    if (fitted) {  // the starts' misfit: its loss, and its gradient beside the windows' on the fitted rows
      const S two_scale = S(2) * S(c.scale);
      double misfit = 0;
      for (long i = 0; i < n * d; ++i) {
        const S ep = p[i] - po[i], eq = q[i] - qo[i];
        misfit += double(ep * ep) + double(eq * eq);
        pb[i] = pb[i] + two_scale * ep, qb[i] = qb[i] + two_scale * eq;
      }
      s += c.scale * misfit;
    }
    out[b] = s;
    if (mask)
      for (long i = 0; i < np; ++i) g[i] *= mask[i];
    update(e.opt, e.opt.count + b + 1, theta, g.data(), e.m.as<S>(), e.v.as<S>(), np);
    if (e.starts_step) {
      S* gp = gs.data();
      S* gq = gp + M * d;
      for (long i = 0; i < n; ++i)
        for (long j = 0; j < d; ++j) gp[ix[i] * d + j] = pb[i * d + j], gq[ix[i] * d + j] = qb[i * d + j];
      const long k = e.starts_opt.count + b + 1;
      update(e.starts_opt, k, e.starts_p.as<S>(), gp, e.starts_mp.as<S>(), e.starts_vp.as<S>(), M * d);
      update(e.starts_opt, k, e.starts_q.as<S>(), gq, e.starts_mq.as<S>(), e.starts_vq.as<S>(), M * d);
      for (long i = 0; i < n; ++i)
        for (long j = 0; j < d; ++j) gp[ix[i] * d + j] = S(0), gq[ix[i] * d + j] = S(0);
    }
  }
  return nb;
}

}  // namespace

long train_epoch(Op op, const NetDesc& nd, const Call& data, const EpochArgs& e) {
  if (op != Op::WindowLoss && op != Op::DerivativeLoss)
    fail(std::string("runs the training losses (loss_grad, derivative_loss), not ") + kOpNames[static_cast<int>(op)]);
  if (data.cuda) fail("runs on the CPU (on CUDA, a training step replays from a CUDA graph)");
  if (data.N < 1) fail("the data hold no sample");
  if (data.dtype != kFloat32 && data.dtype != kFloat64) fail("unknown dtype code " + std::to_string(data.dtype));
  return data.dtype == kFloat64 ? run_epoch<double>(op, nd, data, e) : run_epoch<float>(op, nd, data, e);
}

}  // namespace hinn
