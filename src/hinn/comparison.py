"""HINN against HNN and the direct baseline under the protocol of Greydanus, Dzamba, Yosinski (2019),
"Hamiltonian Neural Networks" (their public code read for the facts below; their known faults fixed).

Per system: trajectories from the paper's initial-state distributions, observed on its time grid, split
by sample index as their code does; three models trained with Adam on the same data:

* ``baseline``: MLP in → 200 → 200 → 2d predicting (q̇, ṗ) (derivative loss);
* ``hnn``: the same MLP with output H, vector field (∂H/∂p, −∂H/∂q) (derivative loss);
* ``hinn``: the same Hamiltonian MLP trained with the trajectory objective on consecutive observations,
  integrated with ``scheme`` at the data's time step (HINN, Hayes et al.).

Metrics: the test derivative MSE; the energy MSE of the paper (15 fresh initial states, truth and model
integrated by an adaptive solver on the paper's evaluation span, mean over time and trajectories of the
squared error of the true energy, ± standard error over trajectories); the rollout MSE on the test
trajectories (adaptive solver, against the clean truth); the drift of the learned H along the model's own
trajectory.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import torch
from scipy.integrate import solve_ivp
from tqdm.auto import tqdm

from .hnn import MLPBaseline, MLPHamiltonian
from .objectives import derivative_loss, trajectory_loss
from .systems import SpringMass, System, ThreeBody, TwoBody

MODELS = ("baseline", "hnn", "hinn")

# Numbers published in the HNN repository (energy MSE, and test MSE of the derivatives).
PUBLISHED = {
    "spring": {
        "energy": {"baseline": 1.7077e-01, "hnn": 3.8416e-04},
        "test": {"baseline": 3.6656e-02, "hnn": 3.5928e-02},
    },
    "two-body": {
        "energy": {"baseline": 6.3276e-02, "hnn": 3.8751e-05},
        "test": {"baseline": 2.9575e-05, "hnn": 2.8218e-06},
    },
    "three-body": {
        "energy": {"baseline": 1.0906e02, "hnn": 4.1926e-02},
        "test": {"baseline": 3.8000e-01, "hnn": 4.8809e-01},
    },
}


@dataclass(frozen=True)
class Protocol:
    system: str
    t_span: Tuple[float, float]
    n_points: int
    n_traj: int
    rtol: float
    noise: float
    test_fraction: float
    test_first: bool  # two- and three-body: the first samples are the test set
    steps: int  # optimiser steps
    batch: Optional[int]  # None: full batch
    lr: float
    weight_decay: float
    energy_span: Tuple[float, float]
    energy_points: int
    energy_trajs: int = 15
    scheme: str = "rk4"  # HINN's integrator on the data grid
    window: int = 1  # HINN: K-step rollout windows (1: consecutive pairs)
    hidden: int = 200
    seed: int = 0


PROTOCOLS = {
    "spring": Protocol("spring", (0.0, 3.0), 30, 50, 1e-10, 0.1, 0.5, False, 2000, None, 1e-3, 1e-4, (0.0, 20.0), 100),
    "two-body": Protocol(
        "two-body", (0.0, 20.0), 50, 1000, 1e-9, 0.0, 0.2, True, 10000, 200, 1e-3, 0.0, (0.0, 25.0), 500
    ),
    "three-body": Protocol(
        "three-body", (0.0, 5.0), 20, 5000, 1e-9, 0.0, 0.2, True, 10000, 600, 1e-3, 1e-4, (0.0, 3.0), 500
    ),
}


class _HNNSpring(SpringMass):
    """H = q² + p² (m = 1/2, k = 2), initial state U(−1, 1)² rescaled to radius U(0.1, 1)."""

    def __init__(self) -> None:
        super().__init__(m=0.5, k=2.0)

    def sample_initial(self, n, rng):
        y = rng.uniform(-1, 1, (n, 2))
        y *= (rng.uniform(0.1, 1.0, n) / np.linalg.norm(y, axis=1))[:, None]
        return y[:, 1:2], y[:, 0:1]  # HNN's state is (q, p)


def protocol_system(name: str) -> System:
    if name == "spring":
        return _HNNSpring()
    if name == "two-body":
        return TwoBody()
    if name == "three-body":
        return ThreeBody()
    raise ValueError(f"no HNN protocol for {name!r}; valid systems are {', '.join(PROTOCOLS)}")


@dataclass
class ProtocolData:
    t: np.ndarray  # (T,)
    P: np.ndarray  # (n, T, d) observed (noisy) states
    Q: np.ndarray
    P_clean: np.ndarray  # the truth
    Q_clean: np.ndarray
    dP: np.ndarray  # true derivatives at the clean states (noise is not added to them)
    dQ: np.ndarray
    n_test: int  # trajectories in the test split
    test_first: bool

    def split(self, which: str) -> slice:
        n = self.P.shape[0]
        test = slice(0, self.n_test) if self.test_first else slice(n - self.n_test, n)
        train = slice(self.n_test, n) if self.test_first else slice(0, n - self.n_test)
        return test if which == "test" else train


def make_data(proto: Protocol, system: Optional[System] = None, n_traj: Optional[int] = None) -> ProtocolData:
    """Trajectories, noise and derivatives as the HNN code makes them (reproducible from proto.seed)."""
    system = system or protocol_system(proto.system)
    n = n_traj or proto.n_traj
    rng = np.random.default_rng(proto.seed)
    t = np.linspace(proto.t_span[0], proto.t_span[1], proto.n_points)
    p0, q0 = system.sample_initial(n, rng)
    P, Q = _chunked_truth(system, t, p0, q0, proto.rtol)
    d = P.shape[2]
    tt = torch.as_tensor(np.repeat(t[None], n, 0).reshape(-1))
    dp, dq = system.vector_field(tt, torch.as_tensor(P.reshape(-1, d)), torch.as_tensor(Q.reshape(-1, d)))
    dP, dQ = dp.numpy().reshape(P.shape), dq.numpy().reshape(Q.shape)
    Pn = P + proto.noise * rng.standard_normal(P.shape) if proto.noise else P
    Qn = Q + proto.noise * rng.standard_normal(Q.shape) if proto.noise else Q
    # their code splits the flattened samples; whole trajectories whenever the fraction allows
    n_test = int(round(n * proto.test_fraction))
    return ProtocolData(t, Pn, Qn, P, Q, dP, dQ, n_test, proto.test_first)


def _chunked_truth(system, t, p0, q0, rtol, chunk=250):
    # integrate in chunks: one close encounter then only slows its own chunk
    parts = [
        system.trajectories(t, p0[i : i + chunk], q0[i : i + chunk], rtol=rtol, atol=rtol)
        for i in range(0, len(p0), chunk)
    ]
    return np.concatenate([a for a, _ in parts]), np.concatenate([b for _, b in parts])


def _samples(data: ProtocolData, which: str, dtype=torch.float64):
    s = data.split(which)
    d = data.P.shape[2]
    f = lambda a: torch.as_tensor(a[s].reshape(-1, d), dtype=dtype)  # noqa: E731
    n = data.P[s].shape[0] * data.P.shape[1]
    return torch.zeros(n, dtype=dtype), f(data.P), f(data.Q), f(data.dP), f(data.dQ)


def make_model(kind: str, dim: int, proto: Protocol):
    torch.manual_seed(proto.seed)
    if kind == "baseline":
        return MLPBaseline(dim, proto.hidden, dtype=torch.float64)
    if kind in ("hnn", "hinn"):
        return MLPHamiltonian(dim, proto.hidden, dtype=torch.float64)
    raise ValueError(f"unknown model {kind!r}; valid models are {', '.join(MODELS)}")


def train_model(kind: str, data: ProtocolData, proto: Protocol, progress: bool = True):
    """Adam with the protocol's steps, batch, learning rate and weight decay; returns (model, losses)."""
    model = make_model(kind, data.P.shape[2], proto)
    opt = torch.optim.Adam(model.parameters(), lr=proto.lr, weight_decay=proto.weight_decay)
    gen = torch.Generator().manual_seed(proto.seed)
    if kind == "hinn":
        from .data import Trajectories

        s = data.split("train")
        h = float(data.t[1] - data.t[0])
        t0, p0, q0, PT, QT = Trajectories(data.t, data.P[s], data.Q[s]).windows(proto.window)
        M = t0.shape[0]

        def loss_on(idx):
            return trajectory_loss(model, t0[idx], p0[idx], q0[idx], PT[:, idx], QT[:, idx], h, proto.scheme)
    else:
        t, p, q, dp, dq = _samples(data, "train")
        M = t.shape[0]

        def loss_on(idx):
            return derivative_loss(model, t[idx], p[idx], q[idx], dp[idx], dq[idx])

    losses = []
    for _ in tqdm(range(proto.steps), desc=f"{proto.system} {kind}", disable=not progress, dynamic_ncols=True):
        idx = torch.randperm(M, generator=gen)[: proto.batch] if proto.batch and proto.batch < M else slice(None)
        loss = loss_on(idx)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"{kind}: the loss became {loss.item()} on {proto.system}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return model, losses


def integrate(
    field: Callable, t_eval: np.ndarray, p0: np.ndarray, q0: np.ndarray, rtol: float = 1e-9
) -> Tuple[np.ndarray, np.ndarray]:
    """Integrate (ṗ, q̇) = field(t, p, q) (torch, batched) for all initial states at once with SciPy's
    RK45 at tolerance ``rtol``; returns (P, Q) of shape (n, T, d)."""
    n, d = p0.shape

    def rhs(tt, y):
        yy = torch.as_tensor(y.reshape(2, n, d))
        with torch.no_grad():
            dp, dq = field(torch.full((n,), tt, dtype=torch.float64), yy[0], yy[1])
        return torch.stack([dp, dq]).reshape(-1).numpy()

    sol = solve_ivp(
        rhs, (t_eval[0], t_eval[-1]), np.stack([p0, q0]).reshape(-1), method="RK45", t_eval=t_eval, rtol=rtol, atol=rtol
    )
    if not sol.success:
        raise RuntimeError(f"integration failed: {sol.message}")
    Y = sol.y.reshape(2, n, d, len(t_eval)).transpose(0, 1, 3, 2)
    return Y[0], Y[1]


def model_field(model):
    def field(t, p, q):
        gp, gq = model._grad_unchecked(t, p, q)
        return -gq, gp

    return field


def energy_mse(
    system: System, field: Callable, t_eval: np.ndarray, p0: np.ndarray, q0: np.ndarray, rtol: float = 1e-9
) -> Tuple[float, float, Dict]:
    """The HNN paper's energy metric: mean over time and trajectories of (H(x̂(t)) − H(x(t)))², H the true
    energy, x̂ the model's and x the true trajectory (both from an adaptive solver); ± its standard error
    over trajectories. Returns (mean, stderr, trajectories)."""
    P, Q = system.trajectories(t_eval, p0, q0, rtol=1e-10, atol=1e-10)
    Pm, Qm = integrate(field, t_eval, p0, q0, rtol)
    E, Em = system.energy(t_eval, P, Q), system.energy(t_eval, Pm, Qm)
    per_traj = ((Em - E) ** 2).mean(1)
    stderr = float(per_traj.std(ddof=1) / math.sqrt(len(per_traj))) if len(per_traj) > 1 else 0.0
    return float(per_traj.mean()), stderr, {"P": P, "Q": Q, "Pm": Pm, "Qm": Qm, "E": E, "Em": Em}


def evaluate_model(kind: str, model, system: System, data: ProtocolData, proto: Protocol) -> Dict:
    t, p, q, dp, dq = _samples(data, "test")
    with torch.no_grad():
        gp, gq = model._grad_unchecked(t, p, q)
    test_mse = float(0.5 * (((gp - dq) ** 2).mean() + ((-gq - dp) ** 2).mean()))
    rng = np.random.default_rng(proto.seed + 1)  # fresh initial states for the energy metric
    p0, q0 = system.sample_initial(proto.energy_trajs, rng)
    t_eval = np.linspace(proto.energy_span[0], proto.energy_span[1], proto.energy_points)
    e_mse, e_err, tr = energy_mse(system, model_field(model), t_eval, p0, q0)
    s = data.split("test")
    Pr, Qr = integrate(model_field(model), data.t, data.P_clean[s][:, 0], data.Q_clean[s][:, 0])
    rollout_mse = float(((Pr - data.P_clean[s]) ** 2).mean() + ((Qr - data.Q_clean[s]) ** 2).mean()) / 2
    out = {"test_mse": test_mse, "energy_mse": e_mse, "energy_mse_stderr": e_err, "rollout_mse": rollout_mse}
    if kind != "baseline":
        d = p0.shape[1]
        with torch.no_grad():
            Hm = model(
                torch.zeros(tr["Pm"][:, :, 0].size, dtype=torch.float64),
                torch.as_tensor(tr["Pm"].reshape(-1, d)),
                torch.as_tensor(tr["Qm"].reshape(-1, d)),
            )
        Hm = Hm.numpy().reshape(tr["Pm"].shape[:2])
        out["learned_H_drift"] = float(np.abs(Hm - Hm[:, :1]).max(1).mean())
    out["_traj"] = (t_eval, tr)
    return out


def compare(name: str, out_dir: Optional[str] = None, progress: bool = True, **overrides) -> Dict:
    """Train and evaluate the three models on one system; writes ``results.json``, ``table.md`` and
    figures into ``out_dir``. ``overrides`` replace protocol fields (e.g. steps, n_traj for a quick run)."""
    if name not in PROTOCOLS:
        raise ValueError(f"no HNN protocol for {name!r}; valid systems are {', '.join(PROTOCOLS)}")
    proto = replace(PROTOCOLS[name], **overrides)
    system = protocol_system(name)
    start = time.perf_counter()
    data = make_data(proto, system)
    results = {"protocol": asdict(proto), "models": {}, "data_seconds": time.perf_counter() - start}
    trajs = {}
    for kind in MODELS:
        t0 = time.perf_counter()
        model, losses = train_model(kind, data, proto, progress)
        res = evaluate_model(kind, model, system, data, proto)
        trajs[kind] = res.pop("_traj")
        res.update({"final_train_loss": losses[-1], "seconds": time.perf_counter() - t0})
        results["models"][kind] = res
    results["published"] = PUBLISHED.get(name)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(out_dir, "table.md"), "w") as f:
            f.write(markdown_table(name, results) + "\n")
        _figures(out_dir, name, system, trajs)
    return results


def markdown_table(name: str, results: Dict) -> str:
    pub = results.get("published") or {"energy": {}, "test": {}}
    pr = results["protocol"]
    rows = [
        f"**{name}** (seed {pr['seed']}; HINN: {pr['scheme']}, {pr['window']}-step windows)",
        "",
        "| model | test MSE | energy MSE | rollout MSE | learned-H drift | published energy MSE | published test MSE |",
        "|---|---|---|---|---|---|---|",
    ]
    for kind, r in results["models"].items():
        drift = f"{r['learned_H_drift']:.3e}" if "learned_H_drift" in r else "—"
        pe = pub["energy"].get(kind)
        pt = pub["test"].get(kind)
        rows.append(
            f"| {kind} | {r['test_mse']:.4e} | {r['energy_mse']:.4e} ± {r['energy_mse_stderr']:.1e} "
            f"| {r['rollout_mse']:.3e} | {drift} | {'—' if pe is None else f'{pe:.4e}'} "
            f"| {'—' if pt is None else f'{pt:.4e}'} |"
        )
    return "\n".join(rows)


def _figures(out_dir, name, system, trajs) -> None:
    from .plots import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    first = next(iter(trajs.values()))
    t_eval, tr0 = first
    d = tr0["P"].shape[2]
    axes[0].plot(
        tr0["Q"][0, :, 0], tr0["Q"][0, :, 1] if d >= 2 else tr0["P"][0, :, 0], "k", lw=2.5, alpha=0.4, label="truth"
    )
    for i, (kind, (_, tr)) in enumerate(trajs.items()):
        ys = tr["Qm"][0, :, 1] if d >= 2 else tr["Pm"][0, :, 0]
        axes[0].plot(tr["Qm"][0, :, 0], ys, f"C{i}--", label=kind)
        axes[1].plot(t_eval, tr["Em"][0], f"C{i}--", label=kind)
    axes[1].plot(t_eval, tr0["E"][0], "k", lw=2.5, alpha=0.4, label="truth")
    axes[0].set_xlabel("q₁" if d >= 2 else "q")
    axes[0].set_ylabel("q₂ (body 1: x, y)" if d >= 2 else "p")
    axes[0].set_title(f"{name}: a held-out trajectory")
    axes[1].set_xlabel("t")
    axes[1].set_ylabel("true energy along the trajectory")
    axes[1].set_title("energy")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "compare.png"), dpi=110)
    plt.close(fig)
