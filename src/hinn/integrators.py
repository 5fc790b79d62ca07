r"""Time steppers for Hamiltonian systems, driven by a gradient oracle ``grad(t, p, q) -> (∂pH, ∂qH)``.

Sign convention (as physics writes Hamilton's equations):

.. math::  \dot q = \partial H/\partial p, \qquad \dot p = -\partial H/\partial q.

The HINN poster writes the opposite signs; that only flips the sign of the learned H.

``symplectic_euler`` and ``leapfrog`` are symplectic when H is separable (H = T(p) + V(t, q)). For a
general (non-separable) learned H they are explicit approximations, not symplectic maps, and the
explicit leapfrog drops to first order there (its kicks use ∂qH at the wrong p): ``order`` is the order
for separable H, ``general_order`` for any smooth H (measured in ``tests/test_integrators.py``).

Each scheme is a small class (:class:`hinn.scheme.Scheme`) registered by name in :data:`SCHEMES`; the
built-in ones are written once here and once (with their adjoints) in ``csrc/hinn/schemes/``.
:func:`step` and :func:`rollout` work with any :class:`hinn.protocols.HamiltonianModel`; a model
offering the ``compiled_rollout`` capability (the fused :class:`hinn.HamiltonianNet`) runs a built-in
scheme in one compiled call, and any other scheme — a user's subclass included — runs here, stage by
stage.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Tuple

import torch
from torch import Tensor

from ._checks import Time, check_model_state, check_step_size, check_steps
from .protocols import validated_grad
from .scheme import COMPILED_SCHEMES, SCHEMES, GradFn, Scheme, get_scheme, register_scheme

RK4_NODES = (Fraction(0), Fraction(1, 2), Fraction(1, 2), Fraction(1))
RK4_WEIGHTS = (Fraction(1, 6), Fraction(1, 3), Fraction(1, 3), Fraction(1, 6))


class Euler(Scheme):
    r"""Explicit Euler: :math:`q' = q + h\,\partial_p H(t,p,q)`, :math:`p' = p - h\,\partial_q H(t,p,q)`.
    Order 1, not symplectic (energy drifts)."""

    name, order, general_order, symplectic = "euler", 1, 1, False

    def step(self, grad, t, p, q, h):
        gp, gq = grad(t, p, q)
        return p - h * gq, q + h * gp


class SymplecticEuler(Scheme):
    r"""Symplectic Euler (the poster's update): :math:`p' = p - h\,\partial_q H(t,p,q)`, then
    :math:`q' = q + h\,\partial_p H(t,p',q)`. Order 1; symplectic for separable H
    (Hairer, Lubich, Wanner, *Geometric Numerical Integration*, §I.1)."""

    name, order, general_order, symplectic = "symplectic_euler", 1, 1, True

    def step(self, grad, t, p, q, h):
        _, gq = grad(t, p, q)
        p = p - h * gq
        gp, _ = grad(t, p, q)
        return p, q + h * gp


class Leapfrog(Scheme):
    r"""Störmer–Verlet, kick–drift–kick:
    :math:`p_{1/2} = p - \tfrac h2 \partial_q H(t,p,q)`,
    :math:`q' = q + h\,\partial_p H(t+\tfrac h2, p_{1/2}, q)`,
    :math:`p' = p_{1/2} - \tfrac h2 \partial_q H(t+h, p_{1/2}, q')`.
    Order 2; symplectic and time-reversible for separable H (Hairer, Lubich, Wanner 2003). For a
    non-separable H this explicit form is first order (the implicit Störmer–Verlet would keep order 2)."""

    name, order, general_order, symplectic = "leapfrog", 2, 1, True

    def step(self, grad, t, p, q, h):
        _, gq = grad(t, p, q)
        p = p - (h / 2) * gq
        gp, _ = grad(t + h / 2, p, q)
        q = q + h * gp
        _, gq = grad(t + h, p, q)
        return p - (h / 2) * gq, q


class RK4(Scheme):
    r"""Classical fourth-order Runge–Kutta on :math:`(\dot p, \dot q) = (-\partial_q H, \partial_p H)`.
    Order 4, not symplectic (used by the HNN paper)."""

    name, order, general_order, symplectic = "rk4", 4, 4, False

    def step(self, grad, t, p, q, h):
        dp, dq = torch.zeros_like(p), torch.zeros_like(q)
        yp, yq = p, q
        for s in range(4):
            gp, gq = grad(t + float(RK4_NODES[s]) * h, yp, yq)
            w = float(RK4_WEIGHTS[s]) * h
            dp, dq = dp - w * gq, dq + w * gp
            if s < 3:
                c = float(RK4_NODES[s + 1]) * h
                yp, yq = p - c * gq, q + c * gp
        return p + dp, q + dq


for _cls in (Euler, SymplecticEuler, Leapfrog, RK4):
    register_scheme(_cls, compiled=True)


def _integrate(model, t: Tensor, p: Tensor, q: Tensor, h: float, steps: int, sch: Scheme, trajectory: bool):
    fast = getattr(model, "compiled_rollout", None)
    if fast is not None:
        out = fast(sch, t, p, q, h, steps, trajectory)
        if out is not None:
            return out
    grad = validated_grad(model)  # the entry points validated the inputs once
    return sch.integrate(grad, t, p, q, h, steps, trajectory)


def step(
    model, t: Time, p: Tensor, q: Tensor, h: float, scheme: "str | Scheme" = "symplectic_euler"
) -> Tuple[Tensor, Tensor]:
    """One step of ``scheme`` with the vector field of ``model`` from time t.

    Args:
        model: any :class:`hinn.protocols.HamiltonianModel` (a :class:`hinn.HamiltonianNet`, a
            :mod:`hinn.hnn` model, or a user's object with ``dim`` and ``grad(t, p, q)``).
        t: float or (N,) times; p, q: (N, d) states.
        h: time step.
        scheme: a name from :data:`SCHEMES` or a :class:`Scheme` instance.

    Returns:
        (p', q'), each (N, d), differentiable with respect to p, q and the parameters of ``model``.
    """
    sch = get_scheme(scheme)
    h = check_step_size(h)
    t = check_model_state(model, t, p, q)
    return _integrate(model, t, p, q, h, 1, sch, trajectory=False)


def rollout(
    model, t0: Time, p0: Tensor, q0: Tensor, h: float, steps: int, scheme: "str | Scheme" = "symplectic_euler"
) -> Tuple[Tensor, Tensor]:
    """``steps`` steps of ``scheme`` from (t0, p0, q0); step k starts at time t0 + k h.

    Returns:
        (P, Q), each (steps+1, N, d), with P[0] = p0. A model with the ``compiled_rollout`` capability
        (the fused backend) computes it in one call; on the CPU, from width 32, the call keeps each step's
        network evaluations for its backward pass (up to ``hinn.backends.fused.KEPT_STAGES_BUDGET`` bytes), which
        otherwise recomputes them from the stored states.
    """
    sch = get_scheme(scheme)
    h = check_step_size(h)
    steps = check_steps(steps)
    t = check_model_state(model, t0, p0, q0)
    return _integrate(model, t, p0, q0, h, steps, sch, trajectory=True)


__all__ = ["COMPILED_SCHEMES", "SCHEMES", "Euler", "GradFn", "Leapfrog", "RK4", "Scheme", "SymplecticEuler",
           "get_scheme", "register_scheme", "rollout", "step"]  # fmt: skip
