"""Training step across network widths: fused vs autograd vs hessQuik, one thread, one run.

    python benchmarks/widths.py                    # float32 and float64, the width table
    python benchmarks/widths.py --dtype float32 --json widths.json

A training step through the public API: ``hinn.step`` (symplectic Euler), MSE against targets,
``backward()``; d = 4 with t, N = 2000 samples. ``window`` is what ``hinn train`` runs per minibatch
instead: the same step and squared error as N one-step windows, loss and gradients in one compiled call.
``kernel GFLOP/s`` times the compiled step and its backward alone (no op layer) and counts FLOPs by
``bench.flops``; ``of GEMM`` divides it by what torch's own matrix product (oneDNN/MKL, 1024 × 1024, the
same dtype, one thread) reaches in the same run: the yardstick of what this core sustains. (A peak
from the clock /proc/cpuinfo reports is no yardstick here: the core boosts past it, and the kernels
measured "110 %" of it.)
"""

from __future__ import annotations

import argparse
import json
import platform
from datetime import date

import torch
from bench import _time, kernel_only

import hinn
import hinn.backends.fused

SIZES = [(3, 20), (8, 6), (16, 4), (32, 8), (64, 4), (128, 2), (256, 2)]


def add_case_options(ap: argparse.ArgumentParser) -> None:
    """--dtype, --d, --N, --sizes: the cases a width table runs (shared with jax_compare.py)."""
    ap.add_argument("--dtype", choices=["float32", "float64"], nargs="+", default=["float32", "float64"])
    ap.add_argument("--d", type=int, default=4)
    ap.add_argument("--N", type=int, default=2000)
    ap.add_argument("--sizes", nargs="+", default=None, help="WxL pairs, e.g. 16x4 64x4")


def sizes_of(args) -> list:
    """(width, depth) pairs from --sizes, or :data:`SIZES`."""
    return [tuple(map(int, s.split("x"))) for s in args.sizes] if args.sizes else SIZES


def gemm_gflops(dtype, n: int = 1024) -> float:
    """torch.mm's rate on n × n matrices at the caller's thread count (median of repeated calls)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    c = a @ b
    return 2 * n**3 / _time(lambda: torch.mm(a, b, out=c), budget=0.5) / 1e9


def cpu_ghz() -> float:
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
        return max(mhz) / 1e3
    except (OSError, ValueError):
        return float("nan")


def train_step_ms(net, d, N, dtype, scheme="symplectic_euler") -> float:
    torch.manual_seed(1)
    t = torch.rand(N, dtype=dtype)
    p, q = torch.randn(N, d, dtype=dtype), torch.randn(N, d, dtype=dtype)
    tp, tq = torch.randn(N, d, dtype=dtype), torch.randn(N, d, dtype=dtype)

    def run():
        p1, q1 = hinn.step(net, t, p, q, 0.1, scheme)
        loss = ((p1 - tp) ** 2).mean() + ((q1 - tq) ** 2).mean()
        net.theta.grad = None
        loss.backward()

    return _time(run, budget=0.6) * 1e3


def window_step_ms(net, d, N, dtype, scheme="symplectic_euler") -> float:
    """What ``hinn train`` runs per minibatch instead: the same step and squared error as N one-step
    training windows, loss and gradients in one compiled call (``fused.window_loss_grad``)."""
    torch.manual_seed(1)
    t = torch.rand(N, dtype=dtype)
    p, q = torch.randn(N, d, dtype=dtype), torch.randn(N, d, dtype=dtype)
    P, Q = torch.randn(1, N, d, dtype=dtype), torch.randn(1, N, d, dtype=dtype)
    spec, code = hinn.backends.fused.spec_of(net), hinn.backends.fused.core.SCHEMES[scheme]
    th = net.theta.detach()

    def run():
        hinn.backends.fused.window_loss_grad(th, t, p, q, P, Q, spec, net.resnet_step, 0.1, code, 1.0 / (N * d))

    return _time(run, budget=0.6) * 1e3


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_case_options(ap)
    ap.add_argument("--no-hessquik", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sizes = sizes_of(args)
    ghz = cpu_ghz()
    rows = []
    print(
        f"hinn width table, {date.today()}, {platform.processor() or platform.machine()}, "
        f"~{ghz:.2f} GHz, CPU kernels {hinn.backends.fused.core.cpu_isa()}, 1 thread, d={args.d} with t, "
        f"N={args.N}, training step = step (symplectic Euler) + MSE + backward"
    )
    print(
        "| dtype | w × L | fused ms | autograd ms | hessquik ms | fused vs autograd | fused vs hessquik "
        "| kernel GFLOP/s | of GEMM | window ms | window vs autograd |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.dtype:
        dtype = getattr(torch, name)
        gemm = gemm_gflops(dtype)
        print(f"torch.mm {name}, 1024², 1 thread: {gemm:.1f} GFLOP/s")
        for w, L in sizes:
            torch.manual_seed(0)
            net = hinn.HamiltonianNet(args.d, width=w, depth=L, dtype=dtype)
            ms = {}
            for be in ["fused", "autograd"] + ([] if args.no_hessquik else ["hessquik"]):
                net.backend = be
                ms[be] = train_step_ms(net, args.d, args.N, dtype)
            k = kernel_only(args.d, w, L, args.N, dtype, 1)
            ms["window"] = window_step_ms(net, args.d, args.N, dtype)
            r = dict(
                dtype=name,
                w=w,
                L=L,
                **{f"{b}_ms": v for b, v in ms.items()},
                kernel_ms=k["kernel_ms"],
                kernel_gflops=k["kernel_gflops"],
                of_gemm=k["kernel_gflops"] / gemm,
            )
            rows.append(r)
            hq = ms.get("hessquik", float("nan"))
            print(
                f"| {name} | {w} × {L} | {ms['fused']:.3f} | {ms['autograd']:.3f} | {hq:.3f} "
                f"| {ms['autograd'] / ms['fused']:.1f}× | {hq / ms['fused']:.1f}× | {r['kernel_gflops']:.1f} "
                f"| {100 * r['of_gemm']:.0f} % | {ms['window']:.3f} | {ms['autograd'] / ms['window']:.1f}× |",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {"date": date.today().isoformat(), "ghz": ghz, "d": args.d, "N": args.N, "rows": rows}, f, indent=1
            )


if __name__ == "__main__":
    main()
