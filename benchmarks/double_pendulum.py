"""The double pendulum (non-separable H) learned through an explicit, two implicit and Tao's symplectic schemes.

    python benchmarks/double_pendulum.py [--epochs 300] [--out runs/double-pendulum]

Each scheme trains the default network (width 16, depth 4, autonomous, Adam, minibatches of 100 one-step pairs) on
the same data; then every learned model is rolled out with its own scheme from 10 test states for
``--long`` steps (h = 0.05) and scored: rollout MSE on the test split, the drift of the learned energy
H_θ along its own long rollout (what a symplectic scheme bounds), the true energy's drift, and wall time.
Prints a markdown table and writes double-pendulum-schemes.png into --out.
"""

from __future__ import annotations

import argparse
import os
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import hinn  # noqa: E402
from hinn.experiments import evaluate_run  # noqa: E402
from hinn.systems import get_system  # noqa: E402
from hinn.train import TrainConfig, make_dataset, train  # noqa: E402

SCHEMES = ["leapfrog", "implicit_midpoint", "implicit_leapfrog", "gauss4", "tao"]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--long", type=int, default=2000, help="steps of the long rollout")
    ap.add_argument("--out", default="runs/double-pendulum")
    args = ap.parse_args(argv)
    system = get_system("double-pendulum")
    # autonomous H_θ(p, q): the system is autonomous, and only then is the learned energy a conserved quantity
    base = TrainConfig(system="double-pendulum", epochs=args.epochs, seed=0, time_dependent=False)
    data = make_dataset(base)
    test = data.test
    p0 = torch.as_tensor(test.P[:10, 0])
    q0 = torch.as_tensor(test.Q[:10, 0])
    h = float(test.t[1] - test.t[0])
    rows, curves = [], {}
    for scheme in SCHEMES:
        cfg = TrainConfig(**{**base.__dict__, "scheme": scheme})
        start = time.perf_counter()
        res = train(cfg, os.path.join(args.out, scheme), progress=False, data=data, device="cpu")
        wall = time.perf_counter() - start
        m = evaluate_run(res, cfg, os.path.join(args.out, scheme))
        net = res.net
        start = time.perf_counter()
        with torch.no_grad():
            P, Q = hinn.rollout(net, 0.0, p0, q0, h, args.long, scheme)
        roll_wall = time.perf_counter() - start
        T, n = P.shape[0], P.shape[1]
        tt = torch.arange(T, dtype=torch.float64).repeat_interleave(n) * h
        Pf, Qf = P.reshape(-1, 2), Q.reshape(-1, 2)
        with torch.no_grad():
            H_learned = net(tt, Pf, Qf).reshape(T, n)
        H_true = system.hamiltonian(tt, Pf, Qf).reshape(T, n)
        learned_drift = float((H_learned - H_learned[0]).abs().max(0).values.mean())
        true_drift = float((H_true - H_true[0]).abs().max(0).values.mean())
        curves[scheme] = (np.arange(T) * h, (H_true - H_true[0]).abs().mean(1).numpy())
        rows.append((scheme, m["rollout_mse"], learned_drift, true_drift, wall, roll_wall))
        print(f"{scheme}: done in {wall:.0f} s", flush=True)
    print(f"\ndouble pendulum, {args.epochs} epochs, long rollout {args.long} steps of h = {h} (T = {args.long * h:g}),"
          f" {time.strftime('%Y-%m-%d')}")  # fmt: skip
    print("| scheme | test rollout MSE | learned-H drift (long) | true-H drift (long) | training s | long rollout s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| `{r[0]}` | {r[1]:.2e} | {r[2]:.2e} | {r[3]:.2e} | {r[4]:.0f} | {r[5]:.1f} |")
    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    for scheme, (t, e) in curves.items():
        ax.semilogy(t, np.maximum(e, 1e-16), label=scheme)
    ax.set_xlabel("time")
    ax.set_ylabel("|H(z(t)) - H(z(0))|, true H, mean over 10 starts")
    ax.set_title("double pendulum: learned models rolled out with their own scheme")
    ax.legend()
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    fig.savefig(os.path.join(args.out, "double-pendulum-schemes.png"), dpi=120)


if __name__ == "__main__":
    main()
