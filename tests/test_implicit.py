"""Implicit symplectic schemes: order and symplecticity for non-separable H, long-time energy, exact
gradients by the implicit function theorem (against finite differences and unrolled iterations), loud
non-convergence, and the same numbers on every backend."""

import numpy as np
import pytest
import torch
from conftest import (
    BACKENDS,
    ToyHamiltonian,
    assert_backends_agree,
    assert_matches_finite_differences,
    measured_orders,
    random_net,
    random_state,
    rel_err,
    requires_fused,
)

import hinn
from hinn.implicit import SolverError

SECOND_ORDER = ["implicit_midpoint", "implicit_leapfrog"]
IMPLICIT = SECOND_ORDER + ["gauss4"]


@pytest.mark.parametrize("scheme", SECOND_ORDER)
def test_second_order_on_the_toy_hamiltonian(scheme):
    p0 = torch.tensor([[0.5], [-0.2]], dtype=torch.float64)
    q0 = torch.tensor([[0.3], [0.7]], dtype=torch.float64)
    P, Q = hinn.systems.get_system("toy-nonseparable").trajectories(np.array([0.0, 2.0]), p0.numpy(), q0.numpy())
    ref = (torch.from_numpy(P[:, -1]), torch.from_numpy(Q[:, -1]))
    assert all(1.9 < o < 2.1 for o in measured_orders(ToyHamiltonian(), p0, q0, 2.0, ref, scheme))


@pytest.mark.parametrize("scheme", SECOND_ORDER)
def test_second_order_on_a_random_time_dependent_network(scheme):
    net = random_net(2, 6, 2, True, "tanh", 3)
    net.backend = "autograd"
    _, p0, q0 = random_state(3, 2, 4)
    with torch.no_grad():
        ref = hinn.rollout(net, 0.0, p0, q0, 0.1 / 64, 64 * 10, "rk4")
    orders = measured_orders(net, p0, q0, 1.0, (ref[0][-1], ref[1][-1]), scheme)
    assert all(1.85 < o < 2.15 for o in orders), orders


@pytest.mark.parametrize("backend", ["autograd"] + (["fused"] if hinn.backends.fused_available() else []))
def test_gauss4_is_fourth_order_on_a_random_time_dependent_network(backend):
    net = random_net(2, 6, 2, True, "tanh", 3)
    net.backend = backend
    _, p0, q0 = random_state(3, 2, 4)
    with torch.no_grad():
        ref = hinn.rollout(net, 0.0, p0, q0, 0.1 / 64, 64 * 10, "rk4")
    orders = measured_orders(net, p0, q0, 1.0, (ref[0][-1], ref[1][-1]), "gauss4")
    assert all(3.7 < o < 4.3 for o in orders), orders


class _DoublePendulum:
    """The double pendulum's true Hamiltonian as a model (its gradient by autograd)."""

    dim = 2

    def __init__(self):
        self.system = hinn.systems.get_system("double-pendulum")

    def grad(self, t, p, q):
        with torch.enable_grad():
            p_ = p if p.requires_grad else p.detach().requires_grad_()
            q_ = q if q.requires_grad else q.detach().requires_grad_()
            H = self.system.hamiltonian(t, p_, q_).sum()
            return torch.autograd.grad(H, (p_, q_), create_graph=True)


def test_gauss4_energy_is_bounded_on_the_double_pendulum():
    # 2000 steps (T = 100) of the non-separable double pendulum from four states: the energy error stays
    # at its first oscillation's size (no drift), far below rk4's, which drifts at the same order
    model = _DoublePendulum()
    p0, q0 = (torch.from_numpy(a) for a in model.system.sample_initial(4, np.random.default_rng(0)))
    err = {}
    for scheme in ("gauss4", "rk4"):
        with torch.no_grad():
            P, Q = hinn.rollout(model, 0.0, p0, q0, 0.05, 2000, scheme)
        E = torch.stack([model.system.hamiltonian(0.0, P[k], Q[k]) for k in range(P.shape[0])])
        err[scheme] = (E - E[0]).abs().amax(dim=1)
    g = err["gauss4"]
    assert float(g.max()) < 1e-5 and float(g[1000:].max()) < 2 * float(g[:1000].max())
    assert float(err["rk4"].max()) > 10 * float(g.max())


def _step_jacobian(model, scheme, t, z, d, h=0.2):
    def f(zz):
        p1, q1 = hinn.step(model, t, zz[None, :d], zz[None, d:], h, scheme)
        return torch.cat([p1[0], q1[0]])

    return torch.autograd.functional.jacobian(f, z)


@pytest.mark.parametrize("scheme", IMPLICIT)
@pytest.mark.parametrize("which", ["toy", "network"])
def test_one_step_is_symplectic(scheme, which):
    if which == "toy":
        model, d, z = ToyHamiltonian(), 1, torch.tensor([0.6, -0.4], dtype=torch.float64)
    else:
        model, d = random_net(2, 5, 2, True, "softplus", 1), 2
        z = torch.tensor([0.3, -0.5, 0.8, 0.1], dtype=torch.float64)
    t = torch.tensor([0.4], dtype=torch.float64)
    M = _step_jacobian(model, scheme, t, z, d)
    J = torch.zeros(2 * d, 2 * d, dtype=torch.float64)
    J[:d, d:], J[d:, :d] = -torch.eye(d), torch.eye(d)  # (p, q) ordering: ṗ = −∂qH, q̇ = ∂pH
    assert (M.T @ J @ M - J).abs().max() < 1e-10
    if which == "network":  # the explicit leapfrog is not symplectic for this H: the test can fail
        M_lf = _step_jacobian(model, "leapfrog", t, z, d)
        assert (M_lf.T @ J @ M_lf - J).abs().max() > 1e-6


def test_long_time_energy_is_bounded_on_the_toy_hamiltonian():
    p0 = torch.tensor([[0.5]], dtype=torch.float64)
    q0 = torch.tensor([[0.3]], dtype=torch.float64)
    drift = {}
    for scheme in SECOND_ORDER + ["leapfrog"]:
        P, Q = hinn.rollout(ToyHamiltonian(), 0.0, p0, q0, 0.05, 2000, scheme)  # T = 100
        H = 0.5 * (Q**2 + 1) * (P**2 + 1)
        drift[scheme] = float((H - H[0]).abs().max())
    for scheme in SECOND_ORDER:
        assert drift[scheme] < 1e-3 and drift[scheme] < 1e-2 * drift["leapfrog"], drift


def _unrolled_midpoint(net, t, p, q, h, iters=80):
    """The implicit midpoint rule by plain fixed-point iteration with the whole graph kept (unrolled):
    its gradient converges to the exact one as the iteration converges."""
    d = p.shape[1]
    z = torch.cat([p, q], 1)
    x = z
    for _ in range(iters):
        gp, gq = net.grad(t + h / 2, x[:, :d], x[:, d:])
        x = z + (h / 2) * torch.cat([-gq, gp], 1)
    z1 = 2 * x - z
    return z1[:, :d], z1[:, d:]


def test_gradients_exact_against_unrolled_iterations_and_finite_differences():
    net = random_net(2, 5, 2, True, "tanh", 2)
    net.backend = "autograd"
    t, p0, q0 = random_state(4, 2, 5)
    h, steps = 0.1, 3

    def loss_fn(step_fn, theta, p, q):
        with torch.nn.utils.stateless._reparametrize_module(net, {"theta": theta}):
            tt = t
            for k in range(steps):
                p, q = step_fn(tt + k * h, p, q)
            return (p**2).sum() + torch.sin(q).sum()

    implicit = lambda tt, p, q: hinn.step(net, tt, p, q, h, "implicit_midpoint")  # noqa: E731
    unrolled = lambda tt, p, q: _unrolled_midpoint(net, tt, p, q, h)  # noqa: E731
    args = [net.theta.detach().clone().requires_grad_(), p0.clone().requires_grad_(), q0.clone().requires_grad_()]
    g_impl = torch.autograd.grad(loss_fn(implicit, *args), args)
    g_unr = torch.autograd.grad(loss_fn(unrolled, *args), args)
    for a, b in zip(g_impl, g_unr):
        assert rel_err(a, b) < 1e-9
    # central finite differences along a random direction of every argument
    assert_matches_finite_differences(lambda *a: loss_fn(implicit, *a), args, g_impl)


@pytest.mark.parametrize("scheme", IMPLICIT)
def test_every_backend_gives_the_same_step(scheme):
    assert_backends_agree(scheme)


def test_non_converging_solve_raises():
    p0 = torch.tensor([[2.0]], dtype=torch.float64)
    q0 = torch.tensor([[2.0]], dtype=torch.float64)
    with pytest.raises(SolverError, match="did not converge in 2 iterations"):
        hinn.step(ToyHamiltonian(), 0.0, p0, q0, 5.0, hinn.ImplicitMidpoint(max_iter=2))
    with pytest.raises(ValueError, match="max_iter"):
        hinn.ImplicitLeapfrog(max_iter=0)


@requires_fused
@pytest.mark.parametrize("scheme", IMPLICIT)
@pytest.mark.parametrize("width", [5, 16])
def test_the_compiled_solves_match_the_python_solve(scheme, width, cpu_isa):
    """The fused backend runs both implicit schemes in the core (Newton per sample, the adjoint by the
    implicit function theorem); a subclass, which always runs the Python solve, gives the same numbers —
    steps, rollouts and the training window loss, on every CPU build."""
    from hinn.backends import fused
    from hinn.objectives import TrajectoryObjective

    Compiled = hinn.integrators.get_scheme(scheme).__class__

    class PythonSolve(Compiled):
        pass

    net = random_net(2, width, 2, True, "tanh", 5)  # width 16: the blocked kernels on the SIMD builds
    net.backend = "fused"
    t, p, q = random_state(37, 2, 6)  # 37: partial SIMD blocks
    outs = []
    for sch in (Compiled(), PythonSolve()):
        pr = p.clone().requires_grad_()
        P, Q = hinn.rollout(net, t, pr, q, 0.1, 3, sch)
        p1, _ = hinn.step(net, t, pr, q, 0.1, sch)
        outs.append((P, Q, p1) + torch.autograd.grad((P**2).sum() + Q.sum() + p1.sum(), [pr, net.theta]))
        obj = TrajectoryObjective(t, p, q, P[1:].detach() + 0.01, Q[1:].detach(), 0.1, sch)
        net.theta.grad = None
        if sch.__class__ is PythonSolve:
            assert obj.loss_and_grad(net) is None  # no compiled window loss for a subclass
            loss = obj.loss(net)
            outs[-1] += (loss, torch.autograd.grad(loss, net.theta)[0])
        else:
            loss, grads = obj.loss_and_grad(net)
            outs[-1] += (loss, grads[net.theta])
    for a, b in zip(*outs):
        assert rel_err(a, b) < 1e-11
    assert fused.scheme_code(Compiled(), 0.1)[0] == fused.core.SCHEMES[scheme]


@requires_fused
@pytest.mark.parametrize("scheme", IMPLICIT)
def test_a_compiled_solve_that_does_not_converge_raises(scheme):
    Scheme = hinn.integrators.get_scheme(scheme).__class__
    net = random_net(1, 8, 2, True, "tanh", 1)
    net.backend = "fused"
    t, p, q = random_state(5, 1, 2)
    with pytest.raises(SolverError, match="did not converge in 2 iterations in the compiled core"):
        hinn.rollout(net, t, 10 * p, q, 20.0, 2, Scheme(max_iter=2))
    with pytest.raises(SolverError, match="did not converge"):
        hinn.step(net, t, 3 * p, q, 2.0, Scheme(max_iter=1))


def test_implicit_leapfrog_is_leapfrog_for_separable_h():
    sys_ = hinn.systems.get_system("pendulum")

    class Pendulum:
        dim = 1

        def grad(self, t, p, q):
            dp, dq = sys_.vector_field(t, p, q)
            return dq, -dp

    _, p, q = random_state(5, 1, 8)
    a = hinn.step(Pendulum(), 0.0, p, q, 0.1, "implicit_leapfrog")
    b = hinn.step(Pendulum(), 0.0, p, q, 0.1, "leapfrog")
    assert rel_err(a[0], b[0]) < 1e-13 and rel_err(a[1], b[1]) < 1e-13


@pytest.mark.parametrize("scheme", IMPLICIT)
def test_an_empty_batch_steps_to_an_empty_batch(scheme):
    for backend in BACKENDS:
        net = random_net(1, 3, 1, False, "tanh", 0)
        net.backend = backend
        p = torch.zeros(0, 1, dtype=torch.float64, requires_grad=True)
        P, Q = hinn.rollout(
            net, torch.zeros(0, dtype=torch.float64), p, torch.zeros(0, 1, dtype=torch.float64), 0.1, 2, scheme
        )
        g_p, g_th = torch.autograd.grad((P**2).sum() + Q.sum(), [p, net.theta])
        assert P.shape == (3, 0, 1) and g_p.shape == (0, 1) and float(g_th.abs().sum()) == 0.0
