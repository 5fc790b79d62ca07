"""The training loop's optimizers: plain gradient descent and Adam, the updates of ``torch.optim.SGD``
and ``torch.optim.Adam`` (weight decay as an L2 term added to the gradient, as theirs) to rounding.

Why not ``torch.optim`` itself: building the first ``torch.optim`` optimizer of a process imports
``torch._dynamo`` (measured 0.9 s, more than a 100-epoch training of the poster's spring), and its
``step`` goes through hooks, profiler records and dispatch meant for general parameter lists (hinn's
model has one flat θ). These are a few in-place tensor operations per parameter. With ``capturable``
Adam's step count lives on the parameters' device, so that an update can be captured in a CUDA graph and
replayed.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor


class _Optimizer:
    """Parameters updated in place from their ``.grad`` by :meth:`step`; state for checkpoints."""

    kind = ""

    def __init__(self, params: Sequence[Tensor], lr: float, weight_decay: float = 0.0, capturable: bool = False):
        self.params: List[Tensor] = list(params)
        if not lr > 0 or weight_decay < 0:
            raise ValueError(f"need lr > 0 and weight_decay >= 0, got {lr} and {weight_decay}")
        self.lr, self.weight_decay = float(lr), float(weight_decay)

    def _grad(self, prm: Tensor) -> Tensor:
        g = prm.grad
        return g if self.weight_decay == 0 else g.add(prm, alpha=self.weight_decay)

    def _state(self) -> Dict:
        return {}

    def compiled_args(self) -> Optional[Dict]:
        """This update as the compiled core's epoch loop runs it (``kind``, the settings, the step count and
        Adam's moments ``m``, ``v``: a list with a tensor per parameter, updated in place), or None where
        it cannot: a step count kept on the device. After such an epoch, :meth:`advance` counts its steps."""
        if not self._host_count():
            return None
        return {"kind": self.kind, "lr": self.lr, "weight_decay": self.weight_decay, **self._compiled_state()}

    def _host_count(self) -> bool:
        return True

    def _compiled_state(self) -> Dict:
        return {}

    def advance(self, steps: int) -> None:
        """Count ``steps`` updates made outside :meth:`step` (by the compiled epoch loop)."""

    def state_dict(self) -> Dict:
        return {"kind": self.kind, "lr": self.lr, "weight_decay": self.weight_decay, **self._state()}

    def load_state_dict(self, state: Dict) -> None:
        if not isinstance(state, dict) or state.get("kind") != self.kind:
            found = state.get("kind") if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"this optimizer state is not hinn's {self.kind!r} optimizer's (found {found!r})")
        self._load(state)

    def _load(self, state: Dict) -> None:
        pass


class GradientDescent(_Optimizer):
    """θ ← θ − lr (∇L + weight_decay θ): ``torch.optim.SGD`` without momentum."""

    kind = "gd"  # nothing to count: capturable as it is

    @torch.no_grad()
    def step(self) -> None:
        for prm in self.params:
            if prm.grad is not None:
                prm.add_(self._grad(prm), alpha=-self.lr)


class Adam(_Optimizer):
    """Adam (Kingma and Ba 2015) as ``torch.optim.Adam`` computes it, bias corrections included: with
    g = ∇L + weight_decay θ, m ← β₁ m + (1 − β₁) g, v ← β₂ v + (1 − β₂) g², and
    θ ← θ − lr / (1 − β₁ᵏ) · m / (√v / √(1 − β₂ᵏ) + ε) at step k (one count for all parameters: the
    training loop gives every parameter a gradient at every step).

    ``capturable``: the step count lives on the parameters' device and the bias corrections are computed
    there, so that a step captured in a CUDA graph stays right when replayed (torch's ``capturable``);
    otherwise they are host numbers, and the update is torch's to the last bit."""

    kind = "adam"

    def __init__(
        self,
        params: Sequence[Tensor],
        lr: float,
        weight_decay: float = 0.0,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        capturable: bool = False,
    ) -> None:
        super().__init__(params, lr, weight_decay)
        self.betas, self.eps = (float(betas[0]), float(betas[1])), float(eps)
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        self.count = 0
        device = self.params[0].device if self.params else None
        self.k = torch.zeros((), dtype=torch.float64, device=device) if capturable else None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        if self.k is None:
            self.count += 1
            step_size = self.lr / (1 - b1**self.count)
            bc2_sqrt = (1 - b2**self.count) ** 0.5
        else:
            self.k.add_(1)
            step_size = self.lr / (1 - b1**self.k)
            bc2_sqrt = (1 - b2**self.k).sqrt()
        for prm, m, v in zip(self.params, self.m, self.v):
            if prm.grad is None:
                continue
            g = self._grad(prm)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            if self.k is None:
                prm.addcdiv_(m, (v.sqrt() / bc2_sqrt).add_(self.eps), value=-step_size)
            else:
                denom = (v.sqrt() / bc2_sqrt.to(prm.dtype)).add_(self.eps)
                prm.addcdiv_(m * step_size.to(prm.dtype), denom, value=-1)

    def _host_count(self) -> bool:
        return self.k is None

    def _compiled_state(self) -> Dict:
        (b1, b2) = self.betas
        return {"beta1": b1, "beta2": b2, "eps": self.eps, "count": self.count, "m": self.m, "v": self.v}

    def advance(self, steps: int) -> None:
        self.count += steps

    def _state(self) -> Dict:
        step = self.count if self.k is None else int(self.k)
        return {"betas": list(self.betas), "eps": self.eps, "m": self.m, "v": self.v, "step": step}

    def _load(self, state: Dict) -> None:
        with torch.no_grad():
            for mine, theirs in ((self.m, state["m"]), (self.v, state["v"])):
                for a, b in zip(mine, theirs, strict=True):
                    a.copy_(b)
            if self.k is None:
                self.count = int(state["step"])
            else:
                self.k.fill_(int(state["step"]))


OPTIMIZERS = {"gd": GradientDescent, "adam": Adam}
