"""Shared test settings: dtypes, devices, tolerances, helpers. The global default dtype is never changed."""

import copy

import pytest
import torch

import hinn
from hinn.backends import fused_available

DTYPES = (torch.float32, torch.float64)
DEVICES = ("cpu",) + (("cuda",) if torch.cuda.is_available() else ())
# relative tolerances against the float64 hessQuik oracle (DESIGN §7)
RTOL = {torch.float64: 1e-12, torch.float32: 1e-5}
BACKENDS = ("autograd", "fused") if fused_available() else ("autograd",)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Norm-wise relative error of a against the reference b."""
    a, b = a.detach().to(torch.float64).cpu(), b.detach().to(torch.float64).cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def random_net(dim, width, depth, time_dependent, activation, seed, dtype=torch.float64, device="cpu", scale=1.0):
    torch.manual_seed(seed)
    net = hinn.HamiltonianNet(
        dim,
        width=width,
        depth=depth,
        time_dependent=time_dependent,
        activation=activation,
        dtype=dtype,
        device=device,
        resnet_step=0.3 if depth else None,
    )
    with torch.no_grad():
        net.theta.mul_(scale)
    return net


def converted(net, dtype=None, device=None):
    """A copy of ``net`` with its parameters in another dtype and/or on another device."""
    return copy.deepcopy(net).to(dtype=dtype, device=device)


def random_state(n, dim, seed, dtype=torch.float64, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(n, generator=g, dtype=torch.float64) * 2
    p = torch.randn(n, dim, generator=g, dtype=torch.float64)
    q = torch.randn(n, dim, generator=g, dtype=torch.float64)
    return (t.to(dtype=dtype, device=device), p.to(dtype=dtype, device=device), q.to(dtype=dtype, device=device))


requires_fused = pytest.mark.skipif(not fused_available(), reason="hinn._core is not built")


def cpu_isas():
    """The CPU kernel builds this machine can run (the fused core picks the best by default)."""
    if not fused_available():
        return []
    from hinn.backends.fused import core

    return list(core.cpu_isas())  # the ones this processor can run; scalar = a CUDA thread's arithmetic


@pytest.fixture(params=cpu_isas() or [None])
def cpu_isa(request):
    """Run a test once per CPU kernel build this processor can run: baseline x86-64, generic AVX2,
    AVX-512 where usable, and scalar (the CUDA thread's arithmetic)."""
    if request.param is None:
        yield None
        return
    from hinn.backends.fused import core

    old = core.cpu_isa()
    core.set_cpu_isa(request.param)
    yield request.param
    core.set_cpu_isa(old)


class ToyHamiltonian:
    """H = ½ (q² + 1)(p² + 1): non-separable (Tao 2016's test case); a plain user-written model."""

    dim = 1

    def grad(self, t, p, q):
        return p * (q**2 + 1), q * (p**2 + 1)


def measured_orders(model, p0, q0, T, reference, scheme, hs=(0.1, 0.05, 0.025)):
    """log2 of the ratios of the errors at time T (against ``reference`` = (p, q)) for halved steps."""
    import numpy as np

    errs = []
    for h in hs:
        P, Q = hinn.rollout(model, 0.0, p0, q0, h, round(T / h), scheme)
        errs.append(float((P[-1].detach() - reference[0]).abs().max() + (Q[-1].detach() - reference[1]).abs().max()))
    return [np.log2(errs[i] / errs[i + 1]) for i in range(len(errs) - 1)]


def assert_backends_agree(scheme, tol=1e-10):
    """A short rollout through ``scheme`` and its gradients with respect to p0 and θ are the same on
    hessquik and every other backend."""
    outs = []
    for backend in ("hessquik",) + BACKENDS:
        net = random_net(1, 3, 4, True, "tanh", 6)
        net.backend = backend
        t, p, q = random_state(9, 1, 7)
        p = p.clone().requires_grad_()
        P, Q = hinn.rollout(net, t, p, q, 0.1, 3, scheme)
        g = torch.autograd.grad((P**2).sum() + Q.sum(), [p, net.theta])
        outs.append((P, Q) + g)
    for other in outs[1:]:
        for a, b in zip(other, outs[0]):
            assert rel_err(a, b) < tol


def assert_matches_finite_differences(loss_fn, args, grads, eps=1e-5, rtol=1e-7):
    """Central finite differences of ``loss_fn(*args)`` along a random direction of every argument
    against the directional derivatives from ``grads``."""
    g = torch.Generator().manual_seed(0)
    for i, x in enumerate(args):
        v = torch.randn(x.shape, generator=g, dtype=x.dtype)
        with torch.no_grad():
            plus = [a.detach() + (eps * v if j == i else 0) for j, a in enumerate(args)]
            minus = [a.detach() - (eps * v if j == i else 0) for j, a in enumerate(args)]
            fd = float((loss_fn(*plus) - loss_fn(*minus)) / (2 * eps))
        assert abs(fd - float((grads[i] * v).sum())) < rtol * max(1.0, abs(fd))


def assert_fit_paths_agree(net, objective, **fit_kw):
    """Same data, seed and optimizer: fit through the objective's compiled loss and through autograd (the
    custom ops) ends with the same parameters and final loss to rounding, minibatches and all."""
    from hinn.train import fit

    finals = []
    for compiled in (True, False):
        m = copy.deepcopy(net)
        res = fit(m, objective, progress=False, compiled_loss=compiled, **fit_kw)
        finals.append((m.theta.detach().clone(), res.history[-1]["train_loss"]))
    assert rel_err(finals[0][0], finals[1][0]) < 1e-12
    assert abs(finals[0][1] - finals[1][1]) <= 1e-12 * abs(finals[1][1])
