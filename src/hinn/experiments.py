"""Runs as a user starts them: train, evaluate, write metrics and figures into a run folder; and the
poster's settings for ``hinn reproduce``."""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from typing import Dict, Optional

from .data import POSTER_SIZES
from .metrics import evaluate, rollouts
from .plots import make_figures
from .systems import get_system
from .train import TrainConfig, TrainResult, load_run, train

# The poster: ResNet depth 20, width 3, 1500 epochs, gradient descent with learning rate 1e-3, the
# sizes of POSTER_SIZES. What it leaves open, chosen here: a sample is one observed transition, with
# 100 transitions per trajectory at the system's default h (0.1); mini-batches of 100 samples (the
# poster's "epochs" imply passes over the data); the symplectic Euler update.
POSTER = {
    name: TrainConfig(
        system=name,
        sizes=sizes,
        steps=100,
        width=3,
        depth=20,
        epochs=1500,
        optimizer="gd",
        lr=1e-3,
        batch_size=100,
        scheme="symplectic_euler",
    )
    for name, sizes in POSTER_SIZES.items()
}


def evaluate_run(
    result: TrainResult, cfg: TrainConfig, run_dir: Optional[str], figures: bool = True, extra: Optional[Dict] = None
) -> Dict:
    """Metrics (plus ``extra``) of a trained run; with ``run_dir``, written to metrics.json with figures."""
    system = get_system(cfg.system)
    test = result.data.test
    arrays = rollouts(result.net, system, test, cfg.scheme)
    metrics = evaluate(result.net, system, test, cfg.scheme, arrays=arrays)
    metrics.update(extra or {})
    if run_dir:
        if figures:
            make_figures(
                run_dir,
                system,
                test,
                arrays["P"],
                arrays["Q"],
                arrays["E_true"],
                arrays["E_pred"],
                arrays["H_learned_true"],
                result.history,
            )
        with open(os.path.join(run_dir, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=1)
    return metrics


def run(
    cfg: TrainConfig, run_dir: Optional[str], resume: bool = False, progress: bool = True, figures: bool = True
) -> Dict:
    """Train and evaluate; returns the metrics (plus wall time and backend)."""
    start = time.perf_counter()
    result = train(cfg, run_dir, resume=resume, progress=progress)
    wall = time.perf_counter() - start
    extra = {
        "train_seconds": wall,
        "backend": result.net.backend_name(),
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
    }
    return evaluate_run(result, cfg, run_dir, figures, extra)


def evaluate_dir(run_dir: str, figures: bool = True, backend: Optional[str] = None) -> Dict:
    """Metrics and figures of a run folder again; ``backend`` overrides the one it was trained with."""
    with open(os.path.join(run_dir, "config.json")) as f:
        cfg = TrainConfig.from_dict(json.load(f))
    result = load_run(run_dir)
    if backend is not None:
        result.net.backend = backend
    return evaluate_run(result, cfg, run_dir, figures)


def poster_config(name: str, **overrides) -> TrainConfig:
    if name not in POSTER:
        raise ValueError(f"the poster has no experiment {name!r}; valid ones are {', '.join(POSTER)}")
    return replace(POSTER[name], **{k: v for k, v in overrides.items() if v is not None})
