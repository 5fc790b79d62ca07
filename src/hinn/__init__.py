"""hinn: learn Hamiltonian dynamics from data with fused C++/CUDA Hamiltonian networks."""

from .backends import BACKENDS, get_backend, set_backend
from .integrators import SCHEMES, get_scheme, rollout, step
from .network import HamiltonianNet

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "SCHEMES",
    "HamiltonianNet",
    "get_backend",
    "get_scheme",
    "rollout",
    "set_backend",
    "step",
    "__version__",
]
