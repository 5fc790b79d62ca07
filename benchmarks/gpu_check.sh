#!/usr/bin/env bash
# One-shot GPU check: build with CUDA, test the CUDA path against the hessQuik oracle and the CPU
# fused ops, time hessquik / autograd / fused on the GPU, print a table. Writes under $OUT.
#
# On a GPU machine (it may be offline: Python 3.12, torch with CUDA, pybind11, scikit-build-core, nvcc and
# pytest installed):
#   bash benchmarks/gpu_check.sh
# An offline machine needs the hessQuik wheel beside the sources, in .whl/, fetched once elsewhere:
#   pip download --no-deps --only-binary=:all: -d .whl hessquik==0.0.6
# Budget: about 6 minutes (build ~1, tests ~1, memcheck ~1, timings ~2.5, CUDA graphs and a short
# `hinn train --device cuda` ~0.5).
set -euo pipefail
OUT="${OUT:-/tmp/hinn-gpu-check}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
if ! python3 -c "import hessQuik" 2>/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

start=$(date +%s)
HINN_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=16 python3 -m pip install -q --no-index --no-deps --no-build-isolation . 2>&1 \
  | tail -20 | tee "$OUT/build.txt"
echo "build: $(( $(date +%s) - start )) s"
python3 -c "import hinn._core as c; assert c.has_cuda, 'hinn._core built without CUDA'; print('hinn._core: CUDA ok, CPU kernels', c.cpu_isa())"

set +e
timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_cuda.py "tests/test_fused.py::test_cuda_build_matches_visible_gpu" \
  2>&1 | tee "$OUT/tests.txt" | tail -25
tests_rc=${PIPESTATUS[0]}
if command -v compute-sanitizer >/dev/null; then  # memory errors on a small case of every op
  timeout 90 compute-sanitizer --tool memcheck --error-exitcode 9 python3 -m pytest -q -x -p no:cacheprovider \
    "tests/test_cuda.py::test_cuda_window_loss_and_hamiltonian_match_cpu" 2>&1 | tail -5 | tee "$OUT/memcheck.txt"
fi
timeout 150 python3 benchmarks/bench.py --device cuda --json "$OUT/gpu_bench.json" 2>&1 | tee "$OUT/bench.txt"
bench_rc=${PIPESTATUS[0]}
# N = 2e3 … 2e6, widths 3 / 16 / 64: time, throughput (H100/H200 SXM FP32 peak 67 TFLOP/s), memory
timeout 60 python3 benchmarks/cuda_scaling.py --peak-tflops 67 2>&1 | tee "$OUT/scaling.txt"
# the training loop with every step replayed from a CUDA graph, against eager steps
(cd benchmarks && timeout 60 python3 training.py --part graph --epochs 50) 2>&1 | tail -2 | tee "$OUT/graph.txt"
timeout 60 python3 -m hinn train spring --epochs 20 --device cuda --out "$OUT/run" --no-progress 2>&1 | tail -12
echo "tests rc=$tests_rc  bench rc=$bench_rc  total $(( $(date +%s) - start )) s"
exit $(( tests_rc != 0 || bench_rc != 0 ))
