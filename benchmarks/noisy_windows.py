"""Noisy observations: one-step pairs against K-step windows, with and without fitted window starts.

    python benchmarks/noisy_windows.py [--system spring] [--noise 0.1] [--epochs 300] [--seeds 0 1 2]
    python benchmarks/noisy_windows.py --system pendulum --trajectories 100 --transitions 10 --depth 2 \\
        --windows 9 --warmups 0 0.25 0.5 0.75 --epochs 600 --seeds 0 1 2 3
    python benchmarks/noisy_windows.py --system pendulum --trajectories 100 --transitions 10 --depth 2 \\
        --windows 9 --warmups 0.5 --refine 0 5 --epochs 600 --seeds 0 1 2 3

Generated data (--trajectories trajectories of --transitions transitions, Gaussian noise of std --noise
on the observations; the test split clean), an autonomous network (width 16, --depth residual layers),
the leapfrog, Adam at 3e-3 on minibatches of 100 windows for --epochs epochs, the last weights (no
validation: its noisy windows would select for the observations' bias). Every window length K of
--windows is trained once with the observed starts and once with fitted starts for every warm-up of
--warmups (the fraction of the epochs before the starts are fitted) and every --refine (L-BFGS
iterations on the starts after every epoch past the warm-up, the network fixed; SRNN's refinement).
Scored against the clean test trajectories (rollout MSE, true-energy MSE) and, for fitted starts, the
mean squared distance of the training windows' starts from the noise-free states, observed and fitted.
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import time

import torch

import hinn
from hinn.metrics import evaluate
from hinn.systems import get_system


def _distance(p, q, p_true, q_true) -> float:
    return float(((p - p_true) ** 2).mean() + ((q - q_true) ** 2).mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--system", default="spring")
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--trajectories", type=int, default=20)
    ap.add_argument("--transitions", type=int, default=20)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--windows", type=int, nargs="+", default=[1, 4, 10, 20])
    ap.add_argument("--warmups", type=float, nargs="+", default=[0.5], help="fractions of the epochs")
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--refine", type=int, nargs="+", default=[0], metavar="ITERS",
                    help="L-BFGS iterations on the fitted starts after each epoch past the warm-up")  # fmt: skip
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args(argv)
    system = get_system(args.system)
    n, T = args.trajectories * args.transitions, args.transitions
    print("| seed | window K | fitted starts from | rollout MSE (clean test) | energy MSE "
          "| start error: observed → fitted | training (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        ds = hinn.data.generate(args.system, sizes=(n, 100, 100), steps=T, noise=args.noise, seed=seed)
        clean = hinn.data.generate(args.system, sizes=(n, 100, 100), steps=T, noise=0.0, seed=seed).train
        for K in args.windows:
            variants = [(None, 0)] + [(w, r) for w in ([] if K == 1 else args.warmups) for r in args.refine]
            for warmup, refine in variants:  # warm-up None: the observed starts
                fit_from = None if warmup is None else int(warmup * args.epochs)
                torch.manual_seed(seed)
                net = hinn.HamiltonianNet(system.dim, depth=args.depth, time_dependent=False, dtype=torch.float64)
                obj = hinn.TrajectoryObjective(*ds.train.windows(K), ds.train.h, "leapfrog",
                                               fit_starts=fit_from is not None)  # fmt: skip
                start = time.perf_counter()
                hinn.fit(net, obj, epochs=args.epochs, batch_size=100, lr=3e-3, seed=seed, progress=False,
                         objective_warmup=fit_from or 0, objective_refine=refine)  # fmt: skip
                secs = time.perf_counter() - start
                m = evaluate(net, system, ds.test, "leapfrog")
                moved, when = "—", "—"
                if fit_from is not None:
                    _, p_true, q_true, _, _ = clean.windows(K)
                    observed = _distance(obj.p0, obj.q0, p_true, q_true)
                    fitted = _distance(obj.starts.p.detach(), obj.starts.q.detach(), p_true, q_true)
                    moved, when = f"{observed:.2e} → {fitted:.2e}", f"epoch {fit_from}"
                    when += f", L-BFGS {refine}/epoch" if refine else ""
                print(f"| {seed} | {K} | {when} | {m['rollout_mse']:.2e} | {m['energy_mse']:.2e} | {moved} "
                      f"| {secs:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
