"""Backend selection (DESIGN §5).

``"fused"``: the compiled core (``hinn._core``) through ``torch.library`` custom ops;
``"autograd"``: plain PyTorch with double backward;
``"hessquik"``: hessQuik's own closed-form gradient, the test oracle.

Each backend is a :class:`Backend` object in the registry :data:`BACKENDS`. Precedence: the network's own
``backend`` argument, then :func:`set_backend`, then the ``HINN_BACKEND`` environment variable, then
``"fused"`` when the compiled module is present (else ``"autograd"``, with one warning).
"""

from __future__ import annotations

import os
import warnings
from typing import Dict, Optional

from .autograd import AutogradBackend
from .base import Backend
from .fused import FusedBackend
from .hessquik import HessQuikBackend

BACKENDS: Dict[str, Backend] = {b.name: b for b in (FusedBackend(), AutogradBackend(), HessQuikBackend())}

_global: Optional[str] = None
_warned = False


def check_backend_name(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; valid backends are {', '.join(BACKENDS)}")
    return name


def fused_available() -> bool:
    return BACKENDS["fused"].available()


class set_backend:
    """Select the backend globally; usable as a plain call or as a context manager.

    >>> hinn.set_backend("autograd")            # from now on
    >>> with hinn.set_backend("hessquik"):      # only inside the block
    ...     H = net(t, p, q)
    """

    def __init__(self, name: Optional[str]) -> None:
        global _global
        if name is not None:
            check_backend_name(name)
        self._previous = _global
        _global = name

    def __enter__(self) -> "set_backend":
        return self

    def __exit__(self, *exc) -> None:
        global _global
        _global = self._previous


def get_backend(own: Optional[str] = None) -> str:
    """The name of the backend that a network with backend argument ``own`` uses now."""
    global _warned
    if own is not None:
        return own
    if _global is not None:
        return _global
    env = os.environ.get("HINN_BACKEND")
    if env:
        try:
            return check_backend_name(env)
        except ValueError as e:
            raise ValueError(f"HINN_BACKEND: {e}") from None
    if fused_available():
        return "fused"
    if not _warned:
        warnings.warn(
            f"hinn's compiled core could not be imported ({BACKENDS['fused'].unavailable_reason()}); using the "
            "slower 'autograd' backend. Reinstall hinn (pip install .) to build it.",
            RuntimeWarning,
            stacklevel=3,
        )
        _warned = True
    return "autograd"


def backend(name: str) -> Backend:
    """The :class:`Backend` registered under ``name``, ready to run (else a clear error)."""
    b = BACKENDS[check_backend_name(name)]
    if not b.available():
        raise RuntimeError(
            f"the {name!r} backend cannot run here ({b.unavailable_reason()}). Reinstall hinn with "
            "`pip install .` to build the compiled core, or choose backend='autograd'."
        )
    return b


__all__ = ["BACKENDS", "Backend", "backend", "check_backend_name", "fused_available", "get_backend", "set_backend"]
