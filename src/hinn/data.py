"""Trajectory data sets: generation from a system, train/validation/test splits, noise, .npz files,
and the training views (one-step pairs, K-step windows, time derivatives).

What a "sample" is (the poster does not say): one observed transition (t_k, p_k, q_k) → (p_{k+1}, q_{k+1})
of a trajectory sampled every ``h``. A split of S samples holds S / ``steps`` trajectories of ``steps``
transitions each, from independent initial states; splits never share a trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from .systems import System, get_system

# the poster's sizes, in samples (train, validation, test)
POSTER_SIZES = {"spring": (2000, 300, 300), "two-body": (4000, 900, 2900)}


@dataclass
class Trajectories:
    """n trajectories on a common time grid: t (T,), P and Q (n, T, d), float64 numpy arrays."""

    t: np.ndarray
    P: np.ndarray
    Q: np.ndarray

    def __post_init__(self) -> None:
        if self.P.shape != self.Q.shape or self.P.ndim != 3 or self.P.shape[1] != len(self.t):
            raise ValueError(f"inconsistent shapes: t {self.t.shape}, P {self.P.shape}, Q {self.Q.shape}")

    @property
    def h(self) -> float:
        return float(self.t[1] - self.t[0])

    @property
    def n(self) -> int:
        return self.P.shape[0]

    @property
    def n_samples(self) -> int:
        return self.n * (len(self.t) - 1)

    def windows(
        self, K: int = 1, dtype=torch.float64, device="cpu"
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every K-step window: start (t0 (M,), p0, q0 (M, d)) and targets (P, Q) of shape (K, M, d),
        M = n (T − K). K = 1 gives the one-step pairs."""
        T = len(self.t)
        if not 1 <= K < T:
            raise ValueError(f"window length K must be in [1, {T - 1}], got {K}")
        starts = T - K
        idx = np.arange(starts)[:, None] + np.arange(1, K + 1)[None, :]  # (starts, K)
        kw = dict(dtype=dtype, device=device)
        t0 = torch.as_tensor(np.tile(self.t[:starts], self.n), **kw)
        p0 = torch.as_tensor(self.P[:, :starts].reshape(-1, self.P.shape[2]), **kw)
        q0 = torch.as_tensor(self.Q[:, :starts].reshape(-1, self.Q.shape[2]), **kw)
        PT = torch.as_tensor(self.P[:, idx].transpose(2, 0, 1, 3).reshape(K, -1, self.P.shape[2]), **kw)
        QT = torch.as_tensor(self.Q[:, idx].transpose(2, 0, 1, 3).reshape(K, -1, self.Q.shape[2]), **kw)
        return t0, p0, q0, PT, QT


@dataclass
class Dataset:
    """Train / validation / test trajectories of one system, with the settings that made them."""

    system: str
    train: Trajectories
    val: Trajectories
    test: Trajectories
    meta: Dict = field(default_factory=dict)

    def save(self, path: str) -> None:
        arrays = {}
        for split in ("train", "val", "test"):
            tr = getattr(self, split)
            arrays.update({f"{split}_t": tr.t, f"{split}_P": tr.P, f"{split}_Q": tr.Q})
        np.savez(path, system=self.system, meta=repr(self.meta), **arrays)

    @classmethod
    def load(cls, path: str) -> "Dataset":
        import ast

        z = np.load(path, allow_pickle=False)
        splits = {s: Trajectories(z[f"{s}_t"], z[f"{s}_P"], z[f"{s}_Q"]) for s in ("train", "val", "test")}
        return cls(str(z["system"]), meta=ast.literal_eval(str(z["meta"])), **splits)


def generate(
    system: "str | System",
    sizes: Tuple[int, int, int] = (2000, 300, 300),
    steps: int = 100,
    h: Optional[float] = None,
    noise: float = 0.0,
    seed: int = 0,
) -> Dataset:
    """Sample initial states, integrate the ground truth and split by trajectory.

    Args:
        system: a :class:`hinn.systems.System` or its name.
        sizes: samples (transitions) in train, validation, test; each is rounded up to whole trajectories.
        steps: transitions per trajectory (trajectories have steps + 1 states).
        h: observation interval (default: the system's ``default_h``).
        noise: standard deviation of Gaussian noise added to the observed p and q (not to the test split).
        seed: seeds initial states and noise; the same seed gives the same data set.
    """
    sys_ = get_system(system) if isinstance(system, str) else system
    h = float(h if h is not None else sys_.default_h)
    if steps < 1 or h <= 0 or noise < 0 or any(s < 1 for s in sizes):
        raise ValueError(f"need steps >= 1, h > 0, noise >= 0 and positive sizes; got {steps}, {h}, {noise}, {sizes}")
    rng = np.random.default_rng(seed)
    t = np.arange(steps + 1) * h
    out = {}
    for split, size in zip(("train", "val", "test"), sizes):
        n = math.ceil(size / steps)
        p0, q0 = sys_.sample_initial(n, rng)
        P, Q = sys_.trajectories(t, p0, q0)
        if noise and split != "test":
            P = P + noise * rng.standard_normal(P.shape)
            Q = Q + noise * rng.standard_normal(Q.shape)
        out[split] = Trajectories(t.copy(), P, Q)
    meta = {"system": sys_.config(), "sizes": list(sizes), "steps": steps, "h": h, "noise": noise, "seed": seed}
    return Dataset(sys_.name, meta=meta, **out)
