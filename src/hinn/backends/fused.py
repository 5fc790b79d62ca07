"""The fused backend: ``torch.library`` custom ops over the compiled core ``hinn._core``.

Ops (float32/float64; CPU, and CUDA when the core was built with it):

=====================  ==========================================  ===============================
op                     computes                                    differentiable in
=====================  ==========================================  ===============================
``hinn::grad``         (H, ∂pH, ∂qH) for a batch                   θ, t, p, q (first order)
``hinn::step``         one integrator step (p, q) → (p', q')       θ, p, q (first order)
``hinn::rollout``      ``steps`` steps, the whole trajectory       θ, p0, q0 (first order)
``hinn::*_backward``   the vector–Jacobian products of the above   not differentiable
=====================  ==========================================  ===============================

Time is an input but no gradient flows to it through ``step``/``rollout``. Second derivatives of the
training losses with respect to θ (Hessian-vector products) are not provided; use the autograd backend
for those.

The compiled core sees only raw pointers (DESIGN §4): every tensor is validated, made contiguous and kept
referenced here until the call returns.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

try:
    from .. import _core as core

    import_error: Optional[BaseException] = None
except ImportError as e:  # the package can be used without its compiled part (autograd / hessquik)
    core = None
    import_error = e

ACT_CODES = {"tanh": 0, "softplus": 1}


def require() -> None:
    if core is None:
        raise RuntimeError(
            f"the 'fused' backend needs hinn's compiled core, which failed to import ({import_error}). "
            "Reinstall hinn with `pip install .`, or choose backend='autograd'."
        )


def _spec(net) -> List[int]:
    return [int(net.time_dependent), net.width, net.depth, ACT_CODES[net.activation]]


def _launch(
    op: int,
    spec: List[int],
    hr: float,
    x: Tensor,
    *,
    theta,
    t,
    p,
    q,
    b0=None,
    b1=None,
    b2=None,
    o0=None,
    o1=None,
    o2=None,
    thb=None,
    scheme=0,
    h=0.0,
    steps=1,
    trajectory=False,
) -> None:
    """One call into the core. x: a state tensor, for N, d, dtype and device."""
    time, width, depth, act = spec
    N, d = (x.shape[-2], x.shape[-1])
    cuda = x.is_cuda
    if cuda and not core.has_cuda:
        raise RuntimeError(
            "these tensors are on CUDA but hinn._core was built without CUDA; reinstall with "
            "HINN_CUDA=ON pip install . (nvcc must be on PATH), or use backend='autograd'"
        )
    if x.device.type not in ("cpu", "cuda"):
        raise RuntimeError(f"the fused backend runs on CPU and CUDA tensors, not on {x.device.type}")
    ptr = lambda a: 0 if a is None else a.data_ptr()  # noqa: E731
    stream = 0
    if cuda:
        stream = torch.cuda.current_stream(x.device).cuda_stream
    args = (
        op,
        d,
        time,
        width,
        depth,
        act,
        hr,
        int(x.dtype == torch.float64),
        torch.get_num_threads(),
        N,
        scheme,
        h,
        steps,
        trajectory,
        ptr(theta),
        ptr(t),
        ptr(p),
        ptr(q),
        ptr(b0),
        ptr(b1),
        ptr(b2),
        ptr(o0),
        ptr(o1),
        ptr(o2),
        ptr(thb),
        cuda,
        stream,
        int(torch.are_deterministic_algorithms_enabled()),
    )
    if cuda:
        with torch.cuda.device(x.device):
            core.call(*args)
    else:
        core.call(*args)


def _c(x: Tensor) -> Tensor:
    return x.contiguous()


def _zeros_if_none(g: Optional[Tensor], like: Tensor) -> Tensor:
    return torch.zeros_like(like) if g is None else _c(g)


# ----------------------------------------------------------------------------- grad
@torch.library.custom_op("hinn::grad", mutates_args=())
def grad_op(
    theta: Tensor, t: Tensor, p: Tensor, q: Tensor, spec: List[int], hr: float
) -> Tuple[Tensor, Tensor, Tensor]:
    theta, t, p, q = _c(theta), _c(t), _c(p), _c(q)
    H = p.new_empty(p.shape[0])
    gp, gq = torch.empty_like(p), torch.empty_like(q)
    _launch(core.OP_GRAD_FWD, spec, hr, p, theta=theta, t=t, p=p, q=q, o0=H, o1=gp, o2=gq)
    return H, gp, gq


@grad_op.register_fake
def _(theta, t, p, q, spec, hr):
    return p.new_empty(p.shape[0]), torch.empty_like(p), torch.empty_like(q)


@torch.library.custom_op("hinn::grad_backward", mutates_args=())
def grad_backward_op(
    theta: Tensor, t: Tensor, p: Tensor, q: Tensor, Hb: Tensor, gpb: Tensor, gqb: Tensor, spec: List[int], hr: float
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    theta, t, p, q, Hb, gpb, gqb = map(_c, (theta, t, p, q, Hb, gpb, gqb))
    tb, pb, qb, thb = torch.empty_like(t), torch.empty_like(p), torch.empty_like(q), torch.empty_like(theta)
    if not spec[0]:
        tb.zero_()
    _launch(
        core.OP_GRAD_BWD, spec, hr, p, theta=theta, t=t, p=p, q=q, b0=Hb, b1=gpb, b2=gqb, o0=tb, o1=pb, o2=qb, thb=thb
    )
    return tb, pb, qb, thb


@grad_backward_op.register_fake
def _(theta, t, p, q, Hb, gpb, gqb, spec, hr):
    return torch.empty_like(t), torch.empty_like(p), torch.empty_like(q), torch.empty_like(theta)


def _grad_setup(ctx, inputs, output):
    theta, t, p, q, spec, hr = inputs
    ctx.save_for_backward(theta, t, p, q)
    ctx.spec, ctx.hr = spec, hr


def _grad_bwd(ctx, Hb, gpb, gqb):
    theta, t, p, q = ctx.saved_tensors
    Hb = _zeros_if_none(Hb, t)
    gpb, gqb = _zeros_if_none(gpb, p), _zeros_if_none(gqb, q)
    tb, pb, qb, thb = grad_backward_op(theta, t, p, q, Hb, gpb, gqb, ctx.spec, ctx.hr)
    return thb, tb, pb, qb, None, None


grad_op.register_autograd(_grad_bwd, setup_context=_grad_setup)


# ----------------------------------------------------------------------------- step
@torch.library.custom_op("hinn::step", mutates_args=())
def step_op(
    theta: Tensor, t: Tensor, p: Tensor, q: Tensor, spec: List[int], hr: float, h: float, scheme: int
) -> Tuple[Tensor, Tensor]:
    theta, t, p, q = _c(theta), _c(t), _c(p), _c(q)
    p1, q1 = torch.empty_like(p), torch.empty_like(q)
    _launch(
        core.OP_ROLLOUT_FWD,
        spec,
        hr,
        p,
        theta=theta,
        t=t,
        p=p,
        q=q,
        o1=p1,
        o2=q1,
        scheme=scheme,
        h=h,
        steps=1,
        trajectory=False,
    )
    return p1, q1


@step_op.register_fake
def _(theta, t, p, q, spec, hr, h, scheme):
    return torch.empty_like(p), torch.empty_like(q)


@torch.library.custom_op("hinn::step_backward", mutates_args=())
def step_backward_op(
    theta: Tensor,
    t: Tensor,
    p: Tensor,
    q: Tensor,
    pb: Tensor,
    qb: Tensor,
    spec: List[int],
    hr: float,
    h: float,
    scheme: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    theta, t, p, q, pb, qb = map(_c, (theta, t, p, q, pb, qb))
    p0b, q0b, thb = torch.empty_like(p), torch.empty_like(q), torch.empty_like(theta)
    _launch(
        core.OP_ROLLOUT_BWD,
        spec,
        hr,
        p,
        theta=theta,
        t=t,
        p=p,
        q=q,
        b1=pb,
        b2=qb,
        o1=p0b,
        o2=q0b,
        thb=thb,
        scheme=scheme,
        h=h,
        steps=1,
        trajectory=False,
    )
    return p0b, q0b, thb


@step_backward_op.register_fake
def _(theta, t, p, q, pb, qb, spec, hr, h, scheme):
    return torch.empty_like(p), torch.empty_like(q), torch.empty_like(theta)


def _step_setup(ctx, inputs, output):
    theta, t, p, q, spec, hr, h, scheme = inputs
    ctx.save_for_backward(theta, t, p, q)
    ctx.args = (spec, hr, h, scheme)


def _step_bwd(ctx, pb, qb):
    theta, t, p, q = ctx.saved_tensors
    p0b, q0b, thb = step_backward_op(theta, t, p, q, _zeros_if_none(pb, p), _zeros_if_none(qb, q), *ctx.args)
    return thb, None, p0b, q0b, None, None, None, None


step_op.register_autograd(_step_bwd, setup_context=_step_setup)


# ----------------------------------------------------------------------------- rollout
@torch.library.custom_op("hinn::rollout", mutates_args=())
def rollout_op(
    theta: Tensor, t: Tensor, p: Tensor, q: Tensor, spec: List[int], hr: float, h: float, scheme: int, steps: int
) -> Tuple[Tensor, Tensor]:
    theta, t, p, q = _c(theta), _c(t), _c(p), _c(q)
    P = p.new_empty((steps + 1,) + tuple(p.shape))
    Q = q.new_empty((steps + 1,) + tuple(q.shape))
    _launch(
        core.OP_ROLLOUT_FWD,
        spec,
        hr,
        p,
        theta=theta,
        t=t,
        p=p,
        q=q,
        o1=P,
        o2=Q,
        scheme=scheme,
        h=h,
        steps=steps,
        trajectory=True,
    )
    return P, Q


@rollout_op.register_fake
def _(theta, t, p, q, spec, hr, h, scheme, steps):
    return p.new_empty((steps + 1,) + tuple(p.shape)), q.new_empty((steps + 1,) + tuple(q.shape))


@torch.library.custom_op("hinn::rollout_backward", mutates_args=())
def rollout_backward_op(
    theta: Tensor,
    t: Tensor,
    P: Tensor,
    Q: Tensor,
    Pb: Tensor,
    Qb: Tensor,
    spec: List[int],
    hr: float,
    h: float,
    scheme: int,
    steps: int,
) -> Tuple[Tensor, Tensor, Tensor]:
    theta, t, P, Q, Pb, Qb = map(_c, (theta, t, P, Q, Pb, Qb))
    p0b, q0b, thb = torch.empty_like(P[0]), torch.empty_like(Q[0]), torch.empty_like(theta)
    _launch(
        core.OP_ROLLOUT_BWD,
        spec,
        hr,
        P[0],
        theta=theta,
        t=t,
        p=P,
        q=Q,
        b1=Pb,
        b2=Qb,
        o1=p0b,
        o2=q0b,
        thb=thb,
        scheme=scheme,
        h=h,
        steps=steps,
        trajectory=True,
    )
    return p0b, q0b, thb


@rollout_backward_op.register_fake
def _(theta, t, P, Q, Pb, Qb, spec, hr, h, scheme, steps):
    return torch.empty_like(P[0]), torch.empty_like(Q[0]), torch.empty_like(theta)


def _rollout_setup(ctx, inputs, output):
    theta, t, p, q, spec, hr, h, scheme, steps = inputs
    P, Q = output
    ctx.save_for_backward(theta, t, P, Q)
    ctx.args = (spec, hr, h, scheme, steps)


def _rollout_bwd(ctx, Pb, Qb):
    theta, t, P, Q = ctx.saved_tensors
    p0b, q0b, thb = rollout_backward_op(theta, t, P, Q, _zeros_if_none(Pb, P), _zeros_if_none(Qb, Q), *ctx.args)
    return thb, None, p0b, q0b, None, None, None, None, None


rollout_op.register_autograd(_rollout_bwd, setup_context=_rollout_setup)


# ----------------------------------------------------------------------------- backend interface
def hamiltonian(net, t, p, q) -> Tensor:
    return grad_op(net.theta, t, p, q, _spec(net), net.resnet_step)[0]


def grad(net, t, p, q) -> Tuple[Tensor, Tensor, Tensor]:
    return grad_op(net.theta, t, p, q, _spec(net), net.resnet_step)


def step(net, t, p, q, h: float, scheme: int) -> Tuple[Tensor, Tensor]:
    return step_op(net.theta, t, p, q, _spec(net), net.resnet_step, h, scheme)


def rollout(net, t, p, q, h: float, steps: int, scheme: int) -> Tuple[Tensor, Tensor]:
    return rollout_op(net.theta, t, p, q, _spec(net), net.resnet_step, h, scheme, steps)
