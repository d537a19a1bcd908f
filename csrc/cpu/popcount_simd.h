// Shared SIMD pieces of the popcount kernels (xnor_gemm).
#pragma once

#include "simd.h"

#include <cstdint>


namespace emokernels {

// Sums each of 8 vectors of 8 int64 lanes; lane i of the result is the total of v[i].
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET)
inline __m512i reduce8_epi64(const __m512i* v) {
  __m512i t[4];
  for (int p = 0; p < 4; ++p) {
    t[p] = _mm512_add_epi64(_mm512_unpacklo_epi64(v[2 * p], v[2 * p + 1]),
                            _mm512_unpackhi_epi64(v[2 * p], v[2 * p + 1]));
  }
  __m512i u[2];
  for (int p = 0; p < 2; ++p) {
    u[p] = _mm512_add_epi64(_mm512_shuffle_i64x2(t[2 * p], t[2 * p + 1], 0x88),
                            _mm512_shuffle_i64x2(t[2 * p], t[2 * p + 1], 0xDD));
  }
  return _mm512_add_epi64(_mm512_shuffle_i64x2(u[0], u[1], 0x88),
                          _mm512_shuffle_i64x2(u[0], u[1], 0xDD));
}

// Inline assembly: clears ymm register I.
#define EMOKERNELS_ASM_ZERO_YMM(I) "vpxor %%ymm" #I ", %%ymm" #I ", %%ymm" #I "\n\t"

// The popcount of each 4-bit value, twice: the table of a vpshufb lookup in each 128-bit lane.
alignas(32) inline constexpr uint8_t kNibbleCounts[32] = {0, 1, 1, 2, 1, 2, 2, 3, 1, 2, 2,
                                                          3, 2, 3, 3, 4, 0, 1, 1, 2, 1, 2,
                                                          2, 3, 1, 2, 2, 3, 2, 3, 3, 4};

// Per-byte popcount of a 256-bit vector split into its nibbles (lo: the low nibble of each
// byte, hi: the high one, each 0..15) by table lookup (AVX2 has no vpopcnt): each byte of the
// result is 0..8, so 31 of them can be summed bytewise before any byte overflows.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
__m256i popcount_nibbles_avx2(__m256i lo, __m256i hi) {
  const __m256i lut = _mm256_load_si256(reinterpret_cast<const __m256i*>(kNibbleCounts));
  return _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo), _mm256_shuffle_epi8(lut, hi));
}

// Per-byte popcount of a 256-bit vector (popcount_nibbles_avx2 after the split).
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
__m256i popcount_bytes_avx2(__m256i v) {
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  return popcount_nibbles_avx2(_mm256_and_si256(v, nibble),
                               _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble));
}

constexpr int kMaxByteSums = 31;  // of popcount_bytes_avx2 results: 31 * 8 <= 255

// The 4 int64 lane sums of 32 byte counts.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
__m256i sum_bytes_avx2(__m256i bytes) { return _mm256_sad_epu8(bytes, _mm256_setzero_si256()); }

// [sum of a's 4 lanes, of b's, of c's, of d's]: four horizontal sums in 6 vector ops.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
__m256i reduce4_epi64_avx2(__m256i a, __m256i b, __m256i c, __m256i d) {
  // [a0+a1, b0+b1, a2+a3, b2+b3] and [c0+c1, d0+d1, c2+c3, d2+d3]
  const __m256i ab = _mm256_add_epi64(_mm256_unpacklo_epi64(a, b), _mm256_unpackhi_epi64(a, b));
  const __m256i cd = _mm256_add_epi64(_mm256_unpacklo_epi64(c, d), _mm256_unpackhi_epi64(c, d));
  return _mm256_add_epi64(_mm256_permute2x128_si256(ab, cd, 0x20),
                          _mm256_permute2x128_si256(ab, cd, 0x31));
}

}  // namespace emokernels
