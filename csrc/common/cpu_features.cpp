#include "cpu_features.h"

#include <c10/util/Exception.h>

#include <cstdlib>
#include <cstring>
#include <utility>

namespace emokernels {

namespace {

constexpr std::pair<CpuFeature, const char*> kNames[] = {
    {kPopcnt, "popcnt"},       {kAvx2, "avx2"},           {kFma, "fma"},
    {kBmi2, "bmi2"},           {kAvx512f, "avx512f"},     {kAvx512bw, "avx512bw"},
    {kAvx512vl, "avx512vl"},   {kAvx512dq, "avx512dq"},   {kAvx512Vpopcntdq, "avx512vpopcntdq"},
    {kAvx512Bf16, "avx512bf16"},
};

constexpr uint32_t kAvx2Level = kPopcnt | kAvx2 | kFma | kBmi2;
constexpr uint32_t kAllFeatures = (kAvx512Bf16 << 1) - 1;

// What each level needs of the CPU, and what it lets the kernels use.
uint32_t level_needs(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512:
      return kAvx512f;
    case CpuIsa::Avx2:
      return kAvx2 | kFma | kPopcnt;
    case CpuIsa::Portable:
      return 0;
  }
  return 0;
}

uint32_t level_allows(CpuIsa isa) {
  return isa == CpuIsa::Avx512 ? kAllFeatures : isa == CpuIsa::Avx2 ? kAvx2Level : 0;
}

bool supports(CpuIsa isa) {
  return (detected_cpu_features() & level_needs(isa)) == level_needs(isa);
}

}  // namespace

uint32_t detected_cpu_features() {
#if defined(EMOKERNELS_EMULATE_SIMD)
  // Every intrinsic is portable C++ here, so any CPU can be played: all features, or those
  // EMOKERNELS_EMULATED_FEATURES lists (comma-separated names), read on every call.
  const char* listed = std::getenv("EMOKERNELS_EMULATED_FEATURES");
  if (listed == nullptr) return kAllFeatures;
  uint32_t f = 0;
  for (const char* item = listed; *item != '\0';) {
    const size_t len = std::strcspn(item, ",");
    for (const auto& [feature, name] : kNames) {
      if (std::strlen(name) == len && std::strncmp(item, name, len) == 0) f |= feature;
    }
    item += len + (item[len] == ',');
  }
  return f;
#else
  static const uint32_t features = [] {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    uint32_t f = 0;
    f |= __builtin_cpu_supports("popcnt") ? kPopcnt : 0;
    f |= __builtin_cpu_supports("avx2") ? kAvx2 : 0;
    f |= __builtin_cpu_supports("fma") ? kFma : 0;
    f |= __builtin_cpu_supports("bmi2") ? kBmi2 : 0;
    f |= __builtin_cpu_supports("avx512f") ? kAvx512f : 0;
    f |= __builtin_cpu_supports("avx512bw") ? kAvx512bw : 0;
    f |= __builtin_cpu_supports("avx512vl") ? kAvx512vl : 0;
    f |= __builtin_cpu_supports("avx512dq") ? kAvx512dq : 0;
    f |= __builtin_cpu_supports("avx512vpopcntdq") ? kAvx512Vpopcntdq : 0;
    f |= __builtin_cpu_supports("avx512bf16") ? kAvx512Bf16 : 0;
    return f;
#else
    return 0u;
#endif
  }();
  return features;
#endif
}

CpuIsa best_cpu_isa() {
  for (CpuIsa isa : {CpuIsa::Avx512, CpuIsa::Avx2}) {
    if (supports(isa)) return isa;
  }
  return CpuIsa::Portable;
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

uint32_t usable_cpu_features() {
  return detected_cpu_features() & level_allows(active_cpu_isa());
}

std::string cpu_feature_string() {
  std::string out;
  for (const auto& [feature, name] : kNames) {
    if (!(detected_cpu_features() & feature)) continue;
    if (!out.empty()) out += ",";
    out += name;
  }
  return out;
}

}  // namespace emokernels
