"""The HNN comparison: the protocol's data, the energy metric on a case with a known answer, the models,
and a small end-to-end run."""

import json
import math
import os

import numpy as np
import pytest
import torch

import hinn
from hinn.cli import main
from hinn.comparison import PROTOCOLS, energy_mse, make_data, protocol_system
from hinn.hnn import MLPBaseline, MLPHamiltonian
from hinn.objectives import derivative_loss


def test_spring_protocol_data():
    proto = PROTOCOLS["spring"]
    data = make_data(proto)
    assert data.P.shape == (50, 30, 1) and data.t[0] == 0 and data.t[-1] == 3.0 and len(data.t) == 30
    # H = q² + p², initial radius in [0.1, 1], conserved by the clean truth
    E = data.P_clean**2 + data.Q_clean**2
    r0 = np.sqrt(E[:, 0, 0])
    assert r0.min() >= 0.1 and r0.max() <= 1.0
    assert np.abs(E - E[:, :1]).max() < 1e-9
    # noise of std 0.1 on the observations only; derivatives are the truth's, (ṗ, q̇) = (−2q, 2p)
    assert 0.08 < np.std(data.P - data.P_clean) < 0.12
    assert np.allclose(data.dQ, 2 * data.P_clean) and np.allclose(data.dP, -2 * data.Q_clean)
    # the first half of the samples train, the rest test
    tr, te = data.split("train"), data.split("test")
    assert (tr.start, tr.stop, te.start, te.stop) == (0, 25, 25, 50)


def test_two_body_protocol_split_and_sampler():
    proto = PROTOCOLS["two-body"]
    data = make_data(proto, n_traj=20)
    assert data.P.shape == (20, 50, 4) and data.t[-1] == 20.0
    te, tr = data.split("test"), data.split("train")
    assert (te.start, te.stop, tr.start, tr.stop) == (0, 4, 4, 20)  # the first 20 % test
    r1 = np.linalg.norm(data.Q[:, 0, :2], axis=1)
    assert r1.min() >= 0.5 and r1.max() <= 1.5
    assert np.allclose(data.Q[:, 0, :2], -data.Q[:, 0, 2:])  # body 2 opposite body 1


def test_energy_metric_known_answer():
    # a model spring H' = p² + a q² integrated against the truth H = p² + q²: both closed form
    system = protocol_system("spring")
    a = 1.44  # ω' = 2√a

    def field(t, p, q):
        return -2 * a * q, 2 * p

    p0, q0 = np.array([[0.3], [-0.5]]), np.array([[0.4], [0.1]])
    t = np.linspace(0, 5, 200)
    mean, err, _ = energy_mse(system, field, t, p0, q0, rtol=1e-11)
    w = 2 * math.sqrt(a)
    qm = q0 * np.cos(w * t) + p0 * 2 / w * np.sin(w * t)
    pm = p0 * np.cos(w * t) - q0 * w / 2 * np.sin(w * t)
    E_true = p0**2 + q0**2
    per = (((pm**2 + qm**2) - E_true) ** 2).mean(1)
    assert mean == pytest.approx(per.mean(), rel=1e-6)
    assert err == pytest.approx(per.std(ddof=1) / math.sqrt(2), rel=1e-5)
    assert mean > 1e-3  # a real, non-trivial error


@pytest.mark.parametrize("cls", [MLPHamiltonian, MLPBaseline])
def test_hnn_models(cls):
    torch.manual_seed(0)
    m = cls(2, hidden=16, dtype=torch.float64)
    W = m.mlp[2].weight
    assert torch.allclose(W @ W.T, torch.eye(16, dtype=torch.float64), atol=1e-12)  # orthogonal init
    t, p, q = (
        torch.zeros(5, dtype=torch.float64),
        torch.randn(5, 2, dtype=torch.float64),
        torch.randn(5, 2, dtype=torch.float64),
    )
    P, Q = hinn.rollout(m, t, p, q, 0.1, 3, "rk4")
    assert P.shape == (4, 5, 2)
    loss = derivative_loss(m, t, p, q, torch.zeros_like(p), torch.zeros_like(q))
    loss.backward()
    assert all(x.grad is not None for x in m.parameters())
    if cls is MLPHamiltonian:  # the vector field is the symplectic gradient of H
        pr, qr = p.clone().requires_grad_(), q.clone().requires_grad_()
        gp, gq = torch.autograd.grad(m(t, pr, qr).sum(), [pr, qr])
        dp, dq = m.vector_field(t, p, q)
        assert torch.allclose(dq, gp) and torch.allclose(dp, -gq)
    with pytest.raises(ValueError, match="built for dim = 2"):
        m.grad(t, p[:, :1], q[:, :1])


def test_compare_end_to_end(tmp_path, capsys):
    out = str(tmp_path / "cmp")
    assert main(["compare", "spring", "--steps", "30", "--n-traj", "6", "--out", out, "--no-progress"]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert set(res["models"]) == {"baseline", "hnn", "hinn"}
    for kind, r in res["models"].items():
        assert all(math.isfinite(r[k]) for k in ("test_mse", "energy_mse", "rollout_mse")), kind
    assert "learned_H_drift" in res["models"]["hnn"] and "learned_H_drift" not in res["models"]["baseline"]
    assert os.path.exists(os.path.join(out, "compare.png"))
    table = open(os.path.join(out, "table.md")).read()
    assert "3.8416e-04" in table and "| hinn |" in table
    assert "| hnn |" in capsys.readouterr().out
