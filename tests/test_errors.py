"""Bad input gets a clear error on every backend, never a crash or a silently wrong number."""

import pytest
import torch
from conftest import BACKENDS

import hinn

ALL = ("hessquik",) + BACKENDS


@pytest.fixture
def net():
    return hinn.HamiltonianNet(2, width=3, depth=2, dtype=torch.float64)


def state(n=5, d=2, dtype=torch.float64):
    return torch.randn(n, d, dtype=dtype), torch.randn(n, d, dtype=dtype)


@pytest.mark.parametrize("backend", ALL)
def test_mismatched_shapes(net, backend):
    net.backend = backend
    p, q = state()
    with pytest.raises(ValueError, match=r"p has shape \(5, 2\) but q has \(4, 2\)"):
        net(0.0, p, q[:4])
    with pytest.raises(ValueError, match="built for dim = 2"):
        net.grad(0.0, p[:, :1], q[:, :1])
    with pytest.raises(ValueError, match=r"shape \(N, d\)"):
        net(0.0, p[0], q[0])
    with pytest.raises(ValueError, match=r"t must be a scalar or have shape \(5,\)"):
        net(torch.zeros(3, dtype=torch.float64), p, q)


@pytest.mark.parametrize("backend", ALL)
def test_mixed_dtypes(net, backend):
    net.backend = backend
    p, q = state()
    with pytest.raises(TypeError, match="p has dtype torch.float64 but q has torch.float32"):
        net(0.0, p, q.float())
    with pytest.raises(TypeError, match="model's parameters have torch.float64"):
        net(0.0, p.float(), q.float())
    with pytest.raises(TypeError, match="expected torch.float32 or torch.float64"):
        net(0.0, p.long(), q.long())


@pytest.mark.parametrize("backend", ALL)
def test_mixed_devices(net, backend):
    net.backend = backend
    p, q = state()
    # the meta device stands in for a second device on machines without a GPU
    with pytest.raises(ValueError, match="p is on cpu but q is on meta"):
        net(0.0, p, q.to("meta"))
    with pytest.raises(ValueError, match="t is on meta but p is on cpu"):
        net(torch.zeros(5, dtype=torch.float64, device="meta"), p, q)


@pytest.mark.parametrize("backend", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inputs(net, backend, bad):
    net.backend = backend
    p, q = state()
    q[2, 1] = bad
    with pytest.raises(ValueError, match="q contains NaN or infinite values"):
        net.grad(0.0, p, q)
    with pytest.raises(ValueError, match="q contains NaN or infinite values"):
        hinn.rollout(net, 0.0, p, q, 0.1, 3)
    with pytest.raises(ValueError, match="t contains NaN"):
        net(float("nan"), p, q.nan_to_num())
    with pytest.raises(ValueError, match="h must be finite"):
        hinn.step(net, 0.0, p, q.nan_to_num(), float("inf"))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_non_finite_anywhere(dtype, bad, layout):
    # every position of every input, through the compiled check (contiguous) and torch's (strided views)
    net = hinn.HamiltonianNet(2, width=4, depth=1, dtype=dtype)
    base = torch.randn(7, 4 if layout == "strided" else 2, dtype=dtype)
    view = (lambda x: x[:, ::2]) if layout == "strided" else (lambda x: x)
    for name in ("p", "q"):
        for i in range(7):
            for j in range(2):
                p, q = base.clone(), base.clone()
                view(p if name == "p" else q)[i, j] = bad
                with pytest.raises(ValueError, match=f"{name} contains NaN or infinite values"):
                    net.grad(0.0, view(p), view(q))
    t = torch.zeros(7, dtype=dtype)
    t[6] = bad
    with pytest.raises(ValueError, match="t contains NaN or infinite values"):
        hinn.step(net, t, view(base), view(base), 0.1)
    net.grad(0.0, view(base), view(base))  # and finite inputs pass


def test_huge_finite_inputs_are_accepted():
    # their sum overflows to infinity, but nothing is NaN or infinite
    net = hinn.HamiltonianNet(1, width=2, depth=1, dtype=torch.float32)
    p = torch.full((4, 1), 3e38)
    gp, gq = net.grad(0.0, p, p)
    assert gp.shape == (4, 1)


def test_unknown_names(net):
    p, q = state()
    with pytest.raises(
        ValueError, match="unknown scheme 'verlet'; valid schemes are euler, symplectic_euler, leapfrog, rk4"
    ):
        hinn.step(net, 0.0, p, q, 0.1, scheme="verlet")
    with pytest.raises(ValueError, match="unknown backend 'jax'; valid backends are fused, autograd, hessquik"):
        hinn.set_backend("jax")
    with pytest.raises(ValueError, match="unknown backend"):
        hinn.HamiltonianNet(1, backend="jax")
    with pytest.raises(ValueError, match="unknown activation 'relu'; valid activations are tanh, softplus"):
        hinn.HamiltonianNet(1, activation="relu")
    with pytest.raises(ValueError, match="width must be an integer >= 1"):
        hinn.HamiltonianNet(1, width=0)
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        hinn.rollout(net, 0.0, p, q, 0.1, -1)


def test_environment_variable_backend(monkeypatch, net):
    monkeypatch.setenv("HINN_BACKEND", "hessquik")
    assert net.backend_name() == "hessquik"
    monkeypatch.setenv("HINN_BACKEND", "nope")
    with pytest.raises(ValueError, match="HINN_BACKEND: unknown backend 'nope'"):
        net.backend_name()


def test_backend_precedence(monkeypatch):
    monkeypatch.setenv("HINN_BACKEND", "hessquik")
    a = hinn.HamiltonianNet(1, backend="autograd")
    b = hinn.HamiltonianNet(1)
    with hinn.set_backend("autograd"):
        assert b.backend_name() == "autograd"
        with hinn.set_backend("hessquik"):
            assert a.backend_name() == "autograd"  # the network's own choice wins
            assert b.backend_name() == "hessquik"
        assert b.backend_name() == "autograd"
    assert b.backend_name() == "hessquik"
