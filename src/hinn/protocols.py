"""The contracts between hinn's layers: what an integrator needs from a model.

Any object with a ``dim`` and a public ``grad(t, p, q)`` is a :class:`HamiltonianModel` and can be
stepped, rolled out, trained and evaluated by hinn: a :class:`hinn.HamiltonianNet`, the HNN-paper models
of :mod:`hinn.hnn`, or a user's analytic Hamiltonian in ten lines::

    class Oscillator:
        dim = 1
        def grad(self, t, p, q):          # (∂H/∂p, ∂H/∂q) of H = (p² + q²) / 2
            return p, q

    P, Q = hinn.rollout(Oscillator(), 0.0, p0, q0, h=0.1, steps=100, scheme="leapfrog")

Optional capabilities let a model do better; hinn asks for them by name, never by type:

* ``raw_grad(t, p, q)``: ``grad`` without input validation. The integrators validate their inputs once
  and call it at every stage when present (a model whose ``grad`` checks its inputs offers it).
* ``compiled_rollout(scheme, t, p, q, h, steps, trajectory)``: a whole rollout in one compiled call, or
  ``None`` when it cannot run this scheme (the integrators then fall back to the Python path).
* ``compiled_window_loss(scheme, t0, p0, q0, P, Q, h, scale)``: the trajectory loss of training windows
  and its parameter gradients in one compiled call, or ``None`` (training then uses autograd).
* ``compiled_derivative_loss(t, p, q, target_p, target_q, scale)``: HNN's derivative-matching loss and
  its parameter gradients in one compiled call, or ``None``.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Protocol, Tuple, runtime_checkable

from torch import Tensor

from .scheme import Scheme


@runtime_checkable
class HamiltonianModel(Protocol):
    """A model of a Hamiltonian system with ``dim`` degrees of freedom (p, q ∈ R^dim).

    ``grad(t, p, q)`` takes t of shape (N,) and p, q of shape (N, d), all of one dtype and device, and
    returns the "gradient" (g_p, g_q), each (N, d), whose flow is q̇ = g_p, ṗ = −g_q: for a Hamiltonian
    model that is (∂H/∂p, ∂H/∂q). It must be differentiable with respect to p, q and the model's
    parameters for training.
    """

    dim: int

    def grad(self, t: Tensor, p: Tensor, q: Tensor) -> Tuple[Tensor, Tensor]: ...


@runtime_checkable
class CompiledRollout(Protocol):
    """Capability: run ``steps`` steps of ``scheme`` in one compiled call.

    Returns (P, Q) of shape (steps + 1, N, d) with ``trajectory=True``, the final (p, q) of shape (N, d)
    otherwise; or ``None`` when this model cannot compile ``scheme`` (the caller falls back to Python).
    Inputs arrive validated: t (N,), p and q (N, d), one dtype and device.
    """

    def compiled_rollout(
        self, scheme: Scheme, t: Tensor, p: Tensor, q: Tensor, h: float, steps: int, trajectory: bool
    ) -> Optional[Tuple[Tensor, Tensor]]: ...


@runtime_checkable
class CompiledWindowLoss(Protocol):
    """Capability: the loss of M training windows and its gradients, without autograd.

    From t0 (M,), p0, q0 (M, d), roll ``K = P.shape[0]`` steps of ``scheme`` and compare with the
    targets P, Q (K, M, d). Returns (per-window losses ``scale · Σ_k |p_k − P_k|² + |q_k − Q_k|²`` (M,),
    {tensor: gradient of the summed loss} for every parameter and for the very ``p0`` and ``q0`` passed
    in), or ``None`` when this model cannot compile ``scheme``. With ``grad=False``: the losses alone, from
    a forward pass, and an empty dict.
    """

    def compiled_window_loss(
        self,
        scheme: Scheme,
        t0: Tensor,
        p0: Tensor,
        q0: Tensor,
        P: Tensor,
        Q: Tensor,
        h: float,
        scale: float,
        grad: bool = True,
    ) -> Optional[Tuple[Tensor, Dict[Tensor, Tensor]]]: ...


@runtime_checkable
class CompiledDerivativeLoss(Protocol):
    """Capability: HNN's loss and its gradients, without autograd.

    At states t (M,), p, q (M, d), with targets (M, d) for ∂H/∂p and ∂H/∂q: returns (per-sample losses
    ``scale · (|∂H/∂p − target_p|² + |∂H/∂q − target_q|²)`` (M,), {parameter: gradient of the summed
    loss}), or ``None`` when this model has no compiled form.
    """

    def compiled_derivative_loss(
        self, t: Tensor, p: Tensor, q: Tensor, target_p: Tensor, target_q: Tensor, scale: float
    ) -> Optional[Tuple[Tensor, Dict[Tensor, Tensor]]]: ...


@runtime_checkable
class CompiledEpoch(Protocol):
    """Capability: whole training epochs, minibatch by minibatch, without returning to Python.

    ``data``: ``t`` (M,), ``p``, ``q`` (M, d) and the targets ``target_p``, ``target_q`` of the window
    loss (K, M, d; with ``scheme`` and its step ``h``, as :class:`CompiledWindowLoss`) or of the
    derivative loss (M, d; ``scheme`` None, as :class:`CompiledDerivativeLoss`); ``scale``: one
    sample's loss scale (a minibatch of n takes ``scale / n``); ``optimizer``: the training loop's
    optimizer (:mod:`hinn.optim`). Returns ``epoch(index, bounds)``: minibatch b is the samples
    ``index[bounds[b]:bounds[b + 1]]`` (int64 CPU tensors); after each, the optimizer's update of the
    model's parameters; the result is each minibatch's summed loss (float64, (n_batches,)). Or ``None``
    when this model cannot run this loss or optimizer so. ``starts``: fitted window starts (SRNN) as
    (p̂, q̂, their optimizer): the windows start from their rows (compared with ``data``'s p, q, the
    misfit joining the loss), and ``epoch(index, bounds, move_starts)`` updates them when asked.
    """

    def compiled_epoch(
        self,
        data: Dict[str, Tensor],
        scale: float,
        optimizer,
        scheme: Optional[Scheme] = None,
        h: Optional[float] = None,
        starts: Optional[Tuple[Tensor, Tensor, object]] = None,
    ) -> Optional[Callable[..., Tensor]]: ...


def validated_grad(model):
    """The gradient function to call on inputs that were already validated: the model's ``raw_grad``
    when it offers one, else its ``grad``."""
    return getattr(model, "raw_grad", None) or model.grad
