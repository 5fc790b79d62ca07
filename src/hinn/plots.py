"""Figures (PNG): for a trained run (:func:`make_figures`) and for the HNN comparison
(:func:`comparison_figure`). For a trained run: the poster's Fig. 3 (q(t), p(t)) and Fig. 4 (orbits), phase
portraits, energy over time, learned against true H, and the loss curves."""

from __future__ import annotations

import os
from typing import Dict, List

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def make_figures(run_dir: str, name: str, test, arrays: Dict, history: List[Dict], n_show: int = 3) -> List[str]:
    """The figures of a trained run, written into ``run_dir``; returns their paths.

    ``name``: the system's (or data set's) name; ``test``: the test trajectories; ``arrays``: what
    :func:`hinn.metrics.rollouts` returns (the predicted P, Q (n, T, d), and the true energies ``E_true``,
    ``E_pred`` when the true Hamiltonian is known); ``history``: the training loss per epoch."""
    plt = _plt()
    t = test.t
    P, Q, H_learned_true = arrays["P"], arrays["Q"], arrays["H_learned_true"]
    E_true, E_pred = arrays.get("E_true"), arrays.get("E_pred")
    paths = []

    def save(fig, name):
        path = os.path.join(run_dir, name)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)

    k = min(n_show, len(P))
    d = P.shape[2]
    # q(t), p(t): truth vs prediction (poster Fig. 3)
    fig, axes = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    for i in range(k):
        c = f"C{i}"
        axes[0].plot(t, test.Q[i, :, 0], c, lw=2, alpha=0.5, label="true" if i == 0 else None)
        axes[0].plot(t, Q[i, :, 0], c + "--", label="predicted" if i == 0 else None)
        axes[1].plot(t, test.P[i, :, 0], c, lw=2, alpha=0.5)
        axes[1].plot(t, P[i, :, 0], c + "--")
    axes[0].set_ylabel("q" if d == 1 else "q₁")
    axes[1].set_ylabel("p" if d == 1 else "p₁")
    axes[1].set_xlabel("t")
    axes[0].legend()
    axes[0].set_title(f"{name}: held-out trajectories, truth (solid) vs learned (dashed)")
    save(fig, "trajectories.png")
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
    # phase portrait
    fig, ax = plt.subplots(figsize=(5, 5))
    for i in range(k):
        ax.plot(test.Q[i, :, 0], test.P[i, :, 0], f"C{i}", lw=2, alpha=0.5)
        ax.plot(Q[i, :, 0], P[i, :, 0], f"C{i}--")
    ax.set_xlabel("q₁")
    ax.set_ylabel("p₁")
    ax.set_title("phase portrait (solid: truth)")
    save(fig, "phase.png")
    if E_true is None:  # no true Hamiltonian (a user's data): no energy figures
        _loss_figure(plt, history, save)
        return paths
    # energy along trajectories
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
    ax.plot(xs, coef[0] * xs + coef[1], "k--", label=f"fit: H_θ ≈ {coef[0]:.3g} H + {coef[1]:.3g}")
    ax.set_xlabel("true H")
    ax.set_ylabel("learned H_θ")
    ax.legend()
    save(fig, "learned_vs_true_H.png")
    _loss_figure(plt, history, save)
    return paths


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
