"""Tao's extended-phase-space scheme: measured orders 2 and 4 for non-separable and time-dependent H,
symplecticity of the extended map, long-time energy, exact gradients, every backend, parameter checks."""

import numpy as np
import pytest
import torch
from conftest import (
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
from hinn.tao import Tao


@pytest.mark.parametrize("scheme, order", [("tao", 2), ("tao4", 4)])
def test_order_on_the_toy_hamiltonian(scheme, order):
    p0 = torch.tensor([[0.5], [-0.2]], dtype=torch.float64)
    q0 = torch.tensor([[0.3], [0.7]], dtype=torch.float64)
    P, Q = hinn.systems.get_system("toy-nonseparable").trajectories(np.array([0.0, 2.0]), p0.numpy(), q0.numpy())
    ref = (torch.from_numpy(P[:, -1]), torch.from_numpy(Q[:, -1]))
    orders = measured_orders(ToyHamiltonian(), p0, q0, 2.0, ref, scheme)
    assert all(order - 0.1 < o < order + 0.15 for o in orders), orders


@pytest.mark.parametrize("scheme, order", [("tao", 2), ("tao4", 4)])
def test_order_on_a_random_time_dependent_network(scheme, order):
    net = random_net(2, 6, 2, True, "tanh", 3)
    net.backend = "autograd"
    _, p0, q0 = random_state(3, 2, 4)
    with torch.no_grad():
        ref = hinn.rollout(net, 0.0, p0, q0, 0.1 / 128, 128 * 10, "rk4")
        orders = measured_orders(net, p0, q0, 1.0, (ref[0][-1], ref[1][-1]), scheme)
    assert all(order - 0.15 < o < order + 0.15 for o in orders), orders


@pytest.mark.parametrize("order", [2, 4])
@pytest.mark.parametrize("which", ["toy", "network"])
def test_the_extended_map_is_symplectic(order, which):
    if which == "toy":
        model, d = ToyHamiltonian(), 1
        grad = model.grad
    else:
        model, d = random_net(2, 5, 2, True, "softplus", 1), 2
        grad = model.grad
    z = torch.linspace(-0.7, 0.9, 4 * d, dtype=torch.float64)
    t = torch.tensor([0.4], dtype=torch.float64)
    sch = Tao(order=order)

    def f(zz):
        p, q, x, y = (zz[None, i * d : (i + 1) * d] for i in range(4))
        return torch.cat([s[0] for s in sch.extended_step(grad, t, p, q, x, y, 0.2)])

    M = torch.autograd.functional.jacobian(f, z)
    eye = torch.eye(d, dtype=torch.float64)
    J = torch.zeros(4 * d, 4 * d, dtype=torch.float64)  # (p, q, x, y): q's momentum is p, x's is y
    J[:d, d : 2 * d], J[d : 2 * d, :d] = -eye, eye
    J[3 * d :, 2 * d : 3 * d], J[2 * d : 3 * d, 3 * d :] = -eye, eye
    assert (M.T @ J @ M - J).abs().max() < 1e-10


def test_long_time_energy_is_bounded_on_the_toy_hamiltonian():
    """T = 2000, h = 0.05: the explicit leapfrog drifts (it is not symplectic for this H), Tao's scheme
    stays close to the initial energy."""
    p0 = torch.tensor([[0.5]], dtype=torch.float64)
    q0 = torch.tensor([[0.3]], dtype=torch.float64)
    drift = {}
    for scheme in ("tao", "leapfrog"):
        P, Q = hinn.rollout(ToyHamiltonian(), 0.0, p0, q0, 0.05, 40_000, scheme)
        H = 0.5 * (Q**2 + 1) * (P**2 + 1)
        drift[scheme] = float((H - H[0]).abs().max())
    assert drift["tao"] < 1e-3 and drift["tao"] < 1e-2 * drift["leapfrog"], drift


def test_gradients_against_finite_differences():
    net = random_net(2, 5, 2, True, "tanh", 2)
    net.backend = "autograd"
    t, p0, q0 = random_state(4, 2, 5)

    def loss_fn(theta, p, q):
        with torch.nn.utils.stateless._reparametrize_module(net, {"theta": theta}):
            P, Q = hinn.rollout(net, t, p, q, 0.1, 3, "tao4")
            return (P**2).sum() + torch.sin(Q).sum()

    args = [net.theta.detach().clone().requires_grad_(), p0.clone().requires_grad_(), q0.clone().requires_grad_()]
    assert_matches_finite_differences(loss_fn, args, torch.autograd.grad(loss_fn(*args), args))


@pytest.mark.parametrize("scheme", ["tao", "tao4"])
def test_every_backend_gives_the_same_rollout(scheme):
    assert_backends_agree(scheme)


def test_a_rollout_carries_the_copies_and_a_step_starts_from_fresh_ones():
    p0, q0 = torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([[0.3]], dtype=torch.float64)
    P, Q = hinn.rollout(ToyHamiltonian(), 0.0, p0, q0, 0.1, 2, "tao")
    p1, q1 = hinn.step(ToyHamiltonian(), 0.0, p0, q0, 0.1, "tao")
    assert rel_err(P[1], p1) < 1e-15 and rel_err(Q[1], q1) < 1e-15
    p2, q2 = hinn.step(ToyHamiltonian(), 0.1, p1, q1, 0.1, "tao")  # copies reset to (q1, p1): not the rollout's step
    assert float((p2 - P[2]).abs().max() + (q2 - Q[2]).abs().max()) > 1e-12


def test_parameters_are_checked_and_a_strong_coupling_warns():
    with pytest.raises(ValueError, match="even order"):
        Tao(order=3)
    with pytest.raises(ValueError, match="omega"):
        Tao(omega=-1.0)
    p0, q0 = torch.tensor([[0.5]], dtype=torch.float64), torch.tensor([[0.3]], dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match=r"h \* omega\^\(1/order\) = 3.16 > 1"):
        hinn.step(ToyHamiltonian(), 0.0, p0, q0, 0.1, Tao(omega=1000.0))


def test_cli_trains_with_tao(tmp_path):
    from hinn.cli import main

    out = str(tmp_path / "run")
    args = ["train", "toy-nonseparable", "--scheme", "tao", "--epochs", "2", "--sizes", "40", "10", "10",
            "--transitions", "10", "--width", "6", "--depth", "2", "--out", out, "--no-progress"]  # fmt: skip
    assert main(args) == 0


@requires_fused
@pytest.mark.parametrize("order", [2, 4, 6])
def test_the_compiled_core_runs_tao_with_its_coupling(order, cpu_isa):
    """Orders 2 and 4 run compiled on the fused backend (copies carried through the rollout, the given ω),
    order 6 in Python; a subclass, which always runs the Python sub-flows, gives the same numbers."""
    from hinn.backends import fused

    class PythonTao(Tao):
        pass

    net = random_net(2, 16, 2, True, "tanh", 5)  # width 16: the blocked kernels on the SIMD builds
    net.backend = "fused"
    t, p, q = random_state(37, 2, 6)  # 37: partial SIMD blocks
    outs = []
    for sch in (Tao(omega=5.0, order=order), PythonTao(omega=5.0, order=order)):
        pr = p.clone().requires_grad_()
        P, Q = hinn.rollout(net, t, pr, q, 0.1, 4, sch)
        p1, _ = hinn.step(net, t, pr, q, 0.1, sch)
        outs.append((P, Q, p1) + torch.autograd.grad((P**2).sum() + Q.sum() + p1.sum(), [pr, net.theta]))
    for a, b in zip(*outs):
        assert rel_err(a, b) < 1e-12
    assert (fused.scheme_code(Tao(omega=5.0, order=order), 0.1) is None) == (order == 6)
