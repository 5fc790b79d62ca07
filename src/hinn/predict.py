"""Predictions of a trained run: roll its model out from given initial states, save the trajectories in
the format hinn reads (``t`` (T,), ``p``, ``q`` (n, T, d)) and plot them (``hinn predict``)."""

from __future__ import annotations

import os
import warnings
from typing import Optional, Sequence, Tuple

import numpy as np

from .data import Trajectories, read_npz, uniform_step
from .devices import DeviceLike, resolve_device
from .metrics import fit_initial_states, learned_energy, roll_out
from .plots import learned_energy_figure, trajectory_figure
from .train import load_run

PREDICTIONS = "predictions.npz"


def read_initial_states(path: str, dim: int) -> Tuple[np.ndarray, np.ndarray, float, Optional[Tuple]]:
    """Initial states from an ``.npz``: ``p`` and ``q`` of shape (n, d) (or (d,) for one state) with an
    optional scalar ``t`` (the start time, default 0), or whole trajectories (n, T, d) with their times
    ``t`` (T,), whose first states are taken. Returns (p0, q0 (n, d), t0, observed) where ``observed`` is
    (t, P, Q) when trajectories were given, else None; ``ValueError`` names what is wrong."""
    z = read_npz(path)
    missing = [k for k in ("p", "q") if k not in z]
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)}; expected p and q of shape (n, d) "
                         "(initial states) or (n, T, d) (trajectories)")  # fmt: skip
    P, Q = np.asarray(z["p"], dtype=np.float64), np.asarray(z["q"], dtype=np.float64)
    if P.shape != Q.shape:
        raise ValueError(f"{path}: p has shape {P.shape} but q has {Q.shape}")
    if P.ndim == 1:
        P, Q = P[None], Q[None]
    if P.ndim not in (2, 3) or P.shape[-1] != dim:
        raise ValueError(f"{path}: p and q have shape {z['p'].shape}; the model needs (n, {dim}) initial states or "
                         f"(n, T, {dim}) trajectories")  # fmt: skip
    if not (np.isfinite(P).all() and np.isfinite(Q).all()):
        raise ValueError(f"{path}: p or q contains NaN or infinite values")
    t = np.asarray(z["t"], dtype=np.float64) if "t" in z else None
    if P.ndim == 2:
        if t is not None and t.size != 1:
            raise ValueError(f"{path}: with initial states of shape {P.shape}, t must be one start time, got shape "
                             f"{t.shape}")  # fmt: skip
        t0 = float(t.reshape(-1)[0]) if t is not None else 0.0
        if not np.isfinite(t0):
            raise ValueError(f"{path}: the start time t is {t0}")
        return P, Q, t0, None
    if t is None or t.shape != (P.shape[1],):
        raise ValueError(f"{path}: trajectories of shape {P.shape} need their times t of shape ({P.shape[1]},)")
    return P[:, 0], Q[:, 0], float(t[0]), (t, P, Q)


def predict_run(
    run_dir: str,
    initial_states: Optional[str] = None,
    steps: Optional[int] = None,
    h: Optional[float] = None,
    out: Optional[str] = None,
    backend: Optional[str] = None,
    device: DeviceLike = None,
    coords: Optional[Sequence[int]] = None,
    fit_starts: int = 0,
) -> Tuple[str, str]:
    """Roll the run's model out with its scheme from ``initial_states`` (a file, see
    :func:`read_initial_states`; default the run's test trajectories) for ``steps`` steps of ``h`` (default:
    the run's test horizon and observation interval). ``fit_starts`` = k > 0 (trajectories given, or the
    test split): the starts are fitted to the first k observations of each trajectory
    (:func:`hinn.metrics.fit_initial_states`), as initial-state optimisation does for noisy data.

    Writes ``out`` (default ``run_dir/predictions.npz``: ``t`` (steps + 1,), ``p``, ``q`` (n, steps + 1, d),
    the format ``hinn train --data`` reads) and a figure beside it (the trajectories, observed ones solid
    where they were given, and H_θ along them). Returns the two paths."""
    res = load_run(run_dir)
    net, cfg, test = res.net, res.config, res.data.test
    net.to(resolve_device(device))
    if backend is not None:
        net.backend = backend
    if initial_states is None:
        p0, q0, t0, observed = test.P[:, 0], test.Q[:, 0], float(test.t[0]), (test.t, test.P, test.Q)
    else:
        p0, q0, t0, observed = read_initial_states(initial_states, net.dim)
    if fit_starts:
        if observed is None:
            raise ValueError("fitting the starts needs observed trajectories (n, T, d) with their times t")
        obs = Trajectories(observed[0], observed[1], observed[2])
        p0, q0 = fit_initial_states(net, obs, cfg.integrator(), fit_starts)
    h = float(h if h is not None else test.h)
    steps = int(steps if steps is not None else len(test.t) - 1)
    if not (np.isfinite(h) and h > 0) or steps < 1:
        raise ValueError(f"need h > 0 and steps >= 1, got h = {h}, steps = {steps}")
    P, Q = roll_out(net, t0, p0, q0, h, steps, cfg.integrator())
    t = t0 + h * np.arange(steps + 1)
    bad = ~(np.isfinite(P).all(axis=(1, 2)) & np.isfinite(Q).all(axis=(1, 2)))
    if bad.any():
        warnings.warn(f"{int(bad.sum())} of {len(P)} predicted trajectories left the finite numbers (the first: "
                      f"{int(np.argmax(bad))}); a smaller h may help", RuntimeWarning, stacklevel=2)  # fmt: skip
    out = out or os.path.join(run_dir, PREDICTIONS)
    if os.path.dirname(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
    np.savez(out, t=t, p=P, q=Q)
    Pt = Qt = None
    if observed is not None and abs(uniform_step(observed[0], np.float64) - h) <= 1e-9 * h:
        Pt, Qt = _on_grid(observed[1], steps + 1), _on_grid(observed[2], steps + 1)  # the observations, where given
    fig = os.path.splitext(out)[0] + ".png"
    title = f"predictions of {os.path.basename(os.path.normpath(run_dir))}" + (
        ", observed (solid) vs predicted (dashed)" if Pt is not None else "")  # fmt: skip
    trajectory_figure(fig, title, t, P, Q, Pt, Qt, coords)
    learned_energy_figure(os.path.splitext(out)[0] + "-energy.png", t, learned_energy(net, t, P, Q),
                          title="the learned energy along the predicted trajectories")  # fmt: skip
    return out, fig


def _on_grid(X: np.ndarray, T: int) -> np.ndarray:
    """Observed trajectories (n, T_obs, d) cut or padded with NaN (not drawn) to T time points."""
    Y = np.full((X.shape[0], T, X.shape[2]), np.nan)
    n = min(T, X.shape[1])
    Y[:, :n] = X[:, :n]
    return Y
