// Run-time CPU feature detection and the choice of SIMD path for the CPU kernels.
#pragma once

#include <string>

namespace emokernels {

enum class CpuIsa { Portable = 0, Avx2 = 1, Avx512 = 2 };

struct CpuFeatures {
  bool popcnt = false;
  bool avx2 = false;
  bool fma = false;
  bool bmi2 = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512dq = false;
  bool avx512vpopcntdq = false;
  bool avx512bf16 = false;
};

const CpuFeatures& cpu_features();

// Best path this CPU supports.
CpuIsa best_cpu_isa();

// Path the kernels use now: the best one, or the one named by EMOKERNELS_CPU_ISA
// (portable | avx2 | avx512). Read on every call so tests can cover each path in one process.
CpuIsa active_cpu_isa();

const char* cpu_isa_name(CpuIsa isa);

// Comma-separated list of the detected features that the kernels use.
std::string cpu_feature_string();

// Kernel path an op runs on for a dtype ("float32", "bfloat16", ...) given the active ISA.
std::string cpu_kernel_path(const std::string& op, const std::string& dtype);

}  // namespace emokernels
