"""A wide, shallow HNN — one hidden layer (``depth=0``), width 1000 — fitted to a pendulum by derivative
matching, as the HNN literature trains it: minibatches of 2048, Adam at 1e-3, 15 000 steps.

    python benchmarks/wide_shallow.py [--width 1000] [--steps 15000] [--threads 2] [--dtype float64]

Data: --samples pendulum states (hinn's sampler, below the separatrix) with their exact time
derivatives. Rows, all from the same θ:

* hinn ``fit`` — the whole run of --steps steps through the training loop, which takes the compiled
  derivative loss (∇H, loss and θ-gradient in one call). Timed once; its loss reported.
* per step, in alternating rounds of --probe steps on one fixed minibatch sequence: the same compiled
  step (loss_and_grad + hinn's Adam); hinn's public path (``net.grad`` + the loss + ``backward``, fused
  ops); the autograd backend; and plain PyTorch (``nn.Sequential`` + ``autograd.grad(create_graph=True)``
  + ``torch.optim.Adam``), the way such a model is usually written; and, where JAX and optax are
  installed (a benchmark environment only), the same loss under ``jax.jit(jax.value_and_grad)`` with
  ``jax.grad`` for ∇H and ``optax.adam``, one jitted step per minibatch (XLA's threads capped to
  --threads). Their parameters after the probe must agree (float64: 1e-9 relative), or the script stops.

Prints a markdown table: ms per step (median over rounds), the full run's seconds extrapolated from it,
and the ratio to the compiled step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

import hinn
from hinn.objectives import DerivativeObjective
from hinn.systems import get_system
from hinn.train import fit


def _data(n: int, dtype) -> DerivativeObjective:
    sys_ = get_system("pendulum")
    p, q = (torch.tensor(a, dtype=dtype) for a in sys_.sample_initial(n, np.random.default_rng(0)))
    dp, dq = sys_.vector_field(None, p, q)
    return DerivativeObjective(torch.zeros(n, dtype=dtype), p, q, dp, dq)


def _plain_torch(net: hinn.HamiltonianNet) -> torch.nn.Sequential:
    """The same network as an ``nn.Sequential`` (hinn stores K as (in, out), Linear as (out, in))."""
    (K0, b0), (Ko, bo) = net.layers()
    mlp = torch.nn.Sequential(torch.nn.Linear(*K0.shape), torch.nn.Tanh(), torch.nn.Linear(*Ko.shape)).to(K0.dtype)
    with torch.no_grad():
        mlp[0].weight.copy_(K0.T), mlp[0].bias.copy_(b0), mlp[2].weight.copy_(Ko.T), mlp[2].bias.copy_(bo)
    return mlp


def _steps(kind: str, net0: hinn.HamiltonianNet, obj: DerivativeObjective, batches, lr: float):
    """A function running one step per minibatch of ``batches``, and one returning the flat θ."""
    if kind == "plain torch":
        mlp = _plain_torch(net0)
        opt = torch.optim.Adam(mlp.parameters(), lr=lr)

        def run():
            for idx in batches:
                x = torch.cat([obj.p[idx], obj.q[idx]], 1).requires_grad_()
                (g,) = torch.autograd.grad(mlp(x).sum(), x, create_graph=True)
                d = obj.p.shape[1]
                loss = 0.5 * (((g[:, :d] - obj.dq[idx]) ** 2).mean() + ((g[:, d:] + obj.dp[idx]) ** 2).mean())
                opt.zero_grad()
                loss.backward()
                opt.step()

        def theta():
            w0, b0, wo, bo = (p.detach() for p in mlp.parameters())
            return torch.cat([w0.T.reshape(-1), b0, wo.T.reshape(-1), bo])

        return run, theta
    net = hinn.HamiltonianNet(
        1, width=net0.width, depth=0, time_dependent=False, dtype=net0.theta.dtype, backend=kind.split()[-1]
    )
    net.load_state_dict(net0.state_dict())
    opt = hinn.optim.Adam([net.theta], lr=lr)
    compiled = kind.startswith("hinn compiled")

    def run():
        for idx in batches:
            if compiled:
                _, grads = obj.loss_and_grad(net, idx)
                net.theta.grad = grads[net.theta]
            else:
                net.theta.grad = None
                obj.loss(net, idx).backward()
            opt.step()

    return run, lambda: net.theta.detach()


def _jax_steps(net0: hinn.HamiltonianNet, obj: DerivativeObjective, batches, lr: float):
    import jax
    import jax.numpy as jnp
    import optax

    jax.config.update("jax_enable_x64", net0.theta.dtype == torch.float64)
    (K0, b0), (Ko, bo) = ((jnp.asarray(K.detach().numpy()), jnp.asarray(b.detach().numpy())) for K, b in net0.layers())  # noqa: E501
    d = obj.p.shape[1]

    def loss(params, p, q, dp, dq):
        K0, b0, Ko, bo = params
        H = lambda x: (jnp.tanh(x @ K0 + b0) @ Ko + bo).sum()  # noqa: E731
        g = jax.grad(H)(jnp.concatenate([p, q], 1))
        return 0.5 * (((g[:, :d] - dq) ** 2).mean() + ((g[:, d:] + dp) ** 2).mean())

    opt = optax.adam(lr)
    arrays = [jnp.asarray(x.numpy()) for x in (obj.p, obj.q, obj.dp, obj.dq)]
    idxs = [jnp.asarray(i.numpy()) for i in batches]

    @jax.jit
    def step(params, state, idx):
        val, g = jax.value_and_grad(loss)(params, *(a[idx] for a in arrays))
        updates, state = opt.update(g, state, params)
        return optax.apply_updates(params, updates), state, val

    params = (K0, b0, Ko, bo)
    box = [params, opt.init(params)]

    def run():
        params, state = box
        for idx in idxs:
            params, state, _ = step(params, state, idx)
        jax.block_until_ready(params)
        box[:] = [params, state]

    def theta():
        K0, b0, Ko, bo = box[0]
        return torch.cat([torch.from_numpy(np.asarray(a)).reshape(-1) for a in (K0, b0, Ko, bo)])

    run()  # compiles; the probe's first round then starts from one step sequence further, so reset
    box[:] = [params, opt.init(params)]
    return run, theta


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=15000)
    ap.add_argument("--batch", type=int, default=2048)
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--probe", type=int, default=40, help="steps per row and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    flags = os.environ.get("XLA_FLAGS", "")  # before JAX is imported
    eigen = "true" if args.threads > 1 else "false"
    os.environ["XLA_FLAGS"] = (
        f"{flags} --xla_cpu_multi_thread_eigen={eigen} intra_op_parallelism_threads={args.threads}"  # noqa: E501
    )
    dtype = getattr(torch, args.dtype)
    torch.manual_seed(0)
    obj = _data(args.samples, dtype)
    net0 = hinn.HamiltonianNet(1, width=args.width, depth=0, time_dependent=False, dtype=dtype, backend="fused")
    gen = torch.Generator().manual_seed(1)
    batches = [torch.randperm(args.samples, generator=gen)[: args.batch] for _ in range(args.probe)]

    kinds = ["hinn compiled fused", "hinn public fused", "hinn public autograd", "plain torch"]
    rows = {k: _steps(k, net0, obj, batches, args.lr) for k in kinds}
    try:
        rows["JAX jit + optax"] = _jax_steps(net0, obj, batches, args.lr)
        kinds.append("JAX jit + optax")
    except ImportError:
        print("(JAX or optax not installed: no JAX row)")
    times = {k: [] for k in kinds}
    for r in range(args.rounds):
        for k in kinds:
            run, _ = rows[k]
            t0 = time.perf_counter()
            run()
            times[k].append((time.perf_counter() - t0) / args.probe * 1e3)
        if r == 0:  # every row has taken the same steps once: the same parameters
            ref = rows[kinds[0]][1]()
            for k in kinds[1:]:
                err = float((rows[k][1]() - ref).norm() / ref.norm())
                tol = 1e-9 if dtype == torch.float64 else 1e-4
                if not err < tol:
                    raise SystemExit(f"{k} disagrees with {kinds[0]} after {args.probe} steps: {err:.1e}")

    net = hinn.HamiltonianNet(1, width=args.width, depth=0, time_dependent=False, dtype=dtype, backend="fused")
    net.load_state_dict(net0.state_dict())
    per_epoch = 100
    t0 = time.perf_counter()
    res = fit(
        net, obj, lr=args.lr, epochs=-(-args.steps // per_epoch), batches_per_epoch=per_epoch,
        batch_size=args.batch, progress=False,
    )  # fmt: skip
    fit_s = time.perf_counter() - t0

    print(
        f"pendulum, depth 0 width {args.width}, {args.samples} samples, batch {args.batch}, {args.dtype}, "
        f"{args.threads} thread(s)"
    )
    final = res.history[-1]["train_loss"]
    print(f"\nhinn fit, {args.steps} steps: **{fit_s:.1f} s** (final training loss {final:.2e})\n")
    print(f"| path | ms / step | × compiled | {args.steps} steps |")
    print("|---|---|---|---|")
    base = statistics.median(times[kinds[0]])
    for k in kinds:
        m = statistics.median(times[k])
        print(f"| {k} | {m:.2f} | {m / base:.2f} | {m * args.steps / 1e3:.0f} s |")


if __name__ == "__main__":
    main()
