"""hinn benchmarks (DESIGN §8): every backend, the same inputs, one run; prints a markdown table and
writes JSON.

    python benchmarks/bench.py                 # poster and two-body sizes, float32/float64, 1 and 2 threads
    python benchmarks/bench.py --quick         # poster size, float32, 1 thread
    python benchmarks/bench.py --json out.json

Times are medians of repeated calls after a warm-up, through the public API (``net.grad``,
``hinn.step``/``hinn.rollout`` + MSE + ``backward``). ``x hq`` is hessQuik's time over this backend's.
GFLOP/s uses the counted FLOP model of ``flops()`` (matrix–vector work at 2 flops per multiply–add,
each activation with its two derivatives counted as 20 flops).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from datetime import date

import torch

import hinn
from hinn.backends import fused_available

ACT_FLOPS = 20
EVALS = {"euler": (1, 0, 1), "symplectic_euler": (2, 1, 2), "leapfrog": (3, 2, 3), "rk4": (4, 3, 4)}


def flops(kind: str, d: int, w: int, L: int, time_dep: bool, scheme: str, steps: int = 1) -> float:
    """Counted FLOPs per sample, as the kernels of ``csrc/hinn/network.h`` do them: P for a primal pass (H
    and what the derivatives need), S for the ∇H sweep on a stored pass (G = P + S: H and ∇H), J for a
    vector–Jacobian product of ∇H including the primal pass it recomputes (tangent, reverse sweep, weight
    cotangents). A step's backward re-runs the ∇H sweep only where it needs a stage's output; there the
    VJP reads the sweep's adjoints instead of recomputing them (one layer product fewer)."""
    n_in = 2 * d + int(time_dep)
    P = (L + 1) * w * ACT_FLOPS + 2 * L * w * w + 2 * n_in * w + 2 * L * w
    S = 2 * L * w * w + 2 * n_in * w + 4 * L * w
    J = P + 10 * L * w * w + 8 * n_in * w + 12 * L * w
    fwd, resweep, vjps = EVALS[scheme]
    if kind == "grad":
        return P + S
    return steps * (fwd * (P + S) + resweep * (S - 2 * L * w * w) + vjps * J)  # forward + backward sweep


def _time(fn, budget: float = 0.4, min_reps: int = 3) -> float:
    fn()  # warm-up (the first custom-op call pays one-off set-up costs)
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget and len(times) < 200):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_case(d, w, L, N, dtype, threads, backends, scheme="symplectic_euler", steps=10, device="cpu"):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = hinn.HamiltonianNet(d, width=w, depth=L, dtype=dtype, device=device)
    kw = dict(dtype=dtype, device=device)
    t = torch.rand(N, **kw)
    p, q = torch.randn(N, d, **kw), torch.randn(N, d, **kw)
    tp, tq = torch.randn(N, d, **kw), torch.randn(N, d, **kw)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rows = []
    for be in backends:
        net.backend = be

        def grad():
            with torch.no_grad():
                net.grad(t, p, q)
            sync()

        def train_step():
            p1, q1 = hinn.step(net, t, p, q, 0.1, scheme)
            loss = ((p1 - tp) ** 2).mean() + ((q1 - tq) ** 2).mean()
            net.theta.grad = None
            loss.backward()
            sync()

        def rollout_step():
            P, Q = hinn.rollout(net, t, p, q, 0.1, steps, scheme)
            loss = ((P - tp) ** 2).mean() + ((Q - tq) ** 2).mean()
            net.theta.grad = None
            loss.backward()
            sync()

        slow = be != "fused" and N * steps > 100_000
        r = {
            "backend": be,
            "d": d,
            "w": w,
            "L": L,
            "N": N,
            "dtype": str(dtype).replace("torch.", ""),
            "threads": threads,
            "device": device,
            "scheme": scheme,
        }
        r["grad_ms"] = _time(grad) * 1e3
        r["train_ms"] = _time(train_step) * 1e3
        r["rollout_ms"] = _time(rollout_step, budget=0.2 if slow else 0.4, min_reps=2 if slow else 3) * 1e3
        for key, kind, st in (("grad", "grad", 1), ("train", "step", 1), ("rollout", "step", steps)):
            r[f"{key}_gflops"] = N * flops(kind, d, w, L, True, scheme, st) / (r[f"{key}_ms"] * 1e-3) / 1e9
        rows.append(r)
    ref = next((r for r in rows if r["backend"] == "hessquik"), None)
    for r in rows:
        for key in ("grad", "train", "rollout"):
            r[f"{key}_x_hq"] = ref[f"{key}_ms"] / r[f"{key}_ms"] if ref else float("nan")
    return rows


def kernel_only(d, w, L, N, dtype, threads, scheme="symplectic_euler"):
    """The compiled kernels of one training step (step forward + its backward) called directly through
    hinn._core, without the custom-op and autograd layers: time and GFLOP/s by the FLOP model."""
    from hinn.backends import fused

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = hinn.HamiltonianNet(d, width=w, depth=L, dtype=dtype)
    th = net.theta.detach()
    t, p, q = torch.rand(N, dtype=dtype), torch.randn(N, d, dtype=dtype), torch.randn(N, d, dtype=dtype)
    spec, code = fused.spec_of(net), fused.core.SCHEMES[scheme]

    def run():  # the forward and backward ops themselves, no autograd graph
        p1, q1 = fused.step_op(th, t, p, q, spec, net.resnet_step, 0.1, code, [])
        fused.step_backward_op(th, t, p, q, p1, q1, spec, net.resnet_step, 0.1, code, [])

    ms = _time(run) * 1e3
    return {
        "d": d,
        "w": w,
        "L": L,
        "N": N,
        "dtype": str(dtype).replace("torch.", ""),
        "threads": threads,
        "kernel_ms": ms,
        "kernel_gflops": N * flops("step", d, w, L, True, scheme) / (ms * 1e-3) / 1e9,
    }


def table(rows) -> str:
    head = (
        "| size | dtype | thr | backend | ∇H ms | x hq | train step ms | x hq | 10-step rollout ms | x hq "
        "| GFLOP/s (train) |"
    )
    out = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for r in rows:
        size = f"d={r['d']} w={r['w']} L={r['L']} N={r['N']}"
        out.append(
            f"| {size} | {r['dtype']} | {r['threads']} | {r['backend']} | {r['grad_ms']:.3f} | {r['grad_x_hq']:.1f} "
            f"| {r['train_ms']:.3f} | {r['train_x_hq']:.1f} | {r['rollout_ms']:.2f} | {r['rollout_x_hq']:.1f} "
            f"| {r['train_gflops']:.1f} |"
        )
    return "\n".join(out)


# FP32 peak (non-tensor-core) of the cards this project is lent, for "% of peak" on the GPU
GPU_FP32_PEAK_TFLOPS = {"H100 PCIe": 51.2, "H100": 66.9, "H200": 66.9}


def gpu_peak() -> float:
    name = torch.cuda.get_device_name()
    for key, val in GPU_FP32_PEAK_TFLOPS.items():
        if key in name:
            return val
    return float("nan")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="poster size, float32, 1 thread only")
    ap.add_argument("--json", default="benchmarks/results.json")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args(argv)
    backends = ["hessquik", "autograd"] + (["fused"] if fused_available() else [])
    rows = []
    if args.device == "cuda":
        # poster network and two-body size, N up to 2e6; the unfused backends stop at 2e5 (memory, time)
        for d in (1, 4):
            for N in (2000, 20000, 200000, 2000000):
                bes = backends if N <= 200000 else ["fused"]
                rows += run_case(d, 3, 20, N, torch.float32, 1, bes, device="cuda")
                print("\n".join(table(rows[-len(bes) :]).splitlines()[2:]), flush=True)
        peak = gpu_peak()
        for r in rows:
            r["train_pct_fp32_peak"] = 100 * r["train_gflops"] / (peak * 1e3)
            r["rollout_pct_fp32_peak"] = 100 * r["rollout_gflops"] / (peak * 1e3)
    else:
        sizes = [(1, 3, 20, 2000)] if args.quick else [(1, 3, 20, 2000), (1, 3, 20, 20000), (4, 3, 20, 2000)]
        dtypes = [torch.float32] if args.quick else [torch.float32, torch.float64]
        threads = [1] if args.quick else [1, 2]
        for d, w, L, N in sizes:
            for dtype in dtypes:
                for thr in threads:
                    if not args.quick and N > 2000 and (dtype == torch.float64 or thr == 2):
                        continue  # keep the full run within a few minutes on 2 cores
                    rows += run_case(d, w, L, N, dtype, thr, backends, device=args.device)
                    print("\n".join(table(rows[-len(backends) :]).splitlines()[2:]), flush=True)
    kernels = []
    if args.device == "cpu" and fused_available():
        for d, w, L, N in [(1, 3, 20, 2000)] if args.quick else [(1, 3, 20, 2000), (1, 3, 20, 20000), (4, 3, 20, 2000)]:
            for dtype in [torch.float32] if args.quick else [torch.float32, torch.float64]:
                kernels.append(kernel_only(d, w, L, N, dtype, 1))
    machine = torch.cuda.get_device_name() if args.device == "cuda" else (platform.processor() or platform.machine())
    meta = {
        "date": date.today().isoformat(),
        "machine": machine,
        "torch": torch.__version__,
        "hinn": hinn.__version__,
        "threads_available": torch.get_num_threads(),
    }
    if fused_available():
        from hinn.backends.fused import core

        meta["cpu_kernels"] = core.cpu_isa()
    print()
    print(
        f"hinn benchmarks, {meta['date']}, {meta['machine']}, torch {meta['torch']}, "
        f"CPU kernels {meta.get('cpu_kernels')}"
    )
    print(table(rows))
    if args.device == "cuda":
        print("\nfused, % of FP32 peak by the FLOP model (train step / 10-step rollout):")
        for r in rows:
            if r["backend"] == "fused":
                print(f"  d={r['d']} N={r['N']}: {r['train_pct_fp32_peak']:.1f}% / {r['rollout_pct_fp32_peak']:.1f}%")
    if kernels:
        print("\nkernels alone (one training step: step forward + backward, 1 thread), and the op-layer overhead:")
        print("| size | dtype | kernels ms | GFLOP/s | public-API train step ms | overhead ms |")
        print("|---|---|---|---|---|---|")
        for k in kernels:
            api = next(
                (
                    r["train_ms"]
                    for r in rows
                    if r["backend"] == "fused"
                    and r["threads"] == 1
                    and (r["d"], r["N"], r["dtype"]) == (k["d"], k["N"], k["dtype"])
                ),
                float("nan"),
            )
            k["api_train_ms"], k["overhead_ms"] = api, api - k["kernel_ms"]
            print(
                f"| d={k['d']} w={k['w']} L={k['L']} N={k['N']} | {k['dtype']} | {k['kernel_ms']:.3f} "
                f"| {k['kernel_gflops']:.1f} | {api:.3f} | {api - k['kernel_ms']:.3f} |"
            )
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "rows": rows, "kernels": kernels}, f, indent=1)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
