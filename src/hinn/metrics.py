"""Metrics on held-out initial states: roll the learned dynamics out over the test horizon and compare
with the ground truth."""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .data import Trajectories
from .integrators import rollout
from .systems import System


def predict(net, test: Trajectories, scheme: str) -> Tuple[np.ndarray, np.ndarray]:
    """Learned rollouts from the test initial states on the test time grid: (P, Q), each (n, T, d)."""
    dtype = net.theta.dtype
    p0 = torch.as_tensor(test.P[:, 0], dtype=dtype, device=net.theta.device)
    q0 = torch.as_tensor(test.Q[:, 0], dtype=dtype, device=net.theta.device)
    with torch.no_grad():
        P, Q = rollout(net, float(test.t[0]), p0, q0, test.h, len(test.t) - 1, scheme)
    return (P.transpose(0, 1).double().cpu().numpy(), Q.transpose(0, 1).double().cpu().numpy())


def valid_prediction_time(t: np.ndarray, X_pred: np.ndarray, X_true: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """Per trajectory, the first time (from t[0]) at which ‖x̂ − x‖ / ‖x‖ exceeds ``threshold``; the whole
    horizon if it never does. X: (n, T, D)."""
    err = np.linalg.norm(X_pred - X_true, axis=2) / np.maximum(np.linalg.norm(X_true, axis=2), 1e-12)
    over = err > threshold
    first = np.where(over.any(1), over.argmax(1), len(t) - 1)
    return t[first] - t[0]


def learned_energy(net, t: np.ndarray, P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """H_θ along trajectories: (n, T)."""
    n, T, d = P.shape
    dtype = net.theta.dtype
    tt = torch.as_tensor(np.broadcast_to(t, (n, T)).reshape(-1), dtype=dtype)
    with torch.no_grad():
        H = net(tt, torch.as_tensor(P.reshape(-1, d), dtype=dtype), torch.as_tensor(Q.reshape(-1, d), dtype=dtype))
    return H.double().reshape(n, T).numpy()


def rollouts(net, system: System, test: Trajectories, scheme: str) -> Dict[str, np.ndarray]:
    """What the metrics and the figures are computed from: the learned rollouts ``P``, ``Q`` (n, T, d),
    the true energy along them (``E_pred``) and along the truth (``E_true``), and the learned H along
    them (``H_learned_pred``) and along the truth (``H_learned_true``), each (n, T)."""
    P, Q = predict(net, test, scheme)
    return {
        "P": P,
        "Q": Q,
        "E_pred": system.energy(test.t, P, Q),
        "E_true": system.energy(test.t, test.P, test.Q),
        "H_learned_pred": learned_energy(net, test.t, P, Q),
        "H_learned_true": learned_energy(net, test.t, test.P, test.Q),
    }


def evaluate(
    net,
    system: System,
    test: Trajectories,
    scheme: str,
    vpt_threshold: float = 0.1,
    arrays: Optional[Dict[str, np.ndarray]] = None,
) -> Dict:
    """Metrics of ``net`` on the test trajectories (from ``arrays`` = :func:`rollouts` when given).

    * ``rollout_mse``: mean over time, trajectories and components of (x̂ − x)², x = (p, q);
    * ``energy_mse``: mean over time and trajectories of (H(x̂) − H(x))², H the true Hamiltonian (the HNN
      paper's energy MSE);
    * ``learned_H_drift``: mean over trajectories of max_t |H_θ(x̂_t) − H_θ(x̂_0)| along the model's own
      rollout, and ``learned_H_rel_drift`` the same divided by the spread (std) of H_θ over the true test
      states (H_θ is defined up to an offset and, without normalisation, a scale);
    * ``vpt``: mean valid prediction time (first time the relative state error exceeds ``vpt_threshold``),
      with ``horizon`` the length of the test trajectories.
    """
    a = arrays if arrays is not None else rollouts(net, system, test, scheme)
    P, Q, E_pred, E_true, Hl = a["P"], a["Q"], a["E_pred"], a["E_true"], a["H_learned_pred"]
    X, Xt = np.concatenate([P, Q], 2), np.concatenate([test.P, test.Q], 2)
    drift = np.abs(Hl - Hl[:, :1]).max(1)
    spread = a["H_learned_true"].std()
    vpt = valid_prediction_time(test.t, X, Xt, vpt_threshold)
    finite = bool(np.isfinite(X).all())
    return {
        "rollout_mse": float(((X - Xt) ** 2).mean()),
        "energy_mse": float(((E_pred - E_true) ** 2).mean()),
        "energy_mse_stderr": float(((E_pred - E_true) ** 2).mean(1).std(ddof=1) / np.sqrt(len(P)))
        if len(P) > 1
        else 0.0,
        "learned_H_drift": float(drift.mean()),
        "learned_H_rel_drift": float(drift.mean() / max(spread, 1e-300)),
        "vpt": float(vpt.mean()),
        "horizon": float(test.t[-1] - test.t[0]),
        "n_test_trajectories": int(len(P)),
        "finite": finite,
    }
