"""Runs as a user starts them: train, evaluate, write metrics and figures into a run folder; and the
poster's settings for ``hinn reproduce``."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import Dict, Optional, Sequence

from . import distributed
from .data import POSTER_SIZES, load_trajectories
from .devices import DeviceLike, describe, resolve_device
from .metrics import evaluate, rollouts
from .plots import make_figures
from .systems import SYSTEMS, get_system
from .train import TrainConfig, TrainResult, load_run, train

# Named network and optimiser settings (``hinn train --preset NAME``); fields of TrainConfig.
# "poster": the poster's network (ResNet depth 20, width 3) and its optimiser, plain gradient descent at
# learning rate 1e-3, on mini-batches of 100 one-step pairs with the symplectic Euler update.
PRESETS: Dict[str, Dict] = {
    "poster": dict(width=3, depth=20, optimizer="gd", lr=1e-3, epochs=1500, batch_size=100, scheme="symplectic_euler"),
}

# ``hinn reproduce``: the poster's experiments. The poster says "gradient descent, learning rate 1e-3";
# its second author's own notebook for this experiment (mathheider/Learn-ODEs-HINNs, HINN_Finding_H.ipynb:
# 2000/300/300 points, the poster's split) trains with torch.optim.Adam(lr=1e-3), and plain gradient
# descent at that rate has not converged after 1500 epochs (README). So Adam is the default here, and
# the poster's literal optimiser is one flag away (--optimizer gd). What the poster leaves open, chosen
# here: a sample is one observed transition, 100 transitions per trajectory at the system's default h
# (0.1); the poster's "epochs" are passes over the data in mini-batches of 100.
POSTER = {
    name: TrainConfig(system=name, sizes=sizes, transitions=100, **{**PRESETS["poster"], "optimizer": "adam"})
    for name, sizes in POSTER_SIZES.items()
}


TEST_STARTS_FITTED_ON = 3  # observations a test start is fitted to after training with fitted starts (SRNN's)
METRICS = "metrics.json"  # what training measured on the test split
EVAL = "eval.json"  # what `hinn eval` measured later (beside the training metrics, never over them)


def evaluate_run(
    result: TrainResult,
    cfg: TrainConfig,
    run_dir: Optional[str],
    figures: bool = True,
    extra: Optional[Dict] = None,
    filename: str = METRICS,
    coords: Optional[Sequence[int]] = None,
) -> Dict:
    """Metrics (plus ``extra``) of a trained run on its test split; with ``run_dir``, written to
    ``filename`` with figures (``coords``: the coordinates they show, default all). A user's data set has
    no known Hamiltonian: its energy metrics are left out."""
    system = get_system(result.data.system) if result.data.system in SYSTEMS else None
    test = result.data.test
    scheme = cfg.integrator()
    # a run that fitted its training windows' starts fits the test trajectories' starts too
    fitted = TEST_STARTS_FITTED_ON if cfg.fit_starts else 0
    arrays = rollouts(result.net, system, test, scheme, fit_starts=fitted)
    metrics = evaluate(result.net, system, test, scheme, arrays=arrays)
    if fitted:
        metrics["test_starts_fitted_on"] = fitted
    metrics.update(extra or {})
    if run_dir:
        if figures:
            make_figures(run_dir, result.data.system, test, arrays, result.history, net=result.net, coords=coords)
        with open(os.path.join(run_dir, filename), "w") as f:
            json.dump(metrics, f, indent=1)
    return metrics


def run(
    cfg: TrainConfig,
    run_dir: Optional[str],
    resume: bool = False,
    progress: bool = True,
    figures: bool = True,
    device: DeviceLike = None,
    cuda_graph: bool = False,
) -> Dict:
    """Train and evaluate on ``device`` (None: CUDA when available); returns the metrics (plus wall time,
    backend and device). ``cuda_graph``: replay training steps from a CUDA graph (:func:`hinn.train.fit`)."""
    start = time.perf_counter()
    result = train(cfg, run_dir, resume=resume, progress=progress, device=device, cuda_graph=cuda_graph)
    wall = time.perf_counter() - start
    if not distributed.is_main():  # under torchrun, rank 0 evaluates and writes
        return {}
    extra = {
        "train_seconds": wall,  # all of train(): the data made and written, the network fitted
        "fit_seconds": result.fit_seconds,  # the fitting alone
        "backend": result.net.backend_name(),
        "device": describe(result.net.theta.device),
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
    }
    return evaluate_run(result, cfg, run_dir, figures, extra)


def evaluate_dir(
    run_dir: str,
    figures: bool = True,
    backend: Optional[str] = None,
    data: Optional[str] = None,
    device: DeviceLike = None,
    coords: Optional[Sequence[int]] = None,
) -> Dict:
    """Metrics and figures of a run folder again, on ``device`` (None: CUDA when available); ``backend``
    overrides the one it was trained with. The metrics go to ``eval.json`` (with the backend and device
    that computed them), beside the training's ``metrics.json``, which is left as it is.
    ``data``: evaluate on every trajectory of this file (a user's .npz) instead of the run's test split;
    the metrics and figures then go to ``run_dir/eval-<file name>``."""
    result = load_run(run_dir)
    cfg = result.config
    result.net.to(resolve_device(device))
    if backend is not None:
        result.net.backend = backend
    if data is not None:
        ds = load_trajectories(data, fractions=(0.0, 0.0, 1.0), min_trajectories=1)
        if ds.test.P.shape[2] != result.net.dim:
            raise ValueError(f"{data} has d = {ds.test.P.shape[2]} but the run's network has dim = {result.net.dim}")
        result = replace(result, data=ds)
    out = evaluation_dir(run_dir, data)
    os.makedirs(out, exist_ok=True)
    extra = {"backend": result.net.backend_name(), "device": describe(result.net.theta.device)}
    return evaluate_run(result, cfg, out, figures, extra, filename=EVAL, coords=coords)


def evaluation_dir(run_dir: str, data: Optional[str] = None) -> str:
    """Where :func:`evaluate_dir` writes: the run folder, or ``run_dir/eval-<file name>`` for a data file."""
    return run_dir if data is None else os.path.join(run_dir, "eval-" + os.path.splitext(os.path.basename(data))[0])


def preset_overrides(name: str) -> Dict:
    """The TrainConfig fields of a named preset (``ValueError`` lists the valid names)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets are {', '.join(PRESETS)}")
    return dict(PRESETS[name])


def poster_config(name: str, **overrides) -> TrainConfig:
    if name not in POSTER:
        raise ValueError(f"the poster has no experiment {name!r}; valid ones are {', '.join(POSTER)}")
    return replace(POSTER[name], **{k: v for k, v in overrides.items() if v is not None})
