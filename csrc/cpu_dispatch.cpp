// Run-time choice between the CPU kernel builds (see cpu.h).
#include <cstdlib>
#include <cstring>
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

bool initial_choice() {
  const char* env = std::getenv("HINN_CPU_ISA");
  if (env && *env) {
    if (!std::strcmp(env, "generic")) return false;
    if (!std::strcmp(env, "avx512")) return avx512_usable();
  }
  return avx512_usable();
}

bool use_avx512 = initial_choice();

}  // namespace

const char* cpu_isa() { return use_avx512 ? "avx512" : "generic"; }

void set_cpu_isa(const char* name) {
  const std::string n(name);
  if (n == "generic") {
    use_avx512 = false;
  } else if (n == "avx512") {
    if (!avx512_usable()) throw std::invalid_argument("this processor or build has no AVX-512 kernels");
    use_avx512 = true;
  } else {
    throw std::invalid_argument("unknown CPU instruction set '" + n + "'; valid: generic, avx512");
  }
}

void cpu_call(Op op, const NetDesc& nd, const CallArgs& a) {
#ifdef HINN_HAVE_AVX512_KERNELS
  if (use_avx512) return hinn_cpu_call_avx512(static_cast<int>(op), &nd, &a);
#endif
  hinn_cpu_call_generic(static_cast<int>(op), &nd, &a);
}

}  // namespace hinn
