"""Training objectives, pluggable into the one training loop (:func:`hinn.train.fit`).

* :class:`TrajectoryObjective` — HINN (the poster): roll the learned dynamics out K steps from observed
  states and compare with the observations, min_θ Σ_k |p_θ(t_k) − p(t_k)|² + |q_θ(t_k) − q(t_k)|²
  (a discrete form of the poster's ∫ … dt), averaged over windows and steps and divided by h².
  Why h²: a one-step error is h times the error of the learned vector field, so the raw loss shrinks
  like h² and plain gradient descent at the poster's learning rate barely moves (measured: spring,
  1500 epochs, rollout MSE 0.43). Divided by h², the loss is the squared vector-field error and a
  learning rate means the same at any h.
* :class:`DerivativeObjective` — HNN (Greydanus et al. 2019): fit (∂H/∂p, −∂H/∂q) to observed (q̇, ṗ).

An objective holds its samples and computes the loss of a model on any subset of them (``idx``).
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Dict, List, Optional, Protocol, Tuple, Union

import torch
from torch import Tensor

from ._checks import check_samples
from .integrators import Scheme, get_scheme, rollout, step

Index = Optional[Union[Tensor, slice]]


class Objective(Protocol):
    """``n`` samples; ``loss(model, idx)`` the mean loss over the samples ``idx`` (None: all).

    An objective may also offer ``loss_and_grad(model, idx)``: (the loss, {parameter: gradient}) computed
    without autograd, or None when it cannot for this model; :func:`hinn.train.fit` prefers it; and
    ``evaluator(model)``: the loss over all samples as a function of nothing, prepared once for
    evaluating the same samples after every epoch (validation). For
    data-parallel training it needs ``take(idx)`` (the objective of those samples) and ``to(device)``:
    every process keeps its own shard of the samples.
    """

    n: int

    def loss(self, model, idx: Index = None) -> Tensor: ...


class _Samples:
    """Sample subsets and device moves for an objective whose tensors all index samples along one
    dimension (given by ``_sample_dims``)."""

    _fields: Tuple[str, ...] = ()
    _sample_dims: Tuple[int, ...] = ()

    def _rebuild(self, fn) -> "_Samples":
        new = copy.copy(self)
        for name, dim in zip(self._fields, self._sample_dims, strict=True):
            setattr(new, name, fn(getattr(self, name), dim))
        new.n = int(getattr(new, self._fields[0]).shape[self._sample_dims[0]])
        return new

    def take(self, idx: Union[Tensor, slice]):
        """The same objective over the samples ``idx`` only."""
        return self._rebuild(lambda x, dim: _take(x, idx, dim))

    def to(self, device):
        """The same objective with its samples on ``device``."""
        return self._rebuild(lambda x, dim: x.to(device))


def trajectory_loss(
    model, t0, p0, q0, P_target, Q_target, h: float, scheme: "str | Scheme" = "symplectic_euler"
) -> Tensor:
    """Mean over windows, steps and components of the squared rollout error, over 2h².

    t0 (M,), p0 and q0 (M, d): window starts; P_target, Q_target (K, M, d): the next K observations.
    """
    K = P_target.shape[0]
    if K == 1:
        p1, q1 = step(model, t0, p0, q0, h, scheme)
        err = ((p1 - P_target[0]) ** 2).mean() + ((q1 - Q_target[0]) ** 2).mean()
    else:
        P, Q = rollout(model, t0, p0, q0, h, K, scheme)
        err = ((P[1:] - P_target) ** 2).mean() + ((Q[1:] - Q_target) ** 2).mean()
    return err / (2 * h * h)


def derivative_loss(model, t, p, q, dp_dt, dq_dt) -> Tensor:
    """HNN loss: the mean squared error of the predicted (q̇, ṗ) = (∂H/∂p, −∂H/∂q) against the observed
    derivatives, over samples and all 2d components (the HNN paper's L2 loss)."""
    gp, gq = model.grad(t, p, q)
    return 0.5 * (((gp - dq_dt) ** 2).mean() + ((gq + dp_dt) ** 2).mean())


def _take(x: Tensor, idx: Index, dim: int = 0) -> Tensor:
    if idx is None:
        return x
    return x[idx] if dim == 0 else x[:, idx]


class TrajectoryObjective(_Samples):
    """HINN: K-step windows observed every ``h``: starts t0 (M,), p0, q0 (M, d) and targets P_target,
    Q_target (K, M, d) — the K observations after each start, steps first (what
    :meth:`hinn.data.Trajectories.windows` returns). Checked at construction (shapes, one dtype and
    device, finite values, h > 0); ``scheme`` a name or a :class:`hinn.Scheme`.

    ``fit_starts``: initial-state optimisation (SRNN, Chen et al. 2020). Every window starts from a
    state of its own, (p̂0, q̂0), a trainable tensor initialised at the observed start and fitted jointly
    with the model; the loss then also compares the start with its observation:

        loss = (|p̂0 − p0|² + |q̂0 − q0|² + Σ_k |p_k − P_k|² + |q_k − Q_k|²) / (2 h² K M d)

    so that noise in the observed starts is averaged with the window's later observations instead of
    being propagated through every step. :meth:`parameters` returns the start tensors (the training loop
    optimises them with the model's parameters); :meth:`state_dict` / :meth:`load_state_dict` carry them
    through checkpoints.
    """

    _fields, _sample_dims = ("t0", "p0", "q0", "P", "Q"), (0, 0, 0, 1, 1)

    def __init__(
        self,
        t0: Tensor,
        p0: Tensor,
        q0: Tensor,
        P_target: Tensor,
        Q_target: Tensor,
        h: float,
        scheme: "str | Scheme" = "symplectic_euler",
        fit_starts: bool = False,
    ):
        check_samples(
            "TrajectoryObjective", {"t0": t0, "p0": p0, "q0": q0}, {"P_target": P_target, "Q_target": Q_target}
        )
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h) or h <= 0:
            raise ValueError(f"TrajectoryObjective: h must be a positive number, got {h!r}")
        if P_target.shape[0] < 1:
            raise ValueError("TrajectoryObjective: the targets hold no step (K = 0); windows need K >= 1")
        self.t0, self.p0, self.q0, self.P, self.Q = t0, p0, q0, P_target, Q_target
        self.h, self.scheme = float(h), get_scheme(scheme)
        self.n = int(t0.shape[0])
        self.starts = _Starts(p0, q0) if fit_starts else None

    # ---------------------------------------------------------------- fitted starts
    def parameters(self) -> List[Tensor]:
        """The objective's own trainable tensors: the window starts (M, d) each when ``fit_starts``, else none."""
        return [] if self.starts is None else [self.starts.p, self.starts.q]

    def state_dict(self) -> Dict[str, Tensor]:
        return {} if self.starts is None else {"p": self.starts.p.detach(), "q": self.starts.q.detach()}

    def load_state_dict(self, state: Dict[str, Tensor]) -> None:
        if (self.starts is None) != (not state):
            raise ValueError("this state was saved from an objective with fit_starts set differently")
        if self.starts is not None:
            with torch.no_grad():
                self.starts.p.copy_(state["p"])
                self.starts.q.copy_(state["q"])

    def refine(self, model, iterations: int) -> None:
        """SRNN's refinement of the fitted starts: ``iterations`` L-BFGS iterations (strong Wolfe line
        search) on every window's start at once, the model fixed. The loss is a sum of per-window terms,
        so this one joint solve is the M small ones; each evaluation is one call of the compiled window
        loss where the model has it. A fresh L-BFGS every call: nothing carried between epochs."""
        if self.starts is None:
            raise ValueError("refine needs fitted starts: build the objective with fit_starts=True")
        if iterations < 1:
            return
        starts = [self.starts.p, self.starts.q]
        opt = torch.optim.LBFGS(starts, lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

        def closure():
            res = self.loss_and_grad(model)
            if res is None:
                loss = self.loss(model)
                grads = torch.autograd.grad(loss, starts)
            else:
                loss, by_tensor = res
                grads = [by_tensor[s] for s in starts]
            for s, g in zip(starts, grads, strict=True):
                s.grad = g
            return loss.detach()

        opt.step(closure)
        for s in starts:
            s.grad = None

    def take(self, idx):
        if self.starts is not None:  # every process would fit, and all-reduce, other windows' starts
            raise ValueError("fitted window starts (fit_starts) are not supported in data-parallel training yet")
        return super().take(idx)

    def to(self, device):
        new = super().to(device)
        if new.starts is not None:
            new.starts.to(device)  # in place: the tensors the optimiser holds stay the same objects
        return new

    def _window_starts(self, idx: Index) -> Tuple[Tensor, Tensor]:
        if self.starts is None:
            return _take(self.p0, idx), _take(self.q0, idx)
        return _take(self.starts.p, idx), _take(self.starts.q, idx)

    def _start_misfit(self, p0: Tensor, q0: Tensor, idx: Index) -> Tuple[Tensor, Tensor]:
        """The fitted starts' distance from the observed ones, p̂0 − p0 and q̂0 − q0."""
        return p0 - _take(self.p0, idx), q0 - _take(self.q0, idx)

    def _scale(self, P: Tensor) -> float:
        """1 / (2 h² K M d): the means of :func:`trajectory_loss`, over 2h², as one factor on sums."""
        return 1.0 / (P.numel() * 2 * self.h * self.h)

    # ---------------------------------------------------------------- the loss
    def loss(self, model, idx: Index = None) -> Tensor:
        """The mean loss over the windows ``idx`` (None: all). Without autograd (``torch.no_grad()``, as
        validation runs) a model with a compiled window loss evaluates it in one forward call."""
        p0, q0 = self._window_starts(idx)
        t0, P, Q = _take(self.t0, idx), _take(self.P, idx, 1), _take(self.Q, idx, 1)
        scale = self._scale(P)
        fn = None if torch.is_grad_enabled() else getattr(model, "compiled_window_loss", None)
        res = fn(self.scheme, t0, p0, q0, P, Q, self.h, scale, grad=False) if fn else None
        if res is not None:
            loss = res[0].sum()
        else:
            loss = trajectory_loss(model, t0, p0, q0, P, Q, self.h, self.scheme)
        if self.starts is not None:
            ep, eq = self._start_misfit(p0, q0, idx)
            loss = loss + scale * ((ep**2).sum() + (eq**2).sum())
        return loss

    def evaluator(self, model) -> Optional[Callable[[], Tensor]]:
        """:meth:`loss` over all windows, without autograd, as a function of nothing, for evaluating the
        same windows after every epoch (validation): the model's compiled window error, its call checked
        and prepared once (:meth:`hinn.HamiltonianNet.compiled_window_error`); None when the model has
        none for this scheme or the objective fits its starts (then :meth:`loss` under no_grad is it)."""
        fn = None if self.starts is not None else getattr(model, "compiled_window_error", None)
        if fn is None:
            return None
        return fn(self.scheme, self.t0, self.p0, self.q0, self.P, self.Q, self.h, self._scale(self.P))

    def loss_and_grad(self, model, idx: Index = None) -> Optional[Tuple[Tensor, Dict[Tensor, Tensor]]]:
        """The loss of :meth:`loss` and its gradients (every parameter of the model's, and the fitted
        starts') from the model's compiled window loss (one call: forward, loss and backward in the core,
        no autograd graph), or None when the model has none for this scheme."""
        fn = getattr(model, "compiled_window_loss", None)
        if fn is None:
            return None
        P, Q = _take(self.P, idx, 1), _take(self.Q, idx, 1)
        scale = self._scale(P)
        p0, q0 = (x.detach() for x in self._window_starts(idx))
        res = fn(self.scheme, _take(self.t0, idx), p0, q0, P, Q, self.h, scale)
        if res is None:
            return None
        losses, by_tensor = res
        gp, gq = by_tensor.pop(p0, None), by_tensor.pop(q0, None)
        loss = losses.sum()
        if self.starts is None:
            return loss, by_tensor
        if gp is None or gq is None:
            return None  # a compiled loss without the starts' gradients: autograd computes them
        ep, eq = self._start_misfit(p0, q0, idx)
        loss = loss + scale * ((ep**2).sum() + (eq**2).sum())
        by_tensor[self.starts.p] = _scatter(self.starts.p, idx, gp + 2 * scale * ep)
        by_tensor[self.starts.q] = _scatter(self.starts.q, idx, gq + 2 * scale * eq)
        return loss, by_tensor

    def compiled_epoch(self, model, optimizer, starts_optimizer=None) -> Optional[Callable[..., Tensor]]:
        """Whole epochs of :meth:`loss` minimised by ``optimizer`` (and the fitted starts by
        ``starts_optimizer``) in one compiled call each: the model's ``compiled_epoch``, which returns
        ``epoch(index, bounds, move_starts=True)``; or None where the model has none for this scheme."""
        fn = getattr(model, "compiled_epoch", None)
        if fn is None or (self.starts is not None and starts_optimizer is None):
            return None
        data = dict(t=self.t0, p=self.p0, q=self.q0, target_p=self.P, target_q=self.Q)
        starts = None if self.starts is None else (self.starts.p, self.starts.q, starts_optimizer)
        one = self._scale(self.P[:, :1])  # one window's loss scale (the core divides by the minibatch's size)
        return fn({k: v.contiguous() for k, v in data.items()}, one, optimizer, self.scheme, self.h, starts=starts)


class _Starts(torch.nn.Module):
    """Trainable window starts, initialised at the observed ones."""

    def __init__(self, p0: Tensor, q0: Tensor):
        super().__init__()
        self.p = torch.nn.Parameter(p0.detach().clone())
        self.q = torch.nn.Parameter(q0.detach().clone())


def _scatter(like: Tensor, idx: Index, rows: Tensor) -> Tensor:
    """A gradient for all of ``like`` holding ``rows`` at ``idx`` and zeros elsewhere."""
    if idx is None:
        return rows
    out = torch.zeros_like(like)
    out[idx] = rows
    return out


class DerivativeObjective(_Samples):
    """HNN: states t (M,), p, q (M, d) with observed time derivatives ṗ, q̇ (M, d).

    On the fused backend :meth:`loss_and_grad` computes ∇H, the loss and its parameter gradient in one
    compiled call (the gradient sweep kept for the backward, not recomputed); :meth:`loss` is the same
    loss through the custom ops, for composing with other terms.
    """

    _fields, _sample_dims = ("t", "p", "q", "dp", "dq"), (0, 0, 0, 0, 0)

    def __init__(self, t, p, q, dp_dt, dq_dt):
        check_samples("DerivativeObjective", {"t": t, "p": p, "q": q, "dp_dt": dp_dt, "dq_dt": dq_dt}, {})
        self.t, self.p, self.q, self.dp, self.dq = t, p, q, dp_dt, dq_dt
        self.n = int(t.shape[0])

    def loss(self, model, idx: Index = None) -> Tensor:
        return derivative_loss(
            model, _take(self.t, idx), _take(self.p, idx), _take(self.q, idx), _take(self.dp, idx), _take(self.dq, idx)
        )

    def loss_and_grad(self, model, idx: Index = None) -> Optional[Tuple[Tensor, Dict[Tensor, Tensor]]]:
        """The loss of :meth:`loss` and its parameter gradients from the model's compiled derivative loss
        (one call, no autograd graph), or None when the model has none."""
        fn = getattr(model, "compiled_derivative_loss", None)
        if fn is None:
            return None
        t, p, q = _take(self.t, idx), _take(self.p, idx), _take(self.q, idx)
        # ∂H/∂p should be q̇ and ∂H/∂q should be −ṗ
        res = fn(t, p, q, _take(self.dq, idx), -_take(self.dp, idx), self._scale(p))
        if res is None:
            return None
        losses, by_tensor = res
        return losses.sum(), by_tensor

    def compiled_epoch(self, model, optimizer, starts_optimizer=None) -> Optional[Callable[..., Tensor]]:
        """Whole epochs of :meth:`loss` minimised by ``optimizer`` in one compiled call each (the model's
        ``compiled_epoch``), or None when the model has none. (No tensors of its own: no
        ``starts_optimizer``.)"""
        fn = getattr(model, "compiled_epoch", None)
        if fn is None or starts_optimizer is not None:
            return None
        data = dict(t=self.t, p=self.p, q=self.q, target_p=self.dq, target_q=-self.dp)
        one = self._scale(self.p[:1])  # one sample's loss scale (the core divides by the minibatch's size)
        return fn({k: v.contiguous() for k, v in data.items()}, one, optimizer)

    @staticmethod
    def _scale(p: Tensor) -> float:
        """1 / (2 M d): the two means of :func:`derivative_loss`, halved, as one factor on sums."""
        return 0.5 / p.numel()


__all__ = ["DerivativeObjective", "Objective", "TrajectoryObjective", "derivative_loss", "trajectory_loss"]
