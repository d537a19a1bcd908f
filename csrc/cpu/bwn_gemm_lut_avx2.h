// Binary-weight GEMM by table lookup on AVX2 (float32, 8 or more rows of x): the AVX-512
// kernel's scheme (bwn_gemm_lut.h) with 8 rows a table, one ymm lane per row. One vector add
// per 4 k covers 32 multiply-free MACs, against 8 per FMA of a float GEMM; on a core with two
// vector adders and two FMA pipes that is up to 4x the float multiply-add rate.
#pragma once

#include <cstdint>

#include "simd.h"

namespace emokernels {
namespace lut_avx2 {

constexpr int kRows = 8;           // rows of x per table (ymm lanes)
constexpr int kBlockK = 128;       // k per table block
constexpr int kGroups = kBlockK / 4;
constexpr int kCols = 8;           // weight rows interleaved to hide the add latency

// 8 x 8 float transpose: out[c] lane r = in[r] lane c.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void transpose8(__m256* r) {
  __m256 a[8], b[8];
  for (int i = 0; i < 4; ++i) {
    a[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    const __m256d lo0 = _mm256_castps_pd(a[4 * i]), lo1 = _mm256_castps_pd(a[4 * i + 2]);
    const __m256d hi0 = _mm256_castps_pd(a[4 * i + 1]), hi1 = _mm256_castps_pd(a[4 * i + 3]);
    b[4 * i + 0] = _mm256_castpd_ps(_mm256_unpacklo_pd(lo0, lo1));
    b[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(lo0, lo1));
    b[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(hi0, hi1));
    b[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(hi0, hi1));
  }
  // b[4i + c], 128-bit half H: column 4H + c of rows 4i..4i+3.
  for (int c = 0; c < 4; ++c) {
    r[c] = _mm256_permute2f128_ps(b[c], b[4 + c], 0x20);
    r[4 + c] = _mm256_permute2f128_ps(b[c], b[4 + c], 0x31);
  }
}

// xt[8k .. 8k+7] = the rows' x[:, k] (rows past `rows`, and k past `k`, are 0); returns each
// row's sum over k, and its sum of |x| in *abs_total. Row i's chunk c (k = 16c .. 16c + 15)
// starts at rows[i] + chunk_offsets[c], or rows[i] + 16c when chunk_offsets is null. Buffers
// are float arrays aligned to 32 bytes.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline __m256 transpose_rows(const float* const* rows, int nrows, const int64_t* chunk_offsets,
                             int64_t k, int64_t k_pad, float* xt, __m256* abs_total) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  __m256 total = _mm256_setzero_ps(), abs_sum = _mm256_setzero_ps();
  for (int64_t k0 = 0; k0 < k_pad; k0 += 8) {
    const int64_t left = k - k0;
    const __m256i load = _mm256_cmpgt_epi32(
        _mm256_set1_epi32(static_cast<int>(left < 8 ? (left < 0 ? 0 : left) : 8)), lane);
    const int64_t offset =
        chunk_offsets && left > 0 ? chunk_offsets[k0 / 16] + k0 % 16 : k0;
    __m256 r[8];
    for (int i = 0; i < 8; ++i) {
      r[i] = i < nrows && left > 0 ? _mm256_maskload_ps(rows[i] + offset, load)
                                   : _mm256_setzero_ps();
    }
    transpose8(r);
    for (int i = 0; i < 8; ++i) {
      total = _mm256_add_ps(total, r[i]);
      abs_sum = _mm256_add_ps(abs_sum, _mm256_andnot_ps(sign, r[i]));
      _mm256_store_ps(xt + 8 * (k0 + i), r[i]);
    }
  }
  *abs_total = abs_sum;
  return total;
}

// Entry idx of group g (vector at table + 8 * (16g + idx)) = sum of x[:, 4g + b] over the set
// bits b of idx, for the block's 32 groups.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline void build_tables(const float* xt, float* table) {
  for (int g = 0; g < kGroups; ++g) {
    __m256 v[4], t[16];
    for (int b = 0; b < 4; ++b) v[b] = _mm256_load_ps(xt + 8 * (4 * g + b));
    t[0] = _mm256_setzero_ps();
    t[1] = v[0];
    t[2] = v[1];
    t[3] = _mm256_add_ps(v[0], v[1]);
    for (int i = 0; i < 4; ++i) t[4 + i] = _mm256_add_ps(t[i], v[2]);
    for (int i = 0; i < 8; ++i) t[8 + i] = _mm256_add_ps(t[i], v[3]);
    for (int i = 0; i < 16; ++i) _mm256_store_ps(table + 8 * (16 * g + i), t[i]);
  }
}

// acc[j] += sum over the block's 32 groups of table[g][nibble g of weight row j]. The byte
// offset of an entry, 32 * nibble, is a rotate and a mask of the weight word.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void accumulate_block(
    const float* table, const uint32_t* const* wr, int64_t word0, int64_t words, __m256* acc) {
  for (int wq = 0; wq < kBlockK / 32; ++wq) {
    const int64_t word = word0 + wq;
    if (word >= words) break;  // past k: the table's entries there are all 0
    uint32_t bits[kCols];
    for (int j = 0; j < kCols; ++j) bits[j] = wr[j][word];
    const char* t = reinterpret_cast<const char*>(table + 8 * 16 * 8 * wq);
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) {
      const int rot = (4 * q + 27) & 31;  // brings bits 4q..4q+3 to 5..8
#pragma GCC unroll 8
      for (int j = 0; j < kCols; ++j) {
        const uint32_t off = ((bits[j] >> rot) | (bits[j] << ((32 - rot) & 31))) & 0x1E0u;
        acc[j] = _mm256_add_ps(acc[j], _mm256_load_ps(
            reinterpret_cast<const float*>(t + 512 * q + off)));
      }
    }
  }
}

}  // namespace lut_avx2
}  // namespace emokernels
