// The whole Python surface of hinn._core: one positional entry point over raw pointers (DESIGN §4).
// Kept thin on purpose: this is the slowest translation unit to compile.
#include <pybind11/pybind11.h>

#include "cpu.h"

namespace py = pybind11;

namespace {

void call(int op, int d, int time, int width, int depth, int act, double hr, int dtype, int nthreads,
          long N, int scheme, double h, long steps, bool trajectory, std::uintptr_t theta, std::uintptr_t t,
          std::uintptr_t p, std::uintptr_t q, std::uintptr_t b0, std::uintptr_t b1, std::uintptr_t b2,
          std::uintptr_t o0, std::uintptr_t o1, std::uintptr_t o2, std::uintptr_t thb, bool cuda,
          std::uintptr_t stream, int deterministic) {
  hinn::NetDesc nd;
  nd.d = d;
  nd.time = time;
  nd.width = width;
  nd.depth = depth;
  nd.act = act;
  nd.hr = hr;
  hinn::CallArgs a;
  a.dtype = dtype;
  a.nthreads = nthreads;
  a.N = N;
  a.scheme = scheme;
  a.h = h;
  a.steps = steps;
  a.trajectory = trajectory;
  a.theta = theta;
  a.t = t;
  a.p = p;
  a.q = q;
  a.in_b0 = b0;
  a.in_b1 = b1;
  a.in_b2 = b2;
  a.out0 = o0;
  a.out1 = o1;
  a.out2 = o2;
  a.thb = thb;
  a.stream = stream;
  a.deterministic = deterministic;
  py::gil_scoped_release nogil;
  if (cuda) {
#ifdef HINN_WITH_CUDA
    hinn::cuda_call(static_cast<hinn::Op>(op), nd, a);
#else
    throw std::runtime_error("hinn._core was built without CUDA");
#endif
  } else {
    hinn::cpu_call(static_cast<hinn::Op>(op), nd, a);
  }
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "hinn compiled core: fused Hamiltonian network, integrator steps and rollouts (raw pointers).";
  m.def("call", &call, "Run one fused operation; see csrc/cpu.h for the argument contract.");
#ifdef HINN_WITH_CUDA
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
  m.def("cpu_isa", &hinn::cpu_isa, "The CPU kernels in use: 'avx512' or 'generic' (AVX2+FMA).");
  m.def("set_cpu_isa", [](const std::string& n) { hinn::set_cpu_isa(n.c_str()); },
        "Choose the CPU kernels ('avx512' or 'generic'); also settable with HINN_CPU_ISA.");
  m.attr("OP_GRAD_FWD") = static_cast<int>(hinn::Op::GradFwd);
  m.attr("OP_GRAD_BWD") = static_cast<int>(hinn::Op::GradBwd);
  m.attr("OP_ROLLOUT_FWD") = static_cast<int>(hinn::Op::RolloutFwd);
  m.attr("OP_ROLLOUT_BWD") = static_cast<int>(hinn::Op::RolloutBwd);
}
