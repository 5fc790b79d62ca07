"""hinn: learn Hamiltonian dynamics from data with fused C++/CUDA Hamiltonian networks."""

from . import data, implicit, tao
from .backends import BACKENDS, get_backend, set_backend
from .implicit import ImplicitLeapfrog, ImplicitMidpoint, SolverError
from .integrators import SCHEMES, Scheme, get_scheme, register_scheme, rollout, step
from .network import HamiltonianNet
from .protocols import CompiledRollout, HamiltonianModel
from .tao import Tao

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "SCHEMES",
    "CompiledRollout",
    "HamiltonianModel",
    "HamiltonianNet",
    "ImplicitLeapfrog",
    "ImplicitMidpoint",
    "SolverError",
    "Scheme",
    "Tao",
    "data",
    "implicit",
    "tao",
    "get_backend",
    "get_scheme",
    "register_scheme",
    "rollout",
    "set_backend",
    "step",
    "__version__",
]
