// The whole Python surface of hinn._core (DESIGN §4): a network description, one entry point that takes
// every argument by name, and the codes the Python layer needs. Kept thin on purpose: this is the slowest
// translation unit to compile; checks live in validate.cpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "cpu.h"
#include "hinn/integrators.h"

namespace py = pybind11;

namespace {

using hinn::CallArgs;

// (ptr, numel) pairs and scalars by name: an unknown or misspelled name is an error, so that no two
// arguments can be swapped unnoticed.
void set_arg(CallArgs& a, const std::string& k, py::handle v) {
  auto buf = [&](std::uintptr_t& ptr, long& n) {
    auto tup = v.cast<py::tuple>();
    if (tup.size() != 2) throw py::value_error("buffer argument '" + k + "' must be a (pointer, numel) pair");
    ptr = tup[0].cast<std::uintptr_t>();
    n = tup[1].cast<long>();
  };
  if (k == "theta") buf(a.theta, a.n_theta);
  else if (k == "t") buf(a.t, a.n_t);
  else if (k == "p") buf(a.p, a.n_p);
  else if (k == "q") buf(a.q, a.n_q);
  else if (k == "in_b0") buf(a.in_b0, a.n_in_b0);
  else if (k == "in_b1") buf(a.in_b1, a.n_in_b1);
  else if (k == "in_b2") buf(a.in_b2, a.n_in_b2);
  else if (k == "out0") buf(a.out0, a.n_out0);
  else if (k == "out1") buf(a.out1, a.n_out1);
  else if (k == "out2") buf(a.out2, a.n_out2);
  else if (k == "thb") buf(a.thb, a.n_thb);
  else if (k == "work") buf(a.work, a.n_work);
  else if (k == "dtype") a.dtype = v.cast<int>();
  else if (k == "nthreads") a.nthreads = v.cast<int>();
  else if (k == "N") a.N = v.cast<long>();
  else if (k == "scheme") a.scheme = v.cast<int>();
  else if (k == "h") a.h = v.cast<double>();
  else if (k == "steps") a.steps = v.cast<long>();
  else if (k == "scale") a.scale = v.cast<double>();
  else if (k == "params") {
    const auto ps = v.cast<std::vector<double>>();
    if (ps.size() > 2) throw py::value_error("hinn._core.call: a scheme has at most 2 parameters");
    for (size_t i = 0; i < ps.size(); ++i) a.params[i] = ps[i];
  }
  else if (k == "status") buf(a.status, a.n_status);
  else if (k == "trajectory") a.trajectory = v.cast<bool>();
  else if (k == "cuda") a.cuda = v.cast<bool>();
  else if (k == "stream") a.stream = v.cast<std::uintptr_t>();
  else if (k == "deterministic") a.deterministic = v.cast<bool>();
  else throw py::value_error("hinn._core.call: unknown argument '" + k + "'");
}

CallArgs parse(int op, const py::kwargs& kw) {
  CallArgs a;
  for (auto item : kw) set_arg(a, item.first.cast<std::string>(), item.second);
  if (op < 0 || op > static_cast<int>(hinn::Op::HamFwd))
    throw py::value_error("hinn._core: unknown operation " + std::to_string(op));
  return a;
}

void call(int op, const hinn::NetDesc& nd, const py::kwargs& kw) {
  const CallArgs a = parse(op, kw);
  py::gil_scoped_release nogil;
  hinn::run(static_cast<hinn::Op>(op), nd, a);
}

// Bytes of device workspace a CUDA call with these arguments needs (0 on the CPU, which keeps its own).
long workspace_bytes(int op, const hinn::NetDesc& nd, const py::kwargs& kw) {
  [[maybe_unused]] const CallArgs a = parse(op, kw);  // also rejects unknown arguments
#ifdef HINN_WITH_CUDA
  if (a.cuda) return (long)hinn::cuda_workspace_bytes(static_cast<hinn::Op>(op), nd, a);
#endif
  return 0;
}

hinn::NetDesc make_desc(int d, int time, int width, int depth, int act, double hr) {
  if (d < 1 || width < 1 || depth < 0 || (time != 0 && time != 1) || act < 0 || act >= hinn::kNumActivations ||
      !std::isfinite(hr))
    throw py::value_error("NetDesc: need d >= 1, width >= 1, depth >= 0, time 0 or 1, a known activation code "
                          "and a finite residual step");
  hinn::NetDesc nd;
  nd.d = d;
  nd.time = time;
  nd.width = width;
  nd.depth = depth;
  nd.act = act;
  nd.hr = hr;
  return nd;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  // The instruction-set choice happens here, at import: a bad HINN_CPU_ISA fails the import with its
  // message instead of aborting the interpreter during static initialisation. First, before any type is
  // registered: a failed import leaves pybind11's registry holding the types until the collector frees
  // them, and a second import (hinn's package init tries once and keeps the error) would otherwise fail
  // with "type NetDesc is already registered" or the right message, depending on the collector's timing.
  hinn::init_cpu_isa();
  m.doc() = "hinn compiled core: fused Hamiltonian network, integrator steps and rollouts (raw pointers).";
  py::class_<hinn::NetDesc>(m, "NetDesc", "The structure of a network, as the kernels see it.")
      .def(py::init(&make_desc), py::kw_only(), py::arg("d"), py::arg("time"), py::arg("width"), py::arg("depth"),
           py::arg("act"), py::arg("hr"))
      .def_readonly("d", &hinn::NetDesc::d)
      .def_readonly("time", &hinn::NetDesc::time)
      .def_readonly("width", &hinn::NetDesc::width)
      .def_readonly("depth", &hinn::NetDesc::depth)
      .def_readonly("act", &hinn::NetDesc::act)
      .def_readonly("hr", &hinn::NetDesc::hr)
      .def_property_readonly("n_params", &hinn::NetDesc::n_params);
  m.def("call", &call, py::arg("op"), py::arg("desc"),
        "Run one fused operation. Buffers are (data_ptr, numel) pairs, every argument by name; "
        "see csrc/cpu.h for the contract. Raises ValueError for any inconsistent argument.");
  m.def("workspace_bytes", &workspace_bytes, py::arg("op"), py::arg("desc"),
        "Bytes of device workspace (argument 'work') that a CUDA call with the same arguments needs; "
        "0 on the CPU.");
#ifdef HINN_WITH_CUDA
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
  m.def("cpu_isa", &hinn::cpu_isa, "The CPU kernels in use: 'avx512', 'generic' (AVX2+FMA), 'baseline' or 'scalar'.");
  m.def("cpu_isas", &hinn::cpu_isas, "The CPU kernel builds this processor can run.");
  m.def("set_cpu_isa", [](const std::string& n) { hinn::set_cpu_isa(n.c_str()); },
        "Choose the CPU kernels; also settable with HINN_CPU_ISA at import.");
  py::dict ops;
  ops["hamiltonian"] = static_cast<int>(hinn::Op::HamFwd);
  ops["grad"] = static_cast<int>(hinn::Op::GradFwd);
  ops["grad_backward"] = static_cast<int>(hinn::Op::GradBwd);
  ops["rollout"] = static_cast<int>(hinn::Op::RolloutFwd);
  ops["rollout_backward"] = static_cast<int>(hinn::Op::RolloutBwd);
  ops["loss_grad"] = static_cast<int>(hinn::Op::LossGrad);
  m.attr("OPS") = ops;
  py::dict schemes, acts;
  for (int i = 0; i < hinn::kNumSchemes; ++i) schemes[hinn::kSchemeNames[i]] = i;
  for (int i = 0; i < hinn::kNumActivations; ++i) acts[hinn::kActivationNames[i]] = i;
  m.attr("SCHEMES") = schemes;
  m.def("scheme_solves", [](int scheme) { return hinn::scheme_solves(scheme); },
        "Whether a scheme's step solves an implicit equation (its calls then take a status buffer).");
  m.def("state_dim", [](int scheme, int d) { return hinn::state_dim(scheme, d); },
        "Width of the state a scheme carries (Tao's copies double d): the width of its rollouts' output.");
  m.attr("ACTIVATIONS") = acts;
  m.attr("DTYPES") = py::dict(py::arg("float32") = static_cast<int>(hinn::kFloat32),
                              py::arg("float64") = static_cast<int>(hinn::kFloat64));
}
