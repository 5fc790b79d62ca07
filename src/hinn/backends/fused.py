"""The fused backend: ``torch.library`` custom ops over the compiled core ``hinn._core``.

Ops (float32/float64; CPU, and CUDA when the core was built with it):

=====================  ==========================================  ===============================
op                     computes                                    differentiable in
=====================  ==========================================  ===============================
``hinn::hamiltonian``  H alone (the primal pass)                   θ, t, p, q (first order)
``hinn::grad``         (H, ∂pH, ∂qH) for a batch                   θ, t, p, q (first order)
``hinn::step``         one integrator step (p, q) → (p', q')       θ, p, q (first order)
``hinn::rollout``      ``steps`` steps, the whole trajectory       θ, p0, q0 (first order)
``hinn::*_backward``   the vector–Jacobian products of the above   not differentiable
=====================  ==========================================  ===============================

For training, :func:`window_loss_grad` runs training windows, their loss and the whole backward in one
call without autograd (what :func:`hinn.train.fit` uses on this backend).

Time is an input but no gradient flows to it through ``step``/``rollout``. Second derivatives of the
training losses with respect to θ (Hessian-vector products) are not provided; use the autograd backend
for those.

Every op guards its own door: it checks θ's length against the structure ``spec`` = [d, time, width,
depth, activation code], the shapes of t, p, q and of every cotangent, one dtype and one device, in its
real implementation (plain comparisons: cheap) and its fake one (``torch._check*``, so that
``torch.compile`` and ``torch.export`` see the same contract on symbolic sizes); the eager step and
rollout behind ``hinn.step``/``hinn.rollout`` trust the checks of those entry points and keep one
comparison. The compiled core sees only raw pointers (DESIGN §4): tensors are made contiguous and kept
referenced here until the call returns, and the core checks every buffer's size once more. CPU calls are
prepared once (``core.Plan``) and then take their buffers' pointers alone.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from .._checks import FLOAT_DTYPES, dtype_code
from ..implicit import SolverError
from ..scheme import COMPILED_SCHEMES
from .base import Backend

try:
    from .. import _core as core

    import_error: Optional[BaseException] = None
except ImportError as e:  # the package can be used without its compiled part (autograd / hessquik)
    core = None
    import_error = e


def require() -> None:
    if core is None:
        raise RuntimeError(
            f"the 'fused' backend needs hinn's compiled core, which failed to import ({import_error}). "
            "Reinstall hinn with `pip install .`, or choose backend='autograd'."
        )


# ----------------------------------------------------------------------------- argument checks
# One contract, two ways of enforcing it: the real implementations see concrete sizes and compare them
# directly (torch._check* costs microseconds per call, on the hot path of every training step); the fake
# implementations use torch._check*, which keeps symbolic sizes symbolic under torch.compile and export.
def _eager_value(cond, msg) -> None:
    if not cond:
        raise ValueError(msg())


def _eager_type(cond, msg) -> None:
    if not cond:
        raise TypeError(msg())


EAGER = (_eager_value, _eager_type)
TRACED = (torch._check_value, torch._check_type)


def n_params(spec: Sequence[int]) -> int:
    d, time, w, L, _ = spec
    n_in = 2 * d + time
    return n_in * w + w + L * (w * w + w) + w + 1


def _check_spec(op: str, spec: Sequence[int], hr: float, chk=EAGER) -> None:
    value, _ = chk
    value(len(spec) == 5, lambda: f"hinn::{op}: spec must be [d, time, width, depth, act], got {spec}")
    d, time, w, L, act = spec
    n_act = len(core.ACTIVATIONS) if core is not None else 2
    value(
        d >= 1 and time in (0, 1) and w >= 1 and L >= 0 and 0 <= act < n_act,
        lambda: f"hinn::{op}: invalid structure d={d}, time={time}, width={w}, depth={L}, act={act}",
    )
    value(hr == hr and abs(hr) != float("inf"), lambda: f"hinn::{op}: the residual step must be finite")


def _check_like(op: str, name: str, x: Tensor, ref: Tensor, shape: Sequence[int], chk=EAGER) -> None:
    value, type_ = chk
    type_(x.dtype == ref.dtype, lambda: f"hinn::{op}: {name} has dtype {x.dtype}, p has {ref.dtype}")
    value(x.device == ref.device, lambda: f"hinn::{op}: {name} is on {x.device}, p is on {ref.device}")
    bad = lambda: f"hinn::{op}: {name} must have shape {tuple(shape)}, got {tuple(x.shape)}"  # noqa: E731
    value(x.dim() == len(shape), bad)
    for a, b in zip(x.shape, shape):
        value(a == b, bad)


def _check_inputs(
    op: str, theta: Tensor, t: Tensor, p: Tensor, q: Tensor, spec, hr: float, lead=(), chk=EAGER, width=None
):
    """θ, t (N,), p and q (*lead, N, width) against ``spec``: lengths, shapes, one dtype, one device.
    ``width``: d of ``spec`` unless given (a scheme's state can be wider: :func:`_state_dim`)."""
    value, type_ = chk
    _check_spec(op, spec, hr, chk)
    type_(p.dtype in FLOAT_DTYPES, lambda: f"hinn::{op}: p has dtype {p.dtype}; expected float32 or float64")
    value(p.dim() == len(lead) + 2, lambda: f"hinn::{op}: p must have {len(lead) + 2} dimensions, got {tuple(p.shape)}")
    N, d = p.shape[-2], p.shape[-1]
    want = spec[0] if width is None else width
    value(d == want, lambda: f"hinn::{op}: p has width {d}; the structure (d = {spec[0]}) needs {want}")
    _check_like(op, "q", q, p, tuple(p.shape), chk)
    _check_like(op, "t", t, p, (N,), chk)
    _check_like(op, "theta", theta, p, (n_params(spec),), chk)


# ----------------------------------------------------------------------------- the call into the core
@lru_cache(maxsize=64)
def _desc(spec: Tuple[int, ...], hr: float):
    d, time, w, L, act = spec
    return core.NetDesc(d=d, time=time, width=w, depth=L, act=act, hr=hr)


_dtype_code = lru_cache(maxsize=None)(dtype_code)


def _arguments(op: str, spec: Sequence[int], hr: float, x: Tensor, N: int, args: Dict):
    """The core's arguments for one call (see :func:`_launch`): (NetDesc, keyword arguments, the solver's
    status flag or None)."""
    require()
    if x.is_cuda and not core.has_cuda:
        raise RuntimeError(
            "these tensors are on CUDA but hinn._core was built without CUDA; reinstall with "
            "HINN_CUDA=ON pip install . (nvcc must be on PATH), or use backend='autograd'"
        )
    if x.device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"the fused backend runs on CPU and CUDA tensors, not on {x.device.type}")
    params = args.pop("params", ())
    kw = {k: (v.data_ptr(), v.numel()) if isinstance(v, Tensor) else v for k, v in args.items()}
    kw.update(dtype=_dtype_code(x.dtype), N=N, nthreads=torch.get_num_threads(), cuda=x.is_cuda)
    desc = _desc(tuple(int(s) for s in spec), float(hr))
    status = None
    if "scheme" in args:
        name = _scheme_name(args["scheme"])
        kw.update(zip(core.SCHEME_PARAMS[name], params))
        # a scheme that solves reports non-convergence through a flag (reading it waits for a CUDA call)
        if name in core.SOLVING_SCHEMES:
            if x.is_cuda and torch.cuda.is_current_stream_capturing():
                raise RuntimeError(
                    f"{name} cannot run inside a CUDA graph: whether its solves converged is read on the host "
                    "after every call; train it without cuda_graph"
                )
            status = torch.zeros(1, dtype=torch.int32, device=x.device)
            kw["status"] = (status.data_ptr(), 1)
    return desc, kw, status


def _check_status(status: Optional[Tensor], scheme: int, max_iter) -> None:
    if status is not None and int(status.item()):
        raise SolverError(
            f"{_scheme_name(scheme)}: the implicit equation did not converge in {int(max_iter)} iterations in "
            "the compiled core; use a smaller time step h, or raise max_iter / tol"
        )


def _launch(op: str, spec: Sequence[int], hr: float, x: Tensor, N: int, entry=None, **args) -> None:
    """One call into the core (``entry``: ``core.call``, or ``core.train_epoch`` for a CPU epoch). x: a
    state tensor (dtype, device); tensors in ``args`` go as (pointer, numel) pairs, ``params`` by the names
    the scheme gives them (``core.SCHEME_PARAMS``), everything else by name as it is."""
    if entry is None and x.device.type == "cpu":
        return _run_planned(op, spec, hr, x, N, args)
    desc, kw, status = _arguments(op, spec, hr, x, N, args)
    if x.is_cuda:
        with torch.cuda.device(x.device):
            stream = torch.cuda.current_stream(x.device).cuda_stream
            # the kernels' scratch comes from PyTorch's caching allocator (reused across calls, capturable
            # in CUDA graphs); it is freed, stream-ordered, when `work` goes out of scope
            n = core.workspace_bytes(core.OPS[op], desc, **kw)
            work = torch.empty(n, dtype=torch.uint8, device=x.device)
            core.call(core.OPS[op], desc, stream=stream, work=(work.data_ptr(), n), **kw)
    else:
        (entry or core.call)(core.OPS[op], desc, **kw)
    if status is not None:
        _check_status(status, args["scheme"], kw.get("max_iter"))


#: CPU calls with their arguments read once (core.Plan), by everything but the buffers' addresses. A
#: training loop or a rollout repeats a few such calls; reading a call's arguments by name costs about
#: as much as the kernels of a step at N = 100 (benchmarks/RESULTS.md).
_plans: Dict[tuple, tuple] = {}
_MAX_PLANS = 256


def _run_planned(op: str, spec: Sequence[int], hr: float, x: Tensor, N: int, args: Dict) -> None:
    key = (op, *spec, hr, x.dtype, N, torch.get_num_threads()) + tuple(
        (k, v.numel() if isinstance(v, Tensor) else tuple(v) if isinstance(v, list) else v) for k, v in args.items()
    )
    prepared = _plans.get(key)
    if prepared is None:
        if len(_plans) >= _MAX_PLANS:
            _plans.clear()
        prepared = _plans[key] = _prepare(op, spec, hr, x, N, args)
    _run_prepared(prepared, args.get("scheme"), [v.data_ptr() for v in args.values() if isinstance(v, Tensor)])


def _prepare(op: str, spec: Sequence[int], hr: float, x: Tensor, N: int, args: Dict) -> tuple:
    """(core.Plan of this CPU call, whether it takes a solver's status flag, its max_iter); the plan's
    pointers are those of ``args``' tensors, in their order, then the flag's."""
    desc, kw, status = _arguments(op, spec, hr, x, N, dict(args))
    return core.Plan(core.OPS[op], desc, **kw), status is not None, kw.get("max_iter")


def _run_prepared(prepared: tuple, scheme: Optional[int], ptrs: List[int]) -> None:
    plan, solves, max_iter = prepared
    if not solves:
        plan.run(*ptrs)
        return
    status = torch.zeros(1, dtype=torch.int32)
    plan.run(*ptrs, status.data_ptr())
    _check_status(status, scheme, max_iter)


@lru_cache(maxsize=None)
def _scheme_names() -> Tuple[str, ...]:
    return tuple(sorted(core.SCHEMES, key=core.SCHEMES.get))


def _scheme_name(code: int) -> str:
    names = _scheme_names()
    return names[code] if 0 <= code < len(names) else str(code)


def _c(x: Tensor) -> Tensor:
    return x.contiguous()


def _zeros_if_none(g: Optional[Tensor], like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else _c(g)


# ----------------------------------------------------------------------------- hamiltonian
@torch.library.custom_op("hinn::hamiltonian", mutates_args=())
def hamiltonian_op(theta: Tensor, t: Tensor, p: Tensor, q: Tensor, spec: List[int], hr: float) -> Tensor:
    """H alone: the primal pass, no gradient sweep (metrics, plots, energy curves)."""
    return _hamiltonian_impl(theta, t, p, q, spec, hr)


def _hamiltonian_impl(theta, t, p, q, spec, hr):
    _check_inputs("hamiltonian", theta, t, p, q, spec, hr)
    theta, t, p, q = _c(theta), _c(t), _c(p), _c(q)
    H = p.new_empty(p.shape[0])
    _launch("hamiltonian", spec, hr, p, p.shape[0], theta=theta, t=t, p=p, q=q, H=H)
    return H


@hamiltonian_op.register_fake
def _(theta, t, p, q, spec, hr):
    _check_inputs("hamiltonian", theta, t, p, q, spec, hr, chk=TRACED)
    return p.new_empty(p.shape[0])


# ----------------------------------------------------------------------------- grad
@torch.library.custom_op("hinn::grad", mutates_args=())
def grad_op(
    theta: Tensor, t: Tensor, p: Tensor, q: Tensor, spec: List[int], hr: float
) -> Tuple[Tensor, Tensor, Tensor]:
    return _grad_impl(theta, t, p, q, spec, hr)


def _grad_impl(theta, t, p, q, spec, hr):
    _check_inputs("grad", theta, t, p, q, spec, hr)
    theta, t, p, q = _c(theta), _c(t), _c(p), _c(q)
    H = p.new_empty(p.shape[0])
    gp, gq = torch.empty_like(p), torch.empty_like(q)
    _launch("grad", spec, hr, p, p.shape[0], theta=theta, t=t, p=p, q=q, H=H, dH_dp=gp, dH_dq=gq)
    return H, gp, gq


@grad_op.register_fake
def _(theta, t, p, q, spec, hr):
    _check_inputs("grad", theta, t, p, q, spec, hr, chk=TRACED)
    return p.new_empty(p.shape[0]), torch.empty_like(p), torch.empty_like(q)


def _check_grad_cotangents(theta, t, p, q, Hb, gpb, gqb, spec, hr, chk=EAGER):
    _check_inputs("grad_backward", theta, t, p, q, spec, hr, chk=chk)
    _check_like("grad_backward", "the cotangent of H", Hb, p, (p.shape[0],), chk)
    _check_like("grad_backward", "the cotangent of dH/dp", gpb, p, tuple(p.shape), chk)
    _check_like("grad_backward", "the cotangent of dH/dq", gqb, p, tuple(p.shape), chk)


@torch.library.custom_op("hinn::grad_backward", mutates_args=())
def grad_backward_op(
    theta: Tensor, t: Tensor, p: Tensor, q: Tensor, Hb: Tensor, gpb: Tensor, gqb: Tensor, spec: List[int], hr: float
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    return _grad_backward_impl(theta, t, p, q, Hb, gpb, gqb, spec, hr)


def _grad_backward_impl(theta, t, p, q, Hb, gpb, gqb, spec, hr):
    _check_grad_cotangents(theta, t, p, q, Hb, gpb, gqb, spec, hr)
    theta, t, p, q, Hb, gpb, gqb = map(_c, (theta, t, p, q, Hb, gpb, gqb))
    tb, pb, qb, thb = torch.empty_like(t), torch.empty_like(p), torch.empty_like(q), torch.empty_like(theta)
    if not spec[1]:
        tb.zero_()
    _launch(
        "grad_backward", spec, hr, p, p.shape[0],
        theta=theta, t=t, p=p, q=q, H_bar=Hb, dH_dp_bar=gpb, dH_dq_bar=gqb, t_bar=tb, p_bar=pb, q_bar=qb,
        theta_bar=thb,
    )  # fmt: skip
    return tb, pb, qb, thb


@grad_backward_op.register_fake
def _(theta, t, p, q, Hb, gpb, gqb, spec, hr):
    _check_grad_cotangents(theta, t, p, q, Hb, gpb, gqb, spec, hr, chk=TRACED)
    return torch.empty_like(t), torch.empty_like(p), torch.empty_like(q), torch.empty_like(theta)


# One autograd wiring per op: the setup and backward functions below serve the custom op (registered
# with torch.library, what torch.compile and export trace) and its eager fast path alike (end of file).
def _grad_setup(ctx, inputs, output):
    theta, t, p, q, spec, hr = inputs
    ctx.save_for_backward(theta, t, p, q)
    ctx.spec, ctx.hr = spec, hr


def _grad_bwd(ctx, Hb, gpb, gqb):
    theta, t, p, q = ctx.saved_tensors
    Hb = _zeros_if_none(Hb, t)
    gpb, gqb = _zeros_if_none(gpb, p), _zeros_if_none(gqb, q)
    tb, pb, qb, thb = _backward_of(ctx, grad_backward_op, _grad_backward_impl)(
        theta, t, p, q, Hb, gpb, gqb, ctx.spec, ctx.hr
    )
    return thb, tb, pb, qb, None, None


grad_op.register_autograd(_grad_bwd, setup_context=_grad_setup)


def _ham_bwd(ctx, Hb):
    # the vector–Jacobian product of (H, ∇H) with no cotangent on ∇H: exact, one sweep
    return _grad_bwd(ctx, Hb, None, None)


hamiltonian_op.register_autograd(_ham_bwd, setup_context=_grad_setup)


# ----------------------------------------------------------------------------- step and rollout
# A step is a rollout of one step that returns the final state instead of the trajectory: both ops share
# one forward and one backward launch.
def _check_scheme(op: str, scheme: int, h: float, steps: int, params: List[float], chk=EAGER) -> None:
    value, _ = chk
    n = len(core.SCHEMES) if core is not None else 4
    value(0 <= scheme < n, lambda: f"hinn::{op}: unknown scheme code {scheme}")
    want = len(core.SCHEME_PARAMS.get(_scheme_name(scheme), params)) if core is not None else len(params)
    value(len(params) == want, lambda: f"hinn::{op}: {_scheme_name(scheme)} takes {want} parameters, got {params}")
    value(
        all(x == x and abs(x) != float("inf") for x in params),
        lambda: f"hinn::{op}: a scheme's parameters must be finite, got {params}",
    )
    value(h == h and abs(h) != float("inf"), lambda: f"hinn::{op}: h must be finite, got {h}")
    value(steps >= 0, lambda: f"hinn::{op}: steps must be >= 0, got {steps}")


def _state_dim(scheme: int, d: int) -> int:
    """Width of the state that ``scheme`` carries and its rollouts return: d, or 2d for Tao's (p | y),
    (q | x); the observed (p, q) are its first d columns. (d may be symbolic under tracing.)"""
    return _state_mult(scheme) * d


@lru_cache(maxsize=None)
def _state_mult(scheme: int) -> int:
    return core.SCHEME_STATE[_scheme_name(scheme)] if core is not None else 1


def _state_shape(p: Tensor, scheme: int, lead=()) -> Tuple[int, ...]:
    return tuple(lead) + (p.shape[-2], _state_dim(scheme, p.shape[-1]))


#: The most bytes that differentiated steps and rollouts keep of their stages (every network evaluation's
#: pass) at any time, all graphs together, for their backward, which then reads them instead of
#: evaluating the network again; a call that would exceed it recomputes them (a loop of many steps keeps
#: the first ones). Freed buffers are held for the next calls up to the same total
#: (:func:`release_kept_stages` returns them). The CPU only: CUDA always recomputes.
KEPT_STAGES_BUDGET = 1 << 29
#: Networks narrower than this recompute: their passes cost little arithmetic per byte kept, and the
#: round trip through memory measured no faster (float32, widths 3-16: 0.9-1.2x, varying between runs;
#: widths 32-256: 1.1-1.4x faster kept; benchmarks/RESULTS.md).
KEPT_MIN_WIDTH = 32


class _Kept:
    """A rollout's kept stages, the CPU kernels they are laid out for (``isa``), and their buffer, which
    goes back to a pool when autograd frees the graph that holds it (its ctx): a training loop's next steps
    then reuse the same memory. A fresh buffer of tens of MB costs its page faults on every call (glibc
    maps allocations above 32 MB afresh each time), more than the network evaluations it saves."""

    __slots__ = ("buf", "isa")
    live = 0  # bytes held by graphs
    _pool: List[Tensor] = []  # freed buffers, oldest first, together at most KEPT_STAGES_BUDGET bytes

    def __init__(self, n: int, like: Tensor):
        pool = _Kept._pool
        hit = next((i for i, b in enumerate(pool) if b.numel() == n and b.dtype == like.dtype), None)
        self.buf = pool.pop(hit) if hit is not None else like.new_empty(n)
        self.isa = core.cpu_isa()
        _Kept.live += n * like.element_size()

    def __del__(self):
        cls = type(self)
        cls.live -= self.buf.numel() * self.buf.element_size()
        pool = cls._pool
        pool.append(self.buf)
        limit = KEPT_STAGES_BUDGET if isinstance(KEPT_STAGES_BUDGET, int) else 0  # None at interpreter exit
        while pool and sum(b.numel() * b.element_size() for b in pool) > limit:
            del pool[0]


def release_kept_stages() -> None:
    """Free the buffers held for kept stages (those of live graphs stay until their graphs are freed)."""
    _Kept._pool.clear()


class _Integration:
    """A step or rollout of one configuration (structure, scheme and its parameters, h, steps, trajectory
    or final state, N, dtype, threads), for the eager path and the custom ops alike. On the CPU both of
    its core calls are prepared once (a call then costs its new tensors and their pointers), and a forward
    asked to keep its stages for the backward does so (from KEPT_MIN_WIDTH, within KEPT_STAGES_BUDGET);
    CUDA launches each call afresh and recomputes. Through the generic path, the public step at N = 100
    cost 0.13 ms more than its kernels and PyTorch's own autograd (benchmarks/RESULTS.md)."""

    __slots__ = ("spec", "hr", "scalars", "shape", "trajectory", "kept_n", "_plans")
    _FWD = ("theta", "t", "p", "q", "P", "Q")
    _BWD = ("theta", "t", "P", "Q", "P_bar", "Q_bar", "p_bar", "q_bar", "theta_bar")

    def __init__(self, spec, hr, h, scheme, params, steps, trajectory, N):
        self.spec, self.hr = tuple(spec), hr
        self.scalars = dict(scheme=scheme, params=list(params), h=h, steps=steps, trajectory=trajectory)
        self.shape = ((steps + 1,) if trajectory else ()) + (N, _state_dim(scheme, spec[0]))
        self.trajectory = trajectory
        desc = _desc(self.spec, float(hr))
        self.kept_n = core.kept_size(desc, N=N, scheme=scheme, steps=steps) if steps else 0  # if kept (forward)
        self._plans: Dict[tuple, tuple] = {}

    def _run(self, op: str, names: Tuple[str, ...], tensors: Sequence[Tensor]) -> None:
        x = tensors[2]
        if x.device.type != "cpu":
            return _launch(op, self.spec, self.hr, x, x.shape[-2], **dict(zip(names, tensors)), **self.scalars)
        key = (op, len(tensors))
        prepared = self._plans.get(key)
        if prepared is None:
            args = {**dict(zip(names, tensors)), **self.scalars}
            prepared = self._plans[key] = _prepare(op, self.spec, self.hr, x, x.shape[-2], args)
        _run_prepared(prepared, self.scalars["scheme"], [x.data_ptr() for x in tensors])

    def forward(self, theta: Tensor, t: Tensor, p: Tensor, q: Tensor, keep: bool = False):
        """(P, Q, the kept stages or None)."""
        theta, t, p, q = theta.contiguous(), t.contiguous(), p.contiguous(), q.contiguous()
        P, Q = p.new_empty(self.shape), q.new_empty(self.shape)
        n = self.kept_n if keep and KEPT_MIN_WIDTH <= self.spec[2] and not p.is_cuda else 0
        kept = _Kept(n, p) if n and _Kept.live + n * p.element_size() <= KEPT_STAGES_BUDGET else None
        tensors = [theta, t, p, q, P, Q]
        self._run("rollout", self._FWD + ("kept",), tensors + [kept.buf] if kept else tensors)
        return P, Q, kept

    def backward(self, theta, t, X, Y, Xb, Yb, kept: Optional[_Kept] = None):
        """(p̄0, q̄0, θ̄) from the cotangents of the outputs; X, Y: the inputs (a step) or the trajectory."""
        theta, t, X, Y, Xb, Yb = (x.contiguous() for x in (theta, t, X, Y, Xb, Yb))
        shape = (X.shape[-2], self.spec[0])
        p0b, q0b, thb = X.new_empty(shape), X.new_empty(shape), torch.empty_like(theta)
        tensors = [theta, t, X, Y, Xb, Yb, p0b, q0b, thb]
        # stages kept by other CPU kernels than today's (set_cpu_isa in between) are laid out differently
        if kept is not None and kept.isa == core.cpu_isa():
            self._run("rollout_backward", self._BWD + ("kept",), tensors + [kept.buf])
        else:
            self._run("rollout_backward", self._BWD, tensors)
        return p0b, q0b, thb


_integrations: Dict[tuple, _Integration] = {}


def _integration(spec, hr, h, scheme, params, steps, trajectory, x: Tensor) -> _Integration:
    """The configuration of a step or rollout from states like ``x`` (N, dtype), prepared once."""
    key = (*spec, hr, h, scheme, *params, steps, trajectory, x.shape[-2], x.dtype, torch.get_num_threads())
    run = _integrations.get(key)
    if run is None:
        if len(_integrations) >= _MAX_PLANS:
            _integrations.clear()
        run = _integrations[key] = _Integration(spec, hr, h, scheme, params, steps, trajectory, x.shape[-2])
    return run


class _Integrate(torch.autograd.Function):
    """The eager step or rollout (:class:`_Integration`): θ, t, p, q and the configuration. Under
    torch.compile and export the custom ops run instead, whose tracing sees their contracts."""

    @staticmethod
    def forward(ctx, theta, t, p, q, run: _Integration):
        P, Q, ctx.kept = run.forward(theta, t, p, q, keep=True)
        ctx.save_for_backward(theta, t, *((P, Q) if run.trajectory else (p, q)))
        ctx.run = run
        return P, Q

    @staticmethod
    def backward(ctx, Pb, Qb):
        _first_order_only()
        theta, t, X, Y = ctx.saved_tensors
        p0b, q0b, thb = ctx.run.backward(theta, t, X, Y, Pb, Qb, ctx.kept)
        return thb, None, p0b, q0b, None


def _integrate_eager(theta, t, p, q, spec, hr, h, scheme, params, steps, trajectory):
    """The eager step or rollout. Its inputs are trusted (FusedBackend.rollout's contract: the public entry
    points validated them against the network, whose θ and structure agree by construction): the custom
    ops' checks cost more than the kernels of a step at N = 100. One comparison stays, which keeps a wrong
    dtype or shape from the core, which reads raw memory."""
    N = p.shape[0]
    if not (
        theta.dtype == t.dtype == p.dtype == q.dtype
        and q.shape == p.shape
        and t.shape == (N,)
        and theta.device == t.device == p.device == q.device
    ):
        _check_inputs("rollout" if trajectory else "step", theta, t, p, q, spec, hr)  # raises, naming the argument
    run = _integration(spec, hr, h, scheme, params, steps, trajectory, p)
    if torch.is_grad_enabled() and (theta.requires_grad or p.requires_grad or q.requires_grad or t.requires_grad):
        return _Integrate.apply(theta, t, p, q, run)
    return run.forward(theta, t, p, q, keep=False)[:2]


@torch.library.custom_op("hinn::step", mutates_args=())
def step_op(
    theta: Tensor,
    t: Tensor,
    p: Tensor,
    q: Tensor,
    spec: List[int],
    hr: float,
    h: float,
    scheme: int,
    params: List[float],
) -> Tuple[Tensor, Tensor]:
    return _step_impl(theta, t, p, q, spec, hr, h, scheme, params)


def _step_impl(theta, t, p, q, spec, hr, h, scheme, params):
    _check_inputs("step", theta, t, p, q, spec, hr)
    _check_scheme("step", scheme, h, 1, params)
    return _integration(spec, hr, h, scheme, params, 1, False, p).forward(theta, t, p, q)[:2]


@step_op.register_fake
def _(theta, t, p, q, spec, hr, h, scheme, params):
    _check_inputs("step", theta, t, p, q, spec, hr, chk=TRACED)
    _check_scheme("step", scheme, h, 1, params, chk=TRACED)
    shape = _state_shape(p, scheme)
    return p.new_empty(shape), q.new_empty(shape)


def _check_step_backward(theta, t, p, q, pb, qb, spec, hr, h, scheme, params, chk=EAGER):
    _check_inputs("step_backward", theta, t, p, q, spec, hr, chk=chk)
    _check_scheme("step_backward", scheme, h, 1, params, chk)
    _check_like("step_backward", "the cotangent of p'", pb, p, _state_shape(p, scheme), chk)
    _check_like("step_backward", "the cotangent of q'", qb, p, _state_shape(p, scheme), chk)


@torch.library.custom_op("hinn::step_backward", mutates_args=())
def step_backward_op(
    theta: Tensor, t: Tensor, p: Tensor, q: Tensor, pb: Tensor, qb: Tensor, spec: List[int], hr: float, h: float,
    scheme: int, params: List[float],
) -> Tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    _check_step_backward(theta, t, p, q, pb, qb, spec, hr, h, scheme, params)
    return _integration(spec, hr, h, scheme, params, 1, False, p).backward(theta, t, p, q, pb, qb)


@step_backward_op.register_fake
def _(theta, t, p, q, pb, qb, spec, hr, h, scheme, params):
    _check_step_backward(theta, t, p, q, pb, qb, spec, hr, h, scheme, params, chk=TRACED)
    return torch.empty_like(p), torch.empty_like(q), torch.empty_like(theta)


def _step_setup(ctx, inputs, output):
    theta, t, p, q, spec, hr, h, scheme, params = inputs
    ctx.save_for_backward(theta, t, p, q)
    ctx.args = (spec, hr, h, scheme, params)


def _step_bwd(ctx, pb, qb):
    theta, t, p, q = ctx.saved_tensors
    shape = _state_shape(p, ctx.args[3])
    pb = pb if pb is not None else p.new_zeros(shape)
    qb = qb if qb is not None else q.new_zeros(shape)
    p0b, q0b, thb = step_backward_op(theta, t, p, q, pb, qb, *ctx.args)
    return thb, None, p0b, q0b, None, None, None, None, None


step_op.register_autograd(_step_bwd, setup_context=_step_setup)


@torch.library.custom_op("hinn::rollout", mutates_args=())
def rollout_op(
    theta: Tensor, t: Tensor, p: Tensor, q: Tensor, spec: List[int], hr: float, h: float, scheme: int,
    params: List[float], steps: int,
) -> Tuple[Tensor, Tensor]:  # fmt: skip
    return _rollout_impl(theta, t, p, q, spec, hr, h, scheme, params, steps)


def _rollout_impl(theta, t, p, q, spec, hr, h, scheme, params, steps):
    _check_inputs("rollout", theta, t, p, q, spec, hr)
    _check_scheme("rollout", scheme, h, steps, params)
    return _integration(spec, hr, h, scheme, params, steps, True, p).forward(theta, t, p, q)[:2]


@rollout_op.register_fake
def _(theta, t, p, q, spec, hr, h, scheme, params, steps):
    _check_inputs("rollout", theta, t, p, q, spec, hr, chk=TRACED)
    _check_scheme("rollout", scheme, h, steps, params, chk=TRACED)
    shape = _state_shape(p, scheme, (steps + 1,))
    return p.new_empty(shape), q.new_empty(shape)


def _check_rollout_backward(theta, t, P, Q, Pb, Qb, spec, hr, h, scheme, params, steps, chk=EAGER):
    width = _state_dim(scheme, spec[0]) if len(spec) == 5 else None
    _check_inputs("rollout_backward", theta, t, P, Q, spec, hr, lead=(steps + 1,), chk=chk, width=width)
    _check_scheme("rollout_backward", scheme, h, steps, params, chk)
    chk[0](
        P.shape[0] == steps + 1, lambda: f"hinn::rollout_backward: P has {P.shape[0]} states, steps + 1 = {steps + 1}"
    )
    _check_like("rollout_backward", "the cotangent of P", Pb, P, tuple(P.shape), chk)
    _check_like("rollout_backward", "the cotangent of Q", Qb, P, tuple(P.shape), chk)


@torch.library.custom_op("hinn::rollout_backward", mutates_args=())
def rollout_backward_op(
    theta: Tensor, t: Tensor, P: Tensor, Q: Tensor, Pb: Tensor, Qb: Tensor, spec: List[int], hr: float, h: float,
    scheme: int, params: List[float], steps: int,
) -> Tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    _check_rollout_backward(theta, t, P, Q, Pb, Qb, spec, hr, h, scheme, params, steps)
    return _integration(spec, hr, h, scheme, params, steps, True, P).backward(theta, t, P, Q, Pb, Qb)


@rollout_backward_op.register_fake
def _(theta, t, P, Q, Pb, Qb, spec, hr, h, scheme, params, steps):
    _check_rollout_backward(theta, t, P, Q, Pb, Qb, spec, hr, h, scheme, params, steps, chk=TRACED)
    shape = (P.shape[1], spec[0])
    return P.new_empty(shape), Q.new_empty(shape), torch.empty_like(theta)


def _rollout_setup(ctx, inputs, output):
    theta, t, p, q, spec, hr, h, scheme, params, steps = inputs
    P, Q = output
    ctx.save_for_backward(theta, t, P, Q)
    ctx.args = (spec, hr, h, scheme, params, steps)


def _rollout_bwd(ctx, Pb, Qb):
    theta, t, P, Q = ctx.saved_tensors
    p0b, q0b, thb = rollout_backward_op(theta, t, P, Q, _zeros_if_none(Pb, P), _zeros_if_none(Qb, Q), *ctx.args)
    return thb, None, p0b, q0b, None, None, None, None, None, None


rollout_op.register_autograd(_rollout_bwd, setup_context=_rollout_setup)


# ----------------------------------------------------------------------------- the eager fast path
# Eager calls skip the torch.library dispatcher: H and ∇H run the same implementation, setup and backward
# functions under a plain autograd.Function (measured per training step at N = 2000: the custom-op layer
# cost about 0.15 ms per op call and its autograd wrapper more; benchmarks/RESULTS.md); steps and
# rollouts run _Integrate (above), with prepared calls and kept stages. Under torch.compile / export the
# custom ops are used, so that tracing sees their fake implementations and contracts.
def _eager() -> bool:
    compiler = getattr(torch, "compiler", None)
    return not (compiler is not None and compiler.is_compiling())


def _backward_of(ctx, op, impl):
    """The backward custom op for the custom op's autograd (what tracing sees), its implementation (after
    the first-order check) for the eager fast path."""
    if not getattr(ctx, "eager", False):
        return op
    _first_order_only()
    return impl


def _first_order_only() -> None:
    # a backward run with create_graph=True: its result would silently lack the second-order terms
    if torch.is_grad_enabled():
        raise RuntimeError(
            "the fused backend computes first derivatives only (its backward passes are not differentiable "
            "again); use backend='autograd' for second derivatives"
        )


def _eager_function(name: str, impl, setup, backward):
    """``impl`` as an autograd.Function with the custom op's own setup and backward. The classic
    ``forward(ctx, *inputs)`` form: a Function with a separate ``setup_context`` binds its forward's
    signature on every call (inspect.signature: about 45 µs a call, measured on a training step)."""

    def forward(ctx, *inputs):
        output = impl(*inputs)
        setup(ctx, inputs, output)
        ctx.eager = True
        return output

    apply = type(
        name, (torch.autograd.Function,), {"forward": staticmethod(forward), "backward": staticmethod(backward)}
    ).apply

    def call(*inputs):
        # without a graph to record (no_grad, or no input that requires grad) the Function's machinery
        # is pure cost: evaluation, rollouts and an adaptive solver's right-hand sides call impl directly
        if torch.is_grad_enabled() and any(isinstance(x, Tensor) and x.requires_grad for x in inputs):
            return apply(*inputs)
        return impl(*inputs)

    return call


_hamiltonian = _eager_function("Hamiltonian", _hamiltonian_impl, _grad_setup, _ham_bwd)
_grad = _eager_function("Grad", _grad_impl, _grad_setup, _grad_bwd)


# ----------------------------------------------------------------------------- training windows
def window_loss_grad(
    theta: Tensor, t0: Tensor, p0: Tensor, q0: Tensor, P: Tensor, Q: Tensor, spec: Sequence[int], hr: float,
    h: float, scheme: int, scale: float, params: Sequence[float] = (),
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """The trajectory loss of M training windows and its gradients in one compiled call, no autograd.

    From (t0 (M,), p0, q0 (M, d)), ``K = P.shape[0]`` steps of ``scheme`` are compared with the targets
    P, Q (K, M, d). Returns (per-window losses ``scale · Σ_k |error_k|²`` (M,), ∂loss/∂p0, ∂loss/∂q0,
    ∂loss/∂θ), the gradients of the summed loss. Forward, loss and backward run per block of samples
    inside the core: no trajectory, graph or cotangent tensor is built in between.
    """
    K = _check_windows("window_loss", theta, t0, p0, q0, P, Q, spec, hr, h, scheme, scale, params)
    theta, t0, p0, q0, P, Q = map(_c, (theta, t0, p0, q0, P, Q))
    losses, p0b, q0b, thb = t0.new_empty(t0.shape), torch.empty_like(p0), torch.empty_like(q0), torch.empty_like(theta)
    _launch(
        "loss_grad", spec, hr, p0, p0.shape[0],
        theta=theta, t=t0, p=p0, q=q0, target_p=P, target_q=Q, losses=losses, p_bar=p0b, q_bar=q0b,
        theta_bar=thb,
        scheme=scheme, params=params, h=h, steps=K, scale=scale,
    )  # fmt: skip
    return losses, p0b, q0b, thb


def window_error(
    theta: Tensor, t0: Tensor, p0: Tensor, q0: Tensor, P: Tensor, Q: Tensor, spec: Sequence[int], hr: float,
    h: float, scheme: int, scale: float, params: Sequence[float] = (),
) -> Tensor:  # fmt: skip
    """The per-window losses of :func:`window_loss_grad` alone, in one compiled forward call (no backward,
    nothing kept for one): evaluating a model on held-out windows."""
    K = _check_windows("window_error", theta, t0, p0, q0, P, Q, spec, hr, h, scheme, scale, params)
    theta, t0, p0, q0, P, Q = map(_c, (theta, t0, p0, q0, P, Q))
    losses = t0.new_empty(t0.shape)
    _launch(
        "window_error", spec, hr, p0, p0.shape[0],
        theta=theta, t=t0, p=p0, q=q0, target_p=P, target_q=Q, losses=losses,
        scheme=scheme, params=params, h=h, steps=K, scale=scale,
    )  # fmt: skip
    return losses


def window_error_call(
    theta: Tensor, t0: Tensor, p0: Tensor, q0: Tensor, P: Tensor, Q: Tensor, spec: Sequence[int], hr: float,
    h: float, scheme: int, scale: float, params: Sequence[float] = (),
) -> Callable[[], Tensor]:  # fmt: skip
    """:func:`window_error` checked and prepared once for windows evaluated again and again (a validation
    set after every epoch): each call runs the compiled forward pass on the current values of the same
    tensors (θ trained in place) and returns the summed loss. ``theta`` must be the trained tensor itself
    (contiguous: a copy would not see the updates)."""
    K = _check_windows("window_error", theta, t0, p0, q0, P, Q, spec, hr, h, scheme, scale, params)
    _in_place("window_error", "theta", theta)
    t0, p0, q0, P, Q = map(_c, (t0, p0, q0, P, Q))  # a copy of the data, if one is made, is made once
    losses = t0.new_empty(t0.shape)
    args = dict(theta=theta, t=t0, p=p0, q=q0, target_p=P, target_q=Q, losses=losses)
    args.update(scheme=scheme, params=params, h=h, steps=K, scale=scale)
    if p0.device.type != "cpu":  # a CUDA call takes its stream and workspace per call: not prepared

        def run_on_device() -> Tensor:
            _launch("window_error", spec, hr, p0, p0.shape[0], **args)
            return losses.sum()

        return run_on_device
    prepared = _prepare("window_error", spec, hr, p0, p0.shape[0], args)

    def run() -> Tensor:  # holds args: the copies made above live as long as the function
        _run_prepared(prepared, scheme, [v.data_ptr() for v in args.values() if isinstance(v, Tensor)])
        return losses.sum()

    return run


def _check_windows(op, theta, t0, p0, q0, P, Q, spec, hr, h, scheme, scale, params) -> int:
    """The window ops' arguments; returns K."""
    _check_inputs(op, theta, t0, p0, q0, spec, hr)
    K = P.shape[0] if P.dim() == 3 else 0
    _check_scheme(op, scheme, h, K, params)
    _eager_value(K >= 1, lambda: f"hinn::{op}: targets must be (K >= 1, M, d), got {tuple(P.shape)}")
    _eager_value(scale == scale and abs(scale) != float("inf"), lambda: f"hinn::{op}: scale must be finite")
    _check_like(op, "the target P", P, p0, (K,) + tuple(p0.shape))
    _check_like(op, "the target Q", Q, p0, (K,) + tuple(p0.shape))
    return K


def derivative_loss_grad(
    theta: Tensor, t: Tensor, p: Tensor, q: Tensor, target_p: Tensor, target_q: Tensor, spec: Sequence[int],
    hr: float, scale: float,
) -> Tuple[Tensor, Tensor]:  # fmt: skip
    """HNN's loss at M states and its θ-gradient in one compiled call, no autograd.

    Returns (per-sample losses ``scale · (|∂H/∂p − target_p|² + |∂H/∂q − target_q|²)`` (M,), the gradient
    of their sum with respect to θ); targets (M, d). The gradient sweep's pass is kept for the backward
    instead of recomputed as the public ``grad`` + ``backward`` must.
    """
    _check_inputs("derivative_loss", theta, t, p, q, spec, hr)
    _eager_value(scale == scale and abs(scale) != float("inf"), lambda: "hinn::derivative_loss: scale must be finite")
    _check_like("derivative_loss", "the target of dH/dp", target_p, p, tuple(p.shape))
    _check_like("derivative_loss", "the target of dH/dq", target_q, p, tuple(p.shape))
    theta, t, p, q, target_p, target_q = map(_c, (theta, t, p, q, target_p, target_q))
    losses, thb = t.new_empty(t.shape), torch.empty_like(theta)
    _launch(
        "derivative_loss", spec, hr, p, p.shape[0],
        theta=theta, t=t, p=p, q=q, target_p=target_p, target_q=target_q, losses=losses, theta_bar=thb,
        scale=scale,
    )  # fmt: skip
    return losses, thb


# ----------------------------------------------------------------------------- training epochs
EPOCH_FIELDS = ("t", "p", "q", "target_p", "target_q")


class EpochCall:
    """Training epochs in one CPU call each: ``EpochCall(op, theta, data, spec, hr, scale, mask,
    scheme_args, optimizer, starts, starts_optimizer, key)(index, bounds, optimizer, starts_optimizer)`` runs
    one. Minibatch b is the samples ``index[bounds[b]:bounds[b + 1]]`` of ``data`` (``t`` (M,), ``p``,
    ``q`` (M, d) and the targets of ``op``: (K, M, d) windows for ``"loss_grad"``, (M, d) for
    ``"derivative_loss"``); each is gathered, its loss (``scale / n`` times the summed squared error of
    its n samples) and θ-gradient computed, the gradient multiplied by ``mask``, and θ updated in place by
    ``optimizer`` (:meth:`hinn.optim.Adam.compiled_args`; Adam's moments in place too). Returns each
    minibatch's summed loss (float64). The same numbers as the loop of one call per minibatch and a
    ``hinn.optim`` step, to rounding.

    ``starts``: fitted window starts (p̂, q̂), (M, d) each (window loss only; SRNN): the windows start
    from their rows, which are compared with ``data``'s p and q (:class:`hinn.TrajectoryObjective` with
    ``fit_starts``), and ``starts_optimizer`` (None: they stay where they are) updates them in place.

    The arguments are checked and read once, when it is made; a call passes only the minibatches and
    the optimizers' step counts (the checks and the argument dictionary cost some 80 µs, 5 % of an epoch
    of the poster's training). ``key`` (:func:`_epoch_key`) says which optimizer settings it holds."""

    def __init__(self, op, theta, data, spec, hr, scale, mask, scheme_args, optimizer, starts, starts_optimizer, key):
        t, p, q, tp, tq = (data[k] for k in EPOCH_FIELDS)
        _check_inputs(op, theta, t, p, q, spec, hr)
        target = (tp.shape[0],) + tuple(p.shape) if op == "loss_grad" else tuple(p.shape)
        _check_like(op, "the target of p", tp, p, target)
        _check_like(op, "the target of q", tq, p, target)
        kw = _optimizer_args(op, optimizer, [_in_place(op, "theta", theta)], "", ("",))
        if mask is not None:
            _check_like(op, "the gradient mask", mask, theta, tuple(theta.shape))
        self.changed = [theta]
        if starts is not None:
            for name, x in zip("pq", starts, strict=True):
                _check_like(op, f"the fitted starts' {name}", x, p, tuple(p.shape))
                kw[f"starts_{name}"] = _in_place(op, f"the fitted starts' {name}", x)
            if starts_optimizer is not None:
                kw.update(_optimizer_args(op, starts_optimizer, list(starts), "starts_", ("p", "q")), starts_step=True)
                self.changed += list(starts)
        # the core's arguments but the minibatches, their losses and the step counts (set by each call)
        kw.update(theta=theta, **{k: _c(data[k]) for k in EPOCH_FIELDS}, scale=scale, **scheme_args)
        kw.update(mask=(0, 0) if mask is None else _c(mask), index=(0, 0), bounds=(0, 0), batch_losses=(0, 0))
        self.held = kw  # the tensors whose addresses the arguments hold stay alive with them
        self.desc, self.kw, self.status = _arguments(op, spec, hr, p, t.shape[0], dict(kw))
        self.op, self.scheme = core.OPS[op], kw.get("scheme")
        self.key = key

    def __call__(self, index: Tensor, bounds: Tensor, optimizer: Dict, starts_optimizer: Optional[Dict]) -> Tensor:
        for name, x in (("index", index), ("bounds", bounds)):
            if not (x.dtype == torch.int64 and x.device.type == "cpu" and x.dim() == 1):
                got = f"{x.dtype} {tuple(x.shape)} on {x.device}"
                raise TypeError(f"hinn::train_epoch: {name} must be a 1-D int64 CPU tensor, got {got}")
        index, bounds = _c(index), _c(bounds)
        losses = torch.empty(max(bounds.numel() - 1, 0), dtype=torch.float64)
        kw = dict(self.kw, index=(index.data_ptr(), index.numel()), bounds=(bounds.data_ptr(), bounds.numel()))
        kw["batch_losses"] = (losses.data_ptr(), losses.numel())
        for prefix, args in (("", optimizer), ("starts_", starts_optimizer)):
            if args is not None and "count" in args:
                kw[prefix + "count"] = args["count"]
        if self.status is not None:
            self.status.zero_()
        core.train_epoch(self.op, self.desc, **kw)
        if self.status is not None:
            _check_status(self.status, self.scheme, kw.get("max_iter"))
        torch.autograd.graph.increment_version(self.changed)  # changed in place, unseen by autograd
        return losses


def _epoch_key(optimizer: Dict, starts, starts_optimizer: Optional[Dict]) -> tuple:
    """What an :class:`EpochCall` was prepared for: the optimizers' settings and moment tensors and the
    fitted starts (tensors by identity; the call holds them, so no other tensor takes their id), not the
    step counts; and the threads the core may use."""

    def settings(args):
        if args is None:
            return None
        return tuple((k, tuple(map(id, v)) if isinstance(v, list) else v) for k, v in args.items() if k != "count")

    held = None if starts is None else tuple(map(id, starts))
    return settings(optimizer), held, settings(starts_optimizer), torch.get_num_threads()


def _optimizer_args(op: str, args: Dict, params: List[Tensor], prefix: str, names: Sequence[str]) -> Dict:
    """An optimizer's :meth:`hinn.optim.Adam.compiled_args` for ``params`` as the core's named arguments:
    the settings prefixed by ``prefix``, Adam's moment of params[i] as ``{prefix}m{names[i]}``."""
    args = dict(args)
    m, v = args.pop("m", None), args.pop("v", None)
    kw = {prefix + k: v for k, v in args.items() if k != "kind"}
    kw[prefix + "optimizer"] = core.OPTIMIZERS[args["kind"]]
    if m is not None:
        held = lambda: f"hinn::{op}: the optimizer holds {len(m)} tensors, not {len(params)}"  # noqa: E731
        _eager_value(len(m) == len(params), held)
        for x, mi, vi, name in zip(params, m, v, names, strict=True):
            for what, y in (("m", mi), ("v", vi)):
                _check_like(op, f"the optimizer's {what}", y, x, tuple(x.shape))
                kw[f"{prefix}{what}{name}"] = _in_place(op, f"the optimizer's {what}", y)
    return kw


def _in_place(op: str, name: str, x: Tensor) -> Tensor:
    """A tensor the core updates in place: as it is (a contiguous copy would take the update instead)."""
    _eager_value(x.is_contiguous(), lambda: f"hinn::{op}: {name} must be contiguous (the core updates it in place)")
    return x


# ----------------------------------------------------------------------------- the backend
def spec_of(net) -> List[int]:
    """The structure list ``[d, time, width, depth, act]`` that the ops take, for a HamiltonianNet."""
    require()
    if net.activation not in core.ACTIVATIONS:
        raise ValueError(
            f"the fused backend has no activation {net.activation!r} (it has {', '.join(core.ACTIVATIONS)}); "
            "use backend='autograd'"
        )
    return [net.dim, int(net.time_dependent), net.width, net.depth, core.ACTIVATIONS[net.activation]]


def scheme_code(scheme, h: float) -> Optional[Tuple[int, List[float]]]:
    """(the core's code, the scheme's parameters) for a step of size h of ``scheme`` when the core
    implements exactly this scheme, else None (a user's subclass of a built-in scheme runs its own
    ``step`` in Python, as does a Tao scheme of an order the core lacks)."""
    cls = type(scheme)
    if core is None or COMPILED_SCHEMES.get(getattr(cls, "name", None)) is not cls:
        return None
    found = scheme.compiled_as(h)
    if found is None or found[0] not in core.SCHEMES:
        return None
    return core.SCHEMES[found[0]], [float(x) for x in found[1]]


class FusedBackend(Backend):
    """The compiled core through the custom ops above."""

    name = "fused"

    def available(self) -> bool:
        return core is not None

    def unavailable_reason(self) -> str:
        return "" if core is not None else str(import_error)

    def hamiltonian(self, net, t, p, q):
        op = _hamiltonian if _eager() else hamiltonian_op
        return op(net.theta, t, p, q, spec_of(net), net.resnet_step)

    def grad(self, net, t, p, q):
        op = _grad if _eager() else grad_op
        return op(net.theta, t, p, q, spec_of(net), net.resnet_step)

    def rollout(self, net, scheme, t, p, q, h, steps, trajectory):
        found = scheme_code(scheme, h)
        if found is None:
            return None
        code, params = found
        spec = spec_of(net)
        if not trajectory and steps != 1:
            raise ValueError(f"a single fused step has steps = 1, got {steps}")
        args = (net.theta, t, p, q, spec, net.resnet_step, h, code, params)
        if _eager():
            P, Q = _integrate_eager(*args, steps, trajectory)
        elif trajectory:
            P, Q = rollout_op(*args, steps)
        else:
            P, Q = step_op(*args)
        d = spec[0]
        # the observed part of the scheme's state (Tao's copies are dropped; their gradient is zero)
        return (P, Q) if P.shape[-1] == d else (P[..., :d], Q[..., :d])

    def window_loss(self, net, scheme, t0, p0, q0, P, Q, h, scale):
        return self._windows(window_loss_grad, net, scheme, t0, p0, q0, P, Q, h, scale)

    def window_error(self, net, scheme, t0, p0, q0, P, Q, h, scale):
        return self._windows(window_error, net, scheme, t0, p0, q0, P, Q, h, scale)

    def window_error_call(self, net, scheme, t0, p0, q0, P, Q, h, scale):
        found = scheme_code(scheme, h)
        if found is None:
            return None
        code, params = found
        theta, spec, hr = net.theta.detach(), spec_of(net), net.resnet_step
        return window_error_call(theta, t0, p0, q0, P, Q, spec, hr, h, code, scale, params)

    def _windows(self, fn, net, scheme, t0, p0, q0, P, Q, h, scale):
        found = scheme_code(scheme, h)
        if found is None:
            return None
        code, params = found
        return fn(net.theta.detach(), t0, p0, q0, P, Q, spec_of(net), net.resnet_step, h, code, scale, params)

    def derivative_loss(self, net, t, p, q, target_p, target_q, scale):
        return derivative_loss_grad(
            net.theta.detach(), t, p, q, target_p, target_q, spec_of(net), net.resnet_step, scale
        )

    def epoch(self, net, data, scale, scheme=None, h=None, mask=None) -> Optional[Callable]:
        if net.theta.device.type != "cpu":
            return None  # on CUDA, fit replays a step from a CUDA graph instead
        op, scheme_args = "derivative_loss", {}
        if scheme is not None:
            found = scheme_code(scheme, h)
            if found is None:
                return None
            op, (code, params) = "loss_grad", found
            scheme_args = dict(scheme=code, params=params, h=h, steps=data["target_p"].shape[0])
        theta, spec, hr = net.theta.detach(), spec_of(net), net.resnet_step
        last: List[EpochCall] = []  # the previous epoch's prepared call: the next reuses it when it can

        def run(index: Tensor, bounds: Tensor, optimizer: Dict, starts=None, starts_optimizer=None) -> Tensor:
            key = _epoch_key(optimizer, starts, starts_optimizer)
            if not last or last[0].key != key:
                args = (op, theta, data, spec, hr, scale, mask, scheme_args, optimizer, starts, starts_optimizer)
                last[:] = [EpochCall(*args, key)]
            return last[0](index, bounds, optimizer, starts_optimizer)

        return run
