"""Metrics on held-out initial states: roll the learned dynamics out over the test horizon and compare
with the ground truth; the HNN paper's energy metric, with the model integrated by an adaptive solver.

Every function takes any :class:`hinn.protocols.HamiltonianModel` (a learned H where the metric needs
its value: a model callable as ``model(t, p, q)``)."""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from scipy.integrate import solve_ivp

from ._checks import model_dtype_device
from .data import Trajectories
from .integrators import Scheme, rollout
from .protocols import validated_grad
from .systems import System


def _dtype_device(model):
    dtype, device = model_dtype_device(model)
    return dtype or torch.float64, device or torch.device("cpu")


def roll_out(
    net, t0: float, p0: np.ndarray, q0: np.ndarray, h: float, steps: int, scheme: "str | Scheme"
) -> Tuple[np.ndarray, np.ndarray]:
    """The model's trajectories from the initial states p0, q0 (n, d) at time t0, ``steps`` steps of ``h``
    with ``scheme``, without gradients: (P, Q), each (n, steps + 1, d) float64, the initial state first."""
    dtype, device = _dtype_device(net)
    p0 = torch.as_tensor(p0, dtype=dtype, device=device)
    q0 = torch.as_tensor(q0, dtype=dtype, device=device)
    with torch.no_grad():
        P, Q = rollout(net, float(t0), p0, q0, h, steps, scheme)
    return (P.transpose(0, 1).double().cpu().numpy(), Q.transpose(0, 1).double().cpu().numpy())


def predict(net, test: Trajectories, scheme: "str | Scheme", fit_starts: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Learned rollouts on the test time grid: (P, Q), each (n, T, d), from the test trajectories' first
    states, or (``fit_starts`` = k > 0) from starts fitted to their first k observations
    (:func:`fit_initial_states`)."""
    if fit_starts:
        p0, q0 = fit_initial_states(net, test, scheme, fit_starts)
    else:
        p0, q0 = test.P[:, 0], test.Q[:, 0]
    return roll_out(net, float(test.t[0]), p0, q0, test.h, len(test.t) - 1, scheme)


def fit_initial_states(
    net, obs: Trajectories, scheme: "str | Scheme", n_obs: int = 3, max_iter: int = 20
) -> Tuple[np.ndarray, np.ndarray]:
    """Initial states that the model, rolled out with ``scheme``, carries closest to the first ``n_obs``
    observations of each trajectory of ``obs`` (least squares over p and q, the model fixed; L-BFGS from
    the first observation, ``max_iter`` iterations): what initial-state optimisation does at test time
    with noisy observations (SRNN fits on 3). Returns (p0, q0), each (n, d) float64."""
    if not 1 <= n_obs <= len(obs.t):
        raise ValueError(f"n_obs must be in [1, {len(obs.t)}] (the observations per trajectory), got {n_obs}")
    dtype, device = _dtype_device(net)
    kw = dict(dtype=dtype, device=device)
    P_obs = torch.as_tensor(obs.P[:, :n_obs].transpose(1, 0, 2), **kw)  # (n_obs, n, d)
    Q_obs = torch.as_tensor(obs.Q[:, :n_obs].transpose(1, 0, 2), **kw)
    p0 = P_obs[0].clone().requires_grad_(True)
    q0 = Q_obs[0].clone().requires_grad_(True)
    params = [prm for prm in getattr(net, "parameters", list)() if prm.requires_grad]
    opt = torch.optim.LBFGS([p0, q0], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        P, Q = rollout(net, float(obs.t[0]), p0, q0, obs.h, n_obs - 1, scheme)
        loss = ((P - P_obs) ** 2).sum() + ((Q - Q_obs) ** 2).sum()
        loss.backward(inputs=[p0, q0])
        return loss

    for prm in params:  # the model stays as it is
        prm.requires_grad_(False)
    try:
        if n_obs > 1:
            opt.step(closure)
    finally:
        for prm in params:
            prm.requires_grad_(True)
    return p0.detach().double().cpu().numpy(), q0.detach().double().cpu().numpy()


VPT_THRESHOLD = 0.1  # the relative state error at which a prediction stops being valid


def valid_prediction_time(
    t: np.ndarray, X_pred: np.ndarray, X_true: np.ndarray, threshold: float = VPT_THRESHOLD
) -> np.ndarray:
    """Per trajectory, the first time (from t[0]) at which ‖x̂ − x‖ / ‖x‖ exceeds ``threshold``; the whole
    horizon if it never does. X: (n, T, D)."""
    err = np.linalg.norm(X_pred - X_true, axis=2) / np.maximum(np.linalg.norm(X_true, axis=2), 1e-12)
    over = err > threshold
    first = np.where(over.any(1), over.argmax(1), len(t) - 1)
    return t[first] - t[0]


def learned_energy(net, t: np.ndarray, P: np.ndarray, Q: np.ndarray) -> np.ndarray:
    """H_θ along trajectories: t (T,), P and Q (n, T, d) -> (n, T)."""
    n, T, d = P.shape
    dtype, device = _dtype_device(net)
    kw = dict(dtype=dtype, device=device)
    tt = torch.as_tensor(np.tile(t, n), **kw)
    with torch.no_grad():
        H = net(tt, torch.as_tensor(P.reshape(-1, d), **kw), torch.as_tensor(Q.reshape(-1, d), **kw))
    return H.double().reshape(n, T).cpu().numpy()


def rollouts(
    net, system: Optional[System], test: Trajectories, scheme: "str | Scheme", fit_starts: int = 0
) -> Dict[str, np.ndarray]:
    """What the metrics and the figures are computed from: the learned rollouts ``P``, ``Q`` (n, T, d)
    (from starts fitted to the first ``fit_starts`` observations when > 0: :func:`predict`), the true
    energy along them (``E_pred``) and along the truth (``E_true``) when the true Hamiltonian is known
    (``system``), and the learned H along them (``H_learned_pred``) and along the truth
    (``H_learned_true``), each (n, T)."""
    P, Q = predict(net, test, scheme, fit_starts)
    out = {
        "P": P,
        "Q": Q,
        "H_learned_pred": learned_energy(net, test.t, P, Q),
        "H_learned_true": learned_energy(net, test.t, test.P, test.Q),
    }
    if system is not None:
        out["E_pred"] = system.energy(test.t, P, Q)
        out["E_true"] = system.energy(test.t, test.P, test.Q)
    return out


def evaluate(
    net,
    system: Optional[System],
    test: Trajectories,
    scheme: "str | Scheme",
    vpt_threshold: float = VPT_THRESHOLD,
    arrays: Optional[Dict[str, np.ndarray]] = None,
) -> Dict:
    """Metrics of ``net`` on the test trajectories (from ``arrays`` = :func:`rollouts` when given).

    * ``rollout_mse``: mean over time, trajectories and components of (x̂ − x)², x = (p, q);
    * ``energy_mse``: mean over time and trajectories of (H(x̂) − H(x))², H the true Hamiltonian (the HNN
      paper's energy MSE); left out, with a note, when the true Hamiltonian is unknown (``system`` None:
      a user's own data);
    * ``learned_H_drift``: mean over trajectories of max_t |H_θ(x̂_t) − H_θ(x̂_0)| along the model's own
      rollout, and ``learned_H_rel_drift`` the same divided by the spread (std) of H_θ over the true test
      states (H_θ is defined up to an offset and, without normalisation, a scale). Only for an
      autonomous H_θ (a model whose ``time_dependent`` is false or absent): one that depends on t need
      not conserve its value, so its drift measures nothing and is left out, with a note;
    * ``vpt``: mean valid prediction time (first time the relative state error ‖x̂ − x‖ / ‖x‖ exceeds
      ``vpt_threshold``, 0.1 by default), with ``horizon`` the length of the test trajectories.
    """
    a = arrays if arrays is not None else rollouts(net, system, test, scheme)
    P, Q, Hl = a["P"], a["Q"], a["H_learned_pred"]
    X, Xt = np.concatenate([P, Q], 2), np.concatenate([test.P, test.Q], 2)
    drift = np.abs(Hl - Hl[:, :1]).max(1)
    spread = a["H_learned_true"].std()
    vpt = valid_prediction_time(test.t, X, Xt, vpt_threshold)
    finite = bool(np.isfinite(X).all())
    out = {"rollout_mse": float(((X - Xt) ** 2).mean())}
    if "E_true" in a:
        per_traj = ((a["E_pred"] - a["E_true"]) ** 2).mean(1)
        out["energy_mse"] = float(per_traj.mean())
        out["energy_mse_stderr"] = float(per_traj.std(ddof=1) / np.sqrt(len(P))) if len(P) > 1 else 0.0
    else:
        out["energy_mse_note"] = "no true Hamiltonian for this data: energy metrics left out"
    if getattr(net, "time_dependent", False):
        out["learned_H_drift_note"] = "H_theta depends on t, so it need not be conserved: its drift is left out"
    else:
        out["learned_H_drift"] = float(drift.mean())
        out["learned_H_rel_drift"] = float(drift.mean() / max(spread, 1e-300))
    return {
        **out,
        "vpt": float(vpt.mean()),
        "vpt_threshold": float(vpt_threshold),
        "horizon": float(test.t[-1] - test.t[0]),
        "n_test_trajectories": int(len(P)),
        "finite": finite,
    }


def integrate_adaptive(
    model, t_eval: np.ndarray, p0: np.ndarray, q0: np.ndarray, rtol: float = 1e-9
) -> Tuple[np.ndarray, np.ndarray]:
    """Integrate the flow of ``model`` (q̇ = g_p, ṗ = −g_q) from all initial states at once with SciPy's
    RK45 at rtol = atol = ``rtol`` (float64), from t = t_eval[..., 0]; p0, q0 (n, d).

    ``t_eval``: (T,) times shared by all trajectories, or (n, T), each trajectory its own times from a
    common start (one solve to the latest time, read off its dense output). Returns (P, Q), (n, T, d)."""
    n, d = p0.shape
    t_eval = np.asarray(t_eval, dtype=np.float64)
    dtype, device = _dtype_device(model)
    grad = validated_grad(model)

    def rhs(tt, y):
        yy = torch.as_tensor(y.reshape(2, n, d), dtype=dtype, device=device)
        with torch.no_grad():
            gp, gq = grad(torch.full((n,), tt, dtype=dtype, device=device), yy[0], yy[1])
        return torch.stack([-gq, gp]).reshape(-1).double().cpu().numpy()

    y0 = np.stack([p0, q0]).reshape(-1)
    if t_eval.ndim == 1:
        sol = solve_ivp(rhs, (t_eval[0], t_eval[-1]), y0, method="RK45", t_eval=t_eval, rtol=rtol, atol=rtol)
        if not sol.success:
            raise RuntimeError(f"integration failed: {sol.message}")
        Y = sol.y.reshape(2, n, d, len(t_eval)).transpose(0, 1, 3, 2)
        return Y[0], Y[1]
    if t_eval.shape[0] != n or not np.all(t_eval[:, 0] == t_eval[0, 0]):
        raise ValueError(f"t_eval of shape {t_eval.shape} needs one row per trajectory ({n}) and a common start")
    sol = solve_ivp(rhs, (t_eval[0, 0], t_eval.max()), y0, method="RK45", dense_output=True, rtol=rtol, atol=rtol)
    if not sol.success:
        raise RuntimeError(f"integration failed: {sol.message}")
    P, Q = np.empty((n,) + t_eval.shape[1:] + (d,)), np.empty((n,) + t_eval.shape[1:] + (d,))
    for i in range(n):
        Y = sol.sol(t_eval[i]).reshape(2, n, d, -1)[:, i]  # (2, d, T)
        P[i], Q[i] = Y[0].T, Y[1].T
    return P, Q


def adaptive_energy_mse(
    system: System, model, t_eval: np.ndarray, p0: np.ndarray, q0: np.ndarray, rtol: float = 1e-9
) -> Tuple[float, float, Dict]:
    """The HNN paper's energy metric, done right: mean over time and trajectories of (H(x̂(t)) − H(x(t)))²,
    H the true energy, x̂ the model's and x the true trajectory over one fixed span ``t_eval`` (both from
    an adaptive solver, from the initial states given); ± its standard error over trajectories. Returns
    (mean, stderr, trajectories). Not :func:`evaluate`'s ``energy_mse``, which scores the model's own
    scheme's rollouts of the test trajectories."""
    P, Q = system.trajectories(t_eval, p0, q0, rtol=1e-10, atol=1e-10)
    Pm, Qm = integrate_adaptive(model, t_eval, p0, q0, rtol)
    E, Em = system.energy(t_eval, P, Q), system.energy(t_eval, Pm, Qm)
    per_traj = ((Em - E) ** 2).mean(1)
    stderr = float(per_traj.std(ddof=1) / math.sqrt(len(per_traj))) if len(per_traj) > 1 else 0.0
    return float(per_traj.mean()), stderr, {"P": P, "Q": Q, "Pm": Pm, "Qm": Qm, "E": E, "Em": Em}


def split_means_stderr(values: np.ndarray, splits: int = 5) -> float:
    """The HNN authors' error bar: the standard deviation of the means of ``splits`` equal parts of
    ``values``, over √splits."""
    return float(np.std([part.mean() for part in np.split(np.asarray(values), splits)]) / math.sqrt(splits))
