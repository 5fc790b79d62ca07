"""The oracle: hessQuik's own network and its closed-form gradient (``forward(do_gradient=True)``).

The parameters are the HamiltonianNet's own ``theta`` views, substituted with
``torch.func.functional_call`` into a skeleton hessQuik network, so gradients flow to ``theta``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Dict, Tuple

import torch

from .autograd import network_input
from .base import Backend


def _activation(name: str):
    import hessQuik.activations as act

    # A fresh instance every time: hessQuik layers keep per-call state on their activation object, and
    # a shared instance silently corrupts backward-mode gradients (DESIGN §6).
    classes = {"tanh": act.tanhActivation, "softplus": act.softplusActivation}
    if name not in classes:
        raise ValueError(f"the hessquik backend has no activation {name!r} (it has {', '.join(classes)})")
    return classes[name]()


def build_network(n_in: int, width: int, depth: int, activation: str, resnet_step: float):
    """hessQuik ``NN(singleLayer(n_in, w, σ), resnetNN(w, L, h_r, σ), singleLayer(w, 1, identity))``."""
    import hessQuik.activations as act
    import hessQuik.layers as lay
    import hessQuik.networks as net

    parts = [lay.singleLayer(n_in, width, act=_activation(activation))]
    if depth > 0:
        parts.append(net.resnetNN(width, depth, h=resnet_step, act=_activation(activation)))
    parts.append(lay.singleLayer(width, 1, act=act.identityActivation()))
    return net.NN(*parts)


def describe_network(hq_net) -> Dict:
    """Width, depth, activation, residual step and input size of a hessQuik network built as above."""
    import hessQuik.activations as act
    import hessQuik.networks as net

    first, last = hq_net[0], hq_net[-1]
    mids = list(hq_net)[1:-1]
    if len(mids) > 1 or (mids and not isinstance(mids[0], net.resnetNN)) or last.out_features != 1:
        raise ValueError("expected NN(singleLayer(n_in, w), [resnetNN(w, L)], singleLayer(w, 1))")
    names = {act.tanhActivation: "tanh", act.softplusActivation: "softplus"}
    if type(first.act) not in names:
        raise ValueError(f"unsupported activation {type(first.act).__name__}; hinn supports tanh and softplus")
    resnet = mids[0] if mids else []
    return {
        "n_in": first.in_features,
        "width": first.out_features,
        "depth": len(resnet),
        "activation": names[type(first.act)],
        "resnet_step": float(resnet[0].h) if mids else 1.0,
    }


@lru_cache(maxsize=32)
def _skeleton(n_in: int, width: int, depth: int, activation: str, resnet_step: float):
    return build_network(n_in, width, depth, activation, resnet_step)


def _call(net, x: torch.Tensor):
    skel = _skeleton(net.n_in, net.width, net.depth, net.activation, net.resnet_step)
    names = [n for n, _ in skel.named_parameters()]
    views = [v for K, b in net.layers() for v in (K, b)]
    params = dict(zip(names, views))
    f, df, _ = torch.func.functional_call(skel, params, (x,), {"do_gradient": True})
    return f[:, 0], df[:, :, 0]


def hamiltonian(net, t, p, q) -> torch.Tensor:
    f, _ = _call(net, network_input(net, t, p, q))
    return f


def value_and_grad(net, t, p, q) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    H, g = _call(net, network_input(net, t, p, q))
    o, d = int(net.time_dependent), net.dim
    return H, g[:, o : o + d], g[:, o + d :]


class HessQuikBackend(Backend):
    """The oracle: hessQuik's own network and closed-form gradient (``forward(do_gradient=True)``)."""

    name = "hessquik"
    hamiltonian = staticmethod(hamiltonian)
    grad = staticmethod(value_and_grad)
