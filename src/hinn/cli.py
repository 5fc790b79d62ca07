"""The ``hinn`` command (also ``python -m hinn``)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import asdict
from typing import List, Optional

import torch

from . import backends
from .integrators import SCHEMES
from .systems import SYSTEMS
from .train import OPTIMIZERS, TrainConfig


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


def _print_metrics(metrics: dict, run_dir: Optional[str]) -> None:
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        print(f"  {k:<{width}}  {v:.4g}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    if run_dir:
        print(f"run folder: {run_dir} (metrics.json, checkpoint.pt, figures)")


def _config_from_args(args, base: TrainConfig) -> TrainConfig:
    overrides = {}
    if getattr(args, "config", None):
        with open(args.config) as f:
            overrides.update(json.load(f))
    for key in (
        "epochs",
        "lr",
        "optimizer",
        "batch_size",
        "window",
        "scheme",
        "width",
        "depth",
        "activation",
        "seed",
        "backend",
        "dtype",
        "noise",
        "steps",
        "h",
        "patience",
    ):
        val = getattr(args, key, None)
        if val is not None:
            overrides[key] = val
    if getattr(args, "sizes", None):
        overrides["sizes"] = tuple(args.sizes)
    return TrainConfig.from_dict({**asdict(base), **overrides})


def _train(args) -> int:
    from .experiments import run

    cfg = _config_from_args(args, TrainConfig(system=args.system))
    out = args.out or os.path.join("runs", f"{cfg.system}-seed{cfg.seed}")
    print(f"training on {cfg.system}: {cfg}")
    _print_metrics(run(cfg, out, resume=args.resume, progress=not args.no_progress), out)
    return 0


def _eval(args) -> int:
    from .experiments import evaluate_dir

    _print_metrics(evaluate_dir(args.run_dir, backend=args.backend), args.run_dir)
    return 0


def _reproduce(args) -> int:
    from .experiments import poster_config, run

    cfg = _config_from_args(args, poster_config(args.experiment))
    out = args.out or os.path.join("runs", f"reproduce-{args.experiment}")
    print(f"reproducing the poster's {args.experiment} experiment: {cfg}")
    _print_metrics(run(cfg, out, resume=args.resume, progress=not args.no_progress), out)
    return 0


def _compare(args) -> int:
    from .comparison import compare, markdown_table

    overrides = {
        k: v
        for k, v in (
            ("steps", args.steps),
            ("n_traj", args.n_traj),
            ("seed", args.seed),
            ("scheme", args.scheme),
            ("window", args.window),
        )
        if v is not None
    }
    out = args.out or os.path.join("runs", f"compare-{args.system}")
    results = compare(args.system, out, progress=not args.no_progress, **overrides)
    print(markdown_table(args.system, results))
    print(f"\nwritten to {out} (table.md, results.json, compare.png)")
    return 0


def _add_train_options(p: argparse.ArgumentParser, config_file: bool = True) -> None:
    g = p.add_argument_group("training options (override the defaults or the config file)")
    if config_file:
        g.add_argument("--config", help="JSON file with TrainConfig fields")
    g.add_argument("--epochs", type=int)
    g.add_argument("--lr", type=float)
    g.add_argument("--optimizer", choices=list(OPTIMIZERS))
    g.add_argument("--batch-size", dest="batch_size", type=int)
    g.add_argument("--window", type=int, help="K: train on K-step rollout windows (1: one-step pairs)")
    g.add_argument("--scheme", choices=list(SCHEMES))
    g.add_argument("--width", type=int)
    g.add_argument("--depth", type=int)
    g.add_argument("--activation", choices=["tanh", "softplus"])
    g.add_argument("--dtype", choices=["float32", "float64"])
    g.add_argument("--sizes", type=int, nargs=3, metavar=("TRAIN", "VAL", "TEST"), help="samples per split")
    g.add_argument("--steps", type=int, help="transitions per trajectory")
    g.add_argument("--h", type=float, help="observation interval")
    g.add_argument("--noise", type=float)
    g.add_argument("--patience", type=int, help="early stopping: epochs without validation improvement")
    g.add_argument("--seed", type=int)
    g.add_argument("--backend", choices=list(backends.BACKENDS))
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hinn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train on one spring–mass trajectory and print the loss")
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--scheme", choices=list(SCHEMES), default="symplectic_euler")
    demo.add_argument("--backend", choices=list(backends.BACKENDS), default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)

    tr = sub.add_parser("train", help="train a HINN on a system and evaluate it")
    tr.add_argument("system", choices=list(SYSTEMS))
    _add_train_options(tr)
    tr.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate a run folder again (metrics and figures)")
    ev.add_argument("run_dir")
    ev.add_argument("--backend", choices=list(backends.BACKENDS), help="evaluate with this backend")
    ev.set_defaults(func=_eval)

    rp = sub.add_parser("reproduce", help="the poster's experiments with its settings")
    rp.add_argument("experiment", choices=["spring", "two-body"])
    _add_train_options(rp, config_file=False)
    rp.set_defaults(func=_reproduce)

    cp = sub.add_parser("compare", help="baseline, HNN and HINN under the HNN paper's protocol")
    cp.add_argument("system", choices=["spring", "two-body", "three-body"])
    cp.add_argument("--out", help="output folder (default runs/compare-SYSTEM)")
    cp.add_argument("--steps", type=int, help="optimiser steps (protocol default otherwise)")
    cp.add_argument("--n-traj", dest="n_traj", type=int, help="trajectories generated")
    cp.add_argument("--scheme", choices=list(SCHEMES), help="HINN's integrator (default rk4)")
    cp.add_argument("--window", type=int, help="HINN's rollout window K (default 1)")
    cp.add_argument("--seed", type=int)
    cp.add_argument("--no-progress", action="store_true")
    cp.set_defaults(func=_compare)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
