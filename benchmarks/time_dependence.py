"""Learning a user's autonomous data with and without t as an input (what `hinn train --data` chooses).

    python benchmarks/time_dependence.py [--epochs 300 1500] [--seeds 0 1 2]

The data: 40 pendulum trajectories of 100 transitions at h = 0.1 exported to an .npz as a user would
(the README's example), trained through `hinn train --data`'s path (TrainConfig with ``data``), once
autonomous and once with t as an input; every other setting is the default. Scored on the test split
(rollout MSE, valid prediction time) and by a long rollout from the test states to T = 100, ten times
the data's span: the drift of the true energy along it (mean over trajectories of max_t |E(t) − E(0)|).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

import hinn
from hinn.experiments import evaluate_run
from hinn.metrics import roll_out
from hinn.systems import get_system
from hinn.train import TrainConfig, train


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, nargs="+", default=[300, 1500])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (initial weights)")
    ap.add_argument("--long", type=float, default=100.0, help="span of the long rollout")
    args = ap.parse_args(argv)
    system = get_system("pendulum")
    ds = hinn.data.generate("pendulum", sizes=(4000, 1, 1), steps=100, seed=7)
    path = os.path.join(tempfile.mkdtemp(), "pendulum.npz")
    np.savez(path, t=ds.train.t, p=ds.train.P, q=ds.train.Q)
    print("| epochs | t an input | seed | rollout MSE (test) | valid prediction time / 10 | "
          "true-energy drift to T = 100 | training (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for epochs in args.epochs:
        for td in (False, True):
            for seed in args.seeds:
                cfg = TrainConfig(system="data", data=path, time_dependent=td, epochs=epochs, seed=seed)
                start = time.perf_counter()
                res = train(cfg, progress=False, device="cpu")
                secs = time.perf_counter() - start
                m = evaluate_run(res, cfg, None)
                test = res.data.test
                steps = int(round(args.long / test.h))
                P, Q = roll_out(res.net, 0.0, test.P[:, 0], test.Q[:, 0], test.h, steps, cfg.integrator())
                E = system.energy(test.h * np.arange(steps + 1), P, Q)
                drift = float(np.abs(E - E[:, :1]).max(1).mean())
                print(f"| {epochs} | {'yes' if td else 'no'} | {seed} | {m['rollout_mse']:.2e} | {m['vpt']:.2f} | "
                      f"{drift:.3g} | {secs:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
