"""The models of the Hamiltonian Neural Networks paper (Greydanus, Dzamba, Yosinski 2019), usable
wherever hinn takes a model (``hinn.step``, ``hinn.rollout``, the objectives, the metrics):

* :class:`MLPHamiltonian` — HNN: an MLP in → 200 → 200 → 1 with tanh and orthogonal initialisation
  whose output is H; the vector field is (∂H/∂p, −∂H/∂q) by autograd.
* :class:`MLPBaseline` — the baseline: the same MLP with 2d outputs predicting (q̇, ṗ) directly.

Both are :class:`hinn.protocols.HamiltonianModel` s computed with plain autograd: ``grad(t, p, q)``
returns the "gradient" (g_p, g_q) whose flow is q̇ = g_p, ṗ = −g_q — for the HNN that is ∇H, for the
baseline (q̇, −ṗ) — and ``raw_grad`` the same without input validation.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import nn

from ._checks import Time, check_state


def _mlp(n_in: int, hidden: int, n_out: int, dtype, device) -> nn.Sequential:
    net = nn.Sequential(
        nn.Linear(n_in, hidden, dtype=dtype, device=device),
        nn.Tanh(),
        nn.Linear(hidden, hidden, dtype=dtype, device=device),
        nn.Tanh(),
        nn.Linear(hidden, n_out, bias=False, dtype=dtype, device=device),
    )
    for layer in net:
        if isinstance(layer, nn.Linear):
            nn.init.orthogonal_(layer.weight)  # as in the HNN paper's code
    return net


class _Model(nn.Module):
    def __init__(self, dim: int, hidden: int, n_out: int, time_dependent: bool, dtype, device) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        self.dim = dim
        self.time_dependent = bool(time_dependent)
        self.mlp = _mlp(2 * dim + int(time_dependent), hidden, n_out, dtype or torch.get_default_dtype(), device)

    def _check(self, t: Time, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        w = self.mlp[0].weight
        return check_state(t, p, q, self.dim, w.dtype, w.device)

    def _input(self, t, p, q) -> torch.Tensor:
        return torch.cat([t[:, None], p, q], 1) if self.time_dependent else torch.cat([p, q], 1)

    def grad(self, t: Time, p: torch.Tensor, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(g_p, g_q) with q̇ = g_p and ṗ = −g_q, each (N, d)."""
        return self.raw_grad(self._check(t, p, q), p, q)

    def raw_grad(self, t: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`grad` without input validation (t: (N,) tensor)."""
        raise NotImplementedError

    def vector_field(self, t: Time, p: torch.Tensor, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(ṗ, q̇), each (N, d)."""
        gp, gq = self.grad(t, p, q)
        return -gq, gp


class MLPHamiltonian(_Model):
    """HNN: H_θ(p, q) = MLP([p, q]) (or MLP([t, p, q])); hidden width 200 by default."""

    def __init__(
        self,
        dim: int,
        hidden: int = 200,
        time_dependent: bool = False,
        dtype: Optional[torch.dtype] = None,
        device=None,
    ) -> None:
        super().__init__(dim, hidden, 1, time_dependent, dtype, device)

    def forward(self, t: Time, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """H_θ: (N,)."""
        t = self._check(t, p, q)
        return self.mlp(self._input(t, p, q))[:, 0]

    def raw_grad(self, t, p, q):
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            x = self._input(t, p, q)
            if not x.requires_grad:
                x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.mlp(x).sum(), x, create_graph=create_graph)
        o, d = int(self.time_dependent), self.dim
        return g[:, o : o + d], g[:, o + d :]


class MLPBaseline(_Model):
    """The HNN paper's baseline: the MLP predicts (q̇, ṗ) directly (2d outputs); no Hamiltonian."""

    def __init__(
        self,
        dim: int,
        hidden: int = 200,
        time_dependent: bool = False,
        dtype: Optional[torch.dtype] = None,
        device=None,
    ) -> None:
        super().__init__(dim, hidden, 2 * dim, time_dependent, dtype, device)

    def raw_grad(self, t, p, q):
        out = self.mlp(self._input(t, p, q))
        dq, dp = out[:, : self.dim], out[:, self.dim :]
        return dq, -dp
