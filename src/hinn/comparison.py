"""HINN against HNN and the direct baseline under the protocol of Greydanus, Dzamba, Yosinski (2019),
"Hamiltonian Neural Networks" (their public code read for the facts below; their known faults fixed).

Per system: trajectories from the paper's initial-state distributions, observed on its time grid, split
by sample index as their code does; three models trained with Adam on the same data:

* ``baseline``: MLP in → 200 → 200 → 2d predicting (q̇, ṗ) (derivative loss);
* ``hnn``: the same MLP with output H, vector field (∂H/∂p, −∂H/∂q) (derivative loss);
* ``hinn``: the same Hamiltonian MLP trained with the trajectory objective on consecutive observations,
  integrated with ``scheme`` at the data's time step (HINN, Hayes et al.); with ``network="resnet"``,
  hinn's own :class:`hinn.HamiltonianNet` (``width``, ``depth``, ``activation``) on the fused backend.

All three train through hinn's one training loop (:func:`hinn.train.fit`) with the objectives of
:mod:`hinn.objectives`, and are scored by :mod:`hinn.metrics`:

* the test derivative MSE;
* the energy MSE twice: under **hinn's procedure** (15 fresh initial states from the training
  distribution, truth and model integrated by an adaptive solver over one fixed span, mean over time and
  trajectories of the squared error of the true energy, ± standard error over trajectories) and under
  **the authors' procedure** as their analysis notebooks run it, faults included (:func:`authors_energy_mse`);
* the rollout MSE on the test trajectories (adaptive solver, against the clean truth);
* the drift of the learned H along the model's own trajectory.

Several data seeds: each metric is reported as the mean over seeds ± its standard error over seeds.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from .data import Trajectories
from .devices import DeviceLike, resolve_device
from .hnn import MLPBaseline, MLPHamiltonian
from .metrics import adaptive_energy_mse, integrate_adaptive, learned_energy, split_means_stderr
from .network import HamiltonianNet
from .objectives import DerivativeObjective, TrajectoryObjective, derivative_loss
from .plots import comparison_figure
from .systems import SpringMass, System, ThreeBody, TwoBody
from .train import fit

MODELS = ("baseline", "hnn", "hinn")
NETWORKS = ("mlp", "resnet")  # HINN's H_θ

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
    fit_starts: bool = False  # HINN: initial-state optimisation (every window's start fitted with θ)
    hidden: int = 200
    network: str = "mlp"  # HINN's H_θ: the HNN MLP above ("mlp") or hinn's HamiltonianNet ("resnet")
    width: int = 32  # the HamiltonianNet's width, depth and activation (network="resnet")
    depth: int = 2
    activation: str = "softplus"
    seed: int = 0
    authors_rtol: float = 1e-12  # the spring notebook's solver tolerance (the authors' energy procedure)

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ValueError(f"HINN's network must be one of {', '.join(NETWORKS)}; got {self.network!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"the protocol's lr must be a finite number > 0; got {self.lr}")
        for name in ("weight_decay", "noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"the protocol's {name} must be a finite number >= 0; got {value}")


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


def _samples(data: ProtocolData, which: str, dtype=torch.float64, device=None):
    s = data.split(which)
    d = data.P.shape[2]
    f = lambda a: torch.as_tensor(a[s].reshape(-1, d), dtype=dtype, device=device)  # noqa: E731
    n = data.P[s].shape[0] * data.P.shape[1]
    return torch.zeros(n, dtype=dtype, device=device), f(data.P), f(data.Q), f(data.dP), f(data.dQ)


def make_model(kind: str, dim: int, proto: Protocol, device=None):
    torch.manual_seed(proto.seed)
    if kind == "baseline":
        return MLPBaseline(dim, proto.hidden, dtype=torch.float64, device=device)
    if kind == "hinn" and proto.network == "resnet":
        return HamiltonianNet(
            dim, proto.width, proto.depth, time_dependent=False, activation=proto.activation,
            dtype=torch.float64, device=device,
        )  # fmt: skip
    if kind in ("hnn", "hinn"):
        return MLPHamiltonian(dim, proto.hidden, dtype=torch.float64, device=device)
    raise ValueError(f"unknown model {kind!r}; valid models are {', '.join(MODELS)}")


def make_objective(kind: str, data: ProtocolData, proto: Protocol, device=None):
    """HINN: the trajectory objective on K-step windows of the observations; baseline and HNN: the
    derivative objective on the observed states and true derivatives."""
    if kind == "hinn":
        s = data.split("train")
        h = float(data.t[1] - data.t[0])
        windows = Trajectories(data.t, data.P[s], data.Q[s]).windows(proto.window, device=device)
        return TrajectoryObjective(*windows, h, proto.scheme, fit_starts=proto.fit_starts)
    return DerivativeObjective(*_samples(data, "train", device=device))


def train_model(kind: str, data: ProtocolData, proto: Protocol, progress: bool = True, device: DeviceLike = None):
    """Adam with the protocol's steps, batch, learning rate and weight decay, through :func:`hinn.train.fit`
    (one fresh random mini-batch per step, as the paper's code draws them), on ``device`` (None: CUDA when
    available); returns (model, losses)."""
    dev = resolve_device(device)
    model = make_model(kind, data.P.shape[2], proto, dev)
    res = fit(
        model,
        make_objective(kind, data, proto, dev),
        optimizer="adam",
        lr=proto.lr,
        weight_decay=proto.weight_decay,
        epochs=proto.steps,
        batch_size=proto.batch,
        batches_per_epoch=1,
        seed=proto.seed,
        progress=progress,
        objective_warmup=proto.steps // 2,  # fitted starts (when the protocol fits them): the second half
        desc=f"{proto.system} {kind} (seed {proto.seed})",
    )
    return model, [h["train_loss"] for h in res.history]


AUTHORS_TRIALS = 15  # 5 splits x 3 samples in their notebooks


def authors_energy_mse(system: System, model, proto: Protocol) -> Tuple[float, float]:
    """The energy MSE exactly as the HNN authors' analysis notebooks compute it, faults included.

    Spring (analyze-spring, RK45 at rtol ``proto.authors_rtol``): 15 trials from initial states with each
    coordinate ±U(0.2, 1) (about half of them outside the training radius); the truth is sampled at 100
    points over [0, 20 s] and the model
    at the same points stretched by 1 + 0.9 σ (σ the noise, "to compensate for noise effects"), and s,
    which starts at 1.09 (an earlier plotting cell already stretched it once), grows ×1.09 every trial.
    Two- and three-body (analyze-2body/3body): 15 trials, one initial state each from the training
    distribution seeded by the trial's index, truth and model at rtol 1e-9 over the evaluation span. The
    error bar: the standard deviation of the means of 5 splits of the 15 trials, over √5.
    Returns (mean, error bar).
    """
    losses = []
    if proto.system == "spring":
        stretch = 1 + 0.9 * proto.noise
        rng = np.random.default_rng(proto.seed + 1)
        x0 = rng.uniform(0, 1, (AUTHORS_TRIALS, 2)) * 1.6 - 0.8
        x0 += 0.2 * np.sign(x0)
        q0, p0 = x0[:, :1], x0[:, 1:]
        scale = stretch ** (1 + np.arange(AUTHORS_TRIALS))  # trial i: span 20·1.09^(i+1), model ×1.09 more
        t_true = np.linspace(0.0, 20.0, 100)[None, :] * scale[:, None]  # (trials, 100)
        Pm, Qm = integrate_adaptive(model, t_true * stretch, p0, q0, rtol=proto.authors_rtol)
        for i in range(AUTHORS_TRIALS):  # the truth is exact for the spring
            P, Q = system.trajectories(t_true[i], p0[i : i + 1], q0[i : i + 1])
            E = system.energy(t_true[i], P, Q)
            Em = system.energy(t_true[i] * stretch, Pm[i : i + 1], Qm[i : i + 1])
            losses.append(float(((E - Em) ** 2).mean()))
    else:
        t_eval = np.linspace(proto.energy_span[0], proto.energy_span[1], proto.energy_points)
        for trial in range(AUTHORS_TRIALS):
            p0, q0 = system.sample_initial(1, np.random.default_rng(trial))
            P, Q = system.trajectories(t_eval, p0, q0, rtol=1e-9, atol=1e-9)
            Pm, Qm = integrate_adaptive(model, t_eval, p0, q0, rtol=1e-9)
            losses.append(float(((system.energy(t_eval, P, Q) - system.energy(t_eval, Pm, Qm)) ** 2).mean()))
    losses = np.array(losses)
    return float(losses.mean()), split_means_stderr(losses, 5)


def evaluate_model(kind: str, model, system: System, data: ProtocolData, proto: Protocol) -> Dict:
    t, p, q, dp, dq = _samples(data, "test", device=next(model.parameters()).device)
    with torch.no_grad():
        test_mse = float(derivative_loss(model, t, p, q, dp, dq))
    rng = np.random.default_rng(proto.seed + 1)  # fresh initial states for the energy metric
    p0, q0 = system.sample_initial(proto.energy_trajs, rng)
    t_eval = np.linspace(proto.energy_span[0], proto.energy_span[1], proto.energy_points)
    e_mse, e_err, tr = adaptive_energy_mse(system, model, t_eval, p0, q0)
    a_mse, a_err = authors_energy_mse(system, model, proto)
    s = data.split("test")
    Pr, Qr = integrate_adaptive(model, data.t, data.P_clean[s][:, 0], data.Q_clean[s][:, 0])
    rollout_mse = float(((Pr - data.P_clean[s]) ** 2).mean() + ((Qr - data.Q_clean[s]) ** 2).mean()) / 2
    out = {
        "test_mse": test_mse,
        "adaptive_energy_mse": e_mse,
        "adaptive_energy_mse_stderr": e_err,
        "authors_energy_mse": a_mse,
        "authors_energy_mse_stderr": a_err,
        "adaptive_rollout_mse": rollout_mse,
    }
    if kind != "baseline":
        Hm = learned_energy(model, t_eval, tr["Pm"], tr["Qm"])
        out["adaptive_learned_H_drift"] = float(np.abs(Hm - Hm[:, :1]).max(1).mean())
    out["_traj"] = (t_eval, tr)
    return out


# The HNN protocol's metrics, all on trajectories of the model's vector field from an adaptive solver (not
# hinn.metrics.evaluate's rollouts with the model's own scheme: hence their own names). test_mse: the
# derivative MSE on the test split; adaptive_energy_mse: hinn.metrics.adaptive_energy_mse from fresh
# initial states; authors_energy_mse: the authors' notebooks' procedure; adaptive_rollout_mse: from the
# test split's first states against its clean truth; adaptive_learned_H_drift: the learned H's drift
# along the energy metric's trajectories.
SUMMARY_METRICS = (
    "test_mse",
    "adaptive_energy_mse",
    "authors_energy_mse",
    "adaptive_rollout_mse",
    "adaptive_learned_H_drift",
)


def summarize(per_seed: List[Dict]) -> Dict:
    """Per model and metric: the mean over seeds and its standard error over seeds (with one seed, the
    metric's own error bar where it has one)."""
    out = {}
    for kind in per_seed[0]["models"]:
        row = {}
        for m in SUMMARY_METRICS:
            vals = [r["models"][kind][m] for r in per_seed if m in r["models"][kind]]
            if not vals:
                continue
            row[m] = float(np.mean(vals))
            if len(vals) > 1:
                row[m + "_stderr"] = float(np.std(vals, ddof=1) / math.sqrt(len(vals)))
            elif m + "_stderr" in per_seed[0]["models"][kind]:
                row[m + "_stderr"] = per_seed[0]["models"][kind][m + "_stderr"]
        out[kind] = row
    return out


def compare(
    name: str,
    out_dir: Optional[str] = None,
    progress: bool = True,
    seeds: Sequence[int] = (0,),
    device: DeviceLike = None,
    models: Sequence[str] = MODELS,
    **overrides,
) -> Dict:
    """Train and evaluate the models (all three unless ``models`` names some) on one system for each
    data seed, on ``device`` (None: CUDA when available); writes ``results.json``, ``table.md`` and
    ``compare.png`` into ``out_dir``. ``overrides`` replace protocol fields (e.g. steps, n_traj for a
    quick run; window, fit_starts for HINN's variants)."""
    if name not in PROTOCOLS:
        raise ValueError(f"no HNN protocol for {name!r}; valid systems are {', '.join(PROTOCOLS)}")
    unknown = [m for m in models if m not in MODELS]
    if unknown or not models:
        raise ValueError(f"models must be some of {', '.join(MODELS)}; got {list(models)}")
    if not seeds:
        raise ValueError("need at least one seed")
    system = protocol_system(name)
    per_seed, trajs = [], {}
    for seed in seeds:
        proto = replace(PROTOCOLS[name], **{**overrides, "seed": seed})
        start = time.perf_counter()
        data = make_data(proto, system)
        res = {"seed": seed, "models": {}, "data_seconds": time.perf_counter() - start}
        for kind in models:
            t0 = time.perf_counter()
            model, losses = train_model(kind, data, proto, progress, device)
            r = evaluate_model(kind, model, system, data, proto)
            traj = r.pop("_traj")
            if seed == seeds[0]:
                trajs[kind] = traj
            r.update({"final_train_loss": losses[-1], "seconds": time.perf_counter() - t0})
            res["models"][kind] = r
        per_seed.append(res)
    results = {
        "protocol": asdict(replace(PROTOCOLS[name], **overrides)),
        "seeds": list(seeds),
        "per_seed": per_seed,
        "models": summarize(per_seed),
        "published": PUBLISHED.get(name),
    }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=1)
        with open(os.path.join(out_dir, "table.md"), "w") as f:
            f.write(markdown_table(name, results) + "\n")
        comparison_figure(os.path.join(out_dir, "compare.png"), name, trajs)
    return results


def _pm(r: Dict, key: str, fmt: str = ".3e") -> str:
    if key not in r:
        return "—"
    err = r.get(key + "_stderr")
    return f"{r[key]:{fmt}}" + (f" ± {err:.1e}" if err is not None else "")


def markdown_table(name: str, results: Dict) -> str:
    pub = results.get("published") or {"energy": {}, "test": {}}
    pr = results["protocol"]
    seeds = results["seeds"]
    spread = "mean ± s.e. over seeds" if len(seeds) > 1 else "± the metric's own error bar"
    net = "HNN's MLP"
    if pr.get("network") == "resnet":
        net = f"HamiltonianNet {pr['width']} x {pr['depth']} {pr['activation']}"
    starts = ", fitted starts" if pr.get("fit_starts") else ""
    rows = [
        f"**{name}** (data seeds {', '.join(map(str, seeds))}, {spread}; noise {pr['noise']:g}; Adam lr "
        f"{pr['lr']:g}, weight decay {pr['weight_decay']:g}; HINN: {net}, {pr['scheme']}, "
        f"{pr['window']}-step windows{starts})",
        "",
        "| model | test MSE | energy MSE (hinn's procedure) | energy MSE (authors' procedure) "
        "| published energy MSE | rollout MSE | learned-H drift | published test MSE |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for kind, r in results["models"].items():
        pe, pt = pub["energy"].get(kind), pub["test"].get(kind)
        rows.append(
            f"| {kind} | {_pm(r, 'test_mse')} | {_pm(r, 'adaptive_energy_mse')} | {_pm(r, 'authors_energy_mse')} "
            f"| {'—' if pe is None else f'{pe:.4e}'} | {_pm(r, 'adaptive_rollout_mse')} "
            f"| {_pm(r, 'adaptive_learned_H_drift')} "
            f"| {'—' if pt is None else f'{pt:.4e}'} |"
        )
    return "\n".join(rows)
