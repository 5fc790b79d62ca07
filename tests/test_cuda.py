"""The CUDA path of the fused ops: against the hessQuik oracle and the CPU fused ops, determinism,
non-default streams, a second device. Skipped without a GPU (the build-mismatch test in test_fused.py
is not)."""

import pytest
import torch
from conftest import RTOL, converted, random_net, random_state, rel_err

import hinn
from hinn.backends import fused_available

pytestmark = pytest.mark.skipif(
    not (torch.cuda.is_available() and fused_available()), reason="needs a CUDA GPU and hinn._core"
)

GRID = [
    (1, 3, 20, True, "tanh"),
    (4, 3, 20, True, "softplus"),
    (2, 16, 4, False, "tanh"),
    (3, 64, 2, True, "tanh"),
    (1, 1, 0, True, "softplus"),
    (2, 40, 0, True, "tanh"),
]


def _run(net, t, p, q, scheme, steps=4):
    p, q = p.clone().requires_grad_(), q.clone().requires_grad_()
    H, gp, gq = net.value_and_grad(t, p, q)
    P, Q = hinn.rollout(net, t, p, q, 0.05, steps, scheme)
    loss = (P**2).sum() + torch.sin(Q).sum() + (H**2).sum() + (gp * gq).sum()
    return (H, gp, gq, P, Q) + torch.autograd.grad(loss, [p, q, net.theta])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scheme", list(hinn.integrators.COMPILED_SCHEMES))
@pytest.mark.parametrize("cfg", GRID, ids=[str(c) for c in GRID])
def test_cuda_matches_oracle_and_cpu(cfg, scheme, dtype):
    ref_net = random_net(*cfg, 0)
    t, p, q = random_state(300, cfg[0], 1)
    with hinn.set_backend("hessquik"):
        ref = _run(ref_net, t, p, q, scheme)
    with hinn.set_backend("fused"):
        cpu = _run(converted(ref_net, dtype, "cpu"), t.to(dtype), p.to(dtype), q.to(dtype), scheme)
        gpu = _run(converted(ref_net, dtype, "cuda"), *(x.to(dtype=dtype, device="cuda") for x in (t, p, q)), scheme)
    for i, (g, r, c) in enumerate(zip(gpu, ref, cpu)):
        assert rel_err(g, r) <= RTOL[dtype], f"output {i} vs oracle"
        assert rel_err(g, c) <= RTOL[dtype], f"output {i} vs CPU fused"


def test_deterministic_bit_identical():
    net = random_net(4, 3, 20, True, "tanh", 0, dtype=torch.float32, device="cuda")
    net.backend = "fused"
    t, p, q = random_state(100_000, 4, 2, dtype=torch.float32, device="cuda")
    outs = []
    torch.use_deterministic_algorithms(True)
    try:
        for _ in range(2):
            pr = p.clone().requires_grad_()
            P, Q = hinn.rollout(net, t, pr, q, 0.1, 3, "leapfrog")
            outs.append(torch.autograd.grad((P**2).mean() + Q.mean(), [pr, net.theta]))
    finally:
        torch.use_deterministic_algorithms(False)
    for a, b in zip(*outs):
        assert torch.equal(a, b)


def test_non_default_stream():
    net = random_net(1, 3, 20, True, "tanh", 0, device="cuda")
    net.backend = "fused"
    t, p, q = random_state(5000, 1, 3, device="cuda")
    ref = net.grad(t, p, q)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = net.grad(t, p, q)
        P, _ = hinn.rollout(net, t, p, q, 0.1, 5)
    s.synchronize()
    for a, b in zip(out, ref):
        assert torch.equal(a, b)
    assert torch.isfinite(P).all()


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs a second GPU")
def test_second_device():
    net0 = random_net(2, 4, 3, True, "tanh", 0, device="cuda:0")
    net1 = converted(net0, torch.float64, "cuda:1")
    net0.backend = net1.backend = "fused"
    t, p, q = random_state(1000, 2, 4)
    a = net0.grad(t.cuda(0), p.cuda(0), q.cuda(0))
    b = net1.grad(t.cuda(1), p.cuda(1), q.cuda(1))
    for x, y in zip(a, b):
        assert y.device.index == 1 and rel_err(y, x) < 1e-14


def test_cpu_tensors_with_cuda_net_are_rejected():
    net = random_net(1, 3, 2, True, "tanh", 0, device="cuda")
    with pytest.raises(ValueError, match="the state is on cpu but the model's parameters are on cuda"):
        net.grad(0.0, torch.zeros(3, 1, dtype=torch.float64), torch.zeros(3, 1, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", GRID[:4], ids=[str(c) for c in GRID[:4]])
def test_cuda_window_loss_and_hamiltonian_match_cpu(cfg, dtype):
    from hinn.backends import fused

    net = random_net(*cfg, 0)
    t, p, q = random_state(257, cfg[0], 1)
    g = torch.Generator().manual_seed(3)
    P, Q = (
        torch.randn(3, 257, cfg[0], generator=g, dtype=torch.float64),
        torch.randn(3, 257, cfg[0], generator=g, dtype=torch.float64),
    )
    spec, code = fused.spec_of(net), fused.core.SCHEMES["leapfrog"]
    args = (net.theta.detach(), t, p, q, P, Q)
    cpu = fused.window_loss_grad(*(x.to(dtype) for x in args), spec, net.resnet_step, 0.1, code, 0.5)
    gpu = fused.window_loss_grad(
        *(x.to(dtype=dtype, device="cuda") for x in args), spec, net.resnet_step, 0.1, code, 0.5
    )
    for i, (a, b) in enumerate(zip(gpu, cpu)):
        assert rel_err(a, b) <= RTOL[dtype] * 10, f"output {i}"
    err = fused.window_error(*(x.to(dtype=dtype, device="cuda") for x in args), spec, net.resnet_step, 0.1, code, 0.5)
    assert rel_err(err, cpu[0]) <= RTOL[dtype] * 10  # the forward-only losses
    H_cpu = fused.hamiltonian_op(*(x.to(dtype) for x in args[:4]), spec, net.resnet_step)
    H_gpu = fused.hamiltonian_op(*(x.to(dtype=dtype, device="cuda") for x in args[:4]), spec, net.resnet_step)
    assert rel_err(H_gpu, H_cpu) <= RTOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("cfg", GRID, ids=[str(c) for c in GRID])
def test_cuda_derivative_loss_matches_cpu(cfg, dtype):
    from hinn.backends import fused

    net = random_net(*cfg, 0)
    t, p, q = random_state(257, cfg[0], 1)
    g = torch.Generator().manual_seed(4)
    tp, tq = (torch.randn(257, cfg[0], generator=g, dtype=torch.float64) for _ in range(2))
    args, spec = (net.theta.detach(), t, p, q, tp, tq), fused.spec_of(net)
    cpu = fused.derivative_loss_grad(*(x.to(dtype) for x in args), spec, net.resnet_step, 0.5)
    gpu = fused.derivative_loss_grad(*(x.to(dtype=dtype, device="cuda") for x in args), spec, net.resnet_step, 0.5)
    for i, (a, b) in enumerate(zip(gpu, cpu)):
        assert rel_err(a, b) <= RTOL[dtype] * 10, f"output {i}"


def test_cli_trains_on_cuda(tmp_path):
    from hinn.cli import main

    out = str(tmp_path / "run")
    args = ["train", "spring", "--epochs", "3", "--sizes", "40", "10", "10", "--transitions", "10", "--width", "8",
            "--depth", "2", "--device", "cuda", "--out", out, "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert main(["eval", out, "--device", "cpu"]) == 0  # a CUDA run's checkpoint evaluates on the CPU


def test_cuda_graph_training_equals_eager(tmp_path):
    """fit(cuda_graph=True) replays captured steps; the parameters and losses are those of eager steps
    (a last, smaller minibatch of each epoch runs eagerly)."""
    from hinn.train import TrainConfig, make_dataset, train

    cfg = TrainConfig(system="spring", sizes=(250, 50, 50), transitions=10, width=8, depth=2, epochs=4,
                      batch_size=100, dtype="float64")  # fmt: skip
    data = make_dataset(cfg)
    eager = train(cfg, progress=False, data=data, device="cuda")
    graph = train(cfg, progress=False, data=data, device="cuda", cuda_graph=True)
    assert rel_err(graph.net.theta, eager.net.theta) < 1e-12
    for a, b in zip(eager.history, graph.history, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-12)


def test_cuda_workspace_is_bounded_by_what_a_call_returns():
    """At N = 2e6 the scratch of a call is at most twice the bytes it returns (the grid shrinks instead)."""
    from hinn.backends import fused

    N = 2_000_000
    net = random_net(1, 3, 20, True, "tanh", 0, dtype=torch.float32, device="cuda")
    dev = dict(device="cuda", dtype=torch.float32)
    t, p, q = torch.zeros(N, **dev), torch.randn(N, 1, **dev), torch.randn(N, 1, **dev)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    p1, q1 = fused.step_op(net.theta.detach(), t, p, q, fused.spec_of(net), net.resnet_step, 0.1, 1)
    torch.cuda.synchronize()
    returned = 2 * p1.numel() * p1.element_size()
    assert torch.cuda.max_memory_allocated() - base - returned <= 2 * returned
