"""The scheme interface and its registry: what a time stepper is (:class:`Scheme`), and the names every
entry point (``hinn.step``, the training loop, the CLI, the compiled core's dispatch) looks schemes up
by. It depends on nothing else in hinn, so that the integrators, the protocols and the backends can
all import it."""

from __future__ import annotations

from typing import Callable, Dict, Tuple, Type

import torch
from torch import Tensor

GradFn = Callable[[Tensor, Tensor, Tensor], Tuple[Tensor, Tensor]]


class Scheme:
    """One step of a Hamiltonian integrator. Subclasses set ``name``, ``order`` and ``symplectic`` (for
    separable H), ``general_order`` (for any smooth H), and implement :meth:`step`.

    A subclass registered with :func:`register_scheme` is usable by name everywhere (``hinn.step``, the
    training loop, the CLI). The compiled core runs only the built-in classes themselves: a subclass
    always runs its own :meth:`step`.
    """

    name: str
    order: int
    general_order: int
    symplectic: bool

    def step(self, grad: GradFn, t: Tensor, p: Tensor, q: Tensor, h: float) -> Tuple[Tensor, Tensor]:
        """(p', q') after one step of size h from (t, p, q); ``grad(t, p, q) -> (∂pH, ∂qH)``."""
        raise NotImplementedError

    def integrate(self, grad: GradFn, t: Tensor, p: Tensor, q: Tensor, h: float, steps: int, trajectory: bool):
        """``steps`` steps from (t (N,), p, q): the final (p, q), or the trajectories (steps+1, N, d) with
        ``trajectory``. A scheme that carries more than (p, q) from step to step (Tao's copies) overrides
        this; the others inherit it."""
        P, Q = [p], [q]
        for k in range(steps):
            p, q = self.step(grad, t + k * h, p, q, h)
            if trajectory:
                P.append(p)
                Q.append(q)
        return (torch.stack(P), torch.stack(Q)) if trajectory else (p, q)

    def compiled_as(self, h: float) -> "Tuple[str, Tuple[float, ...]] | None":
        """The compiled core's name for a step of size h of this scheme, with its parameters (Tao's
        coupling ω; a solve's tolerance and iteration cap), or None when the core has no such scheme.
        Consulted only for the classes registered with ``compiled=True``."""
        return self.name, ()

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


SCHEMES: Dict[str, Type[Scheme]] = {}
# The classes whose exact arithmetic the compiled core also implements (csrc/hinn/schemes.h, under the
# same name). Only these run compiled; anything else — a subclass included — runs its own ``step``.
COMPILED_SCHEMES: Dict[str, Type[Scheme]] = {}


def register_scheme(cls: Type[Scheme], *, compiled: bool = False) -> Type[Scheme]:
    """Register a :class:`Scheme` subclass under its ``name`` (usable as a class decorator), making it
    available by name to :func:`step`, :func:`rollout`, the training loop and the CLI. ``compiled``: the
    compiled core implements this very class under the same name (built-in schemes only)."""
    if not (isinstance(cls, type) and issubclass(cls, Scheme)) or not isinstance(getattr(cls, "name", None), str):
        raise TypeError(f"register_scheme needs a Scheme subclass with a string `name`, got {cls!r}")
    SCHEMES[cls.name] = cls
    if compiled:
        COMPILED_SCHEMES[cls.name] = cls
    else:
        COMPILED_SCHEMES.pop(cls.name, None)
    return cls


def get_scheme(scheme: "str | Scheme") -> Scheme:
    """The scheme registered under ``scheme`` (or ``scheme`` itself when it is a :class:`Scheme`);
    ``ValueError`` lists the valid names otherwise."""
    if isinstance(scheme, Scheme):
        return scheme
    if isinstance(scheme, type) and issubclass(scheme, Scheme):
        return scheme()
    try:
        return SCHEMES[scheme]()
    except (KeyError, TypeError):
        raise ValueError(f"unknown scheme {scheme!r}; valid schemes are {', '.join(SCHEMES)}") from None
