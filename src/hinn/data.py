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


def read_npz(path: str) -> Dict[str, np.ndarray]:
    """The arrays of an ``.npz`` archive, or a ``ValueError`` that says what the file is instead."""
    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such file")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # text, pickles, truncated archives: numpy's messages say little
        z = None
    if not isinstance(z, np.lib.npyio.NpzFile):
        what = "a single .npy array" if isinstance(z, np.ndarray) else "not a NumPy .npz archive"
        raise ValueError(f"{path}: {what}; expected an .npz archive with arrays t (T,), p and q (M, T, d), "
                         "written by np.savez(path, t=t, p=p, q=q)")  # fmt: skip
    with z:
        return {k: z[k] for k in z.files}


def _eps(dtype: np.dtype) -> float:
    return float(np.finfo(dtype).eps) if np.issubdtype(dtype, np.floating) else 0.0


def uniform_step(t: np.ndarray, stored: np.dtype, what: str = "t") -> float:
    """The step of the time grid ``t`` (T,), checked to be strictly increasing and uniform.

    Uniform means: every step within rounding of the mean step, where rounding is that of the precision
    ``t`` was stored in (float32 times such as 0.1, 0.2, ... 10.0 differ from a uniform grid by about
    ``eps(float32) · max|t|``), and at least 1e-6 relative. Raises ``ValueError`` naming the offending
    entries otherwise."""
    dt = np.diff(t)
    if (dt <= 0).any():
        k = int(np.argmax(dt <= 0))
        raise ValueError(f"{what} must be strictly increasing ({what}[{k}] = {t[k]}, {what}[{k + 1}] = {t[k + 1]})")
    h = float((t[-1] - t[0]) / (len(t) - 1))
    tol = max(1e-6 * h, 8 * _eps(stored) * float(np.abs(t).max()))
    if np.abs(dt - h).max() > tol:
        k = int(np.argmax(np.abs(dt - h)))
        raise ValueError(f"the time steps are not uniform (from {dt.min():g} to {dt.max():g}; {what}[{k + 1}] - "
                         f"{what}[{k}] = {dt[k]:g} against a mean step of {h:g}); resample the trajectories onto "
                         "a uniform grid")  # fmt: skip
    return h


def _trajectory_array(path: str, name: str, X: np.ndarray, T: int) -> np.ndarray:
    """p or q as (M, T, d) (one trajectory may come as (T, d)), with an error that shows the shape given."""
    if X.ndim == 2 and X.shape[0] == T:
        return X[None]
    if X.ndim == 3 and X.shape[1] == T:
        return X
    hint = ""
    if X.ndim == 2 and X.shape[1] == T:
        hint = f"; for d = 1 add the last axis ({name}[..., None] has shape {X.shape + (1,)})"
    raise ValueError(f"{path}: {name} has shape {X.shape}, expected (M, T, d) or (T, d) with T = {T} (the length "
                     f"of t){hint}")  # fmt: skip


def load_trajectories(
    path: str, seed: int = 0, fractions: Tuple[float, float, float] = SPLIT_FRACTIONS, min_trajectories: int = 3
) -> Dataset:
    """A user's observed trajectories as a :class:`Dataset`, split by trajectory.

    File format (``.npz``, e.g. ``np.savez(path, t=t, p=P, q=Q)``; float32 or float64):

    * ``t``: (T,) observation times, strictly increasing and uniformly spaced (up to the rounding of the
      precision they are stored in, see :func:`uniform_step`; resample non-uniform data onto a uniform
      grid first). The data set holds them as the uniform grid t[0] + k h;
    * ``p``, ``q``: (M, T, d) momenta and positions of M trajectories (or (T, d) for one trajectory);
    * optionally ``h``: the step, checked against ``t``.

    The trajectories are shuffled with ``seed`` and split by ``fractions`` (train, validation, test;
    at least one trajectory in each split with a positive fraction; ``min_trajectories`` 3 by default).
    Raises ``ValueError`` naming what is wrong: not an ``.npz`` archive, a missing array, shapes, a
    non-finite value (with its trajectory), a non-increasing or non-uniform ``t``.
    """
    z = read_npz(path)
    missing = [k for k in ("t", "p", "q") if k not in z]
    if missing:
        raise ValueError(f"{path}: missing array(s) {', '.join(missing)} (it has {', '.join(z) or 'none'}); "
                         "expected t (T,), p and q (M, T, d)")  # fmt: skip
    for k in ("t", "p", "q"):
        if not (np.issubdtype(z[k].dtype, np.floating) or np.issubdtype(z[k].dtype, np.integer)):
            raise ValueError(f"{path}: {k} must hold numbers, got dtype {z[k].dtype}")
    t_stored = z["t"].dtype
    t = np.asarray(z["t"], dtype=np.float64)
    if t.ndim != 1 or len(t) < 2:
        raise ValueError(f"{path}: t must have shape (T,) with T >= 2, got {t.shape}")
    T = len(t)
    P = _trajectory_array(path, "p", np.asarray(z["p"], dtype=np.float64), T)
    Q = _trajectory_array(path, "q", np.asarray(z["q"], dtype=np.float64), T)
    if P.shape != Q.shape:
        raise ValueError(f"{path}: p and q must have the same shape; got p {z['p'].shape}, q {z['q'].shape}")
    if not np.isfinite(t).all():
        raise ValueError(f"{path}: t contains NaN or infinite values")
    for name, X in (("p", P), ("q", Q)):
        bad = ~np.isfinite(X).all(axis=(1, 2))
        if bad.any():
            raise ValueError(f"{path}: {name} contains NaN or infinite values in trajectory {int(np.argmax(bad))}")
    try:
        h = uniform_step(t, t_stored)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    if "h" in z and (z["h"].size != 1 or abs(float(z["h"]) - h) > max(1e-6, 8 * _eps(z["h"].dtype)) * h):
        raise ValueError(f"{path}: h = {z['h']} does not match the spacing of t ({h})")
    t = t[0] + h * np.arange(T)
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
