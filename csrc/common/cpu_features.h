// Run-time CPU feature detection, and the ISA level the CPU kernels may use.
#pragma once

#include <cstdint>
#include <string>

namespace emokernels {

// One bit per ISA feature a CPU kernel path may be compiled for.
enum CpuFeature : uint32_t {
  kPopcnt = 1u << 0,
  kAvx2 = 1u << 1,
  kFma = 1u << 2,
  kBmi2 = 1u << 3,
  kAvx512f = 1u << 4,
  kAvx512bw = 1u << 5,
  kAvx512vl = 1u << 6,
  kAvx512dq = 1u << 7,
  kAvx512Vpopcntdq = 1u << 8,
  kAvx512Bf16 = 1u << 9,
};

// The features this CPU has (all of them in the test-only emulated build).
uint32_t detected_cpu_features();

// ISA levels: EMOKERNELS_CPU_ISA=portable | avx2 | avx512 caps the features the kernels use
// (avx2: none of AVX-512; portable: no SIMD). Each op then takes the best path it has whose
// features are all usable, so a CPU with AVX-512F but no VPOPCNTDQ still packs bits with
// AVX-512 while its popcount GEMM runs the AVX2 path.
enum class CpuIsa { Portable = 0, Avx2 = 1, Avx512 = 2 };

// The best level this CPU reaches (AVX-512F for avx512; AVX2, FMA and POPCNT for avx2).
CpuIsa best_cpu_isa();

// The level in force: the best one, or the one EMOKERNELS_CPU_ISA names (an error if this CPU
// lacks it). Read on every call, so tests can cover each level in one process.
CpuIsa active_cpu_isa();

const char* cpu_isa_name(CpuIsa isa);

// The features the kernels may use now: the detected ones within the active level.
uint32_t usable_cpu_features();

inline bool cpu_can_run(uint32_t required) {
  return (usable_cpu_features() & required) == required;
}

// Comma-separated names of the detected features.
std::string cpu_feature_string();

}  // namespace emokernels
