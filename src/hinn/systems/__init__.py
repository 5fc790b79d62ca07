"""Physical systems with known Hamiltonians, for data generation and evaluation.

Every system gives its true H, its vector field, an initial-state sampler and ground-truth trajectories
(exact where a closed form exists, else SciPy DOP853 at rtol = atol = 1e-12), reproducible from a seed.
"""

from __future__ import annotations

from typing import Dict, Type

from .base import System
from .mechanics import (
    DoublePendulum,
    DrivenOscillator,
    NBody,
    NonSeparableToy,
    Pendulum,
    SpringMass,
    ThreeBody,
    TwoBody,
)

SYSTEMS: Dict[str, Type[System]] = {
    cls.name: cls
    for cls in (SpringMass, Pendulum, DrivenOscillator, TwoBody, ThreeBody, DoublePendulum, NonSeparableToy)
}


def get_system(name: str, **kwargs) -> System:
    """The system registered under ``name`` (``ValueError`` lists the valid names otherwise)."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown system {name!r}; valid systems are {', '.join(SYSTEMS)}")
    return SYSTEMS[name](**kwargs)


__all__ = [
    "SYSTEMS",
    "System",
    "get_system",
    "SpringMass",
    "DoublePendulum",
    "NonSeparableToy",
    "Pendulum",
    "DrivenOscillator",
    "NBody",
    "TwoBody",
    "ThreeBody",
]
