"""hinn against the same model written in JAX and compiled by ``jax.jit``: one training step.

    pip install jax                       # a benchmark environment only: JAX is never a hinn dependency
    taskset -c 1 python benchmarks/jax_compare.py [--dtype float32 float64] [--threads 1] [--rounds 5]
    taskset -c 1 python benchmarks/jax_compare.py --d 1 --N 100 --sizes 16x4 --dtype float64   # a minibatch

The step, for both: the hessQuik ResNet H(t, p, q) (opening layer, L residual layers, linear readout;
the same θ), one symplectic Euler step p' = p − h ∂qH(t, p, q), q' = q + h ∂pH(t, p', q), the loss
(mean |p' − P|² + mean |q' − Q|²) / 2h² and its gradient with respect to θ. JAX: ``jax.grad`` for ∇H,
``jax.jit(jax.value_and_grad(loss))``, in both layouts (samples first, u K; samples last, Kᵀ u), the
faster one taken for the ratios. hinn: its public API
(``hinn.step`` + the loss + ``backward()``; also with ``KEPT_STAGES_BUDGET = 0``, its backward evaluating
the network again instead of reading the stages its forward kept) and its compiled training window
(``TrajectoryObjective.loss_and_grad``, what ``hinn train`` runs per minibatch).

Before timing, every configuration checks that JAX's loss and gradient equal hinn's (float64: relative
1e-12 on the loss, 1e-10 on the gradient; float32: 1e-4). Timing: the five alternate, ``--rounds``
rounds of a median over repeated calls each, the median of the rounds reported; the same thread count
for both (torch threads; XLA's CPU client single-threaded unless --threads > 1).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from datetime import date

import numpy as np
from bench import _time
from widths import add_case_options, sizes_of


def _configure_threads(n: int) -> None:
    """Before JAX is imported: XLA's CPU client reads its thread settings once."""
    if n == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def jax_step(jnp, jax, widths_depth, d, h, samples_last=False, time_dependent=True):
    """The JAX loss-and-gradient of one symplectic Euler step for a network of (width, depth); with
    ``samples_last`` the activations are (w, N), K^T u, instead of (N, w), u K (XLA's better layout for
    narrow layers)."""
    w, L = widths_depth
    n_in = 2 * d + int(time_dependent)

    def unflatten(theta):
        off, layers = 0, []
        for n_i, n_o in [(n_in, w)] + [(w, w)] * L + [(w, 1)]:
            K = theta[off : off + n_i * n_o].reshape(n_i, n_o)
            off += n_i * n_o
            b = theta[off : off + n_o]
            off += n_o
            layers.append((K, b))
        return layers

    def H(theta, t, p, q):
        layers = unflatten(theta)
        x = jnp.concatenate([t[:, None], p, q], axis=1) if time_dependent else jnp.concatenate([p, q], axis=1)
        if samples_last:
            x = x.T
            lin = lambda K, b, u: K.T @ u + b[:, None]  # noqa: E731
        else:
            lin = lambda K, b, u: u @ K + b  # noqa: E731
        K, b = layers[0]
        u = jnp.tanh(lin(K, b, x))
        for K, b in layers[1:-1]:
            u = u + (1.0 / L) * jnp.tanh(lin(K, b, u))
        K, b = layers[-1]
        return lin(K, b, u).reshape(-1)

    dH_dp = jax.grad(lambda theta, t, p, q: H(theta, t, p, q).sum(), argnums=2)
    dH_dq = jax.grad(lambda theta, t, p, q: H(theta, t, p, q).sum(), argnums=3)

    def loss(theta, t, p, q, P, Q):
        p1 = p - h * dH_dq(theta, t, p, q)
        q1 = q + h * dH_dp(theta, t, p1, q)
        return (((p1 - P) ** 2).mean() + ((q1 - Q) ** 2).mean()) / (2 * h * h)

    return jax.jit(jax.value_and_grad(loss))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_case_options(ap)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    _configure_threads(args.threads)
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        sys.exit("this benchmark needs JAX: pip install jax (in a benchmark environment)")
    jax.config.update("jax_enable_x64", True)
    import torch

    import hinn

    torch.set_num_threads(args.threads)
    sizes = sizes_of(args)
    h = 0.1
    print(f"hinn vs jax.jit, {date.today()}, {platform.processor() or platform.machine()}, CPU kernels "
          f"{hinn.backends.fused.core.cpu_isa()}, {args.threads} thread(s), d = {args.d} with t, N = {args.N}, "
          f"symplectic Euler step + MSE + gradient; jax {jax.__version__}, torch {torch.__version__}")  # fmt: skip
    print("| dtype | w × L | JAX jit (N, w) ms | JAX jit (w, N) ms | hinn public step ms | public, stages "
          "recomputed ms | hinn compiled window ms | best JAX ÷ public | best JAX ÷ window | public ÷ window "
          "| loss and gradient agree to |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.dtype:
        for w, L in sizes:
            ms, err = compare(jax, jnp, torch, hinn, args.d, args.N, w, L, getattr(torch, name), h, args.rounds)
            print(f"| {name} | {w} × {L} | {ms['jax (N, w)']:.3f} | {ms['jax (w, N)']:.3f} | {ms['public']:.3f} | "
                  f"{ms['public, recomputed']:.3f} | {ms['window']:.3f} | {ms['jax'] / ms['public']:.2f}× | "
                  f"{ms['jax'] / ms['window']:.2f}× | {ms['public'] / ms['window']:.2f} | {err:.1e} |",
                  flush=True)  # fmt: skip


def compare(jax, jnp, torch, hinn, d, N, w, L, dtype, h, rounds):
    """({"jax", "public", "window"}: milliseconds, the largest relative disagreement) for one network."""
    torch.manual_seed(0)
    net = hinn.HamiltonianNet(d, width=w, depth=L, dtype=dtype, backend="fused")
    t = torch.rand(N, dtype=dtype)
    p, q = torch.randn(N, d, dtype=dtype), torch.randn(N, d, dtype=dtype)
    P, Q = torch.randn(1, N, d, dtype=dtype), torch.randn(1, N, d, dtype=dtype)
    objective = hinn.TrajectoryObjective(t, p, q, P, Q, h, "symplectic_euler")

    def public():
        p1, q1 = hinn.step(net, t, p, q, h, "symplectic_euler")
        loss = (((p1 - P[0]) ** 2).mean() + ((q1 - Q[0]) ** 2).mean()) / (2 * h * h)
        net.theta.grad = None
        loss.backward()
        return loss

    def public_recomputed():  # the backward evaluating the network again instead of reading kept stages
        kept, hinn.backends.fused.KEPT_STAGES_BUDGET = hinn.backends.fused.KEPT_STAGES_BUDGET, 0
        try:
            return public()
        finally:
            hinn.backends.fused.KEPT_STAGES_BUDGET = kept

    def window():
        return objective.loss_and_grad(net)

    jargs = [jnp.asarray(x.detach().numpy()) for x in (net.theta, t, p, q, P[0], Q[0])]

    def jax_runner(samples_last):
        step = jax_step(jnp, jax, (w, L), d, h, samples_last)

        def run():
            val, g = step(*jargs)
            g.block_until_ready()
            return val, g

        return run

    runs = {
        "jax (N, w)": jax_runner(False), "jax (w, N)": jax_runner(True), "public": public,
        "public, recomputed": public_recomputed, "window": window,
    }  # fmt: skip
    # the same numbers first
    loss_w, grads = window()
    g_ref = grads[net.theta]
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max())  # noqa: E731
    loss_p = float(public().detach())
    errs = [abs(loss_p - float(loss_w)) / abs(float(loss_w)), rel(net.theta.grad, g_ref)]
    for key in ("jax (N, w)", "jax (w, N)"):
        val, g = runs[key]()
        errs += [abs(float(val) - float(loss_w)) / abs(float(loss_w)), rel(torch.tensor(np.asarray(g)), g_ref)]
    err = max(errs)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    if not err < tol:
        sys.exit(f"{dtype} {w} x {L}: JAX and hinn disagree (relative error {err:.2e}); not timing")
    times = {k: [] for k in runs}
    for _ in range(rounds):  # alternating: A B C D A B C D ...
        for key, fn in runs.items():
            times[key].append(_time(fn, budget=0.3) * 1e3)
    ms = {k: statistics.median(v) for k, v in times.items()}
    ms["jax"] = min(ms["jax (N, w)"], ms["jax (w, N)"])
    return ms, err


if __name__ == "__main__":
    main()
