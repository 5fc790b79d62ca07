"""Every backend against the hessQuik oracle: values and gradients, for H, ∇H, steps and rollouts."""

import pytest
import torch
from conftest import BACKENDS, RTOL, converted, random_net, random_state, rel_err

import hinn
from hinn.backends import fused

# (dim, width, depth, time_dependent, activation): widths 1..100, depths 0..20, d 1..4; depth 0 also wide
# (its one-sweep passes); widths from 64 on form their weight cotangents as matrix products over a block
# of samples, tiled by registers, with rows and registers left over at 90 and 100
GRID = [
    (1, 3, 20, True, "tanh"),
    (1, 3, 20, False, "softplus"),
    (2, 1, 0, True, "tanh"),
    (2, 40, 0, True, "tanh"),
    (3, 7, 2, False, "tanh"),
    (4, 16, 5, True, "softplus"),
    (2, 64, 3, True, "tanh"),
    (1, 2, 1, True, "softplus"),
    (1, 24, 0, False, "softplus"),
    (2, 90, 2, True, "tanh"),
    (1, 100, 1, False, "softplus"),
]


def _oracle(cfg, seed):
    return random_net(*cfg, seed)


def _grads_of_value_and_grad(net, t, p, q):
    p, q = p.clone().requires_grad_(), q.clone().requires_grad_()
    H, gp, gq = net.value_and_grad(t, p, q)
    w = torch.linspace(0.5, 1.5, gp.numel(), dtype=gp.dtype).view_as(gp)
    loss = (H * H).sum() + (w * gp).sum() + (gq**2).sum()
    return (H, gp, gq) + torch.autograd.grad(loss, [p, q, net.theta])


def _grads_of_rollout(net, t, p, q, scheme, steps):
    p, q = p.clone().requires_grad_(), q.clone().requires_grad_()
    P, Q = hinn.rollout(net, t, p, q, 0.07, steps, scheme)
    w = torch.arange(1, steps + 2, dtype=P.dtype)[:, None, None]
    loss = (w * P**2).sum() + (w * torch.sin(Q)).sum()
    return (P, Q) + torch.autograd.grad(loss, [p, q, net.theta])


def _grads_of_step(net, t, p, q, scheme):
    p, q = p.clone().requires_grad_(), q.clone().requires_grad_()
    p1, q1 = hinn.step(net, t, p, q, 0.1, scheme)
    loss = ((p1 - 0.3) ** 2).sum() + (q1**3).sum()
    return (p1, q1) + torch.autograd.grad(loss, [p, q, net.theta])


def _compare(got, ref, tol, what):
    for i, (a, b) in enumerate(zip(got, ref)):
        err = rel_err(a, b)
        assert err <= tol, f"{what}: output {i} relative error {err:.2e} > {tol:.0e}"


# autograd is checked in float64; the float32 tolerance is for the fused core
CASES = [(b, torch.float64) for b in BACKENDS] + [("fused", torch.float32)] * ("fused" in BACKENDS)


@pytest.mark.parametrize("backend,dtype", CASES)
@pytest.mark.parametrize("cfg", GRID, ids=[str(c) for c in GRID])
def test_value_and_grad(cfg, dtype, backend, cpu_isa):
    ref_net = _oracle(cfg, 0)
    t, p, q = random_state(33, cfg[0], 1)
    with hinn.set_backend("hessquik"):
        ref = _grads_of_value_and_grad(ref_net, t, p, q)
    net = converted(ref_net, dtype)
    with hinn.set_backend(backend):
        got = _grads_of_value_and_grad(net, t.to(dtype), p.to(dtype), q.to(dtype))
    _compare(got, ref, RTOL[dtype], f"{backend} {cfg}")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("scheme", list(hinn.integrators.COMPILED_SCHEMES))
@pytest.mark.parametrize("cfg", GRID[:6], ids=[str(c) for c in GRID[:6]])
def test_step_and_rollout(cfg, scheme, backend, cpu_isa):
    ref_net = _oracle(cfg, 2)
    t, p, q = random_state(21, cfg[0], 3)
    with hinn.set_backend("hessquik"):
        ref_step = _grads_of_step(ref_net, t, p, q, scheme)
        ref_roll = _grads_of_rollout(ref_net, t, p, q, scheme, 4)
    with hinn.set_backend(backend):
        _compare(_grads_of_step(ref_net, t, p, q, scheme), ref_step, 1e-12, f"{backend} step {cfg}")
        _compare(_grads_of_rollout(ref_net, t, p, q, scheme, 4), ref_roll, 1e-12, f"{backend} rollout {cfg}")


@pytest.mark.skipif("fused" not in BACKENDS, reason="hinn._core is not built")
@pytest.mark.parametrize("scheme", list(hinn.integrators.COMPILED_SCHEMES))
def test_fused_float32_rollout(scheme, cpu_isa):
    cfg = (2, 8, 6, True, "tanh")
    ref_net = _oracle(cfg, 4)
    t, p, q = random_state(50, 2, 5)
    with hinn.set_backend("hessquik"):
        ref = _grads_of_rollout(ref_net, t, p, q, scheme, 5)
    net = converted(ref_net, torch.float32)
    with hinn.set_backend("fused"):
        got = _grads_of_rollout(net, t.float(), p.float(), q.float(), scheme, 5)
    # an implicit step is exact only to its solve's tolerance, 1e-5 by default in float32 (implicit.py)
    tol = 1e-4 if scheme in fused.core.SOLVING_SCHEMES else 1e-5
    _compare(got, ref, tol, f"fused float32 rollout {scheme}")
