"""The ``hinn`` command (also ``python -m hinn``): train, evaluate, reproduce the poster, compare with HNN.

Every choice list comes from hinn's registries (systems, schemes, backends, activations, optimizers,
presets), so anything registered there is usable here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict
from typing import List, Optional

import torch

from . import __version__, distributed
from .backends import BACKENDS
from .comparison import MODELS, NETWORKS, PROTOCOLS
from .data import USER_DATA
from .devices import resolve_device
from .experiments import POSTER, PRESETS, preset_overrides
from .integrators import SCHEMES
from .network import ACTIVATIONS
from .systems import SYSTEMS
from .train import DTYPES, OPTIMIZERS, TrainConfig


def _demo(args) -> int:
    """Train a HINN on one spring–mass trajectory (H = p²/2 + q²/2) through :func:`hinn.fit` and print
    the loss."""
    import hinn

    h, n = 0.1, 200
    ts = torch.arange(n + 1, dtype=torch.float64) * h
    Q, P = torch.cos(ts)[:, None, None], -torch.sin(ts)[:, None, None]  # (T, 1, d): one trajectory
    objective = hinn.TrajectoryObjective(ts[:-1], P[:-1, 0], Q[:-1, 0], P[None, 1:, 0], Q[None, 1:, 0], h,
                                         args.scheme)  # fmt: skip
    torch.manual_seed(args.seed)
    net = hinn.HamiltonianNet(1, width=3, depth=20, dtype=torch.float64, backend=args.backend)
    start = time.perf_counter()
    res = hinn.fit(net, objective, optimizer="adam", lr=1e-2, epochs=args.iterations, seed=args.seed, progress=False)
    every = max(1, args.iterations // 10)
    for entry in res.history[every - 1 :: every]:
        print(f"iteration {entry['epoch']:5d}  one-step loss {entry['train_loss']:.3e}")
    print(f"backend {net.backend_name()}, {args.iterations} iterations in {time.perf_counter() - start:.2f} s")
    final = res.history[-1]["train_loss"] if res.history else float("nan")
    return 0 if math.isfinite(final) else 1


def _print_metrics(metrics: dict, folder: Optional[str], written: str) -> None:
    """The metrics, one per line, and what was written where (``written``: the files, in words)."""
    if not metrics:  # a data-parallel rank other than 0: nothing was evaluated here
        return
    width = max(len(k) for k in metrics)
    for k, v in metrics.items():
        print(f"  {k:<{width}}  {v:.4g}" if isinstance(v, float) else f"  {k:<{width}}  {v}")
    if folder:
        print(f"written to {folder}: {written}")


_RUN_FILES = "metrics.json, checkpoint.pt, config.json, data.npz, figures"


# TrainConfig fields that are plain command-line options
_TRAIN_FIELDS = ("epochs", "lr", "optimizer", "batch_size", "window", "fit_starts", "starts_warmup", "starts_refine",
                 "scheme", "omega", "width", "depth", "activation", "separable", "time_dependent", "seed", "backend",
                 "dtype", "noise", "transitions", "h", "patience", "data")  # fmt: skip


def _config_from_args(args, base: TrainConfig) -> TrainConfig:
    overrides = {}
    if getattr(args, "preset", None):
        overrides.update(preset_overrides(args.preset))
    if getattr(args, "config", None):
        with open(args.config) as f:
            overrides.update(json.load(f))
    for key in _TRAIN_FIELDS:
        val = getattr(args, key, None)
        if val is not None:
            overrides[key] = val
    if getattr(args, "sizes", None):
        overrides["sizes"] = tuple(args.sizes)
    return TrainConfig.from_dict({**asdict(base), **overrides})


def _announce(what: str, cfg: TrainConfig) -> None:
    """The settings actually used, and the process count when data-parallel."""
    print(f"{what}: {cfg.describe()}")
    size = distributed.world()[1]
    if size > 1:
        print(f"data-parallel over {size} processes ({distributed.group_backend()})")


def _run(args, cfg: TrainConfig, out: str) -> None:
    from .experiments import run

    metrics = run(
        cfg, out, resume=args.resume, progress=not args.no_progress, device=args.device, cuda_graph=args.cuda_graph
    )
    _print_metrics(metrics, out, _RUN_FILES)


def _train(args) -> int:
    if (args.system is None) == (args.data is None):
        raise UsageError("give a system name or --data FILE (one of the two)")
    if args.data:
        given = [f"--{key}" for key in TrainConfig.GENERATED_ONLY if getattr(args, key) is not None]
        if given:
            raise UsageError(f"{', '.join(given)} apply only to generated data; with --data FILE the file's "
                             "trajectories fix the sizes and the time step")  # fmt: skip
    cfg = _config_from_args(args, TrainConfig(system=args.system or USER_DATA))
    name = os.path.splitext(os.path.basename(cfg.data))[0] if cfg.data else cfg.system
    out = args.out or os.path.join("runs", f"{name}-seed{cfg.seed}")
    _announce(f"training on {cfg.data or cfg.system}", cfg)
    if cfg.data and args.time_dependent is None:
        print(f"learning {'H(t, p, q)' if cfg.learns_time else 'an autonomous H(p, q)'} "
              f"({'--autonomous' if cfg.learns_time else '--time-dependent'} for the other)")  # fmt: skip
    _run(args, cfg, out)
    return 0


def _eval(args) -> int:
    from .experiments import EVAL, evaluate_dir, evaluation_dir

    metrics = evaluate_dir(args.run_dir, backend=args.backend, data=args.data, device=args.device, coords=args.coords)
    _print_metrics(metrics, evaluation_dir(args.run_dir, args.data), f"{EVAL}, figures")
    return 0


def _predict(args) -> int:
    from .predict import predict_run

    out, fig = predict_run(
        args.run_dir,
        args.initial_states,
        steps=args.steps,
        h=args.h,
        out=args.out,
        backend=args.backend,
        device=args.device,
        coords=args.coords,
        fit_starts=args.fit_starts,
    )
    print(f"written to {out} (t (T,), p and q (n, T, d)) and {fig}")
    return 0


def _reproduce(args) -> int:
    from .experiments import poster_config

    cfg = _config_from_args(args, poster_config(args.experiment))
    out = args.out or os.path.join("runs", f"reproduce-{args.experiment}")
    _announce(f"reproducing the poster's {args.experiment} experiment", cfg)
    _run(args, cfg, out)
    return 0


def _compare(args) -> int:
    from .comparison import compare, markdown_table

    overrides = {
        k: v
        for k, v in (
            ("steps", args.iterations),
            ("lr", args.lr),
            ("weight_decay", args.weight_decay),
            ("noise", args.noise),
            ("n_traj", args.n_traj),
            ("scheme", args.scheme),
            ("window", args.window),
            ("fit_starts", args.fit_starts or None),
            ("network", args.network),
            ("width", args.width),
            ("depth", args.depth),
            ("activation", args.activation),
        )
        if v is not None
    }
    out = args.out or os.path.join("runs", f"compare-{args.system}")
    results = compare(
        args.system,
        out,
        progress=not args.no_progress,
        seeds=args.seeds,
        device=args.device,
        models=args.models,
        **overrides,
    )
    print(markdown_table(args.system, results))
    print(f"\nwritten to {out} (table.md, results.json, compare.png)")
    return 0


def _add_coords_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--coords", type=int, nargs="+", metavar="I",
                   help="coordinates to plot, counted from 0 (default: all, up to 6)")  # fmt: skip


def _add_device_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", help="cpu, cuda or cuda:K (default: cuda when a GPU is visible, else cpu)")


def _add_train_options(p: argparse.ArgumentParser, config_file: bool = True) -> None:
    title = "override the defaults, the preset or the config file" if config_file else "override the experiment's"
    g = p.add_argument_group(f"training options ({title})")
    if config_file:
        g.add_argument("--config", help="JSON file with TrainConfig fields")
        g.add_argument("--preset", choices=list(PRESETS), help="named settings (poster: width 3, depth 20, GD)")
    g.add_argument("--epochs", type=int, help="passes over the training data")
    g.add_argument("--lr", type=float, help="learning rate")
    g.add_argument("--optimizer", choices=list(OPTIMIZERS))
    g.add_argument("--batch-size", dest="batch_size", type=int, help="samples per mini-batch")
    g.add_argument("--window", type=int, help="K: train on K-step rollout windows (1: one-step pairs)")
    g.add_argument("--fit-initial-states", dest="fit_starts", action="store_const", const=True,
                   help="fit every training window's starting state with the network (noisy data)")  # fmt: skip
    g.add_argument("--starts-warmup", dest="starts_warmup", type=int, metavar="EPOCHS",
                   help="with --fit-initial-states: epochs of training before the starts are fitted (default: "
                        "half the epochs)")  # fmt: skip
    g.add_argument("--refine-starts", dest="starts_refine", type=int, metavar="ITERS",
                   help="with --fit-initial-states: L-BFGS iterations on the starts after every epoch past the "
                        "warm-up, the network fixed (SRNN's refinement; default 0)")  # fmt: skip
    g.add_argument("--scheme", choices=list(SCHEMES), help="the integrator the network is trained through")
    g.add_argument("--omega", type=float, help="Tao's coupling ω (schemes tao, tao4; default 20)")
    g.add_argument("--width", type=int, help="network width")
    g.add_argument("--depth", type=int, help="residual layers")
    g.add_argument("--activation", choices=list(ACTIVATIONS))
    g.add_argument("--separable", action="store_const", const=True,
                   help="H = T(p) + V(t, q): the explicit schemes are then symplectic (SRNN's model)")  # fmt: skip
    td = g.add_mutually_exclusive_group()
    td.add_argument("--time-dependent", dest="time_dependent", action="store_const", const=True,
                    help="t is an input of H (default for built-in systems)")  # fmt: skip
    td.add_argument("--autonomous", dest="time_dependent", action="store_const", const=False,
                    help="H(p, q) without t (default for --data)")  # fmt: skip
    g.add_argument("--dtype", choices=list(DTYPES))
    g.add_argument("--sizes", type=int, nargs=3, metavar=("TRAIN", "VAL", "TEST"),
                   help="samples per split (generated data)")  # fmt: skip
    g.add_argument("--transitions", type=int, help="transitions per generated trajectory")
    g.add_argument("--h", type=float, help="observation interval of generated data")
    g.add_argument("--noise", type=float, help="std of the noise added to generated observations")
    g.add_argument("--patience", type=int, help="early stopping: epochs without validation improvement")
    g.add_argument("--seed", type=int)
    g.add_argument("--backend", choices=list(BACKENDS))
    _add_device_option(p)
    p.add_argument(
        "--cuda-graph",
        action="store_true",
        help="replay training steps from a CUDA graph (a CUDA device, fused backend)",
    )
    p.add_argument("--out", help="run folder")
    p.add_argument("--resume", action="store_true",
                   help="continue from the run folder's checkpoint (--epochs may extend it)")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hinn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"hinn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="train on one spring–mass trajectory and print the loss")
    demo.add_argument("--iterations", type=int, default=300, help="optimiser steps")
    demo.add_argument("--scheme", choices=list(SCHEMES), default="symplectic_euler")
    demo.add_argument("--backend", choices=list(BACKENDS), default=None)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)

    tr = sub.add_parser("train", help="train a HINN on a built-in system or on your own trajectories")
    tr.add_argument("system", nargs="?", choices=list(SYSTEMS), help="a built-in system (or give --data)")
    tr.add_argument("--data", help=".npz with t (T,), p and q (M, T, d): your own trajectories")
    _add_train_options(tr)
    tr.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="evaluate a run folder again (eval.json beside metrics.json, and figures)")
    ev.add_argument("run_dir")
    ev.add_argument("--backend", choices=list(BACKENDS), help="evaluate with this backend")
    ev.add_argument("--data", help="evaluate on all trajectories of this .npz instead of the run's test split")
    _add_coords_option(ev)
    _add_device_option(ev)
    ev.set_defaults(func=_eval)

    pr = sub.add_parser("predict", help="roll a trained model out from initial states; save and plot the trajectories")
    pr.add_argument("run_dir")
    pr.add_argument("--initial-states", dest="initial_states",
                    help=".npz with p and q, (n, d) initial states or (n, T, d) trajectories (their first states), "
                         "optionally t (the start time, or the trajectories' times); default: the run's test "
                         "trajectories")  # fmt: skip
    pr.add_argument("--steps", type=int, help="steps to take (default: the length of the run's test trajectories)")
    pr.add_argument("--h", type=float, help="time step (default: the run's observation interval)")
    pr.add_argument("--out", help="the .npz to write (default RUN_DIR/predictions.npz); the figure goes beside it")
    pr.add_argument("--fit-initial-states", dest="fit_starts", type=int, default=0, metavar="K",
                    help="start from states fitted to each trajectory's first K observations (noisy data)")  # fmt: skip
    pr.add_argument("--backend", choices=list(BACKENDS), help="roll out with this backend")
    _add_coords_option(pr)
    _add_device_option(pr)
    pr.set_defaults(func=_predict)

    rp = sub.add_parser("reproduce", help="the poster's experiments (its network; Adam, see the README)")
    rp.add_argument("experiment", choices=list(POSTER))
    _add_train_options(rp, config_file=False)
    rp.set_defaults(func=_reproduce)

    cp = sub.add_parser("compare", help="baseline, HNN and HINN under the HNN paper's protocol")
    cp.add_argument("system", choices=list(PROTOCOLS))
    cp.add_argument("--out", help="output folder (default runs/compare-SYSTEM)")
    cp.add_argument("--iterations", type=int, help="optimiser steps (protocol default otherwise)")
    cp.add_argument("--seeds", type=int, nargs="+", default=[0], help="data seeds (metrics: mean ± s.e.)")
    cp.add_argument("--lr", type=float, help="every model's Adam learning rate (protocol default otherwise)")
    cp.add_argument("--weight-decay", dest="weight_decay", type=float,
                    help="every model's Adam weight decay (protocol default otherwise)")  # fmt: skip
    cp.add_argument("--noise", type=float,
                    help="std of the noise on the observed states (protocol default otherwise; 0: the clean "
                         "trajectories, against which the published numbers no longer apply)")  # fmt: skip
    cp.add_argument("--n-traj", dest="n_traj", type=int, help="trajectories generated")
    cp.add_argument("--scheme", choices=list(SCHEMES), help="HINN's integrator (default rk4)")
    cp.add_argument("--window", type=int, help="HINN's rollout window K (default 1)")
    cp.add_argument("--fit-initial-states", dest="fit_starts", action="store_true",
                    help="HINN fits every training window's starting state with the network")  # fmt: skip
    cp.add_argument("--network", choices=list(NETWORKS),
                    help="HINN's H: HNN's MLP (default) or hinn's HamiltonianNet (fused backend)")  # fmt: skip
    cp.add_argument("--width", type=int, help="the HamiltonianNet's width (default 32)")
    cp.add_argument("--depth", type=int, help="the HamiltonianNet's residual layers (default 2)")
    cp.add_argument("--activation", choices=list(ACTIVATIONS), help="the HamiltonianNet's (default softplus)")
    cp.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS),
                    help="the models to train (default: all three)")  # fmt: skip
    cp.add_argument("--no-progress", action="store_true")
    _add_device_option(cp)
    cp.set_defaults(func=_compare)
    return parser


class UsageError(ValueError):
    """A command line that cannot work as given (exit status 2, like argparse's own errors)."""


# What a command's failure prints as one line: errors that describe the user's input or the run, from hinn
# or from the libraries it reads files with. Anything else is a bug and shows its traceback.
_EXPECTED = (ValueError, TypeError, OSError, KeyError, RuntimeError)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the ``hinn`` command. A failure prints one line, ``hinn COMMAND: error: ...``, and exits with
    status 1 (2 for a command line that cannot work); ``--debug`` (or ``HINN_DEBUG=1``) shows the traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.debug or os.environ.get("HINN_DEBUG", "") not in ("", "0"):
        return _dispatch(parser, args)
    try:
        return _dispatch(parser, args)
    except UsageError as e:
        print(f"hinn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except _EXPECTED as e:
        print(f"hinn {args.command}: error: {_one_line(e)} (--debug shows the traceback)", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"hinn {args.command}: interrupted", file=sys.stderr)
        return 130


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    # a library's error (not one of hinn's own messages) says which kind it is
    return text if type(e).__module__.startswith("hinn") or type(e) in (ValueError, TypeError) else (
        f"{type(e).__name__}: {text}")  # fmt: skip


def _dispatch(parser: argparse.ArgumentParser, args) -> int:
    if getattr(args, "device", None) is not None:
        try:
            resolve_device(args.device)
        except ValueError as e:
            parser.error(str(e))
    if getattr(args, "cuda_graph", False) and resolve_device(args.device).type != "cuda":
        parser.error("--cuda-graph needs a CUDA device")
    if not distributed.launched():
        return args.func(args)
    # started by torchrun: one process per rank, data-parallel training (hinn.distributed)
    if args.func not in (_train, _reproduce):
        parser.error("only `hinn train` and `hinn reproduce` run data-parallel under torchrun")
    args.device = str(distributed.init_from_env(args.device))
    try:
        if not distributed.is_main():  # rank 0 alone prints
            with open(os.devnull, "w") as quiet, contextlib.redirect_stdout(quiet):
                return args.func(args)
        return args.func(args)
    finally:
        distributed.shutdown()


if __name__ == "__main__":
    sys.exit(main())
