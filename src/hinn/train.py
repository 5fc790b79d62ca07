"""The training loop, written once: :func:`fit` trains any model on any objective (HINN's trajectory
objective, HNN's derivative objective) with plain gradient descent or Adam, mini-batches, validation,
early stopping, a progress bar and atomic, resumable checkpoints. :func:`train` is HINN on a data set
described by a :class:`TrainConfig`; :mod:`hinn.comparison` configures the same loop for the HNN paper's
models.

Determinism: the model's initial weights come from ``torch.manual_seed(seed)``, the mini-batch order
from a ``torch.Generator`` seeded with ``seed`` whose state is stored in every checkpoint, so a run resumed
from a checkpoint continues exactly as if it had not stopped.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm.auto import tqdm

from . import distributed
from .data import Dataset, generate, load_trajectories
from .devices import DeviceLike, resolve_device
from .integrators import SCHEMES, Scheme, get_scheme
from .network import ACTIVATIONS, HamiltonianNet
from .objectives import Objective, TrajectoryObjective
from .optim import OPTIMIZERS
from .tao import Tao

CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.prev.pt"  # the checkpoint before the last one, kept for a corrupted last one


DTYPES = {"float32": torch.float32, "float64": torch.float64}


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in its checkpoint and ``config.json``).

    The defaults learn every built-in system (benchmarks/RESULTS.md, "Training defaults"): Adam at 1e-3
    on mini-batches of 100 one-step pairs, a width-16, depth-4 network. The poster's own settings are the
    preset ``POSTER`` of :mod:`hinn.experiments` (``hinn reproduce``).

    Time dependence (``time_dependent``): a built-in system is learned with t as an input, as the poster
    does; a user's data set (``data``) as an autonomous H(p, q) unless asked otherwise — measured data
    are most often of a conservative system, and an autonomous H_θ is then both more accurate and
    checkable (its own energy must be conserved; with t as an input it need not be).
    """

    GENERATED_ONLY = ("sizes", "transitions", "h", "noise")  # fields that describe generated data

    system: str = "spring"  # a built-in system (hinn.systems.SYSTEMS); "data" for a run on a user's file
    data: Optional[str] = None  # a user's .npz trajectories (see hinn.data.load_trajectories) instead of a system
    sizes: Tuple[int, int, int] = (2000, 300, 300)  # samples: train, validation, test
    transitions: int = 100  # transitions per trajectory (generated data)
    h: Optional[float] = None  # observation interval (system default)
    noise: float = 0.0
    width: int = 16
    depth: int = 4
    activation: str = "tanh"
    separable: bool = False  # H = T(p) + V(t, q) (see HamiltonianNet): the explicit schemes are then symplectic
    time_dependent: Optional[bool] = None  # t an input of H_θ; None: yes for a built-in system, no for a user's data
    scheme: str = "symplectic_euler"
    omega: Optional[float] = None  # Tao's coupling ω (schemes tao, tao4; None: the scheme's default)
    window: int = 1  # K: one-step pairs (1) or K-step rollout windows
    fit_starts: bool = False  # initial-state optimisation: every training window's start fitted with θ
    starts_warmup: Optional[int] = None  # epochs before the starts are fitted (None: half the epochs)
    starts_refine: int = 0  # L-BFGS iterations on the fitted starts after every epoch past the warm-up (SRNN)
    optimizer: str = "adam"  # "adam" or "gd" (plain gradient descent)
    lr: float = 1e-3
    epochs: int = 1500
    batch_size: Optional[int] = 100  # None: full batch
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
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; valid activations are {', '.join(ACTIVATIONS)}")
        if self.epochs < 0 or self.lr <= 0 or self.window < 1:
            raise ValueError(f"need epochs >= 0, lr > 0 and window >= 1; got {self.epochs}, {self.lr}, {self.window}")
        if self.starts_refine < 0:
            raise ValueError(f"starts_refine must be >= 0 L-BFGS iterations, got {self.starts_refine}")
        if self.starts_warmup is not None and self.starts_warmup < 0:
            raise ValueError(
                f"starts_warmup must be >= 0 epochs (or None for half the epochs), got {self.starts_warmup}"
            )
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 (or None for full batches), got {self.batch_size}")
        get_scheme(self.scheme)  # an unknown name raises, listing the valid ones
        if self.omega is not None and not (issubclass(SCHEMES[self.scheme], Tao) and self.omega > 0):
            raise ValueError(f"omega (Tao's coupling) needs scheme tao or tao4 and omega > 0; got scheme "
                             f"{self.scheme!r}, omega {self.omega}")  # fmt: skip
        if self.data:
            defaults = {f.name: f.default for f in fields(self)}
            given = [k for k in self.GENERATED_ONLY if getattr(self, k) != defaults[k]]
            if given:
                raise ValueError(f"{', '.join(given)} apply only to generated data, not to a data file "
                                 f"({self.data}): its trajectories fix the sizes and the time step")  # fmt: skip

    @property
    def learns_time(self) -> bool:
        """Whether t is an input of the network (``time_dependent``, resolved)."""
        return self.time_dependent if self.time_dependent is not None else not self.data

    def integrator(self) -> Scheme:
        """The scheme the network is trained and rolled out with (with its ``omega`` where given)."""
        if self.omega is not None:
            return SCHEMES[self.scheme](omega=self.omega)
        return get_scheme(self.scheme)

    def describe(self) -> str:
        """The settings actually used, one line (the fields that do not apply to this run left out)."""
        skip = set(self.GENERATED_ONLY) | {"system"} if self.data else {"data"}
        if self.omega is None:
            skip.add("omega")
        if not self.fit_starts:
            skip |= {"starts_warmup", "starts_refine"}
        items = [("time_dependent", self.learns_time)] + [
            (f.name, getattr(self, f.name)) for f in fields(self) if f.name not in skip | {"time_dependent"}
        ]
        return ", ".join(f"{k}={v}" for k, v in items)

    @classmethod
    def from_dict(cls, d: Dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}; valid keys are {sorted(names)}")
        return cls(**d)


@dataclass
class TrainResult:
    """A trained run: the network (best validation weights), its data, the loss per epoch, its settings."""

    net: HamiltonianNet
    data: Dataset
    history: List[Dict] = field(default_factory=list)
    stopped_early: bool = False
    config: Optional[TrainConfig] = None
    fit_seconds: Optional[float] = None  # the optimisation alone (fit), without making and writing the data


@dataclass
class FitResult:
    history: List[Dict]  # one entry per epoch: epoch, train_loss, val_loss (when validated)
    stopped_early: bool
    best_epoch: int  # the epoch whose weights the model holds now (-1: the last, no validation)


def make_dataset(cfg: TrainConfig) -> Dataset:
    """The run's data: the user's file (``cfg.data``, split by trajectory) or generated from ``cfg.system``."""
    if cfg.data:
        return load_trajectories(cfg.data, seed=cfg.seed)
    return generate(cfg.system, cfg.sizes, cfg.transitions, cfg.h, cfg.noise, cfg.seed)


def make_net(cfg: TrainConfig, dim: int) -> HamiltonianNet:
    torch.manual_seed(cfg.seed)
    return HamiltonianNet(
        dim,
        width=cfg.width,
        depth=cfg.depth,
        time_dependent=cfg.learns_time,
        activation=cfg.activation,
        dtype=DTYPES[cfg.dtype],
        backend=cfg.backend,
        separable=cfg.separable,
    )


def _versions() -> Dict[str, str]:
    from . import __version__

    return {
        "hinn": __version__,
        "torch": str(torch.__version__),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }


class CheckpointError(RuntimeError):
    """A checkpoint could not be read (truncated, corrupted, or not a hinn checkpoint)."""


def save_checkpoint(path: str, state: Dict) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind, and the previous
    checkpoint is kept beside it (``checkpoint.prev.pt``) in case the newest one is damaged later."""
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    if os.path.exists(path):
        os.replace(path, os.path.join(os.path.dirname(path), PREVIOUS))
    os.replace(tmp, path)


def _read_checkpoint(path: str) -> Dict:
    try:
        st = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, wrong magic, unpickling refused: all mean "unusable"
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(st, dict) or "config" not in st or "model" not in st:
        raise CheckpointError(f"{path} is not a hinn checkpoint")
    return st


def load_checkpoint(path: str) -> Dict:
    """Read a checkpoint (``weights_only=True``: no code runs while loading). When it is damaged, the
    previous one beside it is used, with a warning; ``CheckpointError`` when neither can be read."""
    prev = os.path.join(os.path.dirname(path), PREVIOUS)
    try:
        return _read_checkpoint(path)
    except CheckpointError as e:
        if not os.path.exists(prev):
            raise
        warnings.warn(f"{e}; continuing from the previous checkpoint {prev}", RuntimeWarning, stacklevel=2)
        return _read_checkpoint(prev)


# Settings a resumed run may change: it can be extended (more epochs), or stop differently.
EXTENDABLE = ("epochs", "patience", "checkpoint_every")


def check_resumable(saved: Dict, run_state: Dict, path: str) -> None:
    """Raise ``ValueError`` naming every setting in which the checkpoint ``saved`` (read from ``path``)
    differs from this run's ``run_state["config"]``, except those in :data:`EXTENDABLE`."""
    old, new = saved.get("config"), run_state.get("config")
    if isinstance(old, dict) and isinstance(new, dict):
        diff = [f"{k} = {old.get(k)!r} there, {new.get(k)!r} here" for k in sorted(set(old) | set(new))
                if k not in EXTENDABLE and old.get(k) != new.get(k)]  # fmt: skip
    else:
        diff = [] if old == new else ["its configuration"]
    if diff:
        may = ", ".join(EXTENDABLE)
        raise ValueError(
            f"{path} was written with other settings ({'; '.join(diff)}); only {may} may change when resuming: "
            "use another --out for a new run"
        )


# A minibatch gets one thread per this many samples (the compiled core's own rule, read from it). The cap
# matters for torch's small per-step operations too (the optimizer update, index draws): an OpenMP region
# they open leaves its workers spin-waiting after every step, burning the cores other processes need. Measured
# (benchmarks/training.py, 2 cores): two trainings side by side took 5.2x their time alone with torch's
# default threads, 1.1x with this cap.
try:
    from ._core import MIN_SAMPLES_PER_THREAD as SAMPLES_PER_THREAD
except ImportError:  # the package without its compiled part
    SAMPLES_PER_THREAD = 256


@contextlib.contextmanager
def _thread_cap(n: int):
    """At most ``n`` torch threads (never more than the caller's setting) inside; the setting is restored."""
    old = torch.get_num_threads()
    if n < old:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if n < old:
            torch.set_num_threads(old)


def _loss_and_grads(model, objective: Objective, params, idx, frac: float, use_compiled: bool):
    """Sets each parameter's ``.grad`` to the gradient of the minibatch's loss and returns the loss (a
    one-element tensor, left on its device: reading it would wait for the device) and whether the
    objective's compiled ``loss_and_grad`` computed it (else autograd). ``idx``: this process's samples
    of the minibatch (None: all), ``frac``: the fraction of the minibatch they are; under
    torch.distributed one all-reduce sums the processes' shares, each weighted by its fraction."""
    compiled = None
    if frac == 0.0:  # none of this minibatch's samples live in this process's shard
        loss, grads = params[0].new_zeros(1), [torch.zeros_like(prm) for prm in params]
    else:
        compiled = objective.loss_and_grad(model, idx) if use_compiled else None
        if compiled is not None and not all(prm in compiled[1] for prm in params):
            compiled = None  # the model has parameters its compiled loss does not see
        if compiled is None:
            loss = objective.loss(model, idx)
            for prm in params:
                prm.grad = None
            (loss * frac if frac != 1.0 else loss).backward()
            grads = [prm.grad if prm.grad is not None else torch.zeros_like(prm) for prm in params]
        else:
            loss, by_param = compiled
            grads = [by_param[prm] * frac if frac != 1.0 else by_param[prm] for prm in params]
        loss = loss.detach().reshape(1) * frac
    loss, *grads = distributed.all_reduce_sum([loss, *grads])
    for prm, g in zip(params, grads):
        prm.grad = g
    return loss, compiled is not None


def _draw(gen: torch.Generator, M: int, bs: int, n: int, fresh: bool) -> Tuple[Optional[torch.Tensor], List[int]]:
    """An epoch's minibatches: (their sample indices one batch after the other, or None when every batch
    is all M samples; the n batches' sizes). Drawn on the CPU, so that the generator's stream does not depend
    on the device or the process count. ``fresh``: every batch from its own permutation."""
    if bs >= M:
        return None, [M] * n
    if fresh:
        return torch.cat([torch.randperm(M, generator=gen)[:bs] for _ in range(n)]), [bs] * n
    return torch.randperm(M, generator=gen), [bs] * (M // bs) + ([M % bs] if M % bs else [])


def _epoch_batches(order: Optional[torch.Tensor], sizes: List[int], M: int, device) -> List:
    """The minibatches of :func:`_draw` as (this process's sample indices or None for all, batch size,
    fraction), moved to ``device`` in one copy."""
    batches = [None] * len(sizes) if order is None else list(order.split(sizes))
    shares = [distributed.share(b, M) for b in batches]
    local = [i for i, _ in shares if i is not None]
    if local:
        moved = iter(torch.cat(local).to(device).split([i.numel() for i in local]))
        shares = [(next(moved) if i is not None else None, f) for i, f in shares]
    return [(i, M if b is None else b.numel(), f) for (i, f), b in zip(shares, batches, strict=True)]


def _epoch_in_core(run, order: Optional[torch.Tensor], sizes: List[int], M: int, by_size: bool, move: bool) -> float:
    """An epoch's minibatches through a compiled epoch (:class:`hinn.protocols.CompiledEpoch`; ``move``:
    whether the objective's fitted starts train too); the epoch's loss as the loop of steps sums it (each
    minibatch weighted by its share of the samples, or all alike when minibatches are drawn
    independently)."""
    index = torch.arange(M).repeat(len(sizes)) if order is None else order
    losses = run(index, _bounds(tuple(sizes)), move).tolist()
    return sum(x * _batch_weight(n, M, len(sizes), by_size) for x, n in zip(losses, sizes, strict=True))


@functools.lru_cache(maxsize=8)
def _bounds(sizes: Tuple[int, ...]) -> torch.Tensor:
    """Where each minibatch of these sizes starts in the epoch's index, and the end (read-only: cached,
    as an epoch's sizes repeat)."""
    return torch.tensor((0,) + sizes).cumsum(0)


def _batch_weight(n: int, M: int, n_batches: int, by_size: bool) -> float:
    """A minibatch's weight in the epoch's loss: its share of the M samples, or 1 / n_batches when the
    minibatches are drawn independently (``by_size`` False)."""
    return n / M if by_size else 1 / n_batches


def _local(objective: Objective, device) -> Objective:
    """This process's shard of an objective's samples (every world-th from its rank; all in a single
    process), moved to ``device`` where the objective can move."""
    rank, size = distributed.world()
    if size > 1:
        if not hasattr(objective, "take"):
            raise TypeError(
                f"data-parallel training needs an objective with take(idx); {type(objective).__name__} has none"
            )
        objective = objective.take(slice(rank, None, size))
    return objective.to(device) if hasattr(objective, "to") else objective


class _GraphedStep:
    """A training step (minibatch gather, compiled loss and gradient, optimizer update) recorded once in a
    CUDA graph and replayed for every later minibatch of the same size: no Python, allocation or launch
    overhead per step. The first step runs eagerly on a side stream (it initialises the optimizer state
    and the allocator's pools, as capture requires); the capture records the second."""

    def __init__(self, step):
        self.step, self.graph, self.idx = step, None, None

    def __call__(self, idx: torch.Tensor) -> torch.Tensor:
        if self.graph is None:
            self.idx = idx.clone()  # the captured step reads its minibatch from here
            side = torch.cuda.Stream(self.idx.device)
            side.wait_stream(torch.cuda.current_stream(self.idx.device))
            with torch.cuda.stream(side):
                loss = self.step(self.idx).clone()
            torch.cuda.current_stream(self.idx.device).wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.loss = self.step(self.idx)
            return loss
        self.idx.copy_(idx)
        self.graph.replay()
        return self.loss.clone()


def fit(
    model: torch.nn.Module,
    objective: Objective,
    *,
    optimizer: str = "adam",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    epochs: int = 1,
    batch_size: Optional[int] = None,
    batches_per_epoch: Optional[int] = None,
    seed: int = 0,
    validation: Optional[Objective] = None,
    patience: Optional[int] = None,
    checkpoint: Optional[str] = None,
    checkpoint_every: int = 100,
    run_state: Optional[Dict] = None,
    resume: bool = False,
    progress: bool = True,
    desc: str = "train",
    compiled_loss: bool = True,
    cuda_graph: bool = False,
    objective_warmup: int = 0,
    objective_refine: int = 0,
) -> FitResult:
    """Train ``model`` on ``objective``: the one training loop of hinn.

    Args:
        model: any module whose parameters the objective's loss depends on.
        objective: the training samples and loss (:mod:`hinn.objectives`). Tensors its ``parameters()``
            returns (a :class:`TrajectoryObjective`'s fitted window starts) are optimised with the model's,
            and its ``state_dict()`` travels in the checkpoint.
        optimizer, lr, weight_decay: ``"adam"`` or ``"gd"`` (plain gradient descent) and its settings.
        epochs: passes over the data; with ``batches_per_epoch``, that many mini-batches make an epoch
            (each drawn from a fresh permutation: the HNN paper's "steps").
        batch_size: samples per mini-batch (None: the full batch).
        seed: seeds the mini-batch order (a ``torch.Generator`` stored in checkpoints).
        validation: evaluated after every epoch; the model ends with the weights of the best epoch, and
            ``patience`` epochs without improvement stop the run early.
        checkpoint: a path; written atomically every ``checkpoint_every`` epochs, at the end and on an
            early stop, with ``run_state`` (e.g. the config) saved beside the weights. With ``resume``,
            training continues from it (``run_state["config"]`` must match but for :data:`EXTENDABLE` settings:
            a run can be extended to more epochs).

        compiled_loss: use the objective's ``loss_and_grad`` when it offers one for this model (the
            fused backend: forward, loss and backward in one compiled call); False: always autograd.
            Both give the same parameters to rounding.
        cuda_graph: replay full-size minibatch steps from a CUDA graph (model on CUDA, compiled loss, one
            process); the same parameters as without, less per-step overhead for small minibatches.
        objective_warmup: epochs (counted from the first, resumed runs included) during which the
            objective's own tensors (fitted window starts) stay where they are and the model alone
            trains. Fitting starts to a model that does not fit yet moves them toward its errors and lets
            it keep them (SRNN starts after 100 epochs); they get an optimizer of their own, of the same
            kind and learning rate but no weight decay, that starts counting when they do.
        objective_refine: after every epoch past the warm-up, this many iterations of the objective's own
            ``refine(model, iterations)`` (a :class:`TrajectoryObjective`'s fitted starts: L-BFGS with the
            model fixed, as SRNN does); 0: none.

    Nothing in the loop waits for the device: the loss is read once per epoch (and checked then).

    Raises:
        TrainingDiverged: the epoch's loss was NaN or infinite. The model is left with its best weights so
            far and the last good checkpoint is kept.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {optimizer!r}; valid optimizers are {', '.join(OPTIMIZERS)}")
    if objective_warmup < 0:
        raise ValueError(f"objective_warmup must be >= 0 epochs, got {objective_warmup}")
    for name, n in (("batch_size", batch_size), ("batches_per_epoch", batches_per_epoch)):
        if n is not None and (isinstance(n, bool) or not hasattr(n, "__index__") or n < 1):
            raise ValueError(f"{name} must be an integer >= 1 (or None), got {n!r}")
    params = [prm for prm in model.parameters() if prm.requires_grad]
    use_compiled = compiled_loss and hasattr(objective, "loss_and_grad")
    device = params[0].device if params else torch.device("cpu")
    if cuda_graph and (device.type != "cuda" or not use_compiled or distributed.world()[1] > 1):
        raise ValueError("cuda_graph needs the model on a CUDA device, compiled_loss=True and a single process")
    M, n_val = objective.n, validation.n if validation is not None else 0
    # this process's samples, on the model's device (all of them in a single process)
    objective = _local(objective, device)
    validation = _local(validation, device) if validation is not None else None
    # an objective's own trainable tensors (fitted window starts) are optimised with the model, by an
    # optimizer of their own that steps from the end of the warm-up on
    own = [prm for prm in getattr(objective, "parameters", list)() if prm.requires_grad]
    opt = OPTIMIZERS[optimizer](params, lr, weight_decay, capturable=cuda_graph)  # hinn.optim: torch's updates
    # no weight decay on them: it would pull fitted states toward the origin (their anchor term is the prior)
    opt_own = OPTIMIZERS[optimizer](own, lr, 0.0, capturable=cuda_graph) if own else None
    if objective_refine < 0 or (objective_refine and not (own and callable(getattr(objective, "refine", None)))):
        raise ValueError(
            f"objective_refine needs >= 0 iterations and an objective with tensors of its own to refine (fitted "
            f"starts); got {objective_refine} for a {type(objective).__name__} with {len(own)}"
        )
    params += own
    bs = M if batch_size is None else min(int(batch_size), M)
    gen = torch.Generator().manual_seed(seed)
    history: List[Dict] = []
    start_epoch = 0
    flat = lambda: torch.cat([prm.detach().reshape(-1) for prm in params])  # noqa: E731  (a copy)
    best = (math.inf, flat(), -1)
    run_state = run_state or {}
    if resume and checkpoint and os.path.exists(checkpoint):
        st = load_checkpoint(checkpoint)
        check_resumable(st, run_state, checkpoint)
        _restore(st, model, objective, opt, opt_own, gen)
        history, start_epoch = st["history"], st["epoch"]
        best = (st["best"][0], st["best"][1].to(best[1]), st["best"][2])

    def state(epoch: int) -> Dict:
        return {
            **run_state,
            "epoch": epoch,
            "model": model.state_dict(),
            "objective": objective.state_dict() if hasattr(objective, "state_dict") else {},
            "optimizer": opt.state_dict(),
            "objective_optimizer": opt_own.state_dict() if opt_own is not None else None,
            "generator": gen.get_state(),
            "history": history,
            "best": best,
            "versions": _versions(),
        }

    n_batches = -(-M // bs) if batches_per_epoch is None else int(batches_per_epoch)
    stopped = False
    # progress: a bar on a terminal (disable=None lets tqdm turn itself off when stderr is not a TTY)
    writer = bool(checkpoint) and distributed.is_main()  # under torchrun, rank 0 alone writes and shows
    show = progress and distributed.is_main()
    bar = tqdm(range(start_epoch, epochs), desc=desc, disable=None if show else True, initial=start_epoch,
               total=epochs, dynamic_ncols=True)  # fmt: skip

    warm = start_epoch < objective_warmup  # whether the objective's tensors stay fixed this epoch

    def eager_step(idx, frac=1.0):
        loss, used_compiled = _loss_and_grads(model, objective, params, idx, frac, use_compiled)
        if cuda_graph and not used_compiled:
            raise ValueError("cuda_graph needs a compiled loss for this model and scheme (the fused backend)")
        opt.step()
        if opt_own is not None and not warm:
            opt_own.step()
        return loss

    graphed = _GraphedStep(eager_step) if cuda_graph else None
    # a whole epoch in one compiled call where the objective, model and optimizers allow it (the CPU, one
    # process, hinn's optimizers): the same updates without the Python of a step per minibatch
    in_core = None
    if use_compiled and distributed.world()[1] == 1 and hasattr(objective, "compiled_epoch"):
        in_core = objective.compiled_epoch(model, opt, opt_own)
    every = torch.arange(M, device=device) if cuda_graph else None  # a full batch as indices, for the graph
    # prepared after a resume's restore: the evaluator holds the weights' storage
    evaluate = _evaluator(model, validation) if validation is not None and validation.n else None
    with _thread_cap(max(1, bs // SAMPLES_PER_THREAD)):
        for epoch in bar:
            if warm and epoch >= objective_warmup:
                warm = False
                graphed = _GraphedStep(eager_step) if cuda_graph else None  # a step that updates them too
            order, sizes = _draw(gen, M, bs, n_batches, batches_per_epoch is not None)
            if in_core is not None:
                total = _epoch_in_core(in_core, order, sizes, M, batches_per_epoch is None, not warm)
            else:
                total = torch.zeros(1, dtype=torch.float64, device=device)
                for idx, n_b, frac in _epoch_batches(order, sizes, M, device):
                    if graphed is not None and n_b == bs:
                        loss = graphed(every if idx is None else idx)
                    else:
                        loss = eager_step(idx, frac)
                    total += loss * _batch_weight(n_b, M, n_batches, batches_per_epoch is None)
            if objective_refine and not warm:
                objective.refine(model, objective_refine)
            total = float(total)  # the epoch's one wait for the device
            if not math.isfinite(total):
                if best[2] > 0:
                    _set_flat(params, best[1])
                _raise_diverged(total, epoch + 1, checkpoint)
            entry = {"epoch": epoch + 1, "train_loss": total}
            if validation is not None:
                v = _validation_loss(evaluate, validation.n, n_val, params)
                entry["val_loss"] = v
                if v < best[0]:
                    best = (v, flat(), epoch + 1)
            if not bar.disable:  # a hidden bar (no terminal, progress=False): nothing to format
                shown = {"val": f"{entry['val_loss']:.3e}"} if validation is not None else {}
                bar.set_postfix(loss=f"{total:.3e}", **shown)
            history.append(entry)
            if writer and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
                save_checkpoint(checkpoint, state(epoch + 1))
            if validation is not None and patience is not None and epoch + 1 - best[2] >= patience:
                stopped = True
                if writer:
                    save_checkpoint(checkpoint, state(epoch + 1))
                break
    bar.close()
    if best[2] > 0:
        _set_flat(params, best[1])
    return FitResult(history, stopped, best[2])


def _restore(st: Dict, model, objective, opt, opt_own, gen: torch.Generator) -> None:
    """Model, objective (fitted starts), optimizers and minibatch generator as a checkpoint left them."""
    model.load_state_dict(st["model"])
    if hasattr(objective, "load_state_dict"):
        objective.load_state_dict(st.get("objective", {}))
    opt.load_state_dict(st["optimizer"])
    if opt_own is not None:
        if st.get("objective_optimizer") is None:
            raise ValueError("this checkpoint holds no optimizer state for the objective's fitted starts (it was "
                             "written by an earlier hinn, whose starts shared the model's optimizer, or by a run "
                             "without fitted starts); start the run afresh")  # fmt: skip
        opt_own.load_state_dict(st["objective_optimizer"])
    gen.set_state(st["generator"])


def _evaluator(model, validation: Objective) -> Callable[[], torch.Tensor]:
    """The validation loss over this process's shard as a function of nothing: the objective's prepared
    ``evaluator`` where it has one, else its loss under no_grad."""
    prepared = getattr(validation, "evaluator", None)
    run = prepared(model) if prepared is not None else None
    if run is not None:
        return run

    def evaluate() -> torch.Tensor:
        with torch.no_grad():
            return validation.loss(model)

    return evaluate


def _validation_loss(evaluate: Optional[Callable[[], torch.Tensor]], n_local: int, n_val: int, params) -> float:
    """The validation loss over all processes' shards (each weighted by its share of the samples; a
    shard without samples has no ``evaluate``)."""
    if distributed.world()[1] == 1 and evaluate is not None:
        return float(evaluate())
    with torch.no_grad():
        local = evaluate().detach().reshape(1) * (n_local / n_val) if n_local else params[0].new_zeros(1)
        (v,) = distributed.all_reduce_sum([local])
    return float(v)


def _set_flat(params, vec: torch.Tensor) -> None:
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(vec, params)


def _raise_diverged(total: float, epoch: int, checkpoint: Optional[str]) -> None:
    where = f"; the last good checkpoint is {checkpoint}" if checkpoint and os.path.exists(checkpoint) else ""
    raise TrainingDiverged(
        f"the training loss became {total} at epoch {epoch}{where}. Lower the learning rate or the time step."
    )


def train(
    cfg: TrainConfig,
    out_dir: Optional[str] = None,
    resume: bool = False,
    progress: bool = True,
    data: Optional[Dataset] = None,
    device: DeviceLike = None,
    cuda_graph: bool = False,
) -> TrainResult:
    """Train a HamiltonianNet with the HINN trajectory objective on ``cfg``'s data.

    Args:
        cfg: the run's settings.
        out_dir: where ``checkpoint.pt``, ``config.json`` and ``data.npz`` go (None: nothing is written).
        resume: continue from ``out_dir/checkpoint.pt`` if it exists.
        progress: show a progress bar (on a terminal).
        data: a data set to use instead of the one ``cfg`` describes.
        device: where the network, the data and the training run (None: CUDA when available, else CPU).
            Not part of the configuration: a run resumes, and its checkpoint loads, on any device.
        cuda_graph: replay training steps from a CUDA graph (see :func:`fit`).

    The final weights are those with the lowest validation loss.
    """
    dev = resolve_device(device)
    data = data if data is not None else make_dataset(cfg)
    net = make_net(cfg, data.train.P.shape[2]).to(dev)
    # the samples stay on the CPU here: fit moves this process's shard of them to the device
    kw = dict(dtype=DTYPES[cfg.dtype])
    h = data.train.h
    scheme = cfg.integrator()
    train_obj = TrajectoryObjective(*data.train.windows(cfg.window, **kw), h, scheme, fit_starts=cfg.fit_starts)
    val_obj = TrajectoryObjective(*data.val.windows(min(cfg.window, len(data.val.t) - 1), **kw), h, scheme)
    ckpt = os.path.join(out_dir, CHECKPOINT) if out_dir else None
    run_state = {"config": _plain(asdict(cfg))}
    if resume and ckpt and os.path.exists(ckpt):  # refuse before anything in the folder is overwritten
        check_resumable(load_checkpoint(ckpt), run_state, ckpt)
    if out_dir and distributed.is_main():
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(asdict(cfg), f, indent=1)
        data.save(os.path.join(out_dir, "data.npz"))
    start = time.perf_counter()
    res = fit(
        net,
        train_obj,
        optimizer=cfg.optimizer,
        lr=cfg.lr,
        epochs=cfg.epochs,
        batch_size=cfg.batch_size,
        seed=cfg.seed,
        validation=val_obj,
        patience=cfg.patience,
        checkpoint=ckpt,
        checkpoint_every=cfg.checkpoint_every,
        run_state=run_state,
        resume=resume,
        progress=progress,
        desc=f"train {data.system}",
        cuda_graph=cuda_graph,
        objective_warmup=cfg.epochs // 2 if cfg.starts_warmup is None else cfg.starts_warmup,
        objective_refine=cfg.starts_refine if cfg.fit_starts else 0,
    )
    return TrainResult(net, data, res.history, res.stopped_early, cfg, time.perf_counter() - start)


def _plain(d: Dict) -> Dict:
    # checkpoints load with weights_only=True: keep the config to lists, dicts and scalars
    return json.loads(json.dumps(d))


def load_run(run_dir: str) -> TrainResult:
    """The trained network (best validation weights), data, history and settings of a run folder (what
    ``hinn train --out run_dir`` or :func:`train` with ``out_dir`` wrote)."""
    if not os.path.exists(os.path.join(run_dir, CHECKPOINT)):
        raise ValueError(f"{run_dir} is not a run folder: it has no {CHECKPOINT} (hinn train --out writes one)")
    st = load_checkpoint(os.path.join(run_dir, CHECKPOINT))
    cfg = TrainConfig.from_dict(st["config"])
    data = Dataset.load(os.path.join(run_dir, "data.npz"))
    net = make_net(cfg, data.train.P.shape[2])
    net.load_state_dict(st["model"])
    if st["best"][2] > 0:
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(st["best"][1].to(net.theta), list(net.parameters()))
    return TrainResult(net, data, st["history"], config=cfg)
