import numpy as np
import pytest
import torch

from hinn.systems import SYSTEMS, get_system

CONSERVATIVE = [n for n, c in SYSTEMS.items() if not c.time_dependent]


@pytest.mark.parametrize("name", CONSERVATIVE)
def test_ground_truth_conserves_energy(name):
    s = get_system(name)
    p0, q0 = s.sample_initial(4, np.random.default_rng(1))
    t = np.linspace(0, 10, 101)
    P, Q = s.trajectories(t, p0, q0)
    E = s.energy(t, P, Q)
    assert np.abs((E - E[:, :1]) / E[:, :1]).max() < 1e-9


@pytest.mark.parametrize("name", list(SYSTEMS))
def test_vector_field_is_hamiltonian(name):
    s = get_system(name)
    p0, q0 = s.sample_initial(5, np.random.default_rng(2))
    t = torch.rand(5, dtype=torch.float64)
    p, q = torch.as_tensor(p0), torch.as_tensor(q0)
    dp, dq = s.vector_field(t, p, q)
    ref_dp, ref_dq = _autograd_field(s, t, p, q)
    torch.testing.assert_close(dp, ref_dp, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dq, ref_dq, rtol=1e-12, atol=1e-12)


def _autograd_field(s, t, p, q):
    p, q = p.clone().requires_grad_(), q.clone().requires_grad_()
    gp, gq = torch.autograd.grad(s.hamiltonian(t, p, q).sum(), [p, q])
    return -gq, gp


@pytest.mark.parametrize("name", ["spring", "driven"])
def test_exact_solution_matches_numerical(name):
    s = get_system(name)
    p0, q0 = s.sample_initial(3, np.random.default_rng(3))
    t = np.linspace(0.5, 8, 40)
    Pe, Qe = s.exact(t, p0, q0)
    # integrate the same problem numerically by hiding the exact solution
    Pn, Qn = type(s).__mro__[1].trajectories(_NoExact(s), t, p0, q0)
    assert np.abs(Pe - Pn).max() < 1e-9 and np.abs(Qe - Qn).max() < 1e-9


class _NoExact:
    def __init__(self, s):
        self.s = s

    def __getattr__(self, k):
        return getattr(self.s, k)

    def exact(self, *a):
        return None


def test_driven_energy_balance():
    # dH/dt along a solution equals ∂H/∂t: check with the exact solution and finite differences
    s = get_system("driven")
    p0, q0 = s.sample_initial(2, np.random.default_rng(4))
    t = np.linspace(0, 6, 6001)
    P, Q = s.exact(t, p0, q0)
    E = s.energy(t, P, Q)
    dEdt = np.gradient(E, t, axis=1)
    partial_t = s.force * Q[:, :, 0] * s.drive * np.sin(s.drive * t)
    assert np.abs(dEdt - partial_t)[:, 5:-5].max() < 1e-5


def test_unknown_system():
    with pytest.raises(ValueError, match="unknown system 'moon'; valid systems are spring, pendulum"):
        get_system("moon")
