"""The System interface: a known Hamiltonian, its vector field, initial states and ground truth."""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch
from scipy.integrate import solve_ivp

Array = np.ndarray


class System:
    """A Hamiltonian system with ``dim`` degrees of freedom: p, q ∈ R^dim.

    Subclasses implement :meth:`hamiltonian` (batched torch, float64) and :meth:`sample_initial`; the
    vector field defaults to autograd of H but systems override it with the closed form.
    """

    name: str = "system"
    dim: int = 1
    time_dependent: bool = False
    default_h: float = 0.1

    def hamiltonian(self, t: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """H(t, p, q): t (N,), p and q (N, d) -> (N,)."""
        raise NotImplementedError

    def vector_field(self, t: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(ṗ, q̇) = (−∂H/∂q, ∂H/∂p), each (N, d)."""
        with torch.enable_grad():
            p = p.detach().requires_grad_(True)
            q = q.detach().requires_grad_(True)
            gp, gq = torch.autograd.grad(self.hamiltonian(t, p, q).sum(), [p, q])
        return -gq, gp

    def sample_initial(self, n: int, rng: np.random.Generator) -> Tuple[Array, Array]:
        """n initial states (p0, q0), each (n, d)."""
        raise NotImplementedError

    def exact(self, t: Array, p0: Array, q0: Array) -> Optional[Tuple[Array, Array]]:
        """The exact solution at times t (T,) from (p0, q0) (n, d), as (P, Q) of shape (n, T, d), or None."""
        return None

    def trajectories(
        self, t: Array, p0: Array, q0: Array, rtol: float = 1e-12, atol: float = 1e-12
    ) -> Tuple[Array, Array]:
        """Ground truth at times ``t`` (starting at t[0]): the exact solution where one exists, else
        SciPy's DOP853 at tight tolerances over the whole batch at once. Returns (P, Q), each (n, T, d)."""
        t = np.asarray(t, dtype=np.float64)
        p0, q0 = np.asarray(p0, np.float64), np.asarray(q0, np.float64)
        ex = self.exact(t, p0, q0)
        if ex is not None:
            return ex
        n, d = p0.shape

        def rhs(time, y):
            yy = torch.from_numpy(y.reshape(2, n, d))
            dp, dq = self.vector_field(torch.full((n,), time, dtype=torch.float64), yy[0], yy[1])
            return torch.stack([dp, dq]).reshape(-1).numpy()

        y0 = np.stack([p0, q0]).reshape(-1)
        sol = solve_ivp(rhs, (t[0], t[-1]), y0, method="DOP853", t_eval=t, rtol=rtol, atol=atol)
        if not sol.success:
            raise RuntimeError(f"{self.name}: ground-truth integration failed: {sol.message}")
        Y = sol.y.reshape(2, n, d, len(t)).transpose(0, 1, 3, 2)
        return Y[0], Y[1]

    def energy(self, t: Array, P: Array, Q: Array) -> Array:
        """H along trajectories: t (T,), P and Q (n, T, d) -> (n, T)."""
        n, T, d = P.shape
        tt = torch.as_tensor(np.tile(t, n), dtype=torch.float64)
        H = self.hamiltonian(tt, torch.as_tensor(P.reshape(-1, d)), torch.as_tensor(Q.reshape(-1, d)))
        return H.reshape(n, T).numpy()

    def config(self) -> dict:
        return {"name": self.name}
