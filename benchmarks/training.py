"""The training loop's cost: one optimizer step at the poster's minibatch, whole training runs, and runs
side by side.

    python benchmarks/training.py              # all three parts
    python benchmarks/training.py --part step  # step | run | side | graph (CUDA)

step: one optimizer step from Python (N = 100 one-step windows, the poster's network, symplectic Euler,
      Adam) through the compiled window loss, through the custom ops + autograd, and on the autograd
      backend; "kernels" is the compiled call into the core alone (no Python, no optimizer). (``hinn
      train`` itself runs whole epochs in the core on the CPU: see ``run``.)
run:  ``hinn reproduce spring --epochs 100``'s training (hinn.train on the poster config) per backend.
side: that training alone, two processes side by side, and beside one busy single-threaded process.
graph: that training on CUDA, each step launched eagerly vs replayed from a CUDA graph (fit(cuda_graph=True)).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import torch
from bench import _time

import hinn
from hinn.backends import fused
from hinn.objectives import TrajectoryObjective

# training only (the data set is made before the clock starts), its one-off costs included: hinn's own
# optimizers (hinn.optim) have none; a first torch.optim optimizer would import torch._dynamo (0.9 s)
RUN = (
    "import time, torch, hinn; from dataclasses import replace; from hinn.experiments import POSTER; "
    "from hinn.train import make_dataset, train; cfg = replace(POSTER['spring'], epochs={epochs}, "
    "backend='{backend}'); data = make_dataset(cfg); "
    "s = time.perf_counter(); train(cfg, progress=False, data=data); print(time.perf_counter() - s)"
)


def step_costs(dtype, N=100) -> dict:
    torch.manual_seed(0)
    net = hinn.HamiltonianNet(1, width=3, depth=20, dtype=dtype)
    t0 = torch.rand(N, dtype=dtype)
    p0, q0 = torch.randn(N, 1, dtype=dtype), torch.randn(N, 1, dtype=dtype)
    P, Q = torch.randn(1, N, 1, dtype=dtype), torch.randn(1, N, 1, dtype=dtype)
    obj = TrajectoryObjective(t0, p0, q0, P, Q, 0.1, "symplectic_euler")
    out = {}
    optimizers = (
        ("hinn.optim Adam (what fit uses)", lambda: hinn.optim.Adam([net.theta], lr=1e-6)),
        ("torch.optim Adam", lambda: torch.optim.Adam([net.theta], lr=1e-6)),
        ("torch.optim Adam fused", lambda: torch.optim.Adam([net.theta], lr=1e-6, fused=True)),
    )
    for name, make in optimizers:
        opt = make()

        def compiled(opt=opt):
            loss, g = obj.loss_and_grad(net)
            loss.item()
            net.theta.grad = g[net.theta]
            opt.step()

        out[f"compiled loss, {name}"] = _time(compiled, budget=0.5) * 1e3

    opt = hinn.optim.Adam([net.theta], lr=1e-6)

    def autograd_path():
        loss = obj.loss(net)
        loss.item()
        net.theta.grad = None
        loss.backward()
        opt.step()

    out["custom ops + autograd, adam"] = _time(autograd_path, budget=0.5) * 1e3
    net.backend = "autograd"
    out["autograd backend, adam"] = _time(autograd_path, budget=0.5) * 1e3
    net.backend = "fused"
    # the core alone: arguments packed once, one call
    th = net.theta.detach()
    losses, p0b, q0b, thb = (torch.empty(N, dtype=dtype), torch.empty_like(p0), torch.empty_like(q0),
                             torch.empty_like(th))  # fmt: skip
    buf = lambda x: (x.data_ptr(), x.numel())  # noqa: E731
    desc = fused._desc(tuple(fused.spec_of(net)), float(net.resnet_step))
    args = dict(theta=buf(th), t=buf(t0), p=buf(p0), q=buf(q0), target_p=buf(P), target_q=buf(Q),
                losses=buf(losses), p_bar=buf(p0b), q_bar=buf(q0b), theta_bar=buf(thb),
                scheme=fused.core.SCHEMES["symplectic_euler"], h=0.1,
                steps=1, scale=1.0, N=N, nthreads=1, dtype=fused.core.DTYPES[str(dtype)[6:]])  # fmt: skip
    op = fused.core.OPS["loss_grad"]
    out["kernels"] = _time(lambda: fused.core.call(op, desc, **args), budget=0.5) * 1e3
    return out


def run_seconds(backend: str, epochs: int, procs: int = 1, busy: bool = False) -> list:
    code = RUN.format(epochs=epochs, backend=backend)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        ps = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) for _ in range(procs)]
        return [float(p.communicate()[0].strip().splitlines()[-1]) for p in ps]
    finally:
        if hog:
            hog.kill()


def graph_seconds(epochs: int) -> dict:
    from dataclasses import replace

    from hinn.experiments import POSTER
    from hinn.train import make_dataset, train

    cfg = replace(POSTER["spring"], epochs=epochs)
    data = make_dataset(cfg)
    out = {}
    for graph in (False, True, False, True):  # twice each, in turn; the second of each counts
        torch.cuda.synchronize()
        s = time.perf_counter()
        res = train(cfg, progress=False, data=data, device="cuda", cuda_graph=graph)
        torch.cuda.synchronize()
        out[graph] = (time.perf_counter() - s, res.net.theta.detach().cpu())
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["step", "run", "side", "graph", "all"], default="all")
    ap.add_argument("--epochs", type=int, default=100)
    args = ap.parse_args(argv)
    print(f"hinn training benchmarks, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"CPU kernels {fused.core.cpu_isa()}")  # fmt: skip
    if args.part in ("step", "all"):
        torch.set_num_threads(1)
        print("\none optimizer step, N = 100, poster network (d = 1 with t, w = 3, L = 20), 1 thread")
        print("| dtype | path | ms | × kernels |")
        print("|---|---|---|---|")
        for dtype in (torch.float64, torch.float32):
            c = step_costs(dtype)
            for k, v in c.items():
                print(f"| {str(dtype)[6:]} | {k} | {v:.3f} | {v / c['kernels']:.1f} |", flush=True)
    if args.part in ("run", "all"):
        print(f"\nhinn reproduce spring --epochs {args.epochs}: training seconds (one process, default threads)")
        sec = {be: run_seconds(be, args.epochs)[0] for be in ("fused", "autograd")}
        print(f"fused {sec['fused']:.2f} s, autograd {sec['autograd']:.2f} s: {sec['autograd'] / sec['fused']:.1f}×")
    if args.part == "graph":
        g = graph_seconds(args.epochs)
        (eager, th_e), (graph, th_g) = g[False], g[True]
        diff = float((th_g - th_e).norm() / th_e.norm())
        print(f"\nCUDA training, poster spring, {args.epochs} epochs: eager {eager:.2f} s, CUDA graph {graph:.2f} s "
              f"({eager / graph:.1f}×); parameters differ by {diff:.1e} (relative)")  # fmt: skip
    if args.part in ("side", "all"):
        alone = run_seconds("fused", args.epochs)[0]
        two = run_seconds("fused", args.epochs, procs=2)
        busy = run_seconds("fused", args.epochs, busy=True)[0]
        print(f"\nfused training, {args.epochs} epochs: alone {alone:.2f} s; two side by side "
              f"{two[0]:.2f} s and {two[1]:.2f} s ({max(two) / alone:.2f}× alone); beside a busy process "
              f"{busy:.2f} s ({busy / alone:.2f}× alone)")  # fmt: skip


if __name__ == "__main__":
    main()
