"""The interface every backend implements (DESIGN §5)."""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Protocol, Tuple

from torch import Tensor

from ..scheme import Scheme


class Network(Protocol):
    """What a backend reads of a :class:`hinn.HamiltonianNet` (named here so that the backends need not
    import the network, which imports them): its structure and its flat parameters."""

    theta: Tensor
    dim: int
    width: int
    depth: int
    time_dependent: bool
    activation: str
    resnet_step: float

    def layers(self) -> List[Tuple[Tensor, Tensor]]: ...


class Backend:
    """How a :class:`hinn.HamiltonianNet` computes H and ∇H.

    Inputs arrive validated (t (N,), p and q (N, d), the network's dtype and device). A backend that can
    run whole integrator steps compiled overrides :meth:`rollout`.
    """

    name: str

    def available(self) -> bool:
        """Whether this backend can run on this installation."""
        return True

    def unavailable_reason(self) -> str:
        return ""

    def hamiltonian(self, net: Network, t: Tensor, p: Tensor, q: Tensor) -> Tensor:
        """H: (N,)."""
        raise NotImplementedError

    def grad(self, net: Network, t: Tensor, p: Tensor, q: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """(H, ∂H/∂p, ∂H/∂q): (N,), (N, d), (N, d)."""
        raise NotImplementedError

    def rollout(
        self,
        net: Network,
        scheme: Scheme,
        t: Tensor,
        p: Tensor,
        q: Tensor,
        h: float,
        steps: int,
        trajectory: bool,
    ) -> Optional[Tuple[Tensor, Tensor]]:
        """``steps`` steps of ``scheme`` in one call (see :class:`hinn.protocols.CompiledRollout`), or
        ``None``: the integrators then run the scheme in Python over :meth:`grad`."""
        return None

    def window_loss(
        self,
        net: Network,
        scheme: Scheme,
        t0: Tensor,
        p0: Tensor,
        q0: Tensor,
        P: Tensor,
        Q: Tensor,
        h: float,
        scale: float,
    ) -> Optional[Tuple[Tensor, Tensor, Tensor, Tensor]]:
        """Training windows in one call: (per-window losses ``scale · Σ_k |error_k|²`` (M,), the gradients
        of their sum with respect to p0, q0 and ``net.theta``), or ``None``: training then goes through
        autograd."""
        return None

    def window_error(
        self, net: Network, scheme: Scheme, t0: Tensor, p0: Tensor, q0: Tensor, P: Tensor, Q: Tensor, h: float,
        scale: float,
    ) -> Optional[Tensor]:  # fmt: skip
        """The per-window losses of :meth:`window_loss` alone, forward only (evaluation), or ``None``."""
        return None

    def window_error_call(
        self, net: Network, scheme: Scheme, t0: Tensor, p0: Tensor, q0: Tensor, P: Tensor, Q: Tensor, h: float,
        scale: float,
    ) -> Optional[Callable[[], Tensor]]:  # fmt: skip
        """The sum of :meth:`window_error`'s losses as a function of nothing, its arguments checked and
        prepared once (each call evaluates ``net``'s weights as they are then), or ``None``."""
        return None

    def derivative_loss(
        self, net: Network, t: Tensor, p: Tensor, q: Tensor, target_p: Tensor, target_q: Tensor, scale: float
    ) -> Optional[Tuple[Tensor, Tensor]]:
        """HNN's loss in one call: (per-sample losses ``scale · |∇H − (target_p, target_q)|²`` (M,), the
        gradient of their sum with respect to ``net.theta``), or ``None``: training then goes through
        autograd."""
        return None

    def epoch(
        self,
        net: Network,
        data: Dict[str, Tensor],
        scale: float,
        scheme: Optional[Scheme] = None,
        h: Optional[float] = None,
        mask: Optional[Tensor] = None,
    ) -> Optional[Callable[[Tensor, Tensor, Dict], Tensor]]:
        """Whole training epochs in one call each, or ``None`` (the training loop then steps minibatch by
        minibatch). ``data``: ``t``, ``p``, ``q``, ``target_p``, ``target_q`` over all samples, of the
        window loss (with ``scheme`` and ``h``; targets (K, M, d)) or of the derivative loss (targets
        (M, d)); ``scale``: one sample's loss scale. Returns ``epoch(index, bounds, optimizer, starts=None,
        starts_optimizer=None)``, which runs the minibatches ``index[bounds[b]:bounds[b + 1]]`` with the
        optimizer's update (:meth:`hinn.optim.Adam.compiled_args`) after each, θ and the optimizer's state
        updated in place, and returns each minibatch's summed loss (float64); ``starts``: fitted window
        starts (p̂, q̂) that the windows start from (and ``starts_optimizer`` updates), as
        :class:`hinn.backends.fused.EpochCall`."""
        return None

    def __repr__(self) -> str:
        return f"<hinn backend {self.name!r}>"
