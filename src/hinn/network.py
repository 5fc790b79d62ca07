"""HamiltonianNet: the hessQuik-style ResNet Hamiltonian H_θ(t, p, q)."""

from __future__ import annotations

import math
from typing import List, Optional, Tuple

import torch
from torch import nn

from . import backends
from ._checks import Time, check_state

# The activations every backend implements (smooth: second derivatives are used).
ACTIVATIONS = ("tanh", "softplus")
STRUCTURE = ("dim", "width", "depth", "time_dependent", "activation", "resnet_step", "separable")


def _compiles(optimizer, params) -> bool:
    """Whether the core's epoch can run ``optimizer``'s update, and it updates exactly ``params``."""
    found = getattr(optimizer, "params", None)
    ok = callable(getattr(optimizer, "compiled_args", None)) and optimizer.compiled_args() is not None
    return ok and found is not None and len(found) == len(params) and all(a is b for a, b in zip(found, params))


class HamiltonianNet(nn.Module):
    r"""A scalar Hamiltonian :math:`H_\theta(t, p, q)` given by a ResNet (hessQuik's composition).

    With input :math:`x = [t, p, q] \in \mathbb{R}^{1+2d}` (``time_dependent=True``) or
    :math:`x = [p, q]`:

    .. math::

        u_0 = \sigma(x K_0 + b_0), \quad
        u_l = u_{l-1} + h_r\,\sigma(u_{l-1} K_l + b_l)\ (l = 1..L), \quad
        H = u_L K_{out} + b_{out}

    with :math:`K_0: (n_{in}, w)`, :math:`K_l: (w, w)`, :math:`K_{out}: (w, 1)` stored (in, out) as in
    hessQuik. All parameters live in one flat tensor ``theta`` in hessQuik's order
    (K_0, b_0, K_1, b_1, ..., K_out, b_out); :meth:`layers` returns views of it.

    Args:
        dim: d, the dimension of p and of q.
        width: w, the width of every hidden layer (16 by default, as ``hinn train``; the poster's
            network is width 3, depth 20).
        depth: L, the number of residual layers (0 allowed; 4 by default).
        time_dependent: whether t is an input of the network (the poster's choice, and ``hinn train``'s for
            built-in systems; ``hinn train --data`` learns an autonomous H unless asked).
        activation: ``"tanh"`` or ``"softplus"`` (smooth: second derivatives are used).
        resnet_step: h_r; default ``1 / depth`` (the ResNet read as a unit-time ODE; 1 when depth is 0).
        dtype, device: of the parameters; states passed in must match. The dtype follows
            ``torch.get_default_dtype()`` like any torch module (float32 unless changed); ``hinn train``
            uses float64, which trajectory losses near 1e-6 need.
        backend: ``"fused"``, ``"autograd"``, ``"hessquik"``, or None to follow :func:`hinn.set_backend`.
        separable: H = T(p) + V(t, q) exactly — the form for which the explicit schemes (symplectic Euler,
            leapfrog) are symplectic, SRNN's model. The hidden channels split in two halves, the first
            ⌊w/2⌋ reading p alone, the rest t and q, with no weight across the halves (block-diagonal
            residual layers; the readout sums both). It is the same ResNet with those weights held at
            zero: every backend, the compiled core and the oracle run it unchanged, and the gradient with
            respect to ``theta`` is zero there (masked, see :meth:`mask_grad`), so any optimizer keeps
            them zero. Needs width >= 2.

    Initialisation: every entry of K and b is drawn from U(−1/√n, 1/√n), n the layer's input size.

    The structure (``dim``, ``width``, ``depth``, ``time_dependent``, ``activation``, ``resnet_step``) is
    fixed at construction: read-only, and stored in the ``state_dict``, so that loading weights saved
    from a network of another structure raises instead of silently computing something else.

    A HamiltonianNet is a :class:`hinn.protocols.HamiltonianModel` with both optional capabilities:
    ``raw_grad`` and, on the fused backend, ``compiled_rollout``.
    """

    def __init__(
        self,
        dim: int,
        width: int = 16,
        depth: int = 4,
        time_dependent: bool = True,
        activation: str = "tanh",
        resnet_step: Optional[float] = None,
        dtype: Optional[torch.dtype] = None,
        device: Optional[torch.device] = None,
        backend: Optional[str] = None,
        separable: bool = False,
    ) -> None:
        super().__init__()
        for name, val, low in (("dim", dim, 1), ("width", width, 1), ("depth", depth, 0)):
            if isinstance(val, bool) or not isinstance(val, int) or val < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {val!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; valid activations are {', '.join(ACTIVATIONS)}")
        if backend is not None:
            backends.check_backend_name(backend)
        if resnet_step is None:
            resnet_step = 1.0 / depth if depth > 0 else 1.0
        resnet_step = float(resnet_step)
        if not math.isfinite(resnet_step):
            raise ValueError(f"resnet_step must be finite, got {resnet_step}")
        if separable and width < 2:
            raise ValueError(f"a separable network needs width >= 2 (a channel for T(p) and one for V), got {width}")
        dtype = dtype or torch.get_default_dtype()
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self._structure = dict(
            dim=dim,
            width=width,
            depth=depth,
            time_dependent=bool(time_dependent),
            activation=activation,
            resnet_step=resnet_step,
            separable=bool(separable),
        )
        self.backend = backend
        self.theta = nn.Parameter(torch.empty(self.n_params, dtype=dtype, device=device))
        # the weights a separable network holds at zero (None: none); not saved, the structure implies it
        self.register_buffer("_free", self._free_weights(device) if separable else None, persistent=False)
        if separable:
            self.theta.register_hook(self.mask_grad)
        self.reset_parameters()

    # ---------------------------------------------------------------- structure
    dim = property(lambda self: self._structure["dim"], doc="d: p, q ∈ R^d.")
    width = property(lambda self: self._structure["width"], doc="w: the width of every hidden layer.")
    depth = property(lambda self: self._structure["depth"], doc="L: the number of residual layers.")
    time_dependent = property(lambda self: self._structure["time_dependent"], doc="whether t is an input.")
    activation = property(lambda self: self._structure["activation"], doc="the activation's name.")
    resnet_step = property(lambda self: self._structure["resnet_step"], doc="h_r, the residual step.")
    separable = property(lambda self: self._structure["separable"], doc="whether H = T(p) + V(t, q).")

    @property
    def structure(self) -> dict:
        """The structure as a dict (what ``state_dict`` stores and checks)."""
        return dict(self._structure)

    def get_extra_state(self) -> dict:
        return {"structure": self.structure}

    def set_extra_state(self, state) -> None:
        theirs = state.get("structure") if isinstance(state, dict) else None
        if isinstance(theirs, dict):  # saved before networks could be separable
            theirs = {**theirs, "separable": theirs.get("separable", False)}
        if theirs != self._structure:
            raise ValueError(
                f"this state dict was saved from a network with structure {theirs}, but this network has "
                f"{self._structure}; build the network with the saved structure"
            )

    @property
    def n_in(self) -> int:
        return 2 * self.dim + int(self.time_dependent)

    def layer_shapes(self) -> List[Tuple[Tuple[int, int], Tuple[int]]]:
        """Shapes of (K, b) for the opening layer, each residual layer and the readout."""
        w = self.width
        return [((self.n_in, w), (w,))] + [((w, w), (w,))] * self.depth + [((w, 1), (1,))]

    @property
    def n_params(self) -> int:
        return sum(a * b + c for (a, b), (c,) in self.layer_shapes())

    def layers(self) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """Views (K, b) into ``theta``: opening layer, residual layers 1..L, readout."""
        out, off = [], 0
        for (r, c), (nb,) in self.layer_shapes():
            K = self.theta[off : off + r * c].view(r, c)
            off += r * c
            b = self.theta[off : off + nb]
            off += nb
            out.append((K, b))
        return out

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for K, b in self.layers():
                bound = 1.0 / math.sqrt(K.shape[0])
                K.uniform_(-bound, bound)
                b.uniform_(-bound, bound)
            if self._free is not None:
                self.theta.mul_(self._free)

    def _free_weights(self, device) -> torch.Tensor:
        """1 where a separable network's ``theta`` is free, 0 where it is held at zero: the opening layer
        sends p to the first ⌊w/2⌋ channels only and t, q to the others; residual layers stay within a half."""
        w, o, d = self.width, int(self.time_dependent), self.dim
        half = torch.arange(w, device=device) < w // 2  # the channels of T(p)
        rows_p = torch.zeros(self.n_in, dtype=torch.bool, device=device)
        rows_p[o : o + d] = True
        opening = rows_p[:, None] == half[None, :]
        residual = half[:, None] == half[None, :]
        readout = torch.ones(w, 1, dtype=torch.bool, device=device)
        parts = []
        for K, (_, (nb,)) in zip([opening] + [residual] * self.depth + [readout], self.layer_shapes(), strict=True):
            parts += [K.reshape(-1), torch.ones(nb, dtype=torch.bool, device=device)]
        return torch.cat(parts).to(self.theta.dtype)

    def __setstate__(self, state) -> None:
        super().__setstate__(state)
        if self._free is not None:  # a copy's or an unpickled network's parameter comes without the hook
            self.theta.register_hook(self.mask_grad)

    def mask_grad(self, g: torch.Tensor) -> torch.Tensor:
        """A gradient with respect to ``theta`` with the entries a separable network holds at zero
        zeroed (``g`` itself for any other network). Autograd applies it through a hook; the compiled
        training loss applies it to its own gradient."""
        return g * self._free if self._free is not None else g

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, width={self.width}, depth={self.depth}, time_dependent={self.time_dependent}, "
            f"activation={self.activation!r}, resnet_step={self.resnet_step:g}, backend={self.backend!r}"
            + (", separable=True" if self.separable else "")
        )

    # ---------------------------------------------------------------- evaluation
    def backend_name(self) -> str:
        """The backend this network uses now (its own, else the global choice)."""
        return backends.get_backend(self.backend)

    def _check(self, t: Time, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return check_state(t, p, q, self.dim, self.theta.dtype, self.theta.device)

    def _backend(self) -> backends.Backend:
        return backends.backend(self.backend_name())

    def forward(self, t: Time, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """H_θ(t, p, q). t: float or (N,); p, q: (N, d). Returns (N,)."""
        t = self._check(t, p, q)
        return self._backend().hamiltonian(self, t, p, q)

    def grad(self, t: Time, p: torch.Tensor, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(∂H/∂p, ∂H/∂q), each (N, d), differentiable with respect to p, q, t and ``theta``."""
        return self.raw_grad(self._check(t, p, q), p, q)

    def raw_grad(self, t: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`grad` without input validation, for callers that validated once (t: (N,) tensor)."""
        _, gp, gq = self._backend().grad(self, t, p, q)
        return gp, gq

    def value_and_grad(
        self, t: Time, p: torch.Tensor, q: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(H, ∂H/∂p, ∂H/∂q) in one pass: shapes (N,), (N, d), (N, d)."""
        t = self._check(t, p, q)
        return self._backend().grad(self, t, p, q)

    def compiled_rollout(self, scheme, t, p, q, h: float, steps: int, trajectory: bool):
        """``steps`` steps of ``scheme`` in one compiled call when this network's backend can run this
        scheme, else None (see :class:`hinn.protocols.CompiledRollout`)."""
        return self._backend().rollout(self, scheme, t, p, q, h, steps, trajectory)

    def compiled_window_loss(self, scheme, t0, p0, q0, P, Q, h: float, scale: float, grad: bool = True):
        """Training windows, loss and gradient in one compiled call when this network's backend can run
        ``scheme``, else None (see :class:`hinn.protocols.CompiledWindowLoss`). ``grad=False``: the losses
        alone, forward only, with no gradients (an empty dict)."""
        if not grad:
            losses = self._backend().window_error(self, scheme, t0, p0, q0, P, Q, h, scale)
            return None if losses is None else (losses, {})
        res = self._backend().window_loss(self, scheme, t0, p0, q0, P, Q, h, scale)
        if res is None:
            return None
        losses, gp, gq, g = res
        return losses, {self.theta: self.mask_grad(g), p0: gp, q0: gq}

    def compiled_window_error(self, scheme, t0, p0, q0, P, Q, h: float, scale: float):
        """The summed losses of :meth:`compiled_window_loss` with ``grad=False`` as a function of nothing,
        checked and prepared once for windows evaluated again and again (a validation set after every
        epoch; each call sees the weights as training left them), or None where this network's backend
        cannot run ``scheme``. The function holds ``theta``'s storage: prepare it again after replacing
        ``theta.data``."""
        return self._backend().window_error_call(self, scheme, t0, p0, q0, P, Q, h, scale)

    def compiled_derivative_loss(self, t, p, q, target_p, target_q, scale: float):
        """HNN's loss, ``scale · |∇H − (target_p, target_q)|²`` per sample, and its θ-gradient in one
        compiled call when this network's backend has one, else None (see
        :class:`hinn.protocols.CompiledDerivativeLoss`)."""
        res = self._backend().derivative_loss(self, t, p, q, target_p, target_q, scale)
        if res is None:
            return None
        losses, g = res
        return losses, {self.theta: self.mask_grad(g)}

    def compiled_epoch(self, data, scale: float, optimizer, scheme=None, h: Optional[float] = None, starts=None):
        """Whole training epochs of ``optimizer`` (a :mod:`hinn.optim` optimizer of this network's
        ``theta`` alone) in one compiled call each, when this network's backend has them for this loss,
        else None (see :class:`hinn.protocols.CompiledEpoch`; ``starts``: fitted window starts and their
        optimizer, (p̂, q̂, starts_optimizer))."""
        if not _compiles(optimizer, [self.theta]) or (starts is not None and not _compiles(starts[2], starts[:2])):
            return None
        run = self._backend().epoch(self, data, scale, scheme, h, self._free)
        if run is None:
            return None

        def epoch(index: torch.Tensor, bounds: torch.Tensor, move_starts: bool = True) -> torch.Tensor:
            steps, moved = bounds.numel() - 1, starts is not None and move_starts
            fitted = None if starts is None else starts[:2]
            losses = run(index, bounds, optimizer.compiled_args(), fitted, starts[2].compiled_args() if moved else None)
            optimizer.advance(steps)
            if moved:
                starts[2].advance(steps)
            return losses

        return epoch

    # ---------------------------------------------------------------- hessQuik conversion
    def to_hessquik(self):
        """A hessQuik ``NN`` with a copy of these weights (same dtype and device)."""
        from .backends.hessquik import build_network

        net = build_network(self.n_in, self.width, self.depth, self.activation, self.resnet_step)
        net = net.to(dtype=self.theta.dtype, device=self.theta.device)
        with torch.no_grad():
            off = 0
            for prm in net.parameters():
                n = prm.numel()
                prm.copy_(self.theta[off : off + n].view_as(prm))
                off += n
        return net

    @classmethod
    def from_hessquik(
        cls, hq_net, dim: int, time_dependent: bool = True, backend: Optional[str] = None
    ) -> "HamiltonianNet":
        """Build a HamiltonianNet from a hessQuik ``NN(singleLayer, resnetNN, singleLayer)``.

        Width, depth, activation and residual step are read from the hessQuik layers.
        """
        from .backends.hessquik import describe_network

        desc = describe_network(hq_net)
        n_in = 2 * dim + int(time_dependent)
        if desc["n_in"] != n_in:
            raise ValueError(
                f"the hessQuik network takes {desc['n_in']} inputs, but dim={dim}, "
                f"time_dependent={time_dependent} needs {n_in}"
            )
        first = next(hq_net.parameters())
        net = cls(
            dim,
            width=desc["width"],
            depth=desc["depth"],
            time_dependent=time_dependent,
            activation=desc["activation"],
            resnet_step=desc["resnet_step"],
            dtype=first.dtype,
            device=first.device,
            backend=backend,
        )
        flat = torch.cat([prm.detach().reshape(-1) for prm in hq_net.parameters()])
        with torch.no_grad():
            net.theta.copy_(flat)
        return net
