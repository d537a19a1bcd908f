#include "cpu_features.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>

namespace emokernels {

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = [] {
    CpuFeatures f;
#if defined(EMOKERNELS_EMULATE_SIMD)
    // Every intrinsic is portable C++ here: every path runs on any CPU.
    f = {true, true, true, true, true, true, true, true, true, true};
#elif defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.popcnt = __builtin_cpu_supports("popcnt");
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.bmi2 = __builtin_cpu_supports("bmi2");
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512dq = __builtin_cpu_supports("avx512dq");
    f.avx512vpopcntdq = __builtin_cpu_supports("avx512vpopcntdq");
    f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
    return f;
  }();
  return features;
}

static bool supports(CpuIsa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case CpuIsa::Avx512:
      return f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx512vpopcntdq && f.bmi2;
    case CpuIsa::Avx2:
      return f.avx2 && f.fma && f.popcnt;
    case CpuIsa::Portable:
      return true;
  }
  return false;
}

CpuIsa best_cpu_isa() {
  static const CpuIsa best = [] {
    for (CpuIsa isa : {CpuIsa::Avx512, CpuIsa::Avx2}) {
      if (supports(isa)) return isa;
    }
    return CpuIsa::Portable;
  }();
  return best;
}

CpuIsa active_cpu_isa() {
  const char* forced = std::getenv("EMOKERNELS_CPU_ISA");
  if (forced == nullptr || forced[0] == '\0' || std::strcmp(forced, "auto") == 0) {
    return best_cpu_isa();
  }
  for (CpuIsa isa : {CpuIsa::Avx512, CpuIsa::Avx2, CpuIsa::Portable}) {
    if (std::strcmp(forced, cpu_isa_name(isa)) == 0) {
      TORCH_CHECK(supports(isa), "EMOKERNELS_CPU_ISA=", forced,
                  " asks for a path this CPU does not support (best here: ",
                  cpu_isa_name(best_cpu_isa()), ")");
      return isa;
    }
  }
  TORCH_CHECK(false, "EMOKERNELS_CPU_ISA=", forced,
              " is not one of: auto, avx512, avx2, portable");
}

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512:
      return "avx512";
    case CpuIsa::Avx2:
      return "avx2";
    case CpuIsa::Portable:
      return "portable";
  }
  return "unknown";
}

std::string cpu_feature_string() {
  const CpuFeatures& f = cpu_features();
  std::string out;
  auto add = [&out](bool present, const char* name) {
    if (!present) return;
    if (!out.empty()) out += ",";
    out += name;
  };
  add(f.popcnt, "popcnt");
  add(f.avx2, "avx2");
  add(f.fma, "fma");
  add(f.bmi2, "bmi2");
  add(f.avx512f, "avx512f");
  add(f.avx512bw, "avx512bw");
  add(f.avx512vl, "avx512vl");
  add(f.avx512dq, "avx512dq");
  add(f.avx512vpopcntdq, "avx512vpopcntdq");
  add(f.avx512bf16, "avx512bf16");
  return out;
}

std::string cpu_kernel_path(const std::string& op, const std::string& dtype) {
  const CpuIsa isa = active_cpu_isa();
  if (op == "bwn_gemm" && dtype == "bfloat16") {
    if (isa == CpuIsa::Avx512 && cpu_features().avx512bf16) return "avx512-bf16";
    return "portable";
  }
  if (op == "pack_bits" && dtype != "float32") return "portable";
  if (op == "xnor_gemm" && isa == CpuIsa::Avx512) return "avx512-vpopcntdq";
  return cpu_isa_name(isa);
}

}  // namespace emokernels
