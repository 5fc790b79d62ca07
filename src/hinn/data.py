"""Trajectory data sets: generation from a system, train/validation/test splits, noise, .npz files,
and the training views (one-step pairs, K-step windows, time derivatives).

What a "sample" is (the poster does not say): one observed transition (t_k, p_k, q_k) → (p_{k+1}, q_{k+1})
of a trajectory sampled every ``h``. A split of S samples holds S / ``steps`` trajectories of ``steps``
transitions each, from independent initial states; splits never share a trajectory.
"""

from __future__ import annotations

import math
import os
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
        seed: seeds initial states and noise, one independent stream per split; the same seed gives the
            same data set, and each split depends only on its own size.
    """
    sys_ = get_system(system) if isinstance(system, str) else system
    h = float(h if h is not None else sys_.default_h)
    if steps < 1 or h <= 0 or noise < 0 or any(s < 1 for s in sizes):
        raise ValueError(f"need steps >= 1, h > 0, noise >= 0 and positive sizes; got {steps}, {h}, {noise}, {sizes}")
    t = np.arange(steps + 1) * h
    out = {}
    # one independent stream per split: the test and validation sets do not change with the training size
    streams = np.random.SeedSequence(seed).spawn(3)
    for split, size, stream in zip(("train", "val", "test"), sizes, streams):
        rng = np.random.default_rng(stream)
        n = math.ceil(size / steps)
        p0, q0 = sys_.sample_initial(n, rng)
        P, Q = sys_.trajectories(t, p0, q0)
        if noise and split != "test":
            P = P + noise * rng.standard_normal(P.shape)
            Q = Q + noise * rng.standard_normal(Q.shape)
        out[split] = Trajectories(t.copy(), P, Q)
    meta = {"system": sys_.config(), "sizes": list(sizes), "steps": steps, "h": h, "noise": noise, "seed": seed}
    return Dataset(sys_.name, meta=meta, **out)


SPLIT_FRACTIONS = (0.7, 0.15, 0.15)


def load_trajectories(
    path: str, seed: int = 0, fractions: Tuple[float, float, float] = SPLIT_FRACTIONS, min_trajectories: int = 3
) -> Dataset:
    """A user's observed trajectories as a :class:`Dataset`, split by trajectory.

    File format (``.npz``, e.g. ``np.savez(path, t=t, p=P, q=Q)``):

    * ``t``: (T,) observation times, strictly increasing and uniformly spaced (relative spread of the
      steps at most 1e-6; resample non-uniform data onto a uniform grid first);
    * ``p``, ``q``: (M, T, d) momenta and positions of M trajectories (or (T, d) for one trajectory);
    * optionally ``h``: the step, checked against ``t``.

    The trajectories are shuffled with ``seed`` and split by ``fractions`` (train, validation, test;
    at least one trajectory in each split with a positive fraction; ``min_trajectories`` 3 by default).
    Raises ``ValueError`` naming what is wrong: a missing
    array, shapes, a non-finite value (with its trajectory), a non-increasing or non-uniform ``t``.
    """
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read it as an .npz file ({e})") from None
    missing = [k for k in ("t", "p", "q") if k not in z.files]
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)}; expected t (T,), p and q (M, T, d)")
    t = np.asarray(z["t"], dtype=np.float64)
    P, Q = np.asarray(z["p"], dtype=np.float64), np.asarray(z["q"], dtype=np.float64)
    if P.ndim == 2:
        P, Q = P[None], Q[None]
    if t.ndim != 1 or len(t) < 2:
        raise ValueError(f"{path}: t must have shape (T,) with T >= 2, got {t.shape}")
    if P.ndim != 3 or P.shape != Q.shape or P.shape[1] != len(t):
        raise ValueError(f"{path}: p and q must have shape (M, T, d) with T = {len(t)}; got p {P.shape}, q {Q.shape}")
    if not np.isfinite(t).all():
        raise ValueError(f"{path}: t contains NaN or infinite values")
    for name, X in (("p", P), ("q", Q)):
        bad = ~np.isfinite(X).all(axis=(1, 2))
        if bad.any():
            raise ValueError(f"{path}: {name} contains NaN or infinite values in trajectory {int(np.argmax(bad))}")
    dt = np.diff(t)
    if (dt <= 0).any():
        k = int(np.argmax(dt <= 0))
        raise ValueError(f"{path}: t must be strictly increasing (t[{k}] = {t[k]}, t[{k + 1}] = {t[k + 1]})")
    h = float(dt.mean())
    if np.abs(dt - h).max() > 1e-6 * h:
        raise ValueError(f"{path}: the time steps are not uniform (from {dt.min():g} to {dt.max():g}); resample the "
                         "trajectories onto a uniform grid")  # fmt: skip
    if "h" in z.files and abs(float(z["h"]) - h) > 1e-6 * h:
        raise ValueError(f"{path}: h = {float(z['h'])} does not match the spacing of t ({h})")
    M = P.shape[0]
    if M < min_trajectories:
        raise ValueError(f"{path}: need at least {min_trajectories} trajectories (train, validation, test), got {M}")
    order = np.random.default_rng(seed).permutation(M)
    count = lambda f: 0 if f == 0 else max(1, int(round(f * M)))  # noqa: E731
    n_val, n_test = count(fractions[1]), count(fractions[2])
    n_train = M - n_val - n_test
    if n_train < (1 if fractions[0] > 0 else 0):
        raise ValueError(f"{path}: {M} trajectories are too few to split {fractions}")
    parts = np.split(order, [n_train, n_train + n_val])
    splits = {name: Trajectories(t.copy(), P[idx], Q[idx]) for name, idx in zip(("train", "val", "test"), parts)}
    meta = {"source": os.path.abspath(path), "seed": seed, "h": h, "trajectories": [len(x) for x in parts]}
    return Dataset(USER_DATA, meta=meta, **splits)


USER_DATA = "data"  # the system name of a data set loaded from a user's file (no known Hamiltonian)
