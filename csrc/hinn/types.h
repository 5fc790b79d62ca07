// The types that cross from the bindings to the kernels: the network's structure, the operations, and
// one call's arguments, every buffer and scalar by name. Shared by every build (hd.h), torch-free.
#pragma once
#include <cstdint>

#include "hd.h"

namespace hinn {

enum DType : int { kFloat32 = 0, kFloat64 = 1 };

enum Activation : int { kTanh = 0, kSoftplus = 1, kNumActivations };
// The names the Python layer knows the activations by.
constexpr const char* kActivationNames[kNumActivations] = {"tanh", "softplus"};

struct NetDesc {
  int d = 1;        // phase-space half dimension: p, q in R^d
  int time = 1;     // 1: input is [t, p, q]; 0: input is [p, q]
  int width = 3;    // w
  int depth = 20;   // L (residual layers)
  int act = kTanh;  // Activation
  double hr = 1.0;  // residual step h_r

  HINN_HD int n_in() const { return 2 * d + time; }
  HINN_HD long off_layer(int l) const {  // offset of K_l (l = 1..L); K_0 is at 0
    return (long)n_in() * width + width + (long)(l - 1) * (width * width + width);
  }
  HINN_HD long off_out() const { return off_layer(depth + 1); }
  HINN_HD long n_params() const { return off_out() + width + 1; }
};

// The operations, declared once: the enum, the names Python calls them by (hinn._core.OPS), and through
// them the validation (validate.cpp), the drivers (ops.h) and the CUDA launch.
//   hamiltonian       (t, p, q) -> H
//   grad              (t, p, q) -> H, dH_dp, dH_dq
//   grad_backward     + cotangents H_bar, dH_dp_bar, dH_dq_bar -> t_bar, p_bar, q_bar, theta_bar
//   rollout           (t, p, q), steps -> P, Q: the final state (N, ds), or with `trajectory` the states
//                     (steps+1, N, ds), in the scheme's state (ds = its state width; Tao's copies follow
//                     the observed d columns)
//                     (kept, optional, CPU: the steps' stages for rollout_backward, ops.h: kept_size)
//   rollout_backward  P, Q: what the forward saw (the trajectory, or the single step's input (N, d));
//                     P_bar, Q_bar: cotangents of its outputs -> p_bar, q_bar (N, d), theta_bar
//                     (kept: the forward's, whose stages it then reads instead of recomputing them)
//   window_loss       windows from (t, p, q), targets target_p, target_q (steps, N, d), scale -> losses
//                     (N: scale·Σ_k |error|² each), p_bar, q_bar, theta_bar of their sum
//   window_error      window_loss's losses alone: no backward (evaluating a model on held-out windows)
//   derivative_loss   (t, p, q), targets target_p, target_q (N, d) of ∂H/∂p, ∂H/∂q, scale -> losses
//                     (N: scale·|∇H − target|² each), theta_bar of their sum (the HNN objective)
#define HINN_OPS(X)                           \
  X(Hamiltonian, "hamiltonian")               \
  X(Grad, "grad")                             \
  X(GradBackward, "grad_backward")            \
  X(Rollout, "rollout")                       \
  X(RolloutBackward, "rollout_backward")      \
  X(WindowLoss, "loss_grad")                  \
  X(WindowError, "window_error")              \
  X(DerivativeLoss, "derivative_loss")

enum class Op : int {
#define HINN_OP_ENUM(id, name) id,
  HINN_OPS(HINN_OP_ENUM)
#undef HINN_OP_ENUM
};
constexpr const char* kOpNames[] = {
#define HINN_OP_NAME(id, name) name,
    HINN_OPS(HINN_OP_NAME)
#undef HINN_OP_NAME
};
constexpr int kNumOps = sizeof(kOpNames) / sizeof(kOpNames[0]);

HINN_HD bool is_backward(Op op) {
  return op == Op::GradBackward || op == Op::RolloutBackward || op == Op::WindowLoss || op == Op::DerivativeLoss;
}
HINN_HD bool steps_in_time(Op op) {
  return op == Op::Rollout || op == Op::RolloutBackward || op == Op::WindowLoss || op == Op::WindowError;
}

// A contiguous buffer owned by Python: its address and its element count (bytes for `work`).
struct Buf {
  std::uintptr_t ptr = 0;
  long n = 0;
  template <class T>
  HINN_HD T* as() const {
    return reinterpret_cast<T*>(ptr);
  }
};

// Every buffer an operation may take (HINN_OPS says which ones each uses; validate.cpp requires exactly
// those, sized, and no other).
#define HINN_BUFFERS(X)                                                                              \
  X(theta) X(t) X(p) X(q) X(H) X(dH_dp) X(dH_dq) X(H_bar) X(dH_dp_bar) X(dH_dq_bar) X(t_bar) X(p_bar) \
      X(q_bar) X(theta_bar) X(P) X(Q) X(P_bar) X(Q_bar) X(target_p) X(target_q) X(losses) X(status) X(work) X(kept)

// An implicit scheme's default solver tolerance, per precision (src/hinn/implicit.py reads these).
constexpr double kDefaultTolFloat32 = 1e-5, kDefaultTolFloat64 = 1e-13;

// A scheme's parameters, by name; each scheme reads its own (schemes.h).
struct SchemeArgs {
  double omega = 0;  // Tao's coupling
  double tol = 0;    // an implicit scheme's tolerance (0: the default of the precision) ...
  long max_iter = 0;  // ... and its Newton iteration cap
};

struct Call {
#define HINN_BUFFER_FIELD(name) Buf name;
  HINN_BUFFERS(HINN_BUFFER_FIELD)
#undef HINN_BUFFER_FIELD
  int dtype = kFloat32;
  int nthreads = 1;        // CPU threads
  long N = 0;              // samples
  int scheme = 0;          // rollout, rollout_backward, window_loss: the scheme's code (schemes.h)
  SchemeArgs args;
  double h = 0;            // time step
  long steps = 1;
  bool trajectory = false;  // rollout(_backward): every state, not only the last
  double scale = 1;         // window_loss, derivative_loss: the loss is scale times the summed squared error
  bool cuda = false;
  std::uintptr_t stream = 0;  // CUDA stream (cudaStream_t), 0 = default
};

}  // namespace hinn
