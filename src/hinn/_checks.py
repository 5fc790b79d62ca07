"""Input validation for the public entry points (done once, at the boundary)."""

from __future__ import annotations

from typing import Optional, Tuple, Union

import torch

try:  # the compiled core's finiteness check (CPU); without the core, torch reductions do the same
    from . import _core
except ImportError:  # pragma: no cover - a build without the extension
    _core = None

Time = Union[float, int, torch.Tensor]

FLOAT_DTYPES = (torch.float32, torch.float64)


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


def _all_finite_cpu(xs) -> Optional[bool]:
    """The compiled core's check for contiguous CPU tensors of one floating dtype; None where it
    does not apply (no core, CUDA, strided or mixed tensors)."""
    if _core is None:
        return None
    dtype = xs[0].dtype
    if dtype not in FLOAT_DTYPES:
        return None
    if any(x.device.type != "cpu" or x.dtype != dtype or not x.is_contiguous() for x in xs):
        return None
    return _core.all_finite([(x.data_ptr(), x.numel()) for x in xs], dtype_code(dtype))


def dtype_code(dtype: torch.dtype) -> int:
    """The compiled core's code for a floating dtype (``hinn._core.DTYPES``)."""
    return _DTYPE_CODES[dtype] if dtype in _DTYPE_CODES else _core.DTYPES[str(dtype).rsplit(".", 1)[-1]]


_DTYPE_CODES = {} if _core is None else {dt: _core.DTYPES[str(dt)[6:]] for dt in FLOAT_DTYPES}


def check_finite(**tensors: torch.Tensor) -> None:
    """Raise ``ValueError`` naming the first tensor that holds NaN or infinity."""
    if _is_compiling():  # data-dependent checks cannot be traced; the eager path checks the same inputs
        return
    xs = list(tensors.values())
    ok = _all_finite_cpu(xs)
    if ok is None:
        # One reduction for all: any NaN or infinity makes the sum non-finite. A finite sum is proof; a
        # non-finite one (or an overflow of huge finite values) is sorted out tensor by tensor.
        ok = bool(torch.isfinite(sum(x.sum() for x in xs)))
    if ok:
        return
    for name, x in tensors.items():
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} contains NaN or infinite values")


def check_state(
    t: Time,
    p: torch.Tensor,
    q: torch.Tensor,
    dim: int,
    dtype: Optional[torch.dtype] = None,
    device: Optional[torch.device] = None,
) -> torch.Tensor:
    """Validate a batch of states for a model of phase-space half-dimension ``dim`` whose parameters
    (if any: ``dtype``/``device`` None to skip) have ``dtype`` and live on ``device``.

    Returns ``t`` as a tensor of shape (N,) with the dtype and device of ``p``.
    """
    for name, x in (("p", p), ("q", q)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 2:
            raise ValueError(f"{name} must have shape (N, d), got {tuple(x.shape)}")
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{name} has dtype {x.dtype}; expected torch.float32 or torch.float64")
    if p.shape != q.shape:
        raise ValueError(f"p has shape {tuple(p.shape)} but q has {tuple(q.shape)}")
    if p.shape[1] != dim:
        raise ValueError(f"p and q have d = {p.shape[1]} but the model was built for dim = {dim}")
    if p.dtype != q.dtype:
        raise TypeError(f"p has dtype {p.dtype} but q has {q.dtype}")
    if p.device != q.device:
        raise ValueError(f"p is on {p.device} but q is on {q.device}")
    if dtype is not None and p.dtype != dtype:
        raise TypeError(f"the state has dtype {p.dtype} but the model's parameters have {dtype}")
    if device is not None and p.device != device:
        raise ValueError(f"the state is on {p.device} but the model's parameters are on {device}")
    n = p.shape[0]
    if isinstance(t, bool) or not isinstance(t, (int, float, torch.Tensor)):
        raise TypeError(f"t must be a float or a tensor of shape (N,), got {type(t).__name__}")
    if isinstance(t, torch.Tensor):
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(f"t has dtype {t.dtype}; expected a floating dtype")
        if t.device != p.device:
            raise ValueError(f"t is on {t.device} but p is on {p.device}")
        if t.dtype != p.dtype:
            t = t.to(p.dtype)
        if t.dim() == 0:
            t = t.expand(n)
        elif t.dim() != 1 or t.shape[0] != n:
            raise ValueError(f"t must be a scalar or have shape ({n},), got {tuple(t.shape)}")
    else:
        t = torch.full((n,), float(t), dtype=p.dtype, device=p.device)
    check_finite(t=t, p=p, q=q)
    return t


def check_step_size(h: float) -> float:
    if isinstance(h, torch.Tensor):
        if h.numel() != 1:
            raise ValueError(f"h must be a scalar, got a tensor of shape {tuple(h.shape)}")
        h = float(h)
    if isinstance(h, bool) or not isinstance(h, (int, float)):
        raise TypeError(f"h must be a float, got {type(h).__name__}")
    h = float(h)
    if not (h == h and abs(h) != float("inf")):
        raise ValueError(f"h must be finite, got {h}")
    return h


def model_dtype_device(model) -> Tuple[Optional[torch.dtype], Optional[torch.device]]:
    """The dtype and device of a model's parameters: its flat parameter tensor ``theta`` where it has one
    (a :class:`hinn.HamiltonianNet`, without walking the module tree on every step), else its first
    floating parameter (None, None for a model without parameters, e.g. an analytic Hamiltonian)."""
    theta = getattr(model, "theta", None)
    if isinstance(theta, torch.nn.Parameter) and theta.is_floating_point():
        return theta.dtype, theta.device
    params = getattr(model, "parameters", None)
    if callable(params):
        for prm in params():
            if prm.is_floating_point():
                return prm.dtype, prm.device
    return None, None


def check_model_state(model, t: Time, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Validate (t, p, q) for ``model`` (its ``dim``, and its parameters' dtype and device)."""
    dim = getattr(model, "dim", None)
    if isinstance(dim, bool) or not isinstance(dim, int) or not callable(getattr(model, "grad", None)):
        raise TypeError(
            f"{type(model).__name__} is not a Hamiltonian model: it needs an integer attribute `dim` and a "
            "method `grad(t, p, q) -> (dH/dp, dH/dq)` (see hinn.protocols.HamiltonianModel)"
        )
    dtype, device = model_dtype_device(model)
    return check_state(t, p, q, dim, dtype, device)


def check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    return steps


def check_samples(owner: str, states: "dict[str, torch.Tensor]", stacked: "dict[str, torch.Tensor]") -> None:
    """Validate an objective's samples at construction: ``states`` are t (M,) then tensors of shape (M, d);
    ``stacked`` are targets of shape (K, M, d), K steps first. One dtype, one device, finite values;
    ``ValueError``/``TypeError`` naming the argument, its shape and the expected one (a target given as
    (M, K, d) is named as such)."""
    every = {**states, **stacked}
    for name, x in every.items():
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{owner}: {name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{owner}: {name} has dtype {x.dtype}; expected torch.float32 or torch.float64")
    (t_name, t), *rest = states.items()
    if t.dim() != 1:
        raise ValueError(f"{owner}: {t_name} must have shape (M,), got {tuple(t.shape)}")
    M = t.shape[0]
    ref_name, ref = rest[0]
    if ref.dim() != 2 or ref.shape[0] != M:
        raise ValueError(f"{owner}: {ref_name} must have shape (M, d) = ({M}, d), got {tuple(ref.shape)}")
    d = ref.shape[1]
    for name, x in rest[1:]:
        if tuple(x.shape) != (M, d):
            raise ValueError(f"{owner}: {name} has shape {tuple(x.shape)} but {ref_name} has {(M, d)}")
    K = None
    for name, x in stacked.items():
        if x.dim() == 3 and x.shape[1:] == (M, d) and (K is None or x.shape[0] == K):
            K = x.shape[0]
            continue
        hint = ""
        if x.dim() == 3 and x.shape[0] == M and x.shape[2] == d:
            hint = f"; yours looks like (M, K, d): pass {name}.transpose(0, 1)"
        expected = f"(K, {M}, {d})" if K is None else f"({K}, {M}, {d})"
        raise ValueError(f"{owner}: {name} must have shape (K, M, d) = {expected} (K steps, M samples), got "
                         f"{tuple(x.shape)}{hint}")  # fmt: skip
    dtypes = {x.dtype for x in every.values()}
    devices = {x.device for x in every.values()}
    if len(dtypes) > 1 or len(devices) > 1:
        kinds = ", ".join(f"{n} {x.dtype} on {x.device}" for n, x in every.items())
        raise TypeError(f"{owner}: every tensor needs one dtype and one device; got {kinds}")
    for name, x in every.items():
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError(f"{owner}: {name} contains NaN or infinite values")
