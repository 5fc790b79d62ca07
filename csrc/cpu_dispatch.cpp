// Run-time choice between the CPU kernel builds (see core.h). The choice is made once at import
// (init_cpu_isa, from HINN_CPU_ISA or the processor) and may be changed with set_cpu_isa; it is an
// atomic, so a call running without the GIL never reads it torn.
#include <atomic>
#include <cstdlib>
#include <stdexcept>
#include <string>

#include "core.h"

namespace hinn {
namespace {

enum Isa : int { kBaseline, kGeneric, kAvx512, kScalar };

bool x86_has(const char* what) {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  const std::string w(what);
  if (w == "avx2") return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (w == "avx512")
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
#endif
  (void)what;
  return false;
}

// Which builds exist in this module and run on this processor.
bool usable(Isa isa) {
#if defined(HINN_HAVE_X86_BUILDS)
  switch (isa) {
    case kBaseline: return true;
    case kGeneric:
    case kScalar: return x86_has("avx2");  // compiled for x86-64-v3
    case kAvx512: return x86_has("avx512");
  }
  return false;
#else
  return isa == kGeneric || isa == kScalar;  // one portable build of each
#endif
}

const char* name_of(Isa isa) {
  switch (isa) {
    case kBaseline: return "baseline";
    case kGeneric: return "generic";
    case kAvx512: return "avx512";
    case kScalar: return "scalar";
  }
  return "?";
}

Isa parse(const std::string& n) {
  for (Isa isa : {kBaseline, kGeneric, kAvx512, kScalar}) {
    if (n != name_of(isa)) continue;
    if (!usable(isa))
      throw std::invalid_argument("the '" + n + "' CPU kernels cannot run on this processor or are not in this build");
    return isa;
  }
  throw std::invalid_argument("unknown CPU instruction set '" + n + "'; valid: baseline, generic, avx512, scalar");
}

Isa best() {
  if (usable(kAvx512)) return kAvx512;
  if (usable(kGeneric)) return kGeneric;
  return kBaseline;
}

std::atomic<int> current{-1};  // -1: not chosen yet (init_cpu_isa runs at import)

Isa now() {
  int c = current.load(std::memory_order_relaxed);
  if (c < 0) {
    c = best();
    current.store(c, std::memory_order_relaxed);
  }
  return static_cast<Isa>(c);
}

}  // namespace

void init_cpu_isa() {
  const char* env = std::getenv("HINN_CPU_ISA");
  Isa isa = best();
  if (env && *env) {
    try {
      isa = parse(env);
    } catch (const std::invalid_argument& e) {
      throw std::invalid_argument(std::string("HINN_CPU_ISA: ") + e.what());
    }
  }
  current.store(isa);
}

const char* cpu_isa() { return name_of(now()); }

std::vector<std::string> cpu_isas() {
  std::vector<std::string> out;
  for (Isa isa : {kBaseline, kGeneric, kAvx512, kScalar})
    if (usable(isa)) out.push_back(name_of(isa));
  return out;
}

void set_cpu_isa(const char* name) { current.store(parse(name)); }

void cpu_call(Op op, const NetDesc& nd, const Call& c) {
  switch (now()) {
#if defined(HINN_HAVE_X86_BUILDS)
    case kAvx512: return avx512::call(op, nd, c);
    case kBaseline: return baseline::call(op, nd, c);
#endif
    case kScalar: return scalar::call(op, nd, c);
    default: return generic::call(op, nd, c);
  }
}

}  // namespace hinn
