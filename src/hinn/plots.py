"""Figures (PNG): for a trained run (:func:`make_figures`) and for the HNN comparison
(:func:`comparison_figure`). For a trained run: the poster's Fig. 3 (q(t), p(t), every coordinate) and Fig. 4
(orbits), phase portraits, the learned energy along trajectories and its landscape over a slice of phase
space, the true energy over time and learned against true H (where the true H is known), and the loss
curves; for predictions (``hinn predict``), the trajectories alone."""

from __future__ import annotations

import os
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


MAX_COORDS = 6  # coordinates drawn when none are chosen (a panel or two each)


def pick_coords(d: int, coords: Optional[Sequence[int]] = None) -> List[int]:
    """The coordinate indices to draw: ``coords`` checked against d, or the first :data:`MAX_COORDS`."""
    if coords is None:
        return list(range(min(d, MAX_COORDS)))
    coords = [int(c) for c in coords]
    bad = [c for c in coords if not 0 <= c < d]
    if bad or not coords:
        raise ValueError(f"coordinates {coords} do not index p, q of dimension d = {d} (valid: 0 to {d - 1})")
    return coords


def _label(sym: str, i: int, d: int) -> str:
    return sym if d == 1 else f"{sym}{i + 1}"


def trajectory_figure(path: str, title: str, t: np.ndarray, P: np.ndarray, Q: np.ndarray,
                      P_true: Optional[np.ndarray] = None, Q_true: Optional[np.ndarray] = None,
                      coords: Optional[Sequence[int]] = None, n_show: int = 3) -> str:  # fmt: skip
    """q_i(t) and p_i(t) of the first ``n_show`` trajectories, one row per coordinate i (``coords``,
    default all up to :data:`MAX_COORDS`); with the truth ``P_true``, ``Q_true`` (solid) the model's are
    dashed. P, Q: (n, T, d). Writes ``path``; returns it."""
    plt = _plt()
    d, k = P.shape[2], min(n_show, len(P))
    cs = pick_coords(d, coords)
    fig, axes = plt.subplots(len(cs), 2, figsize=(11, 2.2 + 1.8 * len(cs)), sharex=True, squeeze=False)
    for row, c in enumerate(cs):
        for col, (sym, X, Xt) in enumerate((("q", Q, Q_true), ("p", P, P_true))):
            ax = axes[row, col]
            for i in range(k):
                if Xt is not None:
                    ax.plot(t, Xt[i, :, c], f"C{i}", lw=2, alpha=0.5, label="true" if i == 0 else None)
                label = ("predicted" if Xt is not None else f"trajectory {i + 1}") if i == 0 else None
                ax.plot(t, X[i, :, c], f"C{i}" + ("--" if Xt is not None else ""), label=label)
            ax.set_ylabel(_label(sym, c, d))
    for ax in axes[-1]:
        ax.set_xlabel("t")
    axes[0, 0].legend(fontsize=8)
    more = f" (coordinates {', '.join(str(c + 1) for c in cs)} of {d})" if len(cs) < d else ""
    fig.suptitle(title + more)
    return _save(plt, fig, path)


def make_figures(
    run_dir: str,
    name: str,
    test,
    arrays: Dict,
    history: List[Dict],
    n_show: int = 3,
    net=None,
    coords: Optional[Sequence[int]] = None,
) -> List[str]:
    """The figures of a trained run, written into ``run_dir``; returns their paths.

    ``name``: the system's (or data set's) name; ``test``: the test trajectories; ``arrays``: what
    :func:`hinn.metrics.rollouts` returns (the predicted P, Q (n, T, d), the learned H along the truth and
    the rollouts, and the true energies ``E_true``, ``E_pred`` when the true Hamiltonian is known);
    ``history``: the training loss per epoch; ``net``: the learned model (for the H_θ landscape);
    ``coords``: the coordinates drawn (default all, up to :data:`MAX_COORDS`)."""
    plt = _plt()
    os.makedirs(run_dir, exist_ok=True)
    t = test.t
    P, Q, H_learned_true = arrays["P"], arrays["Q"], arrays["H_learned_true"]
    E_true, E_pred = arrays.get("E_true"), arrays.get("E_pred")
    k = min(n_show, len(P))
    d = P.shape[2]
    cs = pick_coords(d, coords)
    paths = [
        trajectory_figure(
            os.path.join(run_dir, "trajectories.png"),
            f"{name}: held-out trajectories, truth (solid) vs learned (dashed)",
            t,
            P,
            Q,
            test.P,
            test.Q,
            cs,
            n_show,
        )  # fmt: skip
    ]

    def save(fig, fname):
        paths.append(_save(plt, fig, os.path.join(run_dir, fname)))

    # orbits in the plane (poster Fig. 4) for n-body systems
    if d >= 4 and d % 2 == 0:
        fig, ax = plt.subplots(figsize=(5.5, 5.5))
        nb = d // 2
        for b in range(nb):
            ax.plot(test.Q[0, :, 2 * b], test.Q[0, :, 2 * b + 1], f"C{b}", lw=2, alpha=0.5, label=f"body {b + 1} true")
            ax.plot(Q[0, :, 2 * b], Q[0, :, 2 * b + 1], f"C{b}--", label=f"body {b + 1} learned")
        ax.set_aspect("equal")
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        ax.legend(fontsize=8)
        ax.set_title(f"{name}: orbits")
        save(fig, "orbits.png")
    # phase portraits, one panel per coordinate pair (q_i, p_i)
    fig, axes = plt.subplots(1, len(cs), figsize=(4.2 * len(cs), 4.4), squeeze=False)
    for ax, c in zip(axes[0], cs):
        for i in range(k):
            ax.plot(test.Q[i, :, c], test.P[i, :, c], f"C{i}", lw=2, alpha=0.5)
            ax.plot(Q[i, :, c], P[i, :, c], f"C{i}--")
        ax.set_xlabel(_label("q", c, d))
        ax.set_ylabel(_label("p", c, d))
    fig.suptitle("phase portraits (solid: truth, dashed: learned)")
    save(fig, "phase.png")
    # the learned energy along the truth and along the model's own rollouts: any data set
    title = "the learned energy along held-out trajectories"
    path = os.path.join(run_dir, "learned_energy.png")
    paths.append(learned_energy_figure(path, t, arrays["H_learned_pred"], H_learned_true, title, n_show))
    if net is not None:
        paths.append(landscape_figure(os.path.join(run_dir, "H_landscape.png"), net, test, cs))
    if E_true is not None:  # the true Hamiltonian is known (a built-in system)
        fig, ax = plt.subplots(figsize=(7, 4))
        for i in range(k):
            ax.plot(t, E_true[i], f"C{i}", lw=2, alpha=0.5, label="H(true)" if i == 0 else None)
            ax.plot(t, E_pred[i], f"C{i}--", label="H(learned rollout)" if i == 0 else None)
        ax.set_xlabel("t")
        ax.set_ylabel("true energy")
        ax.legend()
        ax.set_title("true energy along the truth and along the learned rollout")
        save(fig, "energy.png")
        # learned H against true H on the true test states
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.scatter(E_true.reshape(-1), H_learned_true.reshape(-1), s=2, alpha=0.4)
        A = np.vstack([E_true.reshape(-1), np.ones(E_true.size)]).T
        coef, *_ = np.linalg.lstsq(A, H_learned_true.reshape(-1), rcond=None)
        xs = np.linspace(E_true.min(), E_true.max(), 10)
        ax.plot(xs, coef[0] * xs + coef[1], "k--", label=f"fit: H_θ ≈ {affine_label(coef[0], coef[1])}")
        ax.set_xlabel("true H")
        ax.set_ylabel("learned H_θ")
        ax.legend()
        save(fig, "learned_vs_true_H.png")
    _loss_figure(plt, history, save)
    return paths


def learned_energy_figure(path: str, t: np.ndarray, H_pred: np.ndarray, H_true: Optional[np.ndarray] = None,
                          title: str = "the learned energy", n_show: int = 3) -> str:  # fmt: skip
    """H_θ over time along the model's trajectories (dashed when ``H_true``, H_θ along the observed
    states, is drawn solid beside them); each (n, T). Writes ``path``; returns it."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for i in range(min(n_show, len(H_pred))):
        if H_true is not None:
            ax.plot(t, H_true[i], f"C{i}", lw=2, alpha=0.5, label="H_θ(observed states)" if i == 0 else None)
        ax.plot(t, H_pred[i], f"C{i}" + ("--" if H_true is not None else ""),
                label="H_θ(learned rollout)" if i == 0 else None)  # fmt: skip
    ax.set_xlabel("t")
    ax.set_ylabel("learned H_θ")
    ax.legend()
    ax.set_title(title)
    return _save(plt, fig, path)


def affine_label(a: float, b: float) -> str:
    """'a H + b' with the sign of b written once ('0.325 H − 2.45')."""
    return f"{a:.3g} H {'−' if b < 0 else '+'} {abs(b):.3g}"


def landscape_figure(path: str, net, test, coords: Sequence[int], n_grid: int = 60) -> str:
    """H_θ over the plane (q_i, p_i) for each coordinate i in ``coords``, the other coordinates held at
    the mean of the test states and t at the first observation time; the test trajectories' projections
    drawn over it. Writes ``path``; returns it."""
    from .metrics import learned_energy

    plt = _plt()
    d = test.P.shape[2]
    pm, qm = test.P.reshape(-1, d).mean(0), test.Q.reshape(-1, d).mean(0)
    fig, axes = plt.subplots(1, len(coords), figsize=(4.6 * len(coords), 4.2), squeeze=False)
    for ax, c in zip(axes[0], coords):
        lo_q, hi_q = _span(test.Q[..., c])
        lo_p, hi_p = _span(test.P[..., c])
        gq, gp = np.meshgrid(np.linspace(lo_q, hi_q, n_grid), np.linspace(lo_p, hi_p, n_grid))
        P = np.broadcast_to(pm, (gq.size, d)).copy()
        Q = np.broadcast_to(qm, (gq.size, d)).copy()
        P[:, c], Q[:, c] = gp.reshape(-1), gq.reshape(-1)
        H = learned_energy(net, test.t[:1], P[:, None], Q[:, None]).reshape(gq.shape)
        cf = ax.contourf(gq, gp, H, levels=20, cmap="viridis")
        ax.contour(gq, gp, H, levels=20, colors="k", linewidths=0.3, alpha=0.5)
        fig.colorbar(cf, ax=ax, shrink=0.85)
        for i in range(min(3, len(test.P))):
            ax.plot(test.Q[i, :, c], test.P[i, :, c], "w-", lw=1, alpha=0.8)
        ax.set_xlabel(_label("q", c, d))
        ax.set_ylabel(_label("p", c, d))
    fig.suptitle("learned H_θ over a slice of phase space, test trajectories in white"
                 + ("\n(the other coordinates at their test mean)" if d > 1 else ""), fontsize=10)  # fmt: skip
    return _save(plt, fig, path)


def _span(x: np.ndarray) -> Tuple[float, float]:
    lo, hi = float(x.min()), float(x.max())
    pad = 0.15 * (hi - lo) if hi > lo else 1.0
    return lo - pad, hi + pad


def _save(plt, fig, path: str) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _loss_figure(plt, history: List[Dict], save) -> None:
    if not history:
        return
    fig, ax = plt.subplots(figsize=(6, 4))
    ep = [r["epoch"] for r in history]
    ax.semilogy(ep, [r["train_loss"] for r in history], label="train")
    if "val_loss" in history[0]:
        ax.semilogy(ep, [r["val_loss"] for r in history], label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel("trajectory loss")
    ax.legend()
    save(fig, "loss.png")


def comparison_figure(path: str, name: str, trajs: Dict) -> str:
    """The HNN comparison: a held-out trajectory of each model against the truth, and the true energy
    along it. ``trajs``: model name -> (t_eval (T,), dict with the truth P, Q, E and the model's Pm, Qm,
    Em, each (n, T, d) or (n, T)). Writes ``path``; returns it."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    t_eval, tr0 = next(iter(trajs.values()))
    d = tr0["P"].shape[2]
    y_true = tr0["Q"][0, :, 1] if d >= 2 else tr0["P"][0, :, 0]
    axes[0].plot(tr0["Q"][0, :, 0], y_true, "k", lw=2.5, alpha=0.4, label="truth")
    for i, (kind, (_, tr)) in enumerate(trajs.items()):
        ys = tr["Qm"][0, :, 1] if d >= 2 else tr["Pm"][0, :, 0]
        axes[0].plot(tr["Qm"][0, :, 0], ys, f"C{i}--", label=kind)
        axes[1].plot(t_eval, tr["Em"][0], f"C{i}--", label=kind)
    axes[1].plot(t_eval, tr0["E"][0], "k", lw=2.5, alpha=0.4, label="truth")
    axes[0].set_xlabel("q₁" if d >= 2 else "q")
    axes[0].set_ylabel("q₂ (body 1: x, y)" if d >= 2 else "p")
    axes[0].set_title(f"{name}: a held-out trajectory")
    axes[1].set_xlabel("t")
    axes[1].set_ylabel("true energy along the trajectory")
    axes[1].set_title("energy")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
