// The narrow, torch-free interface between the binding and the drivers.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "hinn/integrators.h"

namespace hinn {

enum DType : int { kFloat32 = 0, kFloat64 = 1 };
enum class Op : int { GradFwd, GradBwd, RolloutFwd, RolloutBwd, LossGrad, HamFwd };

// One call's arguments. Pointers are raw device or host addresses of contiguous tensors owned by Python.
//   HamFwd:     (t, p, q) -> out0 = H (N): the primal pass alone
//   GradFwd:    (t, p, q) -> out0 = H (N), out1 = ∂pH (N,d), out2 = ∂qH (N,d)
//   GradBwd:    + in_b0 = H̄, in_b1 = ∂pH̄, in_b2 = ∂qH̄ -> out0 = t̄, out1 = p̄, out2 = q̄, thb = θ̄
//   RolloutFwd: (t, p, q), steps -> out1, out2: final state, or the trajectory (steps+1, N, ds), in the
//               scheme's state (ds = state_dim(scheme, d): Tao's copies follow the observed part)
//   RolloutBwd: p, q: the stored inputs (the trajectory (steps+1, N, ds), or the single step's input
//               (N, d)); in_b1, in_b2: cotangents of the trajectory (or of the step's output (N, ds))
//               -> out1 = p̄_0, out2 = q̄_0 (N, d), thb = θ̄
//   LossGrad:   windows (t, p, q) = (t0, p0, q0), targets in_b1 = P, in_b2 = Q (steps, N, d), scale ->
//               out0 = each window's loss scale·Σ_k |error|², out1 = p̄_0, out2 = q̄_0, thb = θ̄ of the sum
struct CallArgs {
  int dtype = kFloat32;
  int nthreads = 1;
  long N = 0;
  int scheme = 0;
  double h = 0;
  long steps = 1;
  double scale = 1;  // LossGrad: the loss is scale times the summed squared error
  double params[2] = {0, 0};  // the scheme's parameters (integrators.h: Stepper)
  bool trajectory = false;
  std::uintptr_t theta = 0, t = 0, p = 0, q = 0;
  std::uintptr_t in_b0 = 0, in_b1 = 0, in_b2 = 0;
  std::uintptr_t out0 = 0, out1 = 0, out2 = 0, thb = 0;
  std::uintptr_t stream = 0;  // CUDA stream (cudaStream_t), 0 = default
  std::uintptr_t work = 0;    // CUDA: device workspace of n_work bytes (cuda_workspace_bytes)
  std::uintptr_t status = 0;  // schemes that solve (scheme_solves): one int32, set non-zero by a failed solve
  int deterministic = 0;
  bool cuda = false;
  // element counts of the buffers above, as the caller allocated them (checked by validate())
  long n_theta = 0, n_t = 0, n_p = 0, n_q = 0, n_in_b0 = 0, n_in_b1 = 0, n_in_b2 = 0;
  long n_out0 = 0, n_out1 = 0, n_out2 = 0, n_thb = 0, n_work = 0, n_status = 0;
};

// Scratch of one lane value (one sample on CUDA, one block of samples on the CPU) for an operation, in
// lane values; the drivers lay it out in this order.
inline long op_scratch(Op op, const NetDesc& nd, int scheme, long steps) {
  const long n = nd.n_in(), ds = state_dim(scheme, nd.d);
  switch (op) {
    case Op::HamFwd: return n + primal_size(nd);                                   // x | primal
    case Op::GradFwd: return 2 * n + primal_size(nd) + work_size(nd);              // x g | primal | work
    case Op::GradBwd: return 3 * n + primal_size(nd) + work_size(nd);              // x v x̄ | primal | work
    case Op::RolloutFwd: return 2 * ds + step_scratch(nd, 1);                      // p q | step
    case Op::RolloutBwd: return 5 * ds + step_scratch(nd, scheme_stages(scheme));  // p q p̄ q̄ tmp | step
    case Op::LossGrad:  // p̄ q̄ | window | step
      return 2 * ds + window_scratch(nd, scheme, steps) + step_scratch(nd, scheme_stages(scheme));
  }
  return 0;
}

// Throws std::invalid_argument unless the structure, the scalars and every buffer an operation reads or
// writes are consistent (sizes against the structure, non-null where needed). The drivers trust what
// passed it: this is the one check between a raw pointer and an out-of-bounds access.
void validate(Op op, const NetDesc& nd, const CallArgs& a);
// validate(), then the CPU or CUDA driver.
void run(Op op, const NetDesc& nd, const CallArgs& a);

// The CPU kernels, compiled per instruction set; cpu_call runs the best one this processor supports
// (or the one named by set_cpu_isa / the HINN_CPU_ISA environment variable).
void cpu_call(Op op, const NetDesc& nd, const CallArgs& a);
// "avx512" (x86-64-v4), "generic" (AVX2+FMA, x86-64-v3; the portable build elsewhere), "baseline"
// (any x86-64) or "scalar" (the CUDA thread's arithmetic, never chosen by default). init_cpu_isa (at
// import) reads HINN_CPU_ISA; it and set_cpu_isa throw std::invalid_argument for an unusable name.
void init_cpu_isa();
const char* cpu_isa();
std::vector<std::string> cpu_isas();
void set_cpu_isa(const char* name);
void cpu_call_impl(Op op, const NetDesc& nd, const CallArgs& a);  // inside one ISA build
#ifdef HINN_WITH_CUDA
void cuda_call(Op op, const NetDesc& nd, const CallArgs& a);
// The device workspace (bytes) that cuda_call needs for these arguments on the current device.
size_t cuda_workspace_bytes(Op op, const NetDesc& nd, const CallArgs& a);
#endif

}  // namespace hinn

// The per-ISA entry points (nd: const NetDesc*, a: const CallArgs*).
extern "C" void hinn_cpu_call_generic(int op, const void* nd, const void* a);
extern "C" void hinn_cpu_call_avx512(int op, const void* nd, const void* a);
extern "C" void hinn_cpu_call_baseline(int op, const void* nd, const void* a);
// one sample per value, runtime width: the arithmetic of a CUDA thread, for testing it on the CPU
extern "C" void hinn_cpu_call_scalar(int op, const void* nd, const void* a);
