"""`hinn reproduce spring --epochs 100`'s training against the same training in JAX + optax.

    pip install jax optax                 # a benchmark environment only
    taskset -c 1 python benchmarks/jax_training.py [--epochs 100] [--rounds 3] [--width 16 --depth 4]

The same model (the poster's 3 × 20 ResNet with t, float64), the same initial θ, data (the poster's
spring training windows), minibatch order (hinn's seeded permutations, 100 windows a batch), loss
(symplectic Euler, squared error over 2h²) and optimizer (Adam at 1e-3; optax's update is torch's).
hinn: ``hinn.train.train`` as `hinn reproduce` runs it, its validation after every epoch included.
JAX: a jitted step per minibatch from a Python loop, and one ``lax.scan`` per epoch; no validation;
compile time reported apart. ``--width``/``--depth``: another network on the same data and loop
(``hinn train``'s default is 16 × 4). First every epoch's training loss of JAX is checked against hinn's
(relative 1e-10), then the three are timed in alternating rounds, one thread each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import replace


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--width", type=int, help="the network's width (default: the poster's 3)")
    ap.add_argument("--depth", type=int, help="its residual layers, >= 1 (default: the poster's 20)")
    args = ap.parse_args(argv)
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
    try:
        import jax
        import jax.numpy as jnp
        import optax
    except ImportError:
        sys.exit("this benchmark needs JAX and optax: pip install jax optax (in a benchmark environment)")
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import torch

    import hinn
    from hinn.experiments import POSTER
    from hinn.train import make_dataset, make_net, train

    torch.set_num_threads(1)
    cfg = replace(POSTER["spring"], epochs=args.epochs)
    cfg = replace(cfg, width=args.width or cfg.width, depth=args.depth or cfg.depth)
    data = make_dataset(cfg)
    t0, p0, q0, P, Q = data.train.windows(1)
    M, h, bs = t0.shape[0], data.train.h, cfg.batch_size
    theta0 = make_net(cfg, 1).theta.detach().numpy().copy()
    gen = torch.Generator().manual_seed(cfg.seed)  # fit's minibatch order
    order = np.stack([torch.randperm(M, generator=gen).numpy() for _ in range(args.epochs)])  # (epochs, M)
    batches = order.reshape(args.epochs, M // bs, bs)

    w, L = cfg.width, cfg.depth

    def H(theta, t, p, q):
        x = jnp.concatenate([t[:, None], p, q], axis=1).T  # samples last: XLA's faster layout at width 3
        off, layers = 0, []
        for n_i, n_o in [(3, w)] + [(w, w)] * L + [(w, 1)]:
            K = theta[off : off + n_i * n_o].reshape(n_i, n_o)
            off += n_i * n_o
            layers.append((K, theta[off : off + n_o]))
            off += n_o
        K, b = layers[0]
        u = jnp.tanh(K.T @ x + b[:, None])
        for K, b in layers[1:-1]:
            u = u + (1.0 / L) * jnp.tanh(K.T @ u + b[:, None])
        K, b = layers[-1]
        return (K.T @ u + b[:, None]).reshape(-1)

    dH = jax.grad(lambda theta, t, p, q: H(theta, t, p, q).sum(), argnums=(2, 3))

    def loss(theta, t, p, q, Pn, Qn):
        _, gq = dH(theta, t, p, q)
        p1 = p - h * gq
        gp, _ = dH(theta, t, p1, q)
        q1 = q + h * gp
        return (((p1 - Pn) ** 2).mean() + ((q1 - Qn) ** 2).mean()) / (2 * h * h)

    opt = optax.adam(cfg.lr)
    arrays = [jnp.asarray(x.numpy()) for x in (t0, p0, q0, P[0], Q[0])]

    @jax.jit
    def step(theta, state, idx):
        val, g = jax.value_and_grad(loss)(theta, *(a[idx] for a in arrays))
        updates, state = opt.update(g, state, theta)
        return optax.apply_updates(theta, updates), state, val

    @jax.jit
    def epoch(theta, state, idx):
        def body(carry, i):
            th, st = carry
            th, st, val = step(th, st, i)
            return (th, st), val

        (theta, state), vals = jax.lax.scan(body, (theta, state), idx)
        return theta, state, vals.mean()

    def jax_loop():
        theta, state, losses = jnp.asarray(theta0), opt.init(jnp.asarray(theta0)), []
        for e in range(args.epochs):
            total = 0.0
            for idx in batches[e]:
                theta, state, val = step(theta, state, idx)
                total = total + val
            losses.append(float(total) / len(batches[e]))
        return theta, losses

    def jax_scan():
        theta, state, losses = jnp.asarray(theta0), opt.init(jnp.asarray(theta0)), []
        for e in range(args.epochs):
            theta, state, val = epoch(theta, state, batches[e])
            losses.append(val)
        return theta, [float(v) for v in losses]

    def hinn_train():
        res = train(cfg, progress=False, data=data, device="cpu")
        return res, [r["train_loss"] for r in res.history]

    compile_s = {}
    for name, fn in (("jax step", jax_loop), ("jax scan", jax_scan)):
        s = time.perf_counter()
        _, jl = fn()
        compile_s[name] = time.perf_counter() - s
    _, hl = hinn_train()
    for name, fn in (("jax step", jax_loop), ("jax scan", jax_scan)):
        _, jl = fn()
        err = max(abs(a - b) / abs(b) for a, b in zip(jl, hl, strict=True))
        if not err < 1e-10:
            sys.exit(f"{name}: epoch losses differ from hinn's by {err:.1e}; not timing")
        print(f"{name}: every epoch's training loss equals hinn's to {err:.1e}")
    times = {"hinn (hinn.train.train)": [], "jax step": [], "jax scan": []}
    runs = {"hinn (hinn.train.train)": hinn_train, "jax step": jax_loop, "jax scan": jax_scan}
    for _ in range(args.rounds):
        for name, fn in runs.items():
            s = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - s)
    print(f"\n{cfg.width} x {cfg.depth}, {args.epochs} epochs, {M // bs} minibatches of {bs} each, float64, 1 thread; "
          f"jax {jax.__version__}, "
          f"optax {optax.__version__}, hinn {hinn.__version__}")  # fmt: skip
    print("| training | seconds (median of rounds) | all rounds | first run (JAX: with compilation) |")
    print("|---|---|---|---|")
    for name, ts in times.items():
        first = compile_s.get(name)
        print(f"| {name} | {statistics.median(ts):.3f} | {', '.join(f'{x:.3f}' for x in ts)} | "
              f"{'—' if first is None else f'{first:.2f}'} |")  # fmt: skip
    hinn_s = statistics.median(times["hinn (hinn.train.train)"])
    for name in ("jax step", "jax scan"):
        print(f"{name} ÷ hinn: {statistics.median(times[name]) / hinn_s:.2f}×")


if __name__ == "__main__":
    main()
