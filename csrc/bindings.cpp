// The whole Python surface of hinn._core (DESIGN §4): a network description, one entry point that takes
// every argument by name, and the codes the Python layer needs. Kept thin on purpose: this is the slowest
// translation unit to compile; checks live in validate.cpp.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <string>
#include <vector>

#include "core.h"

namespace py = pybind11;

namespace {

using hinn::Call;

// A buffer argument `k`: a (pointer, numel) pair.
hinn::Buf read_buf(const std::string& k, py::handle v) {
  auto tup = v.cast<py::tuple>();
  if (tup.size() != 2) throw py::value_error("buffer argument '" + k + "' must be a (pointer, numel) pair");
  return {tup[0].cast<std::uintptr_t>(), tup[1].cast<long>()};
}

template <class S>
bool finite_span(const S* x, long n) {
  bool ok = true;
  for (long i = 0; i < n; ++i) ok &= std::isfinite(x[i]);
  return ok;
}

// Whether every value in these CPU buffers of one dtype is finite: the public entry points' NaN/inf check
// of their inputs in one call (a torch reduction per tensor and the host read of its result cost several
// microseconds each on every step).
bool all_finite(const std::vector<std::pair<std::uintptr_t, long>>& bufs, int dtype) {
  if (dtype != hinn::kFloat32 && dtype != hinn::kFloat64) throw py::value_error("all_finite: dtype must be a DTYPES code");
  for (const auto& [ptr, n] : bufs) {
    if (n < 0 || (n > 0 && ptr == 0)) throw py::value_error("all_finite: a buffer is null or has a negative size");
    const bool ok = dtype == hinn::kFloat64 ? finite_span(reinterpret_cast<const double*>(ptr), n)
                                            : finite_span(reinterpret_cast<const float*>(ptr), n);
    if (!ok) return false;
  }
  return true;
}

using Slot = hinn::Buf Call::*;

// The buffer argument named k, or null for a scalar's name.
Slot buffer_slot(const std::string& k) {
#define HINN_BUFFER_SLOT(name) \
  if (k == #name) return &Call::name;
  HINN_BUFFERS(HINN_BUFFER_SLOT)
#undef HINN_BUFFER_SLOT
  return nullptr;
}

// Buffers as (ptr, numel) pairs and scalars, every one by name (core.h, types.h): an unknown or misspelled
// name is an error, so that no two arguments can be swapped unnoticed.
void set_arg(Call& c, const std::string& k, py::handle v) {
  if (const Slot s = buffer_slot(k)) {
    c.*s = read_buf(k, v);
    return;
  }
  if (k == "dtype") c.dtype = v.cast<int>();
  else if (k == "nthreads") c.nthreads = v.cast<int>();
  else if (k == "N") c.N = v.cast<long>();
  else if (k == "scheme") c.scheme = v.cast<int>();
  else if (k == "omega") c.args.omega = v.cast<double>();
  else if (k == "tol") c.args.tol = v.cast<double>();
  else if (k == "max_iter") {  // the ops carry scheme parameters as floats
    const double m = v.cast<double>();
    if (!(m >= 1 && m <= 1e6 && m == double(long(m)))) throw py::value_error("max_iter must be an integer in [1, 1e6]");
    c.args.max_iter = long(m);
  }
  else if (k == "h") c.h = v.cast<double>();
  else if (k == "steps") c.steps = v.cast<long>();
  else if (k == "scale") c.scale = v.cast<double>();
  else if (k == "trajectory") c.trajectory = v.cast<bool>();
  else if (k == "cuda") c.cuda = v.cast<bool>();
  else if (k == "stream") c.stream = v.cast<std::uintptr_t>();
  else throw py::value_error("hinn._core.call: unknown argument '" + k + "'");
}

hinn::Op op_of(int op) {
  if (op < 0 || op >= hinn::kNumOps) throw py::value_error("hinn._core: unknown operation " + std::to_string(op));
  return static_cast<hinn::Op>(op);
}

Call parse(const py::kwargs& kw) {
  Call c;
  for (auto item : kw) set_arg(c, item.first.cast<std::string>(), item.second);
  return c;
}

void call(int op, const hinn::NetDesc& nd, const py::kwargs& kw) {
  const hinn::Op o = op_of(op);
  const Call c = parse(kw);
  py::gil_scoped_release nogil;
  hinn::run(o, nd, c);
}

// A CPU call whose arguments are read once, for calls that repeat (a training loop's step and its backward,
// a rollout's evaluations): a run takes only the buffers' pointers, positionally, in the order the buffers
// were named (`slots`); their sizes and every scalar stay as given. Building and reading a dozen named
// arguments per call cost more than the kernels of a step at N = 1 (benchmarks/RESULTS.md); run() checks
// the whole call again, as call() does.
class Plan {
 public:
  Plan(int op, const hinn::NetDesc& nd, const py::kwargs& kw) : op_(op_of(op)), nd_(nd) {
    for (auto item : kw) {
      const auto k = item.first.cast<std::string>();
      set_arg(c_, k, item.second);
      if (const Slot s = buffer_slot(k)) slots_.push_back(s), names_.push_back(k);
    }
    if (c_.cuda) throw py::value_error("hinn._core.Plan: CPU calls only (a CUDA call takes its stream per call)");
  }

  void run(const py::args& ptrs) const {
    if (ptrs.size() != slots_.size())
      throw py::value_error("hinn._core.Plan: " + std::to_string(slots_.size()) + " buffer pointers expected, got " +
                            std::to_string(ptrs.size()));
    Call c = c_;  // the plan itself stays unchanged: runs may overlap in several threads
    for (size_t i = 0; i < slots_.size(); ++i) (c.*slots_[i]).ptr = ptrs[i].cast<std::uintptr_t>();
    py::gil_scoped_release nogil;
    hinn::run(op_, nd_, c);
  }

  const std::vector<std::string>& slots() const { return names_; }

 private:
  hinn::Op op_;
  hinn::NetDesc nd_;
  Call c_;
  std::vector<Slot> slots_;
  std::vector<std::string> names_;
};

// An optimizer's settings by name (core.h: Optim); false for another name.
bool set_optim(hinn::Optim& o, const std::string& k, py::handle v) {
  if (k == "optimizer") o.kind = v.cast<int>();
  else if (k == "lr") o.lr = v.cast<double>();
  else if (k == "weight_decay") o.weight_decay = v.cast<double>();
  else if (k == "beta1") o.beta1 = v.cast<double>();
  else if (k == "beta2") o.beta2 = v.cast<double>();
  else if (k == "eps") o.eps = v.cast<double>();
  else if (k == "count") o.count = v.cast<long>();
  else return false;
  return true;
}

// The epoch's own arguments (core.h: EpochArgs; the starts' optimizer's settings prefixed "starts_");
// every other name is the data call's.
void set_epoch_arg(Call& c, hinn::EpochArgs& e, const std::string& k, py::handle v) {
  auto buf = [&](hinn::Buf& b) { b = read_buf(k, v); };
  const std::string prefix = "starts_";
  if (k == "index") buf(e.index);
  else if (k == "bounds") buf(e.bounds);
  else if (k == "mask") buf(e.mask);
  else if (k == "m") buf(e.m);
  else if (k == "v") buf(e.v);
  else if (k == "batch_losses") buf(e.batch_losses);
  else if (k == "starts_p") buf(e.starts_p);
  else if (k == "starts_q") buf(e.starts_q);
  else if (k == "starts_mp") buf(e.starts_mp);
  else if (k == "starts_vp") buf(e.starts_vp);
  else if (k == "starts_mq") buf(e.starts_mq);
  else if (k == "starts_vq") buf(e.starts_vq);
  else if (k == "starts_step") e.starts_step = v.cast<bool>();
  else if (set_optim(e.opt, k, v)) return;
  else if (k.rfind(prefix, 0) == 0 && set_optim(e.starts_opt, k.substr(prefix.size()), v)) return;
  else set_arg(c, k, v);
}

long train_epoch(int op, const hinn::NetDesc& nd, const py::kwargs& kw) {
  const hinn::Op o = op_of(op);
  Call c;
  hinn::EpochArgs e;
  for (auto item : kw) set_epoch_arg(c, e, item.first.cast<std::string>(), item.second);
  py::gil_scoped_release nogil;
  return hinn::train_epoch(o, nd, c, e);
}

// Bytes of device workspace a CUDA call with these arguments needs (0 on the CPU, which keeps its own).
long workspace_bytes(int op, const hinn::NetDesc& nd, const py::kwargs& kw) {
  [[maybe_unused]] const hinn::Op o = op_of(op);
  [[maybe_unused]] const Call c = parse(kw);  // also rejects unknown arguments
#ifdef HINN_WITH_CUDA
  if (c.cuda) return (long)hinn::cuda::workspace_bytes(o, nd, c);
#endif
  return 0;
}

long kept_size(const hinn::NetDesc& nd, const py::kwargs& kw) { return hinn::kept_size(nd, parse(kw)); }

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
        "see csrc/hinn/types.h for the contract. Raises ValueError for any inconsistent argument.");
  py::class_<Plan>(m, "Plan",
                   "A CPU call prepared once: Plan(op, desc, **arguments as for call()); run(*pointers) runs it "
                   "with the buffers' data pointers in the order of `slots`.")
      .def(py::init<int, const hinn::NetDesc&, const py::kwargs&>(), py::arg("op"), py::arg("desc"))
      .def("run", &Plan::run)
      .def_property_readonly("slots", &Plan::slots);
  m.def("train_epoch", &train_epoch, py::arg("op"), py::arg("desc"),
        "A training epoch: the op's arguments over the whole data set, the minibatches (index, bounds) and "
        "the optimizer (optimizer, lr, weight_decay, beta1, beta2, eps, count, m, v), by name; updates theta "
        "(and m, v) in place, writes each minibatch's loss to batch_losses and returns how many ran. See "
        "csrc/core.h.");
  m.attr("OPTIMIZERS") = py::dict(py::arg("gd") = static_cast<int>(hinn::kOptimGD),
                                  py::arg("adam") = static_cast<int>(hinn::kOptimAdam));
  m.def("all_finite", &all_finite, py::arg("buffers"), py::arg("dtype"),
        "Whether every value in these CPU buffers, (data_ptr, numel) pairs of one dtype, is finite.");
  m.def("workspace_bytes", &workspace_bytes, py::arg("op"), py::arg("desc"),
        "Bytes of device workspace (argument 'work') that a CUDA call with the same arguments needs; "
        "0 on the CPU.");
  m.def("kept_size", &kept_size, py::arg("desc"),
        "Elements (of the call's dtype) of the buffer 'kept' in which a rollout (N, scheme, steps) keeps its "
        "steps' stages for rollout_backward; 0 on CUDA, which recomputes them.");
#ifdef HINN_WITH_CUDA
  m.attr("has_cuda") = true;
#else
  m.attr("has_cuda") = false;
#endif
  m.def("cpu_isa", &hinn::cpu_isa, "The CPU kernels in use: 'avx512', 'generic' (AVX2+FMA), 'baseline' or 'scalar'.");
  m.def("cpu_isas", &hinn::cpu_isas, "The CPU kernel builds this processor can run.");
  m.def("set_cpu_isa", [](const std::string& n) { hinn::set_cpu_isa(n.c_str()); },
        "Choose the CPU kernels; also settable with HINN_CPU_ISA at import.");
  py::dict ops, schemes, scheme_params, scheme_state, acts;
  for (int i = 0; i < hinn::kNumOps; ++i) ops[hinn::kOpNames[i]] = i;
  m.attr("OPS") = ops;
  const auto table = hinn::scheme_table();
  py::list solving;
  for (size_t i = 0; i < table.size(); ++i) {
    schemes[table[i].name.c_str()] = i;
    scheme_params[table[i].name.c_str()] = py::tuple(py::cast(table[i].params));
    scheme_state[table[i].name.c_str()] = table[i].state_mult;
    if (table[i].solves) solving.append(table[i].name);
  }
  m.attr("SCHEMES") = schemes;
  m.attr("SCHEME_PARAMS") = scheme_params;  // the parameters each scheme takes, by name, in this order
  m.attr("SCHEME_STATE") = scheme_state;    // its state is SCHEME_STATE[name] * d wide
  m.attr("SOLVING_SCHEMES") = py::frozenset(solving);  // these take a status flag and may fail to converge
  m.attr("MIN_SAMPLES_PER_THREAD") = hinn::kMinSamplesPerThread;
  m.attr("DEFAULT_TOL") = py::dict(py::arg("float32") = hinn::kDefaultTolFloat32, py::arg("float64") = hinn::kDefaultTolFloat64);
  for (int i = 0; i < hinn::kNumActivations; ++i) acts[hinn::kActivationNames[i]] = i;
  m.attr("ACTIVATIONS") = acts;
  m.attr("DTYPES") = py::dict(py::arg("float32") = static_cast<int>(hinn::kFloat32),
                              py::arg("float64") = static_cast<int>(hinn::kFloat64));
}
