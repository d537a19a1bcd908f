// Binary-weight GEMM by table lookup (AVX-512, float32, 16 or more rows of x).
//
// For 16 rows of x at a time and each group of 4 consecutive k, the 16 possible sums
// sum_{b: bit b set} x[:, 4g + b] are tabulated once (one zmm per entry, a lane per row). Each
// weight row then costs one vector add per 4 k for all 16 rows: the nibble of its bits picks
// the entry. That is 64 multiply-free MACs per add, against 16 per FMA for a float GEMM.
// Tables cover 128 k at a time (32 KiB, L1-resident) and are shared by every weight row.
#pragma once

#include <cstdint>

#include "simd.h"

namespace emokernels {
namespace lut {

constexpr int kRows = 16;          // rows of x per table (zmm lanes)
constexpr int kBlockK = 128;       // k per table block
constexpr int kGroups = kBlockK / 4;
constexpr int kCols = 8;           // weight rows interleaved to hide the add latency

// 16 x 16 float transpose: out[c] lane r = in[r] lane c.
EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET) EMOKERNELS_ALWAYS_INLINE
void transpose16(__m512* r) {
  __m512 a[16], b[16];
  for (int i = 0; i < 8; ++i) {
    a[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    a[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    const __m512d lo0 = _mm512_castps_pd(a[4 * i]), lo1 = _mm512_castps_pd(a[4 * i + 2]);
    const __m512d hi0 = _mm512_castps_pd(a[4 * i + 1]), hi1 = _mm512_castps_pd(a[4 * i + 3]);
    b[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(lo0, lo1));
    b[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(lo0, lo1));
    b[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(hi0, hi1));
    b[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(hi0, hi1));
  }
  // b[4i + c], 128-bit lane L: column 4L + c of rows 4i..4i+3.
  for (int c = 0; c < 4; ++c) {
    const __m512 u = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x88);
    const __m512 v = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xDD);
    const __m512 u2 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x88);
    const __m512 v2 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xDD);
    r[c] = _mm512_shuffle_f32x4(u, u2, 0x88);
    r[4 + c] = _mm512_shuffle_f32x4(v, v2, 0x88);
    r[8 + c] = _mm512_shuffle_f32x4(u, u2, 0xDD);
    r[12 + c] = _mm512_shuffle_f32x4(v, v2, 0xDD);
  }
}

// xt[16k .. 16k+15] = the rows' x[:, k] (rows past `rows`, and k past `k`, are 0); returns
// each row's sum over k, and its sum of |x| in *abs_total. Row i's chunk c (k = 16c .. 16c + 15) starts at
// rows[i] + chunk_offsets[c], or rows[i] + 16c when chunk_offsets is null. Buffers are float
// arrays aligned to 64 bytes (no __m512 crosses into non-AVX-512 code).
EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET)
inline __m512 transpose_rows(
    const float* const* rows, int nrows, const int64_t* chunk_offsets, int64_t k, int64_t k_pad,
    float* xt, __m512* abs_total) {
  __m512 total = _mm512_setzero_ps(), abs_sum = _mm512_setzero_ps();
  for (int64_t k0 = 0; k0 < k_pad; k0 += 16) {
    const int64_t left = k - k0;
    const __mmask16 load =
        left >= 16 ? 0xFFFF : (left <= 0 ? 0 : static_cast<__mmask16>((1u << left) - 1u));
    const int64_t offset = chunk_offsets && left > 0 ? chunk_offsets[k0 / 16] : k0;
    __m512 r[16];
    for (int i = 0; i < 16; ++i) {
      r[i] = i < nrows ? _mm512_maskz_loadu_ps(load, rows[i] + offset) : _mm512_setzero_ps();
    }
    transpose16(r);
    for (int i = 0; i < 16; ++i) {
      total = _mm512_add_ps(total, r[i]);
      abs_sum = _mm512_add_ps(abs_sum, _mm512_abs_ps(r[i]));
      _mm512_store_ps(xt + 16 * (k0 + i), r[i]);
    }
  }
  *abs_total = abs_sum;
  return total;
}

// Entry idx of group g (vector at table + 16 * (16g + idx)) = sum of x[:, 4g + b] over the
// set bits b of idx, for the block's 32 groups.
EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET)
inline void build_tables(const float* xt, float* table) {
  for (int g = 0; g < kGroups; ++g) {
    __m512 v[4], t[16];
    for (int b = 0; b < 4; ++b) v[b] = _mm512_load_ps(xt + 16 * (4 * g + b));
    t[0] = _mm512_setzero_ps();
    t[1] = v[0];
    t[2] = v[1];
    t[3] = _mm512_add_ps(v[0], v[1]);
    for (int i = 0; i < 4; ++i) t[4 + i] = _mm512_add_ps(t[i], v[2]);
    for (int i = 0; i < 8; ++i) t[8 + i] = _mm512_add_ps(t[i], v[3]);
    for (int i = 0; i < 16; ++i) _mm512_store_ps(table + 16 * (16 * g + i), t[i]);
  }
}

// acc[j] += sum over the block's 32 groups of table[g][nibble g of weight row j]. The byte
// offset of an entry, 64 * nibble, is a rotate and a mask of the weight word (rorx + and).
EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET) EMOKERNELS_ALWAYS_INLINE
void accumulate_block(
    const float* table, const uint32_t* const* wr, int64_t word0, int64_t words, __m512* acc) {
  for (int wq = 0; wq < kBlockK / 32; ++wq) {
    const int64_t word = word0 + wq;
    if (word >= words) break;  // past k: the table's entries there are all 0
    uint32_t bits[kCols];
    for (int j = 0; j < kCols; ++j) bits[j] = wr[j][word];
    const char* t = reinterpret_cast<const char*>(table + 16 * 16 * 8 * wq);
#pragma GCC unroll 8
    for (int q = 0; q < 8; ++q) {
      const int rot = (4 * q + 26) & 31;  // brings bits 4q..4q+3 to 6..9
#pragma GCC unroll 8
      for (int j = 0; j < kCols; ++j) {
        const uint32_t off = ((bits[j] >> rot) | (bits[j] << ((32 - rot) & 31))) & 0x3C0u;
        acc[j] = _mm512_add_ps(acc[j], _mm512_load_ps(
            reinterpret_cast<const float*>(t + 1024 * q + off)));
      }
    }
  }
}

}  // namespace lut
}  // namespace emokernels
