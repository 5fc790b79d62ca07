"""Plain PyTorch backend: the network as tensor operations, ∇H by double backward (create_graph)."""

from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F

from .base import Backend

# σ by name: every name in hinn.network.ACTIVATIONS (tests/test_network.py checks that they agree)
ACTIVATION_FUNCTIONS = {"tanh": torch.tanh, "softplus": F.softplus}


def _act(name: str, z: torch.Tensor) -> torch.Tensor:
    try:
        fn = ACTIVATION_FUNCTIONS[name]
    except KeyError:
        valid = ", ".join(ACTIVATION_FUNCTIONS)
        raise ValueError(f"the autograd backend has no activation {name!r} (it has {valid})") from None
    return fn(z)


def network_input(net, t: torch.Tensor, p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """x = [t, p, q] (or [p, q]) of shape (N, n_in)."""
    return torch.cat([t[:, None], p, q], dim=1) if net.time_dependent else torch.cat([p, q], dim=1)


def _forward(net, x: torch.Tensor) -> torch.Tensor:
    layers = net.layers()
    K, b = layers[0]
    u = _act(net.activation, x @ K + b)
    for K, b in layers[1:-1]:
        u = u + net.resnet_step * _act(net.activation, u @ K + b)
    K, b = layers[-1]
    return (u @ K + b)[:, 0]


def hamiltonian(net, t, p, q) -> torch.Tensor:
    return _forward(net, network_input(net, t, p, q))


def value_and_grad(net, t, p, q) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Build the graph of ∇H only when someone will differentiate it.
    create_graph = torch.is_grad_enabled() and any(x.requires_grad for x in (t, p, q, net.theta))
    with torch.enable_grad():
        x = network_input(net, t, p, q)
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        H = _forward(net, x)
        (g,) = torch.autograd.grad(H.sum(), x, create_graph=create_graph)
    o, d = int(net.time_dependent), net.dim
    if not create_graph:
        H, g = H.detach(), g.detach()
    return H, g[:, o : o + d], g[:, o + d :]


class AutogradBackend(Backend):
    """Plain PyTorch: H as tensor operations, ∇H by double backward; derivatives of any order."""

    name = "autograd"
    hamiltonian = staticmethod(hamiltonian)
    grad = staticmethod(value_and_grad)
