"""The HNN comparison: the protocol's data, the energy metric on a case with a known answer, the models,
and a small end-to-end run."""

import json
import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

import hinn
from hinn.cli import main
from hinn.comparison import PROTOCOLS, authors_energy_mse, compare, make_data, make_model, protocol_system
from hinn.hnn import MLPBaseline, MLPHamiltonian
from hinn.metrics import adaptive_energy_mse, split_means_stderr
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

    class Model:  # a user's analytic Hamiltonian H' = p² + a q², through the public model contract
        dim = 1

        def grad(self, t, p, q):
            return 2 * p, 2 * a * q

    p0, q0 = np.array([[0.3], [-0.5]]), np.array([[0.4], [0.1]])
    t = np.linspace(0, 5, 200)
    mean, err, _ = adaptive_energy_mse(system, Model(), t, p0, q0, rtol=1e-11)
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
    pp, qq = p, q
    for k in range(3):  # the rollout is three steps of the same scheme, bit for bit
        pp, qq = hinn.step(m, t + 0.1 * k, pp, qq, 0.1, "rk4")
        assert torch.equal(P[k + 1], pp) and torch.equal(Q[k + 1], qq)
    assert (P[-1] - p).abs().max() > 1e-3  # and it moves
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


def test_compare_end_to_end(tmp_path, capsys, monkeypatch):
    # the authors' spring procedure integrates at rtol 1e-12 over spans up to 80: loosened for a quick run
    monkeypatch.setitem(PROTOCOLS, "spring", replace(PROTOCOLS["spring"], authors_rtol=1e-6))
    out = str(tmp_path / "cmp")
    args = [
        "compare",
        "spring",
        "--iterations",
        "30",
        "--n-traj",
        "6",
        "--out",
        out,
        "--no-progress",
        "--device",
        "cpu",
    ]
    assert main(args + ["--seeds", "0", "1"]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert set(res["models"]) == {"baseline", "hnn", "hinn"}
    assert [r["seed"] for r in res["per_seed"]] == [0, 1]
    for kind, r in res["models"].items():
        for k in ("test_mse", "adaptive_energy_mse", "authors_energy_mse", "adaptive_rollout_mse"):
            vals = [s["models"][kind][k] for s in res["per_seed"]]
            assert r[k] == pytest.approx(np.mean(vals), rel=1e-12), (kind, k)  # the summary is the seeds' mean
            assert r[k + "_stderr"] == pytest.approx(np.std(vals, ddof=1) / math.sqrt(2), rel=1e-12)
        # the derivative-trained models learn something in 30 steps: their test loss is below the untrained one
    assert res["per_seed"][0]["models"]["hnn"]["final_train_loss"] < 0.5
    assert "adaptive_learned_H_drift" in res["models"]["hnn"]
    assert "adaptive_learned_H_drift" not in res["models"]["baseline"]
    assert os.path.exists(os.path.join(out, "compare.png"))
    table = open(os.path.join(out, "table.md")).read()
    assert "3.8416e-04" in table and "| hinn |" in table and "authors' procedure" in table
    assert "noise 0.1; Adam lr 0.001, weight decay 0.0001;" in table
    assert "| hnn |" in capsys.readouterr().out
    # HINN alone, on whole-trajectory windows with fitted starts
    assert main(args + ["--models", "hinn", "--window", "29", "--fit-initial-states"]) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    assert set(res["models"]) == {"hinn"} and res["protocol"]["window"] == 29 and res["protocol"]["fit_starts"]
    assert np.isfinite(res["models"]["hinn"]["adaptive_energy_mse"])
    # HINN with hinn's own network (the fused backend's window loss), a short window
    net_args = ["--network", "resnet", "--width", "8", "--depth", "1", "--activation", "softplus", "--window", "3"]
    assert main(args + ["--models", "hinn"] + net_args) == 0
    res = json.load(open(os.path.join(out, "results.json")))
    pr = res["protocol"]
    assert (pr["network"], pr["width"], pr["depth"], pr["activation"], pr["window"]) == ("resnet", 8, 1, "softplus", 3)
    assert np.isfinite(res["models"]["hinn"]["adaptive_energy_mse"])
    assert "HamiltonianNet 8 x 1 softplus" in open(os.path.join(out, "table.md")).read()


def test_compare_training_and_noise_options(monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def stop(name, out, **kw):
        seen.update(kw)
        raise Stop  # the options are all this test reads

    monkeypatch.setattr("hinn.comparison.compare", stop)
    with pytest.raises(Stop):
        main(["compare", "spring", "--lr", "2e-3", "--weight-decay", "0", "--noise", "0", "--no-progress"])
    assert (seen["lr"], seen["weight_decay"], seen["noise"]) == (2e-3, 0.0, 0.0)
    # noise 0: the observations are the truth
    data = make_data(replace(PROTOCOLS["spring"], noise=0.0, n_traj=4))
    assert np.array_equal(data.P, data.P_clean) and np.array_equal(data.Q, data.Q_clean)
    noisy = make_data(replace(PROTOCOLS["spring"], n_traj=4))
    assert np.array_equal(noisy.P_clean, data.P_clean) and not np.allclose(noisy.P, data.P)
    for bad, match in ((dict(lr=0.0), "lr must be"), (dict(weight_decay=-1e-4), "weight_decay must be"),
                       (dict(noise=float("nan")), "noise must be")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            replace(PROTOCOLS["spring"], **bad)


def test_compare_network_choice():
    proto = replace(PROTOCOLS["spring"], network="resnet", width=8, depth=1, activation="tanh")
    net = make_model("hinn", 1, proto)
    assert isinstance(net, hinn.HamiltonianNet) and (net.width, net.depth, net.time_dependent) == (8, 1, False)
    assert isinstance(make_model("hnn", 1, proto), MLPHamiltonian)  # HNN keeps its MLP
    with pytest.raises(ValueError, match="network must be one of"):
        compare("spring", models=["hinn"], network="mlp2", progress=False)


class _ExactSpring:
    """The protocol spring's true Hamiltonian H = p² + q² as a model: its energy error is 0 on a fixed
    span, and what remains under the authors' procedure is their time stretch alone."""

    dim = 1

    def grad(self, t, p, q):
        return 2 * p, 2 * q


def test_authors_energy_procedure():
    proto = PROTOCOLS["spring"]
    system = protocol_system("spring")
    ours, err, _ = adaptive_energy_mse(
        system, _ExactSpring(), np.linspace(0, 20, 100), *system.sample_initial(4, np.random.default_rng(0))
    )
    assert ours < 1e-14  # the exact model is exact under hinn's procedure
    # the authors' procedure compares the truth at t with the model at 1.09 t: for the exact H the energy
    # is conserved along both, so their error is still 0 (the stretch only hurts models that drift) ...
    proto = replace(proto, authors_rtol=1e-10)
    mean, bar = authors_energy_mse(system, _ExactSpring(), proto)
    assert mean < 1e-12 and bar < 1e-12

    # ... while a slightly wrong, energy-drifting model is scored over ever longer spans: its error grows
    class Drifting:
        dim = 1

        def grad(self, t, p, q):  # H = p² + q² with a small anti-damping term (energy grows like e^{0.02 t})
            return 2 * p + 0.01 * q, 2 * q - 0.01 * p

    m_ours, _, _ = adaptive_energy_mse(
        system, Drifting(), np.linspace(0, 20, 100), *system.sample_initial(15, np.random.default_rng(1))
    )
    m_auth, bar = authors_energy_mse(system, Drifting(), proto)
    assert m_auth > 2 * m_ours > 0 and bar > 0


def test_split_means_stderr():
    x = np.arange(15.0)
    means = np.array([1.0, 4.0, 7.0, 10.0, 13.0])
    assert split_means_stderr(x, 5) == pytest.approx(means.std() / math.sqrt(5), rel=1e-15)
