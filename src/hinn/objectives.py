"""Training objectives.

* :func:`trajectory_loss` — HINN (the poster): roll the learned dynamics out K steps from observed
  states and compare with the observations, min_θ Σ_k |p_θ(t_k) − p(t_k)|² + |q_θ(t_k) − q(t_k)|²
  (a discrete form of the poster's ∫ … dt), averaged over windows and steps and divided by h².
  Why h²: a one-step error is h times the error of the learned vector field, so the raw loss shrinks
  like h² and plain gradient descent at the poster's learning rate barely moves (measured: spring,
  1500 epochs, rollout MSE 0.43). Divided by h², the loss is the squared vector-field error and a
  learning rate means the same at any h.
* :func:`derivative_loss` — HNN (Greydanus et al. 2019): fit (∂H/∂p, −∂H/∂q) to observed (q̇, ṗ).
"""

from __future__ import annotations

import torch

from .integrators import rollout, step


def trajectory_loss(net, t0, p0, q0, P_target, Q_target, h: float, scheme: str = "symplectic_euler") -> torch.Tensor:
    """Mean over windows, steps and components of the squared rollout error, over 2h².

    t0 (M,), p0 and q0 (M, d): window starts; P_target, Q_target (K, M, d): the next K observations.
    """
    K = P_target.shape[0]
    if K == 1:
        p1, q1 = step(net, t0, p0, q0, h, scheme)
        err = ((p1 - P_target[0]) ** 2).mean() + ((q1 - Q_target[0]) ** 2).mean()
    else:
        P, Q = rollout(net, t0, p0, q0, h, K, scheme)
        err = ((P[1:] - P_target) ** 2).mean() + ((Q[1:] - Q_target) ** 2).mean()
    return err / (2 * h * h)


def derivative_loss(net, t, p, q, dp_dt, dq_dt) -> torch.Tensor:
    """HNN loss: the mean squared error of the predicted (q̇, ṗ) = (∂H/∂p, −∂H/∂q) against the observed
    derivatives, over samples and all 2d components (the HNN paper's L2 loss)."""
    gp, gq = net.grad(t, p, q)
    return 0.5 * (((gp - dq_dt) ** 2).mean() + ((gq + dp_dt) ** 2).mean())
