// The narrow, torch-free interface between the binding and the drivers (types: hinn/types.h).
#pragma once
#include <string>
#include <vector>

#include "hinn/types.h"

namespace hinn {

// Throws std::invalid_argument unless the structure, the scalars and every buffer an operation reads or
// writes are consistent (sizes against the structure, non-null where needed, nothing it does not take).
// The drivers trust what passed it: this is the one check between a raw pointer and an out-of-bounds
// access.
void validate(Op op, const NetDesc& nd, const Call& c);
// The elements (of the call's dtype) of the stages a rollout or step keeps for its backward (the buffer
// `kept`; 0 where the device offers none: CUDA recomputes them).
long kept_size(const NetDesc& nd, const Call& c);
// validate(), then the CPU or CUDA driver.
void run(Op op, const NetDesc& nd, const Call& c);

// A training epoch in the core (epoch.cpp). `data` is a WindowLoss or DerivativeLoss call over the whole
// data set (N samples, `scale` the loss scale of one sample: a minibatch of n takes scale / n, its mean);
// the epoch's minibatches are index[bounds[b] : bounds[b + 1]], each gathered, its loss and θ-gradient
// computed by run(), the gradient multiplied by `mask` (θ-long, or empty), and θ (data.theta) updated in
// place by the optimizer: plain gradient descent or Adam (the moments m and v updated in place, `count`
// its steps before this epoch), each as torch.optim computes it. batch_losses (float64, one per
// minibatch) receives each minibatch's summed loss. Returns the minibatches run: all of them, unless an
// implicit scheme's solve failed (data.status set; that minibatch made no update).
// Fitted window starts (SRNN; window loss only), where starts_p, starts_q are given (M·d each): every
// window starts from its rows of them instead of data.p, data.q, which they are compared with (the misfit
// scale / n · |p̂ − p|² + |q̂ − q|² joins the loss), and with `starts_step` they are updated too, by an
// optimizer of their own (starts_opt; Adam's moments starts_m*, starts_v*), every row at every step as
// torch.optim updates a tensor whose gradient is zero outside the minibatch.
enum Optimizer : int { kOptimGD = 0, kOptimAdam = 1 };
struct Optim {
  int kind = kOptimAdam;
  double lr = 0, weight_decay = 0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  long count = 0;  // steps before this epoch
};
struct EpochArgs {
  Buf index, bounds;  // int64
  Buf mask, m, v;     // θ's dtype
  Buf batch_losses;   // float64
  Optim opt;
  Buf starts_p, starts_q, starts_mp, starts_vp, starts_mq, starts_vq;  // θ's dtype
  Optim starts_opt;
  bool starts_step = false;
};
long train_epoch(Op op, const NetDesc& nd, const Call& data, const EpochArgs& e);

// The scheme table (hinn/schemes.h) as the Python layer sees it.
struct SchemeInfo {
  std::string name;
  std::vector<std::string> params;  // the SchemeArgs fields it reads
  int state_mult;                   // its state is state_mult·d wide
  bool solves;                      // it takes a status flag
};
std::vector<SchemeInfo> scheme_table();

// The CPU kernels, compiled per instruction set (each in its namespace, below); cpu_call runs the best
// one this processor supports (or the one named by set_cpu_isa / the HINN_CPU_ISA environment variable).
void cpu_call(Op op, const NetDesc& nd, const Call& c);
// "avx512" (x86-64-v4), "generic" (AVX2+FMA, x86-64-v3; the portable build elsewhere), "baseline"
// (any x86-64) or "scalar" (the CUDA thread's arithmetic, never chosen by default). init_cpu_isa (at
// import) reads HINN_CPU_ISA; it and set_cpu_isa throw std::invalid_argument for an unusable name.
void init_cpu_isa();
const char* cpu_isa();
std::vector<std::string> cpu_isas();
void set_cpu_isa(const char* name);
// The CPU samples per thread below which a call uses fewer threads (cpu.cpp).
constexpr long kMinSamplesPerThread = 256;

namespace generic {
void call(Op op, const NetDesc& nd, const Call& c);
}
namespace avx512 {
void call(Op op, const NetDesc& nd, const Call& c);
}
namespace baseline {
void call(Op op, const NetDesc& nd, const Call& c);
}
namespace scalar {  // one sample per value, runtime width: the arithmetic of a CUDA thread
void call(Op op, const NetDesc& nd, const Call& c);
}
#ifdef HINN_WITH_CUDA
namespace cuda {
void call(Op op, const NetDesc& nd, const Call& c);
// The device workspace (bytes) that call needs for these arguments on the current device.
size_t workspace_bytes(Op op, const NetDesc& nd, const Call& c);
}  // namespace cuda
#endif

}  // namespace hinn
