"""The ``hinn`` command (also ``python -m hinn``)."""

from __future__ import annotations

import argparse
import math
import sys
import time
from typing import List, Optional

import torch

from . import backends
from .integrators import SCHEMES


def _demo(args) -> int:
    """Train a HINN on one spring–mass trajectory (H = p²/2 + q²/2) and print the loss."""
    import hinn

    torch.manual_seed(args.seed)
    h, n = 0.1, 200
    ts = torch.arange(n + 1, dtype=torch.float64) * h
    q_true, p_true = torch.cos(ts)[:, None], -torch.sin(ts)[:, None]
    net = hinn.HamiltonianNet(1, width=3, depth=20, dtype=torch.float64, backend=args.backend)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    start = time.perf_counter()
    for it in range(args.steps + 1):
        p1, q1 = hinn.step(net, ts[:-1], p_true[:-1], q_true[:-1], h, args.scheme)
        loss = ((p1 - p_true[1:]) ** 2).mean() + ((q1 - q_true[1:]) ** 2).mean()
        if it % max(1, args.steps // 10) == 0:
            print(f"step {it:5d}  one-step loss {loss.item():.3e}")
        if it < args.steps:
            opt.zero_grad()
            loss.backward()
            opt.step()
    print(f"backend {net.backend_name()}, {args.steps} steps in {time.perf_counter() - start:.2f} s")
    return 0 if math.isfinite(loss.item()) else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hinn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train on one spring–mass trajectory and print the loss")
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--scheme", choices=list(SCHEMES), default="symplectic_euler")
    demo.add_argument("--backend", choices=list(backends.BACKENDS), default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
