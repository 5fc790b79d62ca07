// Run-time choice between the CPU kernel builds (see cpu.h).
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "cpu.h"

namespace hinn {
namespace {

bool avx512_usable() {
#if defined(HINN_HAVE_AVX512_KERNELS) && (defined(__x86_64__) || defined(_M_X64))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

enum Isa { kGeneric, kAvx512, kScalar };

Isa parse(const std::string& n) {
  if (n == "generic") return kGeneric;
  if (n == "scalar") return kScalar;
  if (n == "avx512") {
    if (!avx512_usable()) throw std::invalid_argument("this processor or build has no AVX-512 kernels");
    return kAvx512;
  }
  throw std::invalid_argument("unknown CPU instruction set '" + n + "'; valid: generic, avx512, scalar");
}

Isa initial_choice() {
  const char* env = std::getenv("HINN_CPU_ISA");
  if (env && *env) return parse(env);  // a bad value fails the module's import with this message
  return avx512_usable() ? kAvx512 : kGeneric;
}

Isa current = initial_choice();

}  // namespace

const char* cpu_isa() { return current == kAvx512 ? "avx512" : current == kScalar ? "scalar" : "generic"; }

void set_cpu_isa(const char* name) { current = parse(name); }

void cpu_call(Op op, const NetDesc& nd, const CallArgs& a) {
  switch (current) {
#ifdef HINN_HAVE_AVX512_KERNELS
    case kAvx512: return hinn_cpu_call_avx512(static_cast<int>(op), &nd, &a);
#endif
    case kScalar: return hinn_cpu_call_scalar(static_cast<int>(op), &nd, &a);
    default: return hinn_cpu_call_generic(static_cast<int>(op), &nd, &a);
  }
}

}  // namespace hinn
