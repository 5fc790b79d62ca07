// The schemes the core runs: one table line each (its code is its place in the table, its name the one
// the Python layer registers the matching class under: src/hinn/scheme.py).
//
// A scheme is a struct (schemes/*.h) with
//   kStages, kForwardStages   the network passes (Stages) its forward<true> keeps for backward, and the
//                             ones its forward<false> needs (explicit schemes reuse one)
//   kStateMult                its state's width in units of d (Tao's copies: 2)
//   kSolves                   whether it solves an equation (the call then takes a status flag)
//   Params                    its own parameters, built from the call's SchemeArgs; Params::kNames lists
//                             the fields it reads (the Python layer passes them by these names),
//                             Params::check says what is wrong with them (validate.cpp), or returns null
//   scratch(d)                lane values of its own scratch, which it lays out itself
//   forward<Keep, Out>(st, prm, sc, t, h, p, q)   one step in place; Keep: every gradient evaluation
//                             keeps its full pass in the stage its backward reads; without Out (a reverse
//                             sweep recomputing the stages) the output may be left unformed, and an
//                             explicit scheme's last evaluation keeps its pass without the gradient sweep
//   backward(st, prm, sc, h, p̄, q̄, acc)      right after a forward<true> of the same step: the output's
//                             cotangents in, the input's out, θ's to acc
// A backward with no kept stages (the drivers' reverse sweeps) runs the scheme's own forward<true> on a
// copy of the step's input first (ops.h): no scheme derives its stage points twice.
#pragma once
#include "schemes/explicit.h"
#include "schemes/gauss4.h"
#include "schemes/implicit.h"
#include "schemes/tao.h"

#define HINN_SCHEMES(X)                    \
  X(Euler, "euler")                        \
  X(SymplecticEuler, "symplectic_euler")   \
  X(Leapfrog, "leapfrog")                  \
  X(RK4, "rk4")                            \
  X(Tao<1>, "tao")                         \
  X(Tao<3>, "tao4")                        \
  X(ImplicitMidpoint, "implicit_midpoint") \
  X(ImplicitLeapfrog, "implicit_leapfrog") \
  X(Gauss4, "gauss4")

namespace hinn::HINN_ISA {

constexpr const char* kSchemeNames[] = {
#define HINN_SCHEME_NAME(Sc, name) name,
    HINN_SCHEMES(HINN_SCHEME_NAME)
#undef HINN_SCHEME_NAME
};
constexpr int kNumSchemes = sizeof(kSchemeNames) / sizeof(kSchemeNames[0]);

// f(Sc{}) for the scheme of this code (the one runtime switch; codes are checked before, by validate).
template <class F>
HINN_HD auto visit_scheme(int code, F&& f) -> decltype(f(Euler{})) {
  int i = 0;
#define HINN_SCHEME_CASE(Sc, name) \
  if (code == i++) return f(Sc{});
  HINN_SCHEMES(HINN_SCHEME_CASE)
#undef HINN_SCHEME_CASE
  return f(Euler{});
}

// What the drivers size and check by, per code (host code reads these; no visit needed).
struct SchemeShape {
  int state_mult, stages, forward_stages;
  bool solves;
  long (*scratch)(int d);
};
constexpr SchemeShape kSchemeShapes[] = {
#define HINN_SCHEME_SHAPE(Sc, name) {Sc::kStateMult, Sc::kStages, Sc::kForwardStages, Sc::kSolves, &Sc::scratch},
    HINN_SCHEMES(HINN_SCHEME_SHAPE)
#undef HINN_SCHEME_SHAPE
};

// Width of the state a scheme carries from step to step.
inline int state_dim(int code, int d) { return kSchemeShapes[code].state_mult * d; }
inline bool scheme_solves(int code) { return kSchemeShapes[code].solves; }

}  // namespace hinn::HINN_ISA
