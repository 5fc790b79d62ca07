"""The cost of each activation in the compiled window loss (loss and θ-gradient of leapfrog windows).

    taskset -c 1 python benchmarks/activations.py [--rounds 5] [--calls 30]

Sizes: a 32 × 2 network on d = 1 with 500 windows of K = 10 steps (the noisy spring under HNN's
protocol) and a 128 × 3 network on d = 6 with 32 windows of K = 4 (the SRNN three-body minibatch);
float64 and float32, 1 thread. Prints a markdown table of the best round's milliseconds per call. To
compare two builds, run it from each install in alternating processes.
"""

from __future__ import annotations

import argparse
import time

import torch

import hinn
from hinn.backends import fused

SIZES = ((32, 2, 1, 500, 10), (128, 3, 6, 32, 4))  # width, depth, d, windows, steps


def time_call(f, rounds: int, calls: int) -> float:
    for _ in range(3):
        f()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            f()
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=30)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    code, params = fused.scheme_code(hinn.integrators.get_scheme("leapfrog"), 0.1)
    print(f"cpu kernels: {fused.core.cpu_isa()}")
    print("| activation | dtype | network, windows | ms per call |")
    print("|---|---|---|---|")
    for act in hinn.network.ACTIVATIONS:
        for dtype in (torch.float64, torch.float32):
            for w, L, d, M, K in SIZES:
                torch.manual_seed(0)
                net = hinn.HamiltonianNet(d, width=w, depth=L, time_dependent=False, activation=act, dtype=dtype)
                t0 = torch.zeros(M, dtype=dtype)
                p0, q0 = torch.randn(M, d, dtype=dtype), torch.randn(M, d, dtype=dtype)
                P, Q = torch.randn(K, M, d, dtype=dtype), torch.randn(K, M, d, dtype=dtype)
                inputs = (net.theta.detach(), t0, p0, q0, P, Q, fused.spec_of(net), net.resnet_step, 0.1, code, 1.0)
                ms = 1e3 * time_call(lambda a=inputs: fused.window_loss_grad(*a, params), args.rounds, args.calls)
                print(f"| {act} | {str(dtype)[6:]} | {w} × {L}, M = {M}, K = {K} | {ms:.2f} |", flush=True)


if __name__ == "__main__":
    main()
