"""Data-parallel training on ``torch.distributed``.

``torchrun --nproc-per-node K -m hinn train …`` (and multi-node the same way, with torchrun's
``--nnodes``/``--rdzv-endpoint``) starts K processes; :func:`init_from_env` joins them into one group
(gloo on CPU, NCCL on CUDA). Every process draws the same global minibatch (one seeded generator), takes
its share (``idx[rank::world]``), and computes the loss and gradient of that share; one all-reduce of
the flat gradient and the loss, each weighted by the share's fraction of the batch, then gives every
process the gradient of the global minibatch, so the optimizer steps stay identical everywhere and the
result equals a single process's (tests/test_distributed.py). Only rank 0 writes files and prints.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

import torch

from .devices import DeviceLike, resolve_device


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() else None


def world() -> Tuple[int, int]:
    """(rank, world size) of the current process group; (0, 1) outside one."""
    dist = _dist()
    if dist is not None and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def group_backend() -> Optional[str]:
    """The process group's communication backend ("gloo", "nccl"); None outside one."""
    dist = _dist()
    return dist.get_backend() if dist is not None and dist.is_initialized() else None


def is_main() -> bool:
    """Whether this process writes files and prints (rank 0, or no process group)."""
    return world()[0] == 0


def launched() -> bool:
    """Whether torchrun (or another launcher that sets WORLD_SIZE) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: DeviceLike = None) -> torch.device:
    """Join the process group torchrun describes in the environment; returns this process's device
    (on CUDA, ``cuda:LOCAL_RANK`` unless an index was given)."""
    dist = _dist()
    if dist is None:
        raise RuntimeError("this torch build has no torch.distributed")
    dev = resolve_device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev


def shutdown() -> None:
    dist = _dist()
    if dist is not None and dist.is_initialized():
        dist.destroy_process_group()


def share(idx: Optional[torch.Tensor], n: int) -> Tuple[Optional[torch.Tensor], float]:
    """This process's part of a minibatch of global sample indices ``idx`` (CPU; None: all ``n``) and the
    fraction of the minibatch it is. Process ``rank`` keeps the samples i with i % world == rank, at
    position i // world of its shard (:func:`hinn.train.fit` shards the objective so); the returned
    indices are those positions."""
    rank, size = world()
    if size == 1:
        return idx, 1.0
    full = torch.arange(n) if idx is None else idx.cpu()
    if full.numel() < size:
        raise ValueError(f"a minibatch of {full.numel()} samples cannot be shared by {size} processes")
    mine = full[full % size == rank] // size
    return mine, mine.numel() / full.numel()


def all_reduce_sum(tensors: List[torch.Tensor]) -> List[torch.Tensor]:
    """The element-wise sums over all processes, in one all-reduce of one flat buffer."""
    if world()[1] == 1:
        return tensors
    flat = torch.cat([t.reshape(-1) for t in tensors])
    _dist().all_reduce(flat)
    out, i = [], 0
    for t in tensors:
        out.append(flat[i : i + t.numel()].view_as(t))
        i += t.numel()
    return out
