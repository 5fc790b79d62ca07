"""The training loop: HINN trajectory objective, plain gradient descent or Adam, mini-batches,
validation, early stopping, a progress bar and atomic, resumable checkpoints.

Determinism: the network's initial weights come from ``torch.manual_seed(seed)``, the mini-batch order
from a ``torch.Generator`` seeded with ``seed`` whose state is stored in every checkpoint, so a run resumed
from a checkpoint continues exactly as if it had not stopped.
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from .data import Dataset, generate
from .network import HamiltonianNet
from .objectives import trajectory_loss

CHECKPOINT = "checkpoint.pt"
OPTIMIZERS = ("gd", "adam")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in its checkpoint and ``config.json``)."""

    system: str = "spring"
    sizes: Tuple[int, int, int] = (2000, 300, 300)  # samples: train, validation, test
    steps: int = 100  # transitions per trajectory
    h: Optional[float] = None  # observation interval (system default)
    noise: float = 0.0
    width: int = 3
    depth: int = 20
    activation: str = "tanh"
    time_dependent: bool = True
    scheme: str = "symplectic_euler"
    window: int = 1  # K: one-step pairs (1) or K-step rollout windows
    optimizer: str = "gd"  # "gd" (plain gradient descent) or "adam"
    lr: float = 1e-3
    epochs: int = 1500
    batch_size: Optional[int] = None  # None: full batch
    patience: Optional[int] = None  # early stopping on the validation loss
    checkpoint_every: int = 100
    seed: int = 0
    backend: Optional[str] = None
    dtype: str = "float64"

    def __post_init__(self) -> None:
        self.sizes = tuple(int(s) for s in self.sizes)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; valid optimizers are {', '.join(OPTIMIZERS)}")
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; valid dtypes are {', '.join(DTYPES)}")
        if self.epochs < 0 or self.lr <= 0 or self.window < 1:
            raise ValueError("need epochs >= 0, lr > 0 and window >= 1")

    @classmethod
    def from_dict(cls, d: Dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; valid keys are {sorted(names)}")
        return cls(**d)


@dataclass
class TrainResult:
    net: HamiltonianNet
    data: Dataset
    history: List[Dict] = field(default_factory=list)
    stopped_early: bool = False


def make_dataset(cfg: TrainConfig) -> Dataset:
    return generate(cfg.system, cfg.sizes, cfg.steps, cfg.h, cfg.noise, cfg.seed)


def make_net(cfg: TrainConfig, dim: int) -> HamiltonianNet:
    torch.manual_seed(cfg.seed)
    return HamiltonianNet(
        dim,
        width=cfg.width,
        depth=cfg.depth,
        time_dependent=cfg.time_dependent,
        activation=cfg.activation,
        dtype=DTYPES[cfg.dtype],
        backend=cfg.backend,
    )


def _versions() -> Dict[str, str]:
    from . import __version__

    return {
        "hinn": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


def save_checkpoint(path: str, state: Dict) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str) -> Dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def train(
    cfg: TrainConfig,
    out_dir: Optional[str] = None,
    resume: bool = False,
    progress: bool = True,
    data: Optional[Dataset] = None,
) -> TrainResult:
    """Train a HamiltonianNet on ``cfg.system`` with the HINN trajectory objective.

    Args:
        cfg: the run's settings.
        out_dir: where ``checkpoint.pt``, ``config.json`` and ``data.npz`` go (None: nothing is written).
        resume: continue from ``out_dir/checkpoint.pt`` if it exists.
        progress: show a progress bar.
        data: a data set to use instead of generating one from ``cfg``.

    The final weights are those with the lowest validation loss.
    """
    data = data if data is not None else make_dataset(cfg)
    net = make_net(cfg, data.train.P.shape[2])
    dtype = DTYPES[cfg.dtype]
    h = data.train.h
    train_w = data.train.windows(cfg.window, dtype=dtype)
    val_w = data.val.windows(min(cfg.window, len(data.val.t) - 1), dtype=dtype)
    M = train_w[0].shape[0]
    bs = M if cfg.batch_size is None else min(cfg.batch_size, M)
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=cfg.lr) if cfg.optimizer == "gd" else torch.optim.Adam(params, lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: List[Dict] = []
    start_epoch = 0
    best = (math.inf, net.theta.detach().clone(), -1)
    ckpt = os.path.join(out_dir, CHECKPOINT) if out_dir else None
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(asdict(cfg), f, indent=1)
        data.save(os.path.join(out_dir, "data.npz"))
    if resume and ckpt and os.path.exists(ckpt):
        st = load_checkpoint(ckpt)
        if st["config"] != asdict(cfg):
            raise ValueError(f"{ckpt} was written with a different configuration; use another --out")
        net.load_state_dict(st["net"])
        opt.load_state_dict(st["optimizer"])
        gen.set_state(st["generator"])
        history, start_epoch = st["history"], st["epoch"]
        best = (st["best"][0], st["best"][1].to(dtype), st["best"][2])

    def state(epoch: int) -> Dict:
        return {
            "config": asdict(cfg),
            "epoch": epoch,
            "net": net.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "history": history,
            "best": best,
            "versions": _versions(),
        }

    def val_loss() -> float:
        with torch.no_grad():
            return float(trajectory_loss(net, *val_w, h, cfg.scheme))

    stopped = False
    bar = tqdm(
        range(start_epoch, cfg.epochs),
        desc=f"train {cfg.system}",
        disable=not progress,
        initial=start_epoch,
        total=cfg.epochs,
        dynamic_ncols=True,
    )
    for epoch in bar:
        perm = torch.randperm(M, generator=gen) if bs < M else None
        total = 0.0
        for b0 in range(0, M, bs):
            idx = perm[b0 : b0 + bs] if perm is not None else slice(None)
            t0, p0, q0 = (x[idx] for x in train_w[:3])
            PT, QT = train_w[3][:, idx], train_w[4][:, idx]
            loss = trajectory_loss(net, t0, p0, q0, PT, QT, h, cfg.scheme)
            if not math.isfinite(loss.item()):
                where = f"; the last good checkpoint is {ckpt}" if ckpt and os.path.exists(ckpt) else ""
                raise TrainingDiverged(
                    f"the training loss became {loss.item()} at epoch {epoch + 1}{where}. "
                    "Lower the learning rate or the time step."
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * (len(p0) / M)
        v = val_loss()
        history.append({"epoch": epoch + 1, "train_loss": total, "val_loss": v})
        if v < best[0]:
            best = (v, net.theta.detach().clone(), epoch + 1)
        bar.set_postfix(loss=f"{total:.3e}", val=f"{v:.3e}")
        if ckpt and ((epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs):
            save_checkpoint(ckpt, state(epoch + 1))
        if cfg.patience is not None and epoch + 1 - best[2] >= cfg.patience:
            stopped = True
            if ckpt:
                save_checkpoint(ckpt, state(epoch + 1))
            break
    bar.close()
    if best[2] > 0:
        with torch.no_grad():
            net.theta.copy_(best[1])
    return TrainResult(net, data, history, stopped)


def load_run(run_dir: str) -> TrainResult:
    """The trained network (best validation weights), data and history of a run folder."""
    st = load_checkpoint(os.path.join(run_dir, CHECKPOINT))
    cfg = TrainConfig.from_dict(st["config"])
    data = Dataset.load(os.path.join(run_dir, "data.npz"))
    net = make_net(cfg, data.train.P.shape[2])
    net.load_state_dict(st["net"])
    if st["best"][2] > 0:
        with torch.no_grad():
            net.theta.copy_(st["best"][1])
    return TrainResult(net, data, st["history"])
