"""Where training and evaluation run: ``--device cpu|cuda[:k]``, or the best available by default."""

from __future__ import annotations

from typing import Optional, Union

import torch

DeviceLike = Union[str, torch.device, None]


def cuda_usable() -> bool:
    """A CUDA GPU is visible to torch (the fused backend also needs a core built with CUDA)."""
    return torch.cuda.is_available()


def resolve_device(device: DeviceLike = None) -> torch.device:
    """``None`` or ``"auto"``: CUDA when a GPU is visible, else the CPU. ``"cpu"``, ``"cuda"``,
    ``"cuda:k"``: that device, or ``ValueError`` saying why it cannot be used."""
    if device is None or device == "auto":
        return torch.device("cuda") if cuda_usable() else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:K") from e
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise ValueError(f"hinn trains on cpu or cuda devices, not {dev.type!r}")
    if not cuda_usable():
        raise ValueError(f"device {device!r} was asked for, but torch sees no CUDA GPU here; use --device cpu")
    n = torch.cuda.device_count()
    if dev.index is not None and dev.index >= n:
        raise ValueError(f"device {device!r} does not exist: this machine has {n} CUDA device(s)")
    return dev


def describe(device: Optional[torch.device]) -> str:
    dev = torch.device(device or "cpu")
    if dev.type == "cuda":
        return f"{dev} ({torch.cuda.get_device_name(dev)})"
    return str(dev)
