"""The compiled training-window loss (forward, loss and backward in one call) against autograd through
the custom ops and through the autograd backend, and the training loop's two paths against each other."""

import copy

import pytest
import torch
from conftest import assert_fit_paths_agree, random_net, random_state, rel_err, requires_fused

import hinn
from hinn.backends import fused
from hinn.objectives import TrajectoryObjective, trajectory_loss
from hinn.train import fit

pytestmark = requires_fused

H = 0.1


def _windows(d, M, K, seed, dtype=torch.float64):
    t0, p0, q0 = random_state(M, d, seed, dtype=dtype)
    g = torch.Generator().manual_seed(seed + 1)
    P = torch.randn(K, M, d, generator=g, dtype=torch.float64).to(dtype)
    Q = torch.randn(K, M, d, generator=g, dtype=torch.float64).to(dtype)
    return t0, p0, q0, P, Q


@pytest.mark.parametrize("scheme", list(hinn.integrators.COMPILED_SCHEMES))
@pytest.mark.parametrize("K", [1, 3])
@pytest.mark.parametrize("cfg", [(1, 3, 4, True), (2, 16, 2, True), (3, 9, 1, False)])
def test_window_loss_matches_autograd(scheme, K, cfg, cpu_isa):
    d, w, L, time_dep = cfg
    net = random_net(d, w, L, time_dep, "tanh", 0)
    t0, p0, q0, P, Q = _windows(d, 37, K, 2)  # 37: partial SIMD blocks on every build
    scale = 1.0 / (P.numel() * 2 * H * H)
    code, omega = fused.scheme_code(hinn.get_scheme(scheme), H)
    losses, p0b, q0b, thb = fused.window_loss_grad(
        net.theta.detach(), t0, p0, q0, P, Q, fused.spec_of(net), net.resnet_step, H, code, scale, omega
    )
    ref = copy.deepcopy(net)
    ref.backend = "autograd"
    pa, qa = p0.clone().requires_grad_(), q0.clone().requires_grad_()
    loss = trajectory_loss(ref, t0, pa, qa, P, Q, H, scheme)
    g_th, g_p, g_q = torch.autograd.grad(loss, (ref.theta, pa, qa))
    assert rel_err(losses.sum(), loss) < 1e-13
    assert rel_err(thb, g_th) < 1e-11
    assert rel_err(p0b, g_p) < 1e-11 and rel_err(q0b, g_q) < 1e-11


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("M", [70, 90, 100])
@pytest.mark.parametrize("cfg", [(2, 16, 2), (1, 64, 1)])
def test_window_loss_with_any_last_block(cfg, M, dtype, cpu_isa):
    """A last block of samples that fills one or two registers runs them one register at a time, a
    fuller one as a whole block (70, 90 and 100 samples give both kinds on every build: AVX-512 float32
    needs 100); width 64 also forms its weight cotangents as matrix products. Either way the same loss
    and gradients as autograd's."""
    d, w, L = cfg
    net = random_net(d, w, L, True, "tanh", 3)
    t0, p0, q0, P, Q = _windows(d, M, 2, 4)
    scale = 1.0 / (P.numel() * 2 * H * H)
    code, omega = fused.scheme_code(hinn.get_scheme("symplectic_euler"), H)
    got = fused.window_loss_grad(
        net.theta.detach().to(dtype), *(x.to(dtype) for x in (t0, p0, q0, P, Q)), fused.spec_of(net),
        net.resnet_step, H, code, scale, omega,
    )  # fmt: skip
    ref = copy.deepcopy(net)
    ref.backend = "autograd"
    pa, qa = p0.clone().requires_grad_(), q0.clone().requires_grad_()
    Pr, Qr = hinn.rollout(ref, t0, pa, qa, H, 2, "symplectic_euler")
    losses = scale * (((Pr[1:] - P) ** 2).sum((0, 2)) + ((Qr[1:] - Q) ** 2).sum((0, 2)))
    want = (losses,) + torch.autograd.grad(losses.sum(), (pa, qa, ref.theta))
    tol = 1e-11 if dtype == torch.float64 else 2e-5
    for name, a, b in zip(("losses", "p0", "q0", "theta"), got, want):
        assert rel_err(a, b) < tol, name


@pytest.mark.parametrize("scheme", list(hinn.integrators.COMPILED_SCHEMES))
@pytest.mark.parametrize("K", [1, 3])
def test_window_error_is_the_window_losses_forward_only(scheme, K, cpu_isa):
    net = random_net(2, 9, 2, True, "tanh", 0)
    t0, p0, q0, P, Q = _windows(2, 37, K, 2)
    code, params = fused.scheme_code(hinn.get_scheme(scheme), H)
    args = (net.theta.detach(), t0, p0, q0, P, Q, fused.spec_of(net), net.resnet_step, H, code, 0.3, params)
    losses = fused.window_error(*args)
    assert rel_err(losses, fused.window_loss_grad(*args)[0]) < 1e-14
    # the objective's loss without autograd takes it; with autograd, the ops: the same number
    obj = TrajectoryObjective(t0, p0, q0, P, Q, H, scheme)
    with torch.no_grad():
        fast = obj.loss(net)
    assert rel_err(fast, obj.loss(net)) < 1e-13


def test_window_error_checks_its_arguments():
    net = random_net(1, 3, 1, True, "tanh", 0)
    t0, p0, q0, P, Q = _windows(1, 5, 2, 0)
    code = fused.core.SCHEMES["leapfrog"]
    args = (net.theta.detach(), t0, p0, q0, P, Q, fused.spec_of(net), net.resnet_step, H, code, 1.0)
    with pytest.raises(ValueError, match="window_error: the target P must have shape"):
        fused.window_error(*args[:4], P[:, :3], *args[5:])
    with pytest.raises(ValueError, match="scale must be finite"):
        fused.window_error(*args[:-1], float("nan"))


def test_window_loss_float32_close_to_float64():
    net = random_net(2, 16, 2, True, "tanh", 0)
    t0, p0, q0, P, Q = _windows(2, 50, 2, 3)
    spec, code = fused.spec_of(net), fused.core.SCHEMES["leapfrog"]
    out64 = fused.window_loss_grad(net.theta.detach(), t0, p0, q0, P, Q, spec, net.resnet_step, H, code, 1.0)
    f = lambda x: x.float()  # noqa: E731
    out32 = fused.window_loss_grad(
        f(net.theta.detach()), f(t0), f(p0), f(q0), f(P), f(Q), spec, net.resnet_step, H, code, 1.0
    )
    for a, b in zip(out32, out64):
        assert a.dtype == torch.float32 and rel_err(a, b) < 1e-5


def test_fit_compiled_and_autograd_paths_agree(cpu_isa):
    """Same data, seed and optimizer: the compiled loss path and the custom-op (autograd) path end with
    the same parameters to rounding, minibatches and all."""
    teacher = random_net(1, 5, 2, True, "tanh", 7)
    net = random_net(1, 8, 3, True, "tanh", 0)
    t0, p0, q0 = random_state(120, 1, 5)
    with torch.no_grad():
        P, Q = hinn.rollout(teacher, t0, p0, q0, H, 2, "rk4")
    obj = TrajectoryObjective(t0, p0, q0, P[1:], Q[1:], H, "leapfrog")
    assert_fit_paths_agree(net, obj, epochs=3, batch_size=50, lr=1e-2)


def test_objective_uses_compiled_path_only_where_it_exists():
    net = hinn.HamiltonianNet(1, width=4, depth=1, dtype=torch.float64)
    t0, p0, q0, P, Q = _windows(1, 10, 2, 0)
    obj = TrajectoryObjective(t0, p0, q0, P, Q, H, "leapfrog")
    loss, grads = obj.loss_and_grad(net)
    assert set(grads) == {net.theta} and rel_err(loss, obj.loss(net)) < 1e-13
    net.backend = "autograd"
    assert obj.loss_and_grad(net) is None  # autograd backend: no compiled loss
    net.backend = "fused"

    class MyLeapfrog(hinn.integrators.Leapfrog):
        pass

    assert TrajectoryObjective(t0, p0, q0, P, Q, H, MyLeapfrog()).loss_and_grad(net) is None


@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda P: P[:, :-1], "target P"),
        (lambda P: P.float(), "dtype"),
        (lambda P: P[0], "targets must be"),
    ],
)
def test_window_loss_rejects_bad_targets(bad, match):
    net = random_net(1, 3, 2, True, "tanh", 0)
    t0, p0, q0, P, Q = _windows(1, 10, 2, 0)
    with pytest.raises((ValueError, TypeError), match=match):
        fused.window_loss_grad(
            net.theta.detach(), t0, p0, q0, bad(P), Q, fused.spec_of(net), net.resnet_step, H, 2, 1.0
        )


def test_fit_caps_threads_for_small_minibatches_and_restores_them():
    net = random_net(1, 3, 2, True, "tanh", 0)
    t0, p0, q0, P, Q = _windows(1, 64, 1, 0)
    seen = []

    class Spy(TrajectoryObjective):
        def loss_and_grad(self, model, idx=None):
            seen.append(torch.get_num_threads())
            return super().loss_and_grad(model, idx)

        def compiled_epoch(self, model, optimizer, starts_optimizer=None):
            run = super().compiled_epoch(model, optimizer, starts_optimizer)
            return lambda *args: (seen.append(torch.get_num_threads()), run(*args))[1]

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fit(net, Spy(t0, p0, q0, P, Q, H), epochs=1, batch_size=32, progress=False)
        assert seen and set(seen) == {1}  # 32 samples: one thread
        assert torch.get_num_threads() == 2  # the caller's setting is back
    finally:
        torch.set_num_threads(old)
