r"""Implicit symplectic schemes: symplectic and second order for *any* smooth H, time-dependent included.

* ``implicit_midpoint``: :math:`\bar z = z_n + \tfrac h2 f(t_n + \tfrac h2, \bar z)`,
  :math:`z_{n+1} = 2\bar z - z_n`, with :math:`f = (-\partial_q H, \partial_p H)` (symplectic and
  symmetric for every H);
* ``implicit_leapfrog`` (generalised Störmer–Verlet, Hairer–Lubich–Wanner VI.3):
  :math:`p_{1/2} = p - \tfrac h2 \partial_q H(t, p_{1/2}, q)` (implicit in :math:`p_{1/2}`),
  :math:`q' = q + \tfrac h2 [\partial_p H(t, p_{1/2}, q) + \partial_p H(t+h, p_{1/2}, q')]` (implicit
  in q'), :math:`p' = p_{1/2} - \tfrac h2 \partial_q H(t+h, p_{1/2}, q')`; exactly ``leapfrog`` when H is
  separable;
* ``gauss4``: the two-stage Gauss–Legendre collocation method, order 4 (the implicit midpoint rule is its
  one-stage member).

Each implicit equation x = Φ(x) is solved per sample by Newton's method on the small (d or 2d) system,
with the Jacobian of Φ built from vector–Jacobian products of the model's gradient, and plain fixed-point
iteration as the fallback when a Newton matrix is singular. A solve that does not reach the tolerance
within ``max_iter`` iterations raises :class:`SolverError`: never a silently wrong step.

Gradients are exact without unrolling the iterations (implicit function theorem): the solution is fed
through Φ once more with the graph attached, and a hook on it replaces the incoming cotangent g by μ
with (I − ∂Φ/∂x)ᵀ μ = g, solved exactly per sample; autograd then carries μ to θ and to the step's
inputs. Memory per step: the states and one evaluation of the gradient.

All three also run in the compiled core on the fused backend (``csrc/hinn/schemes/``: the same
Newton iteration and convergence test per sample, the same adjoint; a failed solve raises
:class:`SolverError` there too, with no fixed-point fallback). On the other backends, and for a user's
subclass, they run here in Python over the backend's ``grad``.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from .integrators import GradFn, Scheme, register_scheme

try:  # the compiled core's defaults, so that a compiled and a Python solve stop at the same tolerance
    from ._core import DEFAULT_TOL
except ImportError:  # the package without its compiled part
    DEFAULT_TOL = {"float32": 1e-5, "float64": 1e-13}


class SolverError(RuntimeError):
    """An implicit step's non-linear solve did not converge."""


def _default_tol(x: Tensor) -> float:
    return DEFAULT_TOL["float64" if x.dtype == torch.float64 else "float32"]


def _jacobian(y: Tensor, x: Tensor) -> Tensor:
    """∂y/∂x per sample: y, x (N, m) with y depending on x row by row -> (N, m, m)."""
    if not y.requires_grad:  # Φ does not depend on x (e.g. ∂qH free of p: a separable H)
        return torch.zeros(y.shape + x.shape[1:], dtype=y.dtype, device=y.device)
    m = y.shape[1]
    # all m rows in one batched backward pass (vmap over the cotangents e_i), not m passes
    eye = torch.eye(m, dtype=y.dtype, device=y.device).unsqueeze(1).expand(m, y.shape[0], m)
    try:
        (g,) = torch.autograd.grad(y, x, eye, retain_graph=True, allow_unused=True, is_grads_batched=True)
    except RuntimeError:  # an op without a batching rule: one pass per row
        rows = [torch.autograd.grad(y[:, i].sum(), x, retain_graph=True, allow_unused=True)[0] for i in range(m)]
        g = torch.stack([torch.zeros_like(x) if r is None else r for r in rows])
    if g is None:
        return torch.zeros(y.shape + x.shape[1:], dtype=y.dtype, device=y.device)
    return g.transpose(0, 1)


def solve_fixed_point(
    phi: Callable[[Tensor], Tensor], x0: Tensor, tol: Optional[float], max_iter: int, what: str
) -> Tensor:
    """x = Φ(x) per sample (rows of x are independent), by Newton with fixed-point fallback; x is
    differentiable with respect to whatever Φ depends on, with the implicit function theorem's exact
    gradient. ``tol`` bounds max|x − Φ(x)| / (1 + max|x|) (None: 1e-13 in float64, 1e-5 in float32)."""
    tol = _default_tol(x0) if tol is None else tol
    if x0.numel() == 0:  # no samples: nothing to solve (and no maximum to take)
        return phi(x0.detach())
    x = x0.detach()
    res = float("inf")
    with torch.enable_grad():
        for it in range(max_iter + 1):
            xv = x.detach().requires_grad_(True)
            y = phi(xv)
            r = (xv - y).detach()
            res = float(r.abs().max()) / (1.0 + float(xv.detach().abs().max()))
            if not res > tol or it == max_iter:  # converged, NaN, or out of iterations
                break
            J = _jacobian(y, xv).detach()
            A = torch.eye(x.shape[1], dtype=x.dtype, device=x.device) - J
            try:
                x = xv.detach() - torch.linalg.solve(A, r.unsqueeze(-1)).squeeze(-1)
            except RuntimeError:  # a singular Newton matrix: one fixed-point step instead
                x = y.detach()
        if not res <= tol:
            raise SolverError(
                f"{what}: the implicit equation did not converge in {max_iter} iterations (relative residual "
                f"{res:.2e} > tol {tol:.1e}); use a smaller time step h, or raise max_iter / tol"
            )
        # x (= xv) solves x = Φ(x); the last iteration's y = Φ(xv) gives ∂Φ/∂x there for the adjoint.
        J = _jacobian(y, xv).detach()
    # Φ once more at the detached solution, with the graph to what Φ depends on; the hook corrects its cotangent
    out = phi(x.detach())
    if out.requires_grad:
        At = (torch.eye(x.shape[1], dtype=x.dtype, device=x.device) - J).transpose(1, 2)
        out.register_hook(lambda g: torch.linalg.solve(At, g.unsqueeze(-1)).squeeze(-1))
    return out


class _Implicit(Scheme):
    """Shared settings of the implicit schemes: the solver's tolerance and iteration cap."""

    symplectic = True
    general_symplectic = True

    def __init__(self, tol: Optional[float] = None, max_iter: int = 30) -> None:
        if max_iter < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        if tol is not None and not tol > 0:
            raise ValueError(f"tol must be > 0, got {tol}")
        self.tol, self.max_iter = tol, max_iter

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tol={self.tol}, max_iter={self.max_iter})"

    def compiled_as(self, h):
        return self.name, (self.tol or 0.0, self.max_iter)  # tol 0: the default of the precision


class ImplicitMidpoint(_Implicit):
    """Implicit midpoint rule: order 2, symplectic and symmetric for every smooth H."""

    name, order, general_order = "implicit_midpoint", 2, 2

    def step(self, grad: GradFn, t: Tensor, p: Tensor, q: Tensor, h: float) -> Tuple[Tensor, Tensor]:
        d = p.shape[1]
        z = torch.cat([p, q], dim=1)
        tm = t + h / 2

        def phi(x: Tensor) -> Tensor:
            gp, gq = grad(tm, x[:, :d], x[:, d:])
            return z + (h / 2) * torch.cat([-gq, gp], dim=1)

        zbar = solve_fixed_point(phi, phi(z).detach(), self.tol, self.max_iter, self.name)
        z1 = 2 * zbar - z
        return z1[:, :d], z1[:, d:]


class ImplicitLeapfrog(_Implicit):
    """Generalised Störmer–Verlet: order 2, symplectic for every smooth H; ``leapfrog`` for separable H."""

    name, order, general_order = "implicit_leapfrog", 2, 2

    def step(self, grad: GradFn, t: Tensor, p: Tensor, q: Tensor, h: float) -> Tuple[Tensor, Tensor]:
        hh = h / 2

        def phi_p(x: Tensor) -> Tensor:  # p½ = p − h/2 ∂qH(t, p½, q)
            return p - hh * grad(t, x, q)[1]

        ph = solve_fixed_point(phi_p, phi_p(p).detach(), self.tol, self.max_iter, self.name)
        gp0 = grad(t, ph, q)[0]

        def phi_q(x: Tensor) -> Tensor:  # q' = q + h/2 [∂pH(t, p½, q) + ∂pH(t+h, p½, q')]
            return q + hh * (gp0 + grad(t + h, ph, x)[0])

        q1 = solve_fixed_point(phi_q, (q + h * gp0).detach(), self.tol, self.max_iter, self.name)
        return ph - hh * grad(t + h, ph, q1)[1], q1


class Gauss4(_Implicit):
    r"""Gauss–Legendre collocation with two stages: order 4, symplectic and symmetric for every smooth H.

    With :math:`f = (-\partial_q H, \partial_p H)` and :math:`z = (p, q)`, the stages
    :math:`Z_i = z + h \sum_j a_{ij} f(t + c_j h, Z_j)` are solved together (Newton on the 4d unknowns,
    from :math:`Z_i = z + c_i h f(t, z)`), then :math:`z' = z + \tfrac h2 [f(t + c_1 h, Z_1) + f(t + c_2 h,
    Z_2)]`, where :math:`c = \tfrac12 \mp \tfrac{\sqrt3}6` and
    :math:`a = \begin{pmatrix} 1/4 & 1/4 - \sqrt3/6 \\ 1/4 + \sqrt3/6 & 1/4 \end{pmatrix}`
    (Hairer, Lubich, Wanner, *Geometric Numerical Integration*, §II.1.3)."""

    name, order, general_order = "gauss4", 4, 4
    NODES = (0.5 - 3**0.5 / 6, 0.5 + 3**0.5 / 6)
    COEFFS = ((0.25, 0.25 - 3**0.5 / 6), (0.25 + 3**0.5 / 6, 0.25))

    def step(self, grad: GradFn, t: Tensor, p: Tensor, q: Tensor, h: float) -> Tuple[Tensor, Tensor]:
        d = p.shape[1]
        z = torch.cat([p, q], dim=1)
        ts = [t + c * h for c in self.NODES]

        def f(tj, x: Tensor) -> Tensor:
            gp, gq = grad(tj, x[:, :d], x[:, d:])
            return torch.cat([-gq, gp], dim=1)

        def phi(x: Tensor) -> Tensor:  # x = (Z_1 | Z_2)
            F = [f(ts[j], x[:, 2 * d * j : 2 * d * (j + 1)]) for j in range(2)]
            return torch.cat([z + h * (a[0] * F[0] + a[1] * F[1]) for a in self.COEFFS], dim=1)

        f0 = f(t, z).detach()
        guess = torch.cat([z.detach() + (c * h) * f0 for c in self.NODES], dim=1)
        Z = solve_fixed_point(phi, guess, self.tol, self.max_iter, self.name)
        z1 = z + (h / 2) * (f(ts[0], Z[:, : 2 * d]) + f(ts[1], Z[:, 2 * d :]))
        return z1[:, :d], z1[:, d:]


register_scheme(ImplicitMidpoint, compiled=True)
register_scheme(ImplicitLeapfrog, compiled=True)
register_scheme(Gauss4, compiled=True)

__all__ = ["Gauss4", "ImplicitLeapfrog", "ImplicitMidpoint", "SolverError", "solve_fixed_point"]
