"""What a call through the public API costs beyond the core's own work, at the minibatch size training
uses (N = 100, d = 1 with t, width 16, depth 4, float64, symplectic Euler, 1 thread).

    taskset -c 1 python benchmarks/call_overhead.py [--rounds 3] [--calls 2000] [--N 100] [--dtype float64]

Rows: the core's step forward and its backward called directly (prepared calls, no Python around
them); PyTorch alone (the same MSE + ``backward()`` on a leaf tensor: what any step composed in eager
PyTorch pays); ``hinn.step`` under ``torch.no_grad()``; ``hinn.step`` + MSE + ``backward()`` (a user's
training step); the compiled window loss of the same step (what ``fit`` runs). Microseconds per call,
each round's mean, rounds in alternation. A user's step costs about the two core rows plus PyTorch's
row plus hinn's Python layer. To compare two builds, run it from each install in alternating processes.
"""

from __future__ import annotations

import argparse
import time

import torch

import hinn
from hinn.backends import fused


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--N", type=int, default=100)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    N, dtype, h, scheme = args.N, getattr(torch, args.dtype), 0.1, "symplectic_euler"
    net = hinn.HamiltonianNet(1, width=16, depth=4, time_dependent=True, dtype=dtype)
    t = torch.zeros(N, dtype=dtype)
    p, q, p1, q1 = (torch.randn(N, 1, dtype=dtype) for _ in range(4))
    code, params = fused.scheme_code(hinn.integrators.get_scheme(scheme), h)
    spec, theta = fused.spec_of(net), net.theta.detach()
    out = dict(P=torch.empty_like(p), Q=torch.empty_like(q))
    cot = dict(p_bar=torch.empty_like(p), q_bar=torch.empty_like(q), theta_bar=torch.empty_like(theta))
    fwd_args = dict(theta=theta, t=t, p=p, q=q, **out)
    bwd_args = dict(theta=theta, t=t, P=p, Q=q, P_bar=p1, Q_bar=q1, **cot)
    scalars = dict(scheme=code, params=params, h=h, steps=1, trajectory=False)
    fwd = fused._prepare("rollout", spec, net.resnet_step, p, N, {**fwd_args, **scalars})
    bwd = fused._prepare("rollout_backward", spec, net.resnet_step, p, N, {**bwd_args, **scalars})
    fwd_ptrs = [x.data_ptr() for x in fwd_args.values()]
    bwd_ptrs = [x.data_ptr() for x in bwd_args.values()]
    leaf_p, leaf_q = p.clone().requires_grad_(), q.clone().requires_grad_()

    def core_forward():
        fused._run_prepared(fwd, code, fwd_ptrs)

    def core_backward():
        fused._run_prepared(bwd, code, bwd_ptrs)

    def torch_alone():
        (((leaf_p - p1) ** 2).mean() + ((leaf_q - q1) ** 2).mean()).backward()

    def step_no_grad():
        with torch.no_grad():
            hinn.step(net, t, p, q, h, scheme)

    def training_step():
        net.zero_grad(set_to_none=True)
        pn, qn = hinn.step(net, t, p, q, h, scheme)
        (((pn - p1) ** 2).mean() + ((qn - q1) ** 2).mean()).backward()

    def window():
        fused.window_loss_grad(theta, t, p, q, p1[None], q1[None], spec, net.resnet_step, h, code, 1.0, params)

    rows = {
        "the core's step forward, called directly": core_forward,
        "the core's step backward, called directly": core_backward,
        "PyTorch alone: MSE + backward() on a leaf": torch_alone,
        "hinn.step under no_grad": step_no_grad,
        "hinn.step + MSE + backward()": training_step,
        "compiled window loss and gradient": window,
    }
    times = {k: [] for k in rows}
    for f in rows.values():
        for _ in range(50):
            f()
    for _ in range(args.rounds):
        for name, f in rows.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                f()
            times[name].append(1e6 * (time.perf_counter() - start) / args.calls)
    print("| call | µs per call (rounds) |")
    print("|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {' '.join(f'{x:.1f}' for x in ts)} |")


if __name__ == "__main__":
    main()
