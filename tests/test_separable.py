"""Separable networks, H = T(p) + V(t, q): the form holds on every backend and through training, and it
makes the explicit leapfrog an exactly symplectic map of the learned H (a general H_θ does not)."""

import copy

import pytest
import torch
from conftest import BACKENDS, random_state, rel_err, requires_fused

import hinn
from hinn.objectives import TrajectoryObjective
from hinn.train import TrainConfig, fit, make_net


def _net(seed=0, backend=None, time_dependent=True, width=8, depth=2, separable=True):
    torch.manual_seed(seed)
    return hinn.HamiltonianNet(3, width=width, depth=depth, time_dependent=time_dependent, dtype=torch.float64,
                               separable=separable, backend=backend)  # fmt: skip


def _mixed(net, t, p, q, p2, q2):
    """H(p, q) − H(p, q') − H(p', q) + H(p', q'): zero for every pair of states iff H = T(p) + V(t, q)."""
    return (net(t, p, q) - net(t, p, q2) - net(t, p2, q) + net(t, p2, q2)).abs().max().item()


@pytest.mark.parametrize("backend", BACKENDS + ("hessquik",))
def test_the_hamiltonian_splits(backend):
    t, p, q = random_state(20, 3, 0)
    _, p2, q2 = random_state(20, 3, 1)
    assert _mixed(_net(backend=backend), t, p, q, p2, q2) < 1e-14
    assert _mixed(_net(backend=backend, separable=False), t, p, q, p2, q2) > 1e-3  # the test can tell


@pytest.mark.parametrize("backend", BACKENDS)
def test_held_weights_get_no_gradient_and_stay_zero(backend):
    net = _net(backend=backend)
    held = net._free == 0
    assert held.any() and net.theta.detach()[held].eq(0).all()
    t, p, q = random_state(30, 3, 2)
    for model in (net, copy.deepcopy(net)):  # a copy keeps the mask
        gp, gq = model.grad(t, p, q)
        (gp**2).sum().add((gq**2).sum()).backward()
        assert model.theta.grad[held].eq(0).all() and model.theta.grad[~held].ne(0).any()
    ds = hinn.data.generate("spring", sizes=(40, 1, 1), steps=6, seed=0)
    obj = TrajectoryObjective(*ds.train.windows(3), ds.train.h, "leapfrog")
    for compiled in (True, False):
        m = hinn.HamiltonianNet(1, width=6, depth=2, time_dependent=False, dtype=torch.float64, separable=True,
                                backend=backend)  # fmt: skip
        fit(m, obj, epochs=3, batch_size=16, lr=1e-2, progress=False, compiled_loss=compiled)
        assert m.theta.detach()[m._free == 0].eq(0).all()


@requires_fused
def test_compiled_training_gradient_equals_autograd():
    ds = hinn.data.generate("spring", sizes=(30, 1, 1), steps=5, seed=0)
    net = hinn.HamiltonianNet(1, width=6, depth=2, time_dependent=False, dtype=torch.float64, separable=True)
    obj = TrajectoryObjective(*ds.train.windows(2), ds.train.h, "leapfrog")
    _, grads = obj.loss_and_grad(net)
    (ref,) = torch.autograd.grad(obj.loss(net), [net.theta])
    assert rel_err(grads[net.theta], ref) < 1e-12 and grads[net.theta][net._free == 0].eq(0).all()


def _step_jacobian(net, scheme, p, q):
    f = lambda z: torch.cat(hinn.step(net, 0.3, z[None, :3], z[None, 3:], 0.2, scheme), 1)[0]  # noqa: E731
    return torch.autograd.functional.jacobian(f, torch.cat([p, q]))


@pytest.mark.parametrize("scheme", ["symplectic_euler", "leapfrog"])
def test_explicit_schemes_are_symplectic_for_a_separable_net(scheme):
    # Mᵀ J M = J for the step's Jacobian M: exactly for a separable H, not for a general one
    _, p, q = random_state(1, 3, 4)
    J = torch.zeros(6, 6, dtype=torch.float64)
    J[:3, 3:], J[3:, :3] = torch.eye(3), -torch.eye(3)
    for separable, bound in ((True, 1e-13), (False, None)):
        net = _net(seed=3, separable=separable, width=10)
        with torch.no_grad():
            net.theta.mul_(3.0)  # a strongly nonlinear H
        M = _step_jacobian(net, scheme, p[0], q[0])
        defect = (M.T @ J @ M - J).abs().max().item()
        assert defect < bound if separable else defect > 1e-4, (separable, defect)


def test_structure_is_saved_and_checked():
    net = _net()
    assert net.separable and "separable=True" in repr(net)
    again = _net(seed=5)
    again.load_state_dict(net.state_dict())
    assert torch.equal(again.theta, net.theta)
    with pytest.raises(ValueError, match="structure"):
        _net(separable=False).load_state_dict(net.state_dict())
    old = _net(separable=False).state_dict()  # saved before the option existed: no "separable" key
    old["_extra_state"]["structure"].pop("separable")
    _net(separable=False).load_state_dict(old)
    with pytest.raises(ValueError, match="width >= 2"):
        hinn.HamiltonianNet(1, width=1, separable=True)
    assert make_net(TrainConfig(separable=True, width=4, depth=1), 2).separable
    from hinn.cli import build_parser

    assert build_parser().parse_args(["train", "spring", "--separable"]).separable
