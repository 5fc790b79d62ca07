"""The SRNN three-body benchmark (Chen, Zhang, Arjovsky, Bottou, ICLR 2020, Table 3) with hinn's models.

    python benchmarks/srnn_three_body.py [--seeds 0 1 2] [--epochs 400] [--rows true-lf lf-sep ...]

Their protocol: three unit masses in the plane (G = 1) started near a circular orbit (the HNN paper's
initial states: radius U(0.9, 1.2), circular velocities with each component scaled by 1 + U(−0.2, 0.2),
one factor per body and component for the whole data set as their code draws it; ``--per-trajectory``
draws one per trajectory, as hinn's ``three-body`` system does), observed at Δt = 1 for 10 points
(t = 0..9); 100 training trajectories cut into every window of 5 points (4 steps: 600 windows), 32 test
trajectories. A test trajectory's start is fitted to its first 3 observations (L-BFGS, the model fixed)
and the model rolled out 9 steps of Δt = 1 from it. Two errors, averaged over the 10 points and the 32
trajectories: the L2 distance of the predicted positions (the 6-vector q) from the true ones, and the
mean squared error over p and q (the test loss their code logs). SRNN's Table 3: SRNN (separable H,
leapfrog, fitted starts) 0.26 ± 0.07; the true Hamiltonian stepped by the leapfrog at Δt = 1
0.47 ± 0.18; a one-step Euler model (HNN-like) 1.64 ± 0.25.

Differences from their code, on purpose: the truth is integrated by DOP853 at tolerances 1e-12 (theirs:
RK45 at 1e-4 on a 0.01 grid, every 100th point kept); Adam at a constant learning rate with the best
epoch on 32 validation trajectories kept (theirs: a plateau schedule); fitted training starts by Adam
with the network (theirs: L-BFGS between epochs), from half-way through training.

Rows (``--rows``): ``true-lf`` the true H; ``lf-sep`` hinn's separable network T(p) + V(q) with the
leapfrog (SRNN's model, like for like); ``midpoint`` and ``tao``, a general H_θ(p, q) trained through the
implicit midpoint rule and Tao's scheme (symplectic for any H); ``euler`` one-step pairs through explicit
Euler (HNN-like); the suffix ``-iso`` fits every training window's start with the network (initial-state
optimisation). Prints a markdown table per seed and a summary over seeds (mean ± standard error).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import hinn
from hinn.metrics import predict
from hinn.systems import get_system

N_TRAIN, N_VAL, N_TEST, POINTS, WINDOW, FIT_ON = 100, 32, 32, 10, 4, 3
ROWS = {  # name: (scheme, separable network, window, fitted training starts)
    "lf-sep": ("leapfrog", True, WINDOW, False),
    "lf-sep-iso": ("leapfrog", True, WINDOW, True),
    "midpoint": ("implicit_midpoint", False, WINDOW, False),
    "midpoint-iso": ("implicit_midpoint", False, WINDOW, True),
    "tao": ("tao", False, WINDOW, False),
    "euler": ("euler", False, 1, False),
}


class TrueHamiltonian:
    """The system's own H as a model: (∂H/∂p, ∂H/∂q) from its closed-form vector field."""

    def __init__(self, system):
        self.system, self.dim = system, system.dim

    def grad(self, t, p, q):
        dp, dq = self.system.vector_field(t, p, q)
        return dq, -dp


def initial_states(n: int, rng: np.random.Generator, shared: "np.ndarray | None"):
    """Three unit masses at 120° on a circle of radius U(0.9, 1.2), circular velocities with each component
    scaled by 1 + U(−0.2, 0.2): one factor per body and component for the whole data set (``shared``, (3, 2),
    as SRNN's and the HNN paper's code draw it) or, with ``shared`` None, per trajectory (hinn's system)."""
    if shared is None:
        return get_system("three-body").sample_initial(n, rng)
    r, phi = rng.uniform(0.9, 1.2, n), rng.uniform(0, 2 * np.pi, n)
    speed = np.sqrt(1.0 / (np.sqrt(3) * r))  # G = m = 1
    a = phi[:, None] + 2 * np.pi * np.arange(3)[None, :] / 3  # (n, 3)
    q = np.stack([r[:, None] * np.cos(a), r[:, None] * np.sin(a)], 2)  # (n, 3, 2)
    v = np.stack([-np.sin(a), np.cos(a)], 2) * speed[:, None, None] * (1 + shared[None])
    return v.reshape(n, 6), q.reshape(n, 6)


def make_data(seed: int, noise: float, shared: bool):
    system = get_system("three-body")
    rng = np.random.default_rng(seed)
    t = np.arange(POINTS, dtype=np.float64)
    factors = rng.uniform(-0.2, 0.2, (3, 2)) if shared else None
    splits = []
    for n in (N_TRAIN, N_VAL, N_TEST):
        p0, q0 = initial_states(n, rng, factors)
        P, Q = system.trajectories(t, p0, q0)
        splits.append(hinn.Trajectories(t, P, Q))
    if noise > 0:  # on the training observations only
        tr = splits[0]
        splits[0] = hinn.Trajectories(t, tr.P + noise * rng.standard_normal(tr.P.shape),
                                      tr.Q + noise * rng.standard_normal(tr.Q.shape))  # fmt: skip
    return system, splits


def errors(model, test: hinn.Trajectories, scheme: str, fit_on: int) -> "tuple[float, float]":
    """The mean over test trajectories and the 10 points of ‖q̂ − q‖₂ (positions), and the mean squared
    error over p and q (the test loss SRNN's code logs)."""
    P, Q = predict(model, test, scheme, fit_starts=fit_on)
    l2 = float(np.linalg.norm(Q - test.Q, axis=2).mean())
    return l2, float((np.concatenate([P - test.P, Q - test.Q], 2) ** 2).mean())


def train_row(row: str, train, val, seed: int, args) -> "tuple[hinn.HamiltonianNet, float]":
    scheme, separable, K, fit_starts = ROWS[row]
    torch.manual_seed(seed)
    net = hinn.HamiltonianNet(6, width=args.width, depth=args.depth, time_dependent=False,
                              activation=args.activation, dtype=torch.float64, separable=separable)  # fmt: skip
    obj = hinn.TrajectoryObjective(*train.windows(K), train.h, scheme, fit_starts=fit_starts)
    vobj = hinn.TrajectoryObjective(*val.windows(WINDOW), val.h, scheme)
    start = time.perf_counter()
    hinn.fit(net, obj, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=seed, validation=vobj,
             progress=args.progress, desc=row, objective_warmup=args.epochs // 2)  # fmt: skip
    return net, time.perf_counter() - start


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", nargs="+", default=["true-lf", *ROWS], choices=["true-lf", *ROWS])
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--activation", default="softplus")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise on the training data")
    ap.add_argument("--per-trajectory", action="store_true",
                    help="each trajectory draws its own velocity perturbation (hinn's three-body system)")  # fmt: skip
    ap.add_argument("--progress", action="store_true")
    args = ap.parse_args(argv)
    print(f"settings: {vars(args)}")
    print("| seed | row | scheme | position error: observed start | fitted start | MSE (p, q): observed start "
          "| fitted start | training (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    summary = {}
    for seed in args.seeds:
        system, (train, val, test) = make_data(seed, args.noise, not args.per_trajectory)
        for row in args.rows:
            if row == "true-lf":
                model, scheme, secs = TrueHamiltonian(system), "leapfrog", 0.0
            else:
                (model, secs), scheme = train_row(row, train, val, seed, args), ROWS[row][0]
            (l2_obs, mse_obs), (l2_fit, mse_fit) = (errors(model, test, scheme, k) for k in (0, FIT_ON))
            errs = [l2_obs, l2_fit, mse_obs, mse_fit]
            summary.setdefault(row, []).append(errs)
            cells = " | ".join(f"{e:.3f}" for e in errs)
            print(f"| {seed} | {row} | {scheme} | {cells} | {secs:.0f} |", flush=True)
    print("\nmean ± standard error over seeds")
    print("\n| row | position error: observed start | fitted start | MSE (p, q): observed start | fitted start |")
    print("|---|---|---|---|---|")
    for row, errs in summary.items():
        e = np.array(errs)
        se = e.std(0, ddof=1) / np.sqrt(len(e)) if len(e) > 1 else np.zeros(e.shape[1])
        print(f"| {row} | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(e.mean(0), se)) + " |")


if __name__ == "__main__":
    main()
