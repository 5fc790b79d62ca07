r"""Tao's explicit symplectic scheme for non-separable Hamiltonians (M. Tao, Phys. Rev. E 94, 043303, 2016).

The phase space is doubled: a copy (x, y) of (q, p) and the extended Hamiltonian

.. math::  \bar H(q, p, x, y) = H(q, y) + H(x, p) + \tfrac{\omega}{2}\,(|q - x|^2 + |p - y|^2)

whose three parts have exact, explicit flows: :math:`\phi_A` (H(q, y): p and x move, q and y stay),
:math:`\phi_B` (H(x, p): q and y move) and :math:`\phi_C` (the coupling: a rotation of (q − x, p − y)
by the angle 2ωδ, q + x and p + y fixed). Started on the diagonal x = q, y = p, the extended flow stays on
it and there is the flow of H. The symmetric composition

.. math::  \Phi_2(h) = \phi_A(\tfrac h2)\,\phi_B(\tfrac h2)\,\phi_C(h)\,\phi_B(\tfrac h2)\,\phi_A(\tfrac h2)

is explicit, symplectic in the extended space and of order 2 for *any* smooth H; the triple jump
:math:`\Phi_{l+2}(h) = \Phi_l(\gamma h)\,\Phi_l((1-2\gamma) h)\,\Phi_l(\gamma h)`,
:math:`\gamma = 1/(2 - 2^{1/(l+1)})` with l the lower order, raises it to 4, 6, ...

Time dependence goes through an extended pair (τ, E) per copy, H̄ gaining E (and its copy's E): the
q-copy's clock τ_q is read by φ_A and advanced by φ_B, the x-copy's τ_x the other way round. Both clocks
advance at rate one in every full step, so they need no coupling and E never feeds back: φ_A is
evaluated at t and t + h, φ_B twice at t + h/2 — no ∂H/∂t is needed.

ω: the coupling strength. The copies stay close when ω is large, but the scheme's error grows with
:math:`h\,\omega^{1/\text{order}}`; a warning says when that exceeds 1. The default ω = 20 gives
order 2 and 4 at h ≤ 0.1 on the systems tested (``tests/test_tao.py``).

Explicit: four gradient evaluations per order-2 step, twelve per order-4 step. Orders 2 and 4 run in the
compiled core on the fused backend (``csrc/hinn/schemes/``: the same flows with their exact adjoint,
rollouts carrying the copies); higher orders, and the other backends, run here with gradients through
autograd.
"""

from __future__ import annotations

import math
import warnings
from typing import Tuple

import torch
from torch import Tensor

from .integrators import GradFn, Scheme, register_scheme

State = Tuple[Tensor, Tensor, Tensor, Tensor]  # (p, q, x, y)


class Tao(Scheme):
    """Tao's extended-phase-space scheme: explicit, symplectic in the extended space and of order
    ``order`` (2, 4, 6, ...) for any smooth H, time-dependent included. ``omega``: the coupling."""

    name, order, general_order, symplectic = "tao", 2, 2, True

    def __init__(self, omega: float = 20.0, order: int = 2):
        if isinstance(order, bool) or not isinstance(order, int) or order < 2 or order % 2:
            raise ValueError(f"Tao's scheme has an even order >= 2, got {order!r}")
        if not (isinstance(omega, (int, float)) and math.isfinite(omega) and omega > 0):
            raise ValueError(f"omega must be a positive number, got {omega!r}")
        self.omega, self.order, self.general_order = float(omega), order, order
        self._warned = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(omega={self.omega:g}, order={self.order})"

    # ---------------------------------------------------------------- the three exact flows
    @staticmethod
    def _flow_a(grad: GradFn, tau, s: State, d: float) -> State:  # H(q, y): p, x move
        p, q, x, y = s
        gp, gq = grad(tau, y, q)
        return p - d * gq, q, x + d * gp, y

    @staticmethod
    def _flow_b(grad: GradFn, tau, s: State, d: float) -> State:  # H(x, p): q, y move
        p, q, x, y = s
        gp, gq = grad(tau, p, x)
        return p, q + d * gp, x, y - d * gq

    def _flow_c(self, s: State, d: float) -> State:  # ω/2 (|q − x|² + |p − y|²): a rotation
        p, q, x, y = s
        c, sn = math.cos(2 * self.omega * d), math.sin(2 * self.omega * d)
        u, v = q - x, p - y
        u, v = c * u + sn * v, -sn * u + c * v
        sq, sp = q + x, p + y
        return (sp + v) / 2, (sq + u) / 2, (sq - u) / 2, (sp - v) / 2

    def _second_order(self, grad: GradFn, t, s: State, h: float) -> State:
        s = self._flow_a(grad, t, s, h / 2)
        s = self._flow_b(grad, t + h / 2, s, h / 2)
        s = self._flow_c(s, h)
        s = self._flow_b(grad, t + h / 2, s, h / 2)
        return self._flow_a(grad, t + h, s, h / 2)

    def _composed(self, grad: GradFn, t, s: State, h: float, order: int) -> State:
        if order == 2:
            return self._second_order(grad, t, s, h)
        low = order - 2
        g = 1.0 / (2.0 - 2.0 ** (1.0 / (low + 1)))
        s = self._composed(grad, t, s, g * h, low)
        s = self._composed(grad, t + g * h, s, (1 - 2 * g) * h, low)
        return self._composed(grad, t + (1 - g) * h, s, g * h, low)

    def extended_step(self, grad: GradFn, t: Tensor, p: Tensor, q: Tensor, x: Tensor, y: Tensor, h: float) -> State:
        """One step of the extended map, (p, q, x, y) → (p', q', x', y')."""
        self._check_coupling(h)
        return self._composed(grad, t, (p, q, x, y), h, self.order)

    def _check_coupling(self, h: float) -> None:
        size = abs(h) * self.omega ** (1.0 / self.order)
        if size > 1 and h not in self._warned:
            self._warned.add(h)
            warnings.warn(
                f"Tao's scheme with h = {h:g}, omega = {self.omega:g}, order {self.order}: "
                f"h * omega^(1/order) = {size:.2f} > 1, the copies decouple and the step loses accuracy; "
                "lower h or omega",
                RuntimeWarning,
                stacklevel=4,
            )

    # ---------------------------------------------------------------- the Scheme interface
    def compiled_as(self, h):
        self._check_coupling(h)
        name = {2: "tao", 4: "tao4"}.get(self.order)
        return None if name is None else (name, (self.omega,))

    def step(self, grad, t, p, q, h):
        p, q, _, _ = self.extended_step(grad, t, p, q, q, p, h)
        return p, q

    def integrate(self, grad, t, p, q, h, steps, trajectory):
        # the copies (x, y) are carried from step to step: the map is symplectic in the extended space
        s: State = (p, q, q, p)
        P, Q = [p], [q]
        for k in range(steps):
            s = self.extended_step(grad, t + k * h, *s, h)
            if trajectory:
                P.append(s[0])
                Q.append(s[1])
        return (torch.stack(P), torch.stack(Q)) if trajectory else (s[0], s[1])


class Tao4(Tao):
    """Tao's scheme of order 4 (the triple jump of the order-2 one), registered as ``tao4``."""

    name, order, general_order = "tao4", 4, 4

    def __init__(self, omega: float = 20.0, order: int = 4):
        super().__init__(omega, order)


register_scheme(Tao, compiled=True)
register_scheme(Tao4, compiled=True)
