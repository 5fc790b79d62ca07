r"""Time steppers for Hamiltonian systems, driven by a gradient oracle ``grad(t, p, q) -> (∂pH, ∂qH)``.

Sign convention (as physics writes Hamilton's equations):

.. math::  \dot q = \partial H/\partial p, \qquad \dot p = -\partial H/\partial q.

The HINN poster writes the opposite signs; that only flips the sign of the learned H.

``symplectic_euler`` and ``leapfrog`` are symplectic when H is separable (H = T(p) + V(t, q)). For a
general (non-separable) learned H they are explicit approximations, not symplectic maps, and the
explicit leapfrog drops to first order there (its kicks use ∂qH at the wrong p): ``order`` is the order
for separable H, ``general_order`` for any smooth H (measured in ``tests/test_integrators.py``).

Each scheme is written once here and once (with its adjoint) in ``csrc/hinn/integrators.h``; the fused
backend replaces a whole step or rollout by one compiled call.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Callable, Dict, Tuple, Type

import torch
from torch import Tensor

from . import backends
from ._checks import Time, check_step_size

GradFn = Callable[[Tensor, Tensor, Tensor], Tuple[Tensor, Tensor]]

RK4_NODES = (Fraction(0), Fraction(1, 2), Fraction(1, 2), Fraction(1))
RK4_WEIGHTS = (Fraction(1, 6), Fraction(1, 3), Fraction(1, 3), Fraction(1, 6))


class Scheme:
    """One explicit step of a Hamiltonian integrator. Subclasses set ``name``, ``order`` and
    ``symplectic`` (for separable H), ``general_order`` (for any smooth H) and ``code`` (the compiled
    core's scheme number)."""

    name: str
    order: int
    general_order: int
    symplectic: bool
    code: int

    def step(self, grad: GradFn, t: Tensor, p: Tensor, q: Tensor, h: float) -> Tuple[Tensor, Tensor]:
        raise NotImplementedError


class Euler(Scheme):
    r"""Explicit Euler: :math:`q' = q + h\,\partial_p H(t,p,q)`, :math:`p' = p - h\,\partial_q H(t,p,q)`.
    Order 1, not symplectic (energy drifts)."""

    name, order, general_order, symplectic, code = "euler", 1, 1, False, 0

    def step(self, grad, t, p, q, h):
        gp, gq = grad(t, p, q)
        return p - h * gq, q + h * gp


class SymplecticEuler(Scheme):
    r"""Symplectic Euler (the poster's update): :math:`p' = p - h\,\partial_q H(t,p,q)`, then
    :math:`q' = q + h\,\partial_p H(t,p',q)`. Order 1; symplectic for separable H
    (Hairer, Lubich, Wanner, *Geometric Numerical Integration*, §I.1)."""

    name, order, general_order, symplectic, code = "symplectic_euler", 1, 1, True, 1

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

    name, order, general_order, symplectic, code = "leapfrog", 2, 1, True, 2

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

    name, order, general_order, symplectic, code = "rk4", 4, 4, False, 3

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


SCHEMES: Dict[str, Type[Scheme]] = {cls.name: cls for cls in (Euler, SymplecticEuler, Leapfrog, RK4)}


def get_scheme(name: str) -> Scheme:
    """The scheme registered under ``name``; ``ValueError`` lists the valid names otherwise."""
    if isinstance(name, Scheme):
        return name
    try:
        return SCHEMES[name]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown scheme {name!r}; valid schemes are {', '.join(SCHEMES)}") from None


def step(net, t: Time, p: Tensor, q: Tensor, h: float, scheme: str = "symplectic_euler") -> Tuple[Tensor, Tensor]:
    """One step of ``scheme`` with the vector field of ``net`` from time t.

    Args:
        net: a :class:`hinn.HamiltonianNet`, or any model with ``_check``, ``backend_name`` and
            ``_grad_unchecked`` (the HNN-paper models of :mod:`hinn.hnn`).
        t: float or (N,) times; p, q: (N, d) states.
        h: time step.
        scheme: ``"euler"``, ``"symplectic_euler"``, ``"leapfrog"`` or ``"rk4"``.

    Returns:
        (p', q'), each (N, d), differentiable with respect to p, q and the parameters of ``net``.
    """
    sch = get_scheme(scheme)
    h = check_step_size(h)
    t = net._check(t, p, q)
    name = net.backend_name()
    if name == "fused":
        return backends.module(name).step(net, t, p, q, h, sch.code)
    return sch.step(net._grad_unchecked, t, p, q, h)


def rollout(
    net, t0: Time, p0: Tensor, q0: Tensor, h: float, steps: int, scheme: str = "symplectic_euler"
) -> Tuple[Tensor, Tensor]:
    """``steps`` steps of ``scheme`` from (t0, p0, q0); step k starts at time t0 + k h.

    Returns:
        (P, Q), each (steps+1, N, d), with P[0] = p0. The fused backend computes it in one call and, in
        its backward pass, recomputes each step's internals from the stored states.
    """
    sch = get_scheme(scheme)
    h = check_step_size(h)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    t = net._check(t0, p0, q0)
    name = net.backend_name()
    if name == "fused":
        return backends.module(name).rollout(net, t, p0, q0, h, steps, sch.code)
    grad = net._grad_unchecked
    P, Q = [p0], [q0]
    p, q = p0, q0
    for k in range(steps):
        p, q = sch.step(grad, t + k * h, p, q, h)
        P.append(p)
        Q.append(q)
    return torch.stack(P), torch.stack(Q)
