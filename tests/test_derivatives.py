"""Derivative coverage the oracle grid does not reach: the gradient with respect to t, second derivatives
where a backend claims them, empty batches, zero steps and non-contiguous inputs."""

import pytest
import torch
from conftest import BACKENDS, random_net, random_state, rel_err

import hinn

ALL = ("hessquik",) + BACKENDS


@pytest.mark.parametrize("backend", BACKENDS)
def test_time_gradient_against_the_oracle(backend):
    net = random_net(2, 5, 3, True, "softplus", 0)
    t, p, q = random_state(17, 2, 1)

    def grads(name):
        tt = t.clone().requires_grad_()
        with hinn.set_backend(name):
            H, gp, gq = net.value_and_grad(tt, p, q)
        loss = (H**2).sum() + (torch.cos(gp) * gq).sum()
        return torch.autograd.grad(loss, [tt])[0]

    ref = grads("hessquik")
    assert ref.abs().max() > 1e-3  # t really enters
    assert rel_err(grads(backend), ref) < 1e-12


class _ValueAndGrad(torch.nn.Module):
    """(H, ∂pH, ∂qH) as a module, so that torch.func.functional_call can substitute θ."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, t, p, q):
        return self.net.value_and_grad(t, p, q)


@pytest.mark.parametrize("backend", ["autograd", "hessquik"])
def test_second_derivatives_where_claimed(backend):
    # the Python backends claim derivatives of any order: gradcheck and gradgradcheck of (H, ∇H) in
    # (t, p, q, θ)
    net = random_net(1, 3, 2, True, "tanh", 0)
    net.backend = backend
    module = _ValueAndGrad(net)
    t, p, q = random_state(3, 1, 1)
    args = tuple(x.clone().requires_grad_() for x in (t, p, q, net.theta.detach()))

    def fn(tt, pp, qq, theta):
        return torch.func.functional_call(module, {"net.theta": theta}, (tt, pp, qq))

    assert torch.autograd.gradcheck(fn, args)
    assert torch.autograd.gradgradcheck(fn, args)


@pytest.mark.parametrize("backend", ALL)
def test_empty_batch_and_zero_steps(backend):
    net = random_net(2, 4, 2, True, "tanh", 0)
    net.backend = backend
    t, p, q = random_state(0, 2, 1)
    H, gp, gq = net.value_and_grad(t, p, q)
    assert H.shape == (0,) and gp.shape == (0, 2) and gq.shape == (0, 2)
    P, Q = hinn.rollout(net, t, p.requires_grad_(), q, 0.1, 3, "leapfrog")
    assert P.shape == (4, 0, 2)
    (g,) = torch.autograd.grad(P.sum() + Q.sum(), [net.theta])
    assert torch.equal(g, torch.zeros_like(net.theta))  # no samples, no gradient (and no garbage)
    t, p, q = random_state(5, 2, 1)
    pr = p.clone().requires_grad_()
    P, Q = hinn.rollout(net, t, pr, q, 0.1, 0, "rk4")
    assert P.shape == (1, 5, 2) and torch.equal(P[0], p) and torch.equal(Q[0], q)
    (g,) = torch.autograd.grad((P**2).sum(), [pr])
    assert torch.equal(g, 2 * p)


@pytest.mark.parametrize("backend", ALL)
def test_non_contiguous_inputs(backend):
    net = random_net(2, 4, 2, True, "tanh", 0)
    net.backend = backend
    t, p, q = random_state(9, 2, 1)
    big = torch.randn(9, 4, dtype=torch.float64)
    big[:, ::2] = p
    pv = big[:, ::2]  # a strided view with the values of p
    tv = torch.stack([t, t], 1)[:, 0]
    assert not pv.is_contiguous() and not tv.is_contiguous()
    ref = hinn.rollout(net, t, p, q.T.contiguous().T, 0.1, 2, "symplectic_euler")
    got = hinn.rollout(net, tv, pv, q.T.contiguous().T, 0.1, 2, "symplectic_euler")
    assert torch.equal(ref[0], got[0]) and torch.equal(ref[1], got[1])


@pytest.mark.skipif("fused" not in BACKENDS, reason="hinn._core is not built")
@pytest.mark.parametrize("what", ["step", "grad", "hamiltonian"])
def test_fused_refuses_second_derivatives_loudly(what):
    # the fused backward passes are first order: differentiating them again must raise, never return 0
    net = random_net(1, 3, 2, True, "tanh", 0)
    net.backend = "fused"
    t, p, q = random_state(5, 1, 1)
    p.requires_grad_()
    if what == "step":
        out = hinn.step(net, t, p, q, 0.1, "leapfrog")[1].sum()
    elif what == "grad":
        out = net.grad(t, p, q)[0].sum()
    else:
        out = net(t, p, q).sum()
    with pytest.raises(RuntimeError, match="first derivatives only"):
        torch.autograd.grad(out, p, create_graph=True)
