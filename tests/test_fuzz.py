"""Property-based fuzzing of the fused op layer (hypothesis): random structures, batch sizes (0 and 1
included), dtypes, strides and schemes. The fused backend equals the autograd one, values and gradients;
every inconsistent combination of arguments raises a clear error instead of reading or writing out of
bounds."""

import pytest
import torch
from conftest import rel_err, requires_fused

import hinn

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

pytestmark = requires_fused

structures = st.tuples(
    st.integers(1, 3),  # d
    st.integers(1, 6),  # width
    st.integers(0, 3),  # depth
    st.booleans(),  # time_dependent
    st.sampled_from(["tanh", "softplus"]),
)


def _state(N, d, dtype, seed, strided):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)  # noqa: E731
    if strided:  # views with gaps between elements: the ops must make them contiguous themselves
        return mk(N, 2)[:, 0], mk(N, 2 * d)[:, ::2], mk(d, N).T
    return mk(N), mk(N, d), mk(N, d)


@settings(max_examples=60, deadline=None)
@given(
    structures,
    st.integers(0, 9),
    st.sampled_from([torch.float32, torch.float64]),
    st.sampled_from(list(hinn.integrators.COMPILED_SCHEMES)),
    st.integers(0, 3),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_fused_equals_autograd(structure, N, dtype, scheme, steps, strided, seed):
    d, w, L, td, act = structure
    torch.manual_seed(seed)
    net = hinn.HamiltonianNet(d, width=w, depth=L, time_dependent=td, activation=act, dtype=dtype)
    t, p, q = _state(N, d, dtype, seed, strided)
    tol = 1e-11 if dtype == torch.float64 else 2e-4

    def run(backend):
        net.backend = backend
        pr = p.detach().clone().requires_grad_()
        H, gp, gq = net.value_and_grad(t, pr, q)
        P, Q = hinn.rollout(net, t, pr, q, 0.05, steps, scheme)
        loss = (H**2).sum() + (gp * gq).sum() + (P**2).sum() + Q.sum()
        return (H, gp, gq, P, Q) + torch.autograd.grad(loss, [pr, net.theta])

    for a, b in zip(run("fused"), run("autograd")):
        assert a.shape == b.shape
        if b.numel():
            assert rel_err(a, b) <= tol or (a - b).abs().max() <= tol


@settings(max_examples=60, deadline=None)
@given(
    structures,
    st.integers(1, 6),
    st.sampled_from(["N", "d", "theta", "t", "dtype", "scheme", "steps"]),
    st.integers(1, 3),
)
def test_inconsistent_arguments_raise(structure, N, what, off):
    from hinn.backends import fused

    d, w, L, td, act = structure
    net = hinn.HamiltonianNet(d, width=w, depth=L, time_dependent=td, activation=act, dtype=torch.float64)
    th, spec, hr = net.theta.detach(), fused.spec_of(net), net.resnet_step
    t, p, q = _state(N, d, torch.float64, 0, False)
    args = dict(theta=th, t=t, p=p, q=q)
    scheme, steps = 1, 2
    if what == "N":
        args["q"] = _state(N + off, d, torch.float64, 1, False)[2]
    elif what == "d":
        args["q"] = _state(N, d + off, torch.float64, 1, False)[2]
    elif what == "theta":
        args["theta"] = torch.zeros(th.numel() + off, dtype=torch.float64)
    elif what == "t":
        args["t"] = torch.zeros(N + off, dtype=torch.float64)
    elif what == "dtype":
        args["q"] = q.float()
    elif what == "scheme":
        scheme = len(hinn.integrators.COMPILED_SCHEMES) + off - 1
    else:
        steps = -off
    with pytest.raises((ValueError, TypeError)):
        torch.ops.hinn.rollout(args["theta"], args["t"], args["p"], args["q"], spec, hr, 0.1, scheme, [1.0], steps)
    if what not in ("scheme", "steps"):
        with pytest.raises((ValueError, TypeError)):
            torch.ops.hinn.grad(args["theta"], args["t"], args["p"], args["q"], spec, hr)
