"""One training step through each symplectic scheme for non-separable H, against the explicit leapfrog and
against the same scheme unrolled through autograd.

    python benchmarks/schemes.py

A training step: 100 one-step windows of the double pendulum's size (d = 2, autonomous H_θ, width 16,
depth 4, float64, one thread), the trajectory loss and its gradient with respect to θ. The last column is
the mean number of Newton iterations per implicit solve (fixed-point iterations for "unrolled").
"Unrolled" runs the implicit midpoint rule as plain fixed-point iteration to the same tolerance with
autograd's graph kept through every iteration (what one writes without the implicit function theorem;
its gradient needs the autograd backend's second derivatives).
"""

from __future__ import annotations

import time

import torch
from bench import _time

import hinn
from hinn import implicit
from hinn.objectives import TrajectoryObjective

N, H = 100, 0.05


class _PythonMidpoint(hinn.ImplicitMidpoint):
    """The implicit midpoint rule as a user's subclass: its Newton iterations run in Python."""


class _PythonLeapfrog(hinn.ImplicitLeapfrog):
    """The implicit leapfrog as a user's subclass: its Newton iterations run in Python."""


class _PythonGauss4(hinn.Gauss4):
    """Gauss–Legendre (2 stages) as a user's subclass: its Newton iterations run in Python."""


class _PythonTao(hinn.Tao):
    """Tao's scheme as a user's subclass: the compiled core runs only the registered classes, so this one
    runs its Python sub-flows over the backend's ∇H (what every backend did before the core had it)."""


def _unrolled_midpoint(net, t, p, q, h, tol=1e-13, max_iter=200):
    d = p.shape[1]
    z = torch.cat([p, q], 1)
    x = z
    for its in range(1, max_iter + 1):  # noqa: B007 (the count is returned)
        gp, gq = net.grad(t + h / 2, x[:, :d], x[:, d:])
        x_new = z + (h / 2) * torch.cat([-gq, gp], 1)
        done = float((x_new - x).detach().abs().max()) / (1 + float(x.detach().abs().max())) <= tol
        x = x_new
        if done:
            break
    z1 = 2 * x - z
    return (z1[:, :d], z1[:, d:]), its


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = hinn.HamiltonianNet(2, width=16, depth=4, time_dependent=False, dtype=torch.float64)
    with torch.no_grad():  # weights of a trained size, so that ∇H is far from linear (Newton needs > 1 iteration)
        net.theta.mul_(3.0)
    t0 = torch.zeros(N, dtype=torch.float64)
    p0, q0 = torch.randn(N, 2, dtype=torch.float64), torch.randn(N, 2, dtype=torch.float64)
    with torch.no_grad():
        P, Q = hinn.step(net, t0, p0, q0, H, "rk4")
    P, Q = (P + 1e-3 * torch.randn_like(P))[None], (Q + 1e-3 * torch.randn_like(Q))[None]

    def step_time(scheme, backend="fused", compiled=True):
        net.backend = backend
        obj = TrajectoryObjective(t0, p0, q0, P, Q, H, scheme)

        def run():
            res = obj.loss_and_grad(net) if compiled else None
            if res is None:
                net.theta.grad = None
                obj.loss(net).backward()

        return _time(run, budget=1.0) * 1e3

    newton = {"n": 0, "solves": 0}
    real_solve, real_jac = implicit.solve_fixed_point, implicit._jacobian

    def counting_solve(*a, **k):
        newton["solves"] += 1
        return real_solve(*a, **k)

    def counting_jac(*a, **k):
        newton["n"] += 1
        return real_jac(*a, **k)

    rows = [
        ("leapfrog", "compiled window loss", step_time("leapfrog"), "—"),
        ("leapfrog", "compiled step op + autograd loss", step_time("leapfrog", compiled=False), "—"),
    ]
    for name in ("implicit_midpoint", "implicit_leapfrog", "gauss4"):
        rows.append((name, "compiled window loss (Newton + implicit-function-theorem adjoint)",
                     step_time(name), "as below"))  # fmt: skip
    implicit.solve_fixed_point, implicit._jacobian = counting_solve, counting_jac
    try:
        python_solves = (
            ("implicit_midpoint", _PythonMidpoint()),
            ("implicit_leapfrog", _PythonLeapfrog()),
            ("gauss4", _PythonGauss4()),
        )
        for name, scheme in python_solves:
            newton.update(n=0, solves=0)
            ms = step_time(scheme)
            its = (newton["n"] - newton["solves"]) / max(newton["solves"], 1)  # one Jacobian per solve is the adjoint's
            rows.append((name, "Python Newton over fused ∇H + implicit-function-theorem backward", ms, f"{its:.1f}"))
    finally:
        implicit.solve_fixed_point, implicit._jacobian = real_solve, real_jac
    net.backend = "autograd"
    its = []

    def unrolled():
        net.theta.grad = None
        (p1, q1), k = _unrolled_midpoint(net, t0, p0, q0, H)
        its.append(k)
        (((p1 - P[0]) ** 2).mean() + ((q1 - Q[0]) ** 2).mean()).backward()

    ms = _time(unrolled, budget=1.0) * 1e3
    rows.append(
        ("implicit_midpoint", "autograd backend, fixed-point iterations unrolled", ms, f"{sum(its) / len(its):.0f}")
    )
    for name, order in (("tao", 2), ("tao4", 4)):
        rows.append((name, "compiled window loss", step_time(name), "—"))
        rows.append((name, "compiled step op + autograd loss", step_time(name, compiled=False), "—"))
        rows.append((name, "Python sub-flows over fused ∇H ops", step_time(_PythonTao(order=order)), "—"))
    rows.append(("tao", "autograd backend", step_time("tao", backend="autograd"), "—"))
    print(f"training step, N = {N}, d = 2, width 16 × depth 4, float64, 1 thread, {time.strftime('%Y-%m-%d')}")
    print("| scheme | path | ms | × leapfrog (compiled) | iterations per solve |")
    print("|---|---|---|---|---|")
    base = rows[0][2]
    for scheme, path, ms, its_ in rows:
        print(f"| `{scheme}` | {path} | {ms:.2f} | {ms / base:.1f} | {its_} |")


if __name__ == "__main__":
    main()
