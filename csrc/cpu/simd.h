// The SIMD layer of the CPU kernels: x86 intrinsics, with each function compiled for the ISA
// its path needs (EMOKERNELS_TARGET), so one binary carries every path and picks one at run
// time. With EMOKERNELS_EMULATE_SIMD the same intrinsics are portable C++ (SIMDe): a test-only
// build in which a CPU without AVX-512 executes the AVX-512 paths.
#pragma once

#include <cstdint>
#include <cstring>

#include "../common/cpu_features.h"

#ifdef EMOKERNELS_EMULATE_SIMD
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>

#include "simd_emulation_extras.h"
#define EMOKERNELS_TARGET(features)
#else
#include <immintrin.h>
#define EMOKERNELS_TARGET(features) __attribute__((target(features)))
#endif

#define EMOKERNELS_ALWAYS_INLINE __attribute__((always_inline)) inline

// Tells the compiler a register changed (no instruction is emitted), so work that uses it
// cannot be hoisted above this point. The emulated build's vectors are structs in memory.
#ifdef EMOKERNELS_EMULATE_SIMD
#define EMOKERNELS_OPAQUE(v, reg) __asm__ volatile("" : "+m"(v))
#else
#define EMOKERNELS_OPAQUE(v, reg) __asm__ volatile("" : "+" reg(v))
#endif

// Each path's compile target, and beside it the same features as run-time bits: a path runs
// only where cpu_can_run(its features) holds.
#define EMOKERNELS_AVX512_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512vpopcntdq,bmi2"
#define EMOKERNELS_AVX512_FLOAT_TARGET "avx512f,avx512bw,avx512vl,avx512dq,bmi2"
#define EMOKERNELS_AVX512_BF16_TARGET "avx512f,avx512bw,avx512vl,avx512dq,avx512bf16"
#define EMOKERNELS_AVX512F_TARGET "avx512f"
#define EMOKERNELS_AVX2_TARGET "avx2,fma,popcnt"

namespace emokernels {

constexpr uint32_t kAvx512Features =
    kAvx512f | kAvx512bw | kAvx512vl | kAvx512dq | kAvx512Vpopcntdq | kBmi2;
constexpr uint32_t kAvx512FloatFeatures = kAvx512f | kAvx512bw | kAvx512vl | kAvx512dq | kBmi2;
constexpr uint32_t kAvx512Bf16Features =
    kAvx512f | kAvx512bw | kAvx512vl | kAvx512dq | kAvx512Bf16;
constexpr uint32_t kAvx512fFeatures = kAvx512f;
constexpr uint32_t kAvx2Features = kAvx2 | kFma | kPopcnt;

// The bits of a vector of 32 bf16 values as the operand type of vdpbf16ps.
EMOKERNELS_TARGET(EMOKERNELS_AVX512_BF16_TARGET) EMOKERNELS_ALWAYS_INLINE
__m512bh as_bf16x32(__m512i v) {
  __m512bh out;
  std::memcpy(&out, &v, sizeof(out));
  return out;
}

}  // namespace emokernels
