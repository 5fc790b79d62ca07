"""The fused custom ops: torch.library contracts, gradcheck, torch.compile, rollout = looped steps,
thread-count independence."""

import gc

import pytest
import torch
from conftest import random_net, random_state, rel_err, requires_fused

import hinn
from hinn.backends import fused

pytestmark = requires_fused


def _args(dtype=torch.float64, n=11, cfg=(2, 4, 3, True, "tanh")):
    net = random_net(*cfg, 0, dtype=dtype)
    t, p, q = random_state(n, cfg[0], 1, dtype=dtype)
    return net, t, p, q, fused.spec_of(net), net.resnet_step


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_every_op(dtype):
    net, t, p, q, spec, hr = _args(dtype)
    th = net.theta.detach().clone().requires_grad_()
    pr, qr = p.clone().requires_grad_(), q.clone().requires_grad_()
    P, Q = fused.rollout_op(th.detach(), t, p, q, spec, hr, 0.1, 2, [], 3)
    tao = fused.core.SCHEMES["tao4"]  # a scheme whose state (p | y), (q | x) is twice as wide
    PT, QT = fused.rollout_op(th.detach(), t, p, q, spec, hr, 0.1, tao, [20.0], 2)
    cases = [
        (fused.hamiltonian_op, (th, t, pr, qr, spec, hr)),
        (fused.grad_op, (th, t, pr, qr, spec, hr)),
        (fused.step_op, (th, t, pr, qr, spec, hr, 0.1, 2, [])),
        (fused.step_op, (th, t, pr, qr, spec, hr, 0.1, tao, [20.0])),
        (fused.rollout_op, (th, t, pr, qr, spec, hr, 0.1, 3, [], 4)),
        (fused.rollout_op, (th, t, pr, qr, spec, hr, 0.1, tao, [20.0], 2)),
        (fused.grad_backward_op, (th.detach(), t, p, q, t, p, q, spec, hr)),
        (fused.step_backward_op, (th.detach(), t, p, q, p, q, spec, hr, 0.1, 1, [])),
        (fused.step_backward_op, (th.detach(), t, p, q, PT[1], QT[1], spec, hr, 0.1, tao, [20.0])),
        (fused.rollout_backward_op, (th.detach(), t, P, Q, P, Q, spec, hr, 0.1, 2, [], 3)),
        (fused.rollout_backward_op, (th.detach(), t, PT, QT, PT, QT, spec, hr, 0.1, tao, [20.0], 2)),
    ]
    for op, args in cases:
        torch.library.opcheck(op, args)


@pytest.mark.parametrize("scheme", list(hinn.integrators.COMPILED_SCHEMES))
def test_gradcheck_step_and_rollout(scheme):
    net, t, p, q, spec, hr = _args(n=3, cfg=(1, 3, 2, True, "softplus"))
    code, omega = fused.scheme_code(hinn.get_scheme(scheme), 0.1)
    th = net.theta.detach().clone().requires_grad_()
    pr, qr = p.clone().requires_grad_(), q.clone().requires_grad_()
    step = lambda a, b, c: fused.step_op(a, t, b, c, spec, hr, 0.1, code, omega)  # noqa: E731
    roll = lambda a, b, c: fused.rollout_op(a, t, b, c, spec, hr, 0.1, code, omega, 3)  # noqa: E731
    assert torch.autograd.gradcheck(step, (th, pr, qr))
    assert torch.autograd.gradcheck(roll, (th, pr, qr))


def test_gradcheck_hamiltonian():
    net, t, p, q, spec, hr = _args(n=3, cfg=(1, 3, 2, True, "softplus"))
    args = (net.theta.detach().clone().requires_grad_(), t.requires_grad_(), p.requires_grad_(), q.requires_grad_())
    assert torch.autograd.gradcheck(lambda *a: fused.hamiltonian_op(*a, spec, hr), args)


def test_gradcheck_grad():
    net, t, p, q, spec, hr = _args(n=3)
    th = net.theta.detach().clone().requires_grad_()
    tr, pr, qr = t.clone().requires_grad_(), p.clone().requires_grad_(), q.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, s, b, c: fused.grad_op(a, s, b, c, spec, hr), (th, tr, pr, qr))


def test_rollout_gradient_equals_looped_steps():
    net, t, p, q, _, _ = _args(n=40)
    net.backend = "fused"
    pr, qr = p.clone().requires_grad_(), q.clone().requires_grad_()
    P, Q = hinn.rollout(net, t, pr, qr, 0.05, 6, "leapfrog")
    g1 = torch.autograd.grad((P**2).sum() + Q.sum(), [pr, qr, net.theta])
    pp, qq = pr, qr
    Ps, Qs = [pp], [qq]
    for k in range(6):
        pp, qq = hinn.step(net, t + 0.05 * k, pp, qq, 0.05, "leapfrog")
        Ps.append(pp)
        Qs.append(qq)
    P2, Q2 = torch.stack(Ps), torch.stack(Qs)
    assert torch.equal(P, P2) and torch.equal(Q, Q2)  # same arithmetic, bit for bit
    g2 = torch.autograd.grad((P2**2).sum() + Q2.sum(), [pr, qr, net.theta])
    for a, b in zip(g1, g2):
        assert rel_err(a, b) < 1e-14


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_and_two_threads_agree(dtype):
    net, t, p, q, _, _ = _args(dtype, n=1000)
    net.backend = "fused"
    old = torch.get_num_threads()
    out = []
    try:
        for nt in (1, 2):
            torch.set_num_threads(nt)
            pr = p.clone().requires_grad_()
            P, Q = hinn.rollout(net, t, pr, q, 0.1, 3, "rk4")
            out.append((P, Q) + torch.autograd.grad((P**2).sum() + Q.sum(), [pr, net.theta]))
    finally:
        torch.set_num_threads(old)
    for a, b in zip(*out):
        assert rel_err(a, b) < (1e-6 if dtype == torch.float32 else 1e-14)
    assert torch.equal(out[0][0], out[1][0])  # forward values do not depend on threading at all


def test_torch_compile_training_step_matches_eager():
    torch._dynamo.reset()
    net, t, p, q, _, _ = _args(torch.float32, n=64)
    net.backend = "fused"
    target_p, target_q = p.roll(1, 0), q.roll(1, 0)

    def loss_fn(p, q):
        P, Q = hinn.rollout(net, t, p, q, 0.1, 4, "symplectic_euler")
        return ((P[-1] - target_p) ** 2).mean() + ((Q[-1] - target_q) ** 2).mean()

    results = []
    for fn in (loss_fn, torch.compile(loss_fn, fullgraph=True)):  # AOTAutograd compiles the backward too
        net.theta.grad = None
        loss = fn(p, q)
        loss.backward()
        results.append((loss.detach(), net.theta.grad.clone()))
    for a, b in zip(*results):
        assert rel_err(a, b) < 1e-6


def test_missing_core_error(monkeypatch):
    monkeypatch.setattr(fused, "core", None)
    monkeypatch.setattr(fused, "import_error", ImportError("simulated"))
    net = hinn.HamiltonianNet(1, backend="fused")
    with pytest.raises(RuntimeError, match="'fused' backend cannot run here .*simulated"):
        net.grad(0.0, torch.zeros(2, 1), torch.zeros(2, 1))


def test_cuda_build_matches_visible_gpu():
    # a GPU machine with a CPU-only core would silently fall back to slower backends: make it loud
    if torch.cuda.is_available():
        assert fused.core.has_cuda, "torch sees a GPU but hinn._core was built without CUDA (HINN_CUDA=ON)"
        return
    # without a GPU, a CUDA call is an error (no CUDA in this build, or no device), never a crash
    t = torch.zeros(1, dtype=torch.float64)
    p = torch.zeros(1, 1, dtype=torch.float64)
    desc = fused.core.NetDesc(d=1, time=1, width=1, depth=0, act=0, hr=1.0)
    th = torch.zeros(desc.n_params, dtype=torch.float64)
    buf = lambda x: (x.data_ptr(), x.numel())  # noqa: E731
    args = dict(theta=buf(th), t=buf(t), p=buf(p), q=buf(p), H=buf(t), dH_dp=buf(p), dH_dq=buf(p))
    expected = RuntimeError if fused.core.has_cuda else ValueError
    with pytest.raises(expected, match="CUDA|cuda"):
        fused.core.call(fused.core.OPS["grad"], desc, N=1, dtype=1, cuda=True, **args)


@pytest.mark.parametrize("activation", ["tanh", "softplus"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_activation_accuracy(activation, dtype, cpu_isa):
    # H = σ(p) with σ' from ∂H/∂p: the vectorised activation against float64 PyTorch, to a few ulp
    net = hinn.HamiltonianNet(
        1, width=1, depth=0, time_dependent=False, activation=activation, dtype=dtype, backend="fused"
    )
    with torch.no_grad():
        net.theta.copy_(torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0]))  # K0 = [[1], [0]], b0 = 0, k = 1, b = 0
    # far tails too: the sign of a large negative input must survive (tanh(-400) is -1)
    tails = torch.tensor([-1000.0, -400.0, -100.0, -60.0, 60.0, 100.0, 400.0, 1000.0])
    z = torch.cat([torch.linspace(-30, 30, 4001), torch.logspace(-8, 0, 200), -torch.logspace(-8, 0, 200), tails])
    p = z.to(dtype)[:, None]
    H, gp, _ = net.value_and_grad(0.0, p, torch.zeros_like(p))
    zz = p[:, 0].double()
    ref = torch.tanh(zz) if activation == "tanh" else torch.nn.functional.softplus(zz)
    # softplus is the identity above 20 (torch's threshold), so its derivative there is exactly 1
    dref = 1 - torch.tanh(zz) ** 2 if activation == "tanh" else torch.where(zz > 20, 1.0, torch.sigmoid(zz))
    eps, tiny = torch.finfo(dtype).eps, torch.finfo(dtype).tiny
    # the value to a few ulp where it is a normal number, within `tiny` below that (subnormal); σ' absolutely
    err = (H.double() - ref).abs() - 8 * eps * ref.abs()
    assert err.max() <= tiny, f"{activation} {dtype}: z = {zz[err.argmax()]}: {H[err.argmax()]} vs {ref[err.argmax()]}"
    assert ((gp[:, 0].double() - dref).abs()).max() < 8 * eps


def test_outputs_without_a_graph_equal_those_with_one():
    # no_grad, or inputs that require no grad: the ops run without the autograd Function, same numbers
    net = hinn.HamiltonianNet(2, width=6, depth=2, dtype=torch.float64, backend="fused")
    p, q = torch.randn(9, 2, dtype=torch.float64), torch.randn(9, 2, dtype=torch.float64)
    with_graph = [
        net(0.3, p, q), *net.grad(0.3, p, q), *hinn.step(net, 0.3, p, q, 0.1, "leapfrog"),
        *hinn.rollout(net, 0.3, p, q, 0.1, 4, "rk4"),
    ]  # fmt: skip
    assert all(x.grad_fn is not None for x in with_graph)
    with torch.no_grad():
        without = [
            net(0.3, p, q), *net.grad(0.3, p, q), *hinn.step(net, 0.3, p, q, 0.1, "leapfrog"),
            *hinn.rollout(net, 0.3, p, q, 0.1, 4, "rk4"),
        ]  # fmt: skip
    for a, b in zip(with_graph, without):
        assert b.grad_fn is None and not b.requires_grad
        assert torch.equal(a.detach(), b)
    net.theta.requires_grad_(False)
    P, Q = hinn.rollout(net, 0.3, p, q, 0.1, 4, "rk4")
    assert P.grad_fn is None and torch.equal(P, without[-2])
    pr = p.clone().requires_grad_()  # a state that requires grad still gets its gradient
    (g,) = torch.autograd.grad(hinn.step(net, 0.3, pr, q, 0.1, "leapfrog")[0].sum(), pr)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def _step_and_rollout_grads(net, t, p, q, scheme, retain=False):
    """θ, p, q gradients of a step's and a 3-step rollout's loss (twice each with ``retain``: the second
    backward of a retained graph reads the same kept stages)."""
    out = []
    for run in (
        lambda a, b: hinn.step(net, t, a, b, 0.1, scheme),
        lambda a, b: hinn.rollout(net, t, a, b, 0.1, 3, scheme),
    ):
        pr, qr = p.clone().requires_grad_(), q.clone().requires_grad_()
        P, Q = run(pr, qr)
        node = P.grad_fn  # the op's node (Tao's state is sliced to its observed part after it)
        while not hasattr(node, "kept"):
            node = node.next_functions[0][0]
        assert (node.kept is not None) == (fused.KEPT_STAGES_BUDGET > 0)  # the path under test is taken
        loss = (P**2).sum() + (Q**3).sum()
        for _ in range(2 if retain else 1):
            out.append(
                torch.cat([g.flatten() for g in torch.autograd.grad(loss, [net.theta, pr, qr], retain_graph=retain)])
            )
    return out


@pytest.mark.parametrize("scheme", list(hinn.integrators.COMPILED_SCHEMES))
def test_kept_stages_equal_recomputed_ones(scheme, cpu_isa, monkeypatch):
    # a differentiated step or rollout keeps its stages for the backward, which then reads them instead
    # of recomputing them (CPU): the same gradients, on every build, for the narrow (width 3, 5), block
    # (24) and depth-0 networks, at sample counts that leave partial and narrow last blocks
    for (w, L), n in [((3, 2), 37), ((5, 0), 9), ((24, 2), 100), ((24, 1), 70)]:
        net = random_net(2, w, L, True, "tanh", w + L)
        net.backend = "fused"
        t, p, q = random_state(n, 2, 3)
        monkeypatch.setattr(fused, "KEPT_MIN_WIDTH", 1)  # every width kept
        kept = _step_and_rollout_grads(net, t, p, q, scheme, retain=True)
        monkeypatch.setattr(fused, "KEPT_STAGES_BUDGET", 0)  # nothing fits: recomputed
        again = _step_and_rollout_grads(net, t, p, q, scheme)
        monkeypatch.undo()
        assert rel_err(kept[0], kept[1]) == 0 and rel_err(kept[2], kept[3]) == 0  # a retained graph's second backward
        assert rel_err(kept[0], again[0]) < 1e-13, (scheme, w, L, "step")
        assert rel_err(kept[2], again[1]) < 1e-13, (scheme, w, L, "rollout")


def test_keeping_is_decided_per_call(monkeypatch):
    # one configuration (structure, scheme, sizes) is prepared once; whether its stages are kept follows
    # KEPT_MIN_WIDTH and the budget at each call
    net = random_net(1, 24, 1, True, "tanh", 0)
    net.backend = "fused"
    t, p, q = random_state(40, 1, 2)
    pr = p.clone().requires_grad_()
    kept = lambda: hinn.step(net, t, pr, q, 0.1, "leapfrog")[0].grad_fn.kept is not None  # noqa: E731
    assert not kept()  # width 24 < KEPT_MIN_WIDTH
    monkeypatch.setattr(fused, "KEPT_MIN_WIDTH", 16)
    assert kept()
    monkeypatch.setattr(fused, "KEPT_STAGES_BUDGET", 0)
    assert not kept()


def test_kept_stages_of_other_kernels_are_not_read():
    # kernels switched between a forward and its backward lay stages out differently: recomputed instead
    isas = fused.core.cpu_isas()
    net = random_net(2, 32, 1, True, "tanh", 0)
    net.backend = "fused"
    t, p, q = random_state(50, 2, 1)
    pr = p.clone().requires_grad_()
    ref = torch.autograd.grad(hinn.step(net, t, pr, q, 0.1, "rk4")[0].sum(), [net.theta, pr])
    old = fused.core.cpu_isa()
    try:
        fused.core.set_cpu_isa(isas[0] if isas[0] != old else isas[-1])
        P, _ = hinn.step(net, t, pr, q, 0.1, "rk4")
        assert P.grad_fn.kept is not None
        fused.core.set_cpu_isa(old)
        got = torch.autograd.grad(P.sum(), [net.theta, pr])
    finally:
        fused.core.set_cpu_isa(old)
    for a, b in zip(got, ref):
        assert rel_err(a, b) < 1e-13


def test_kept_stages_buffer_is_checked():
    # the core takes a kept buffer of exactly kept_size elements, on the CPU only
    net, t, p, q, spec, hr = _args(n=5)
    desc = fused._desc(tuple(spec), hr)
    size = lambda N, steps=1, **kw: fused.core.kept_size(desc, N=N, scheme=2, steps=steps, **kw)  # noqa: E731
    n = size(5)
    assert n > 0 and n % 64 == 0 and size(64) == n and size(65) == 2 * n and size(5, 3) == 3 * n  # padded samples
    assert size(5, cuda=True) == 0  # CUDA recomputes
    P, Q = torch.empty(5, 2, dtype=torch.float64), torch.empty(5, 2, dtype=torch.float64)
    for wrong in (n - 1, n + 1):
        buf = torch.empty(wrong, dtype=torch.float64)
        with pytest.raises(ValueError, match="kept has"):
            fused._launch(
                "rollout", spec, hr, p, 5, theta=net.theta.detach(), t=t, p=p, q=q, P=P, Q=Q, scheme=2, h=0.1, steps=1,
                trajectory=False, kept=buf,
            )  # fmt: skip


def test_kept_stages_budget_holds_for_all_graphs(monkeypatch):
    # the budget bounds what every live graph keeps together: a loop of steps keeps the first ones, the
    # rest recompute, and what a freed graph held counts no more
    net = random_net(1, 32, 1, True, "tanh", 0)
    net.backend = "fused"
    t, p, q = random_state(40, 1, 1)
    desc = fused._desc(tuple(fused.spec_of(net)), net.resnet_step)
    one = fused.core.kept_size(desc, N=40, scheme=fused.core.SCHEMES["symplectic_euler"], steps=1) * 8
    gc.collect()  # graphs of earlier tests that only a collection frees
    base = fused._Kept.live
    monkeypatch.setattr(fused, "KEPT_STAGES_BUDGET", base + 3 * one)
    pr = p.clone().requires_grad_()
    a, b, nodes = pr, q, []
    for _ in range(5):
        a, b = hinn.step(net, t, a, b, 0.1, "symplectic_euler")
        nodes.append(a.grad_fn.kept is not None)
    assert nodes == [True, True, True, False, False] and fused._Kept.live == base + 3 * one
    got = torch.autograd.grad((a**2).sum() + b.sum(), [net.theta, pr])
    del a, b
    assert fused._Kept.live == base  # the graph freed, its buffers back in the pool ...
    held = lambda: sum(x.numel() * x.element_size() for x in fused._Kept._pool)  # noqa: E731
    assert one * 3 <= held() <= fused.KEPT_STAGES_BUDGET  # ... which holds no more than the budget
    fused.release_kept_stages()
    assert held() == 0
    monkeypatch.setattr(fused, "KEPT_STAGES_BUDGET", 0)
    a, b = pr, q
    for _ in range(5):
        a, b = hinn.step(net, t, a, b, 0.1, "symplectic_euler")
    ref = torch.autograd.grad((a**2).sum() + b.sum(), [net.theta, pr])
    for x, y in zip(got, ref):
        assert rel_err(x, y) < 1e-13
