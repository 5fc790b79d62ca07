"""hinn: learn Hamiltonian dynamics from data with fused C++/CUDA Hamiltonian networks.

The workflow: trajectories (:class:`Trajectories`, :mod:`hinn.data`) → an objective
(:class:`TrajectoryObjective`) → :func:`fit` a :class:`HamiltonianNet` → :func:`rollout` →
:mod:`hinn.metrics` and :mod:`hinn.plots`; :func:`hinn.train.train` and :func:`load_run` for run folders
as ``hinn train`` writes them."""

from . import data, implicit, metrics, objectives, optim, plots, systems, tao, train
from .backends import BACKENDS, get_backend, set_backend
from .data import Trajectories
from .implicit import Gauss4, ImplicitLeapfrog, ImplicitMidpoint, SolverError
from .integrators import SCHEMES, Scheme, get_scheme, register_scheme, rollout, step
from .network import HamiltonianNet
from .objectives import DerivativeObjective, TrajectoryObjective
from .protocols import CompiledRollout, HamiltonianModel
from .tao import Tao
from .train import TrainConfig, fit, load_run

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "SCHEMES",
    "CompiledRollout",
    "DerivativeObjective",
    "HamiltonianModel",
    "HamiltonianNet",
    "Gauss4",
    "ImplicitLeapfrog",
    "ImplicitMidpoint",
    "SolverError",
    "Scheme",
    "Tao",
    "TrainConfig",
    "TrajectoryObjective",
    "Trajectories",
    "data",
    "fit",
    "implicit",
    "load_run",
    "metrics",
    "objectives",
    "optim",
    "plots",
    "systems",
    "tao",
    "train",
    "get_backend",
    "get_scheme",
    "register_scheme",
    "rollout",
    "set_backend",
    "step",
    "__version__",
]
