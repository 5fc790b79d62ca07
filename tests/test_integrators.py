"""Integrators against mathematics: convergence order and energy behaviour on the harmonic oscillator."""

import math

import numpy as np
import pytest
import torch

import hinn
from hinn.integrators import SCHEMES, get_scheme


def oscillator_grad(t, p, q):  # H = (p² + q²) / 2
    return p, q


def exact(t, p0, q0):  # q̇ = p, ṗ = −q
    c, s = math.cos(t), math.sin(t)
    return p0 * c - q0 * s, q0 * c + p0 * s


def integrate(scheme, h, T, p, q):
    sch = get_scheme(scheme)
    t = torch.zeros(p.shape[0], dtype=p.dtype)
    for k in range(round(T / h)):
        p, q = sch.step(oscillator_grad, t + k * h, p, q, h)
    return p, q


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_convergence_order(scheme):
    p0 = torch.tensor([[0.3]], dtype=torch.float64)
    q0 = torch.tensor([[1.0]], dtype=torch.float64)
    T = 1.0
    hs = [T / n for n in (20, 40, 80, 160)]
    errs = []
    for h in hs:
        p, q = integrate(scheme, h, T, p0, q0)
        pe, qe = exact(T, p0, q0)
        errs.append(float(torch.sqrt((p - pe) ** 2 + (q - qe) ** 2)))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    order = SCHEMES[scheme].order
    assert abs(slope - order) < 0.15, f"{scheme}: measured order {slope:.3f}, expected {order}"


def _energy_errors(scheme, steps, h=0.1):
    sch = get_scheme(scheme)
    p = torch.tensor([[0.0]], dtype=torch.float64)
    q = torch.tensor([[1.0]], dtype=torch.float64)
    t = torch.zeros(1, dtype=torch.float64)
    E0 = 0.5
    errs = []
    for _ in range(steps):
        p, q = sch.step(oscillator_grad, t, p, q, h)
        errs.append(abs(float(0.5 * (p**2 + q**2)) - E0))
    return np.array(errs)


@pytest.mark.parametrize("scheme", ["symplectic_euler", "leapfrog"])
def test_symplectic_energy_stays_bounded(scheme):
    errs = _energy_errors(scheme, 10_000)
    # bounded: the error over the last thousand steps is no larger than over the first thousand
    assert errs[-1000:].max() <= 1.05 * errs[:1000].max()
    assert errs.max() < 0.06


def test_euler_energy_grows():
    errs = _energy_errors("euler", 10_000)
    # (1 + h²)^(n/2) growth: E_n = E_0 (1 + h²)^n
    assert errs[-1] > 100 * errs[99]
    assert errs[-1] == pytest.approx(0.5 * (1.01**10_000 - 1), rel=1e-6)


def test_rk4_one_step_matches_taylor():
    # one rk4 step on the oscillator is the degree-4 Taylor polynomial of the rotation
    h = 0.2
    p, q = integrate(
        "rk4", h, h, torch.tensor([[0.0]], dtype=torch.float64), torch.tensor([[1.0]], dtype=torch.float64)
    )
    c = 1 - h**2 / 2 + h**4 / 24
    s = h - h**3 / 6
    assert float(q) == pytest.approx(c, abs=1e-15)
    assert float(p) == pytest.approx(-s, abs=1e-15)


@pytest.mark.parametrize("backend", ["autograd", "hessquik"] + (["fused"] if hinn.backends.fused_available() else []))
@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_network_schemes_keep_their_order(backend, scheme):
    # through a (non-separable) network Hamiltonian every backend shows the scheme's general order,
    # measured against a fine rk4 reference
    torch.manual_seed(0)
    net = hinn.HamiltonianNet(1, width=4, depth=2, time_dependent=True, dtype=torch.float64, backend=backend)
    p0 = torch.tensor([[0.4]], dtype=torch.float64)
    q0 = torch.tensor([[-0.2]], dtype=torch.float64)
    T = 0.5
    with torch.no_grad():
        with hinn.set_backend("autograd"):
            ref = hinn.rollout(
                hinn.HamiltonianNet.from_hessquik(net.to_hessquik(), 1), 0.0, p0, q0, T / 400, 400, "rk4"
            )
        hs, errs = [T / n for n in (10, 20, 40)], []
        for h in hs:
            P, Q = hinn.rollout(net, 0.0, p0, q0, h, round(T / h), scheme)
            errs.append(float(torch.hypot(P[-1] - ref[0][-1], Q[-1] - ref[1][-1]).squeeze()))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert abs(slope - SCHEMES[scheme].general_order) < 0.3, f"{backend}/{scheme}: order {slope:.2f}"
