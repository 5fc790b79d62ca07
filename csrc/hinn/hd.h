// Function attributes shared by the CPU and CUDA builds of the per-sample math, and the namespace each
// build compiles it in.
#pragma once

#if defined(__CUDACC__)
#define HINN_HD __host__ __device__ __forceinline__
#define HINN_HDI __host__ __device__ inline
#define HINN_PASS __host__ __device__ __noinline__
#else
#define HINN_HD inline __attribute__((always_inline))
#define HINN_HDI inline
#define HINN_PASS inline
#endif
// HINN_HD: small helpers, always inlined. HINN_HDI: a scheme's sub-step, inlined where the compiler finds
// it pays; forcing them into every call site multiplied the code (and the build time) by the number of
// call sites without making the kernels faster (benchmarks/RESULTS.md). HINN_PASS: a whole network pass,
// a gradient evaluation or vjp at a stage, a scheme's forward and backward, a Newton solve; on CUDA one
// out-of-line copy per instantiation, shared by every kernel and call site (nvcc inlines device functions
// whatever the hint: inlined, each kernel held a copy per call site and ptxas spent most of the build
// allocating their registers). On the CPU it is plain inline.

// The per-sample math (lanes.h ... ops.h) is compiled once per instruction set, each copy in its own
// namespace hinn::HINN_ISA (CMakeLists.txt sets it: avx512, generic, baseline, scalar; cuda for nvcc), so
// that the linker never merges an AVX-512 copy of an inline function into another build. The types that
// cross between builds (types.h) live in hinn itself and hold no code beyond always-inlined accessors.
#ifndef HINN_ISA
#if defined(__CUDACC__)
#define HINN_ISA cuda
#else
#define HINN_ISA host
#endif
#endif
