// The few intrinsics the kernels use that SIMDe 0.8 does not provide, in portable C++ with
// the documented semantics (test-only: included by simd.h under EMOKERNELS_EMULATE_SIMD).
#pragma once

#include <cstdint>
#include <cstring>

namespace emokernels::emulated {

inline simde__mmask16 cvtu32_mask16(uint32_t v) { return static_cast<simde__mmask16>(v); }

inline int popcnt_u32(uint32_t v) { return __builtin_popcount(v); }

// Masked loads read only the selected lanes (the others may be past the end of memory).
template <typename Vec, int Lanes, typename Mask>
inline Vec maskz_load32(Mask k, const void* p) {
  int32_t lanes[Lanes] = {};
  for (int i = 0; i < Lanes; ++i) {
    if ((k >> i) & 1) std::memcpy(&lanes[i], static_cast<const char*>(p) + 4 * i, 4);
  }
  Vec out;
  std::memcpy(&out, lanes, sizeof(out));
  return out;
}

template <int Lanes, typename Mask, typename Vec>
inline void mask_store32(void* p, Mask k, Vec v) {
  int32_t lanes[Lanes];
  std::memcpy(lanes, &v, sizeof(lanes));
  for (int i = 0; i < Lanes; ++i) {
    if ((k >> i) & 1) std::memcpy(static_cast<char*>(p) + 4 * i, &lanes[i], 4);
  }
}

// In the order GCC's _mm512_reduce_add_ps adds: halves, then quarters, then pairs.
inline float reduce_add_ps(simde__m512 v) {
  float a[16], h[8], q[4];
  std::memcpy(a, &v, sizeof(a));
  for (int i = 0; i < 8; ++i) h[i] = a[8 + i] + a[i];
  for (int i = 0; i < 4; ++i) q[i] = h[4 + i] + h[i];
  return (q[0] + q[2]) + (q[1] + q[3]);
}

}  // namespace emokernels::emulated

#define _cvtu32_mask16(v) emokernels::emulated::cvtu32_mask16(v)
#define _mm_popcnt_u32(v) emokernels::emulated::popcnt_u32(v)
#define _mm512_maskz_loadu_epi32(k, p) \
  emokernels::emulated::maskz_load32<simde__m512i, 16>((k), (p))
#define _mm256_maskz_loadu_epi32(k, p) \
  emokernels::emulated::maskz_load32<simde__m256i, 8>((k), (p))
#define _mm256_mask_storeu_epi32(p, k, v) emokernels::emulated::mask_store32<8>((p), (k), (v))
#define _mm256_mask_storeu_ps(p, k, v) emokernels::emulated::mask_store32<8>((p), (k), (v))
#define _mm512_mask_cmp_ps_mask(k, a, b, imm) \
  static_cast<simde__mmask16>((k) & simde_mm512_cmp_ps_mask((a), (b), (imm)))
#define _mm512_reduce_add_ps(v) emokernels::emulated::reduce_add_ps(v)
