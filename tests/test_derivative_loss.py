"""The compiled derivative-matching (HNN) loss — ∇H, loss and θ-gradient in one call — against the
hessQuik oracle, and the training loop's compiled and autograd paths against each other."""

import pytest
import torch
from conftest import assert_fit_paths_agree, converted, random_net, random_state, rel_err, requires_fused

import hinn
from hinn.backends import fused
from hinn.hnn import MLPHamiltonian
from hinn.objectives import DerivativeObjective

pytestmark = requires_fused


def _samples(d, M, seed, dtype=torch.float64):
    t, p, q = random_state(M, d, seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1)
    dp, dq = (torch.randn(M, d, generator=g, dtype=torch.float64).to(dtype) for _ in range(2))
    return t, p, q, dp, dq


# depth 0 wide (one sweep, tanh keeping σ(z) and softplus recomputing), the poster's 3 × 20, a block-width
# net with t and one without
CONFIGS = [
    (1, 40, 0, False, "tanh"),
    (2, 24, 0, True, "softplus"),
    (1, 3, 20, True, "tanh"),
    (2, 16, 3, True, "tanh"),
    (3, 9, 2, False, "softplus"),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", CONFIGS, ids=[str(c) for c in CONFIGS])
def test_derivative_loss_matches_oracle(cfg, dtype, cpu_isa):
    ref = random_net(*cfg, 0)  # float64
    samples = _samples(cfg[0], 37, 2)  # 37: partial SIMD blocks on every build
    with hinn.set_backend("hessquik"):
        loss = DerivativeObjective(*samples).loss(ref)
        (g_ref,) = torch.autograd.grad(loss, ref.theta)
    net = converted(ref, dtype)
    net.backend = "fused"
    got, grads = DerivativeObjective(*(x.to(dtype) for x in samples)).loss_and_grad(net)
    tol = 1e-13 if dtype == torch.float64 else 2e-5
    assert got.dtype == dtype and rel_err(got, loss) < tol
    assert set(grads) == {net.theta} and rel_err(grads[net.theta], g_ref) < 50 * tol


def test_per_sample_losses_and_scale():
    net = random_net(2, 12, 1, True, "tanh", 3)
    t, p, q, dp, dq = _samples(2, 20, 4)
    spec = fused.spec_of(net)
    losses, thb = fused.derivative_loss_grad(net.theta.detach(), t, p, q, dq, -dp, spec, net.resnet_step, 0.7)
    gp, gq = net.grad(t, p, q)
    want = 0.7 * (((gp - dq) ** 2).sum(1) + ((gq + dp) ** 2).sum(1))
    assert losses.shape == (20,) and rel_err(losses, want.detach()) < 1e-13
    (g,) = torch.autograd.grad(want.sum(), net.theta)
    assert rel_err(thb, g) < 1e-12


def test_fit_compiled_and_autograd_paths_agree(cpu_isa):
    """Same data, seed and optimizer: the compiled derivative loss and the custom ops' autograd end with
    the same parameters to rounding, minibatches and all."""
    net = random_net(1, 30, 0, False, "tanh", 0)
    obj = DerivativeObjective(*_samples(1, 150, 5))
    assert_fit_paths_agree(net, obj, epochs=3, batch_size=64, lr=1e-2)


def test_separable_net_keeps_its_zero_weights():
    net = hinn.HamiltonianNet(1, width=6, depth=0, dtype=torch.float64, backend="fused", separable=True)
    obj = DerivativeObjective(*_samples(1, 30, 6))
    _, grads = obj.loss_and_grad(net)
    g, free = grads[net.theta], net._free.bool()
    assert (g[~free] == 0).all() and g[free].abs().sum() > 0


def test_bad_targets_raise():
    net = random_net(1, 8, 0, True, "tanh", 0)
    t, p, q, dp, dq = _samples(1, 10, 7)
    spec, th = fused.spec_of(net), net.theta.detach()
    with pytest.raises(ValueError, match="target of dH/dp"):
        fused.derivative_loss_grad(th, t, p, q, dq[:5], -dp, spec, net.resnet_step, 1.0)
    with pytest.raises((ValueError, TypeError), match="target of dH/dq"):
        fused.derivative_loss_grad(th, t, p, q, dq, -dp.float(), spec, net.resnet_step, 1.0)
    with pytest.raises(ValueError, match="scale must be finite"):
        fused.derivative_loss_grad(th, t, p, q, dq, -dp, spec, net.resnet_step, float("nan"))


def test_other_backends_fall_back_to_autograd():
    net = random_net(1, 8, 1, True, "tanh", 0)
    net.backend = "autograd"
    assert DerivativeObjective(*_samples(1, 10, 8)).loss_and_grad(net) is None
    assert DerivativeObjective(*_samples(1, 10, 8)).loss_and_grad(MLPHamiltonian(1, dtype=torch.float64)) is None
