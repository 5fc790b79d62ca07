"""The fused CUDA path from small to large batches: training-step time, throughput by the counted FLOP
model, and the memory one call takes beyond what it returns.

    python benchmarks/cuda_scaling.py                  # N = 2e3 … 2e6, widths 3 / 16 / 64, float32
    python benchmarks/cuda_scaling.py --peak-tflops 67  # also the fraction of the card's FP32 peak

A training step here is one compiled window-loss call (one symplectic-Euler step, squared error, the whole
backward: ``hinn.backends.fused.window_loss_grad``), d = 1 with t. "extra / returned" is the peak memory
the call allocated beyond its inputs, over the bytes of what it returns (losses and gradients); the
workspace is PyTorch's caching allocator's, so the peak counts it exactly.
"""

from __future__ import annotations

import argparse

import torch
from bench import flops

import hinn
from hinn.backends import fused

NETS = [(3, 20), (16, 4), (64, 4)]
SIZES = [2_000, 20_000, 200_000, 2_000_000]


def step_case(w: int, L: int, N: int, dtype=torch.float32, reps: int = 20) -> dict:
    torch.manual_seed(0)
    dev = torch.device("cuda")
    net = hinn.HamiltonianNet(1, width=w, depth=L, dtype=dtype, device=dev)
    t0 = torch.rand(N, dtype=dtype, device=dev)
    p0, q0 = torch.randn(N, 1, dtype=dtype, device=dev), torch.randn(N, 1, dtype=dtype, device=dev)
    P, Q = torch.randn(1, N, 1, dtype=dtype, device=dev), torch.randn(1, N, 1, dtype=dtype, device=dev)
    spec, code = fused.spec_of(net), fused.core.SCHEMES["symplectic_euler"]
    th = net.theta.detach()

    def call():
        return fused.window_loss_grad(th, t0, p0, q0, P, Q, spec, net.resnet_step, 0.1, code, 1.0)

    out = call()  # warm-up
    torch.cuda.synchronize()
    returned = sum(x.numel() * x.element_size() for x in out)
    del out
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = call()
    torch.cuda.synchronize()
    extra = torch.cuda.max_memory_allocated() - base - returned
    del out
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        call()
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / reps
    gflops = N * flops("step", 1, w, L, True, "symplectic_euler") / (ms * 1e-3) / 1e9
    return {"w": w, "L": L, "N": N, "ms": ms, "gflops": gflops, "extra_over_returned": extra / returned}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peak-tflops", type=float, help="the card's FP32 peak (H100/H200 SXM: 67)")
    args = ap.parse_args(argv)
    print(f"fused CUDA training step, float32, {torch.cuda.get_device_name()}")
    print("| width × depth | N | ms | GFLOP/s | % peak | extra memory / returned |")
    print("|---|---|---|---|---|---|")
    for w, L in NETS:
        for N in SIZES:
            r = step_case(w, L, N)
            pct = f"{100 * r['gflops'] / (args.peak_tflops * 1e3):.1f}" if args.peak_tflops else "—"
            print(f"| {w} × {L} | {N:.0e} | {r['ms']:.3f} | {r['gflops']:.0f} | {pct} | "
                  f"{r['extra_over_returned']:.2f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
