// Binary-weight GEMM for a few rows of x (batch-1 fully connected layers), AVX2, float32.
//
// The 8-row tables of bwn_gemm_lut_avx2.h need 8 rows of x to fill their lanes. Here a lane is
// a weight row instead: for each group of 3 consecutive k of one x row, the 8 signed sums
// +-x[k] +-x[k+1] +-x[k+2] fill one ymm, and vpermps picks, in each lane, the entry that
// weight row's 3 bits name (it reads only the low 3 bits of the index, so a weight word is
// shifted by 3 between groups and never masked). One permute, one add and one shift cover 24
// multiply-free MACs (8 weight rows x 3 k), against 8 per FMA of a float GEMV, which is bound
// by reading 32x the weight bytes anyway.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../core/bwn/bwn_problem.h"
#include "bwn_gemm_lut_avx2.h"
#include "simd.h"
#include "tiling.h"

namespace emokernels {
namespace row_tables_avx2 {

constexpr int kLanes = 8;          // weight rows per vector
constexpr int kGroups = 11;        // per 32-bit word: ten groups of 3 bits, then one of 2
constexpr int kVectors = 4;        // vectors of weight rows per pass (32 rows)
constexpr int kRowsPerPass = kLanes * kVectors;
constexpr int kWordsPerLoad = 8;   // words of 8 weight rows transposed at once
constexpr int kPrefetchWords = 64;  // how far ahead each weight row is prefetched

// The tables of one x row: for word w and group q, the 8 floats at tables + 8 * (11w + q),
// entry e = sum over b of (bit b of e ? x[32w + 3q + b] : -x[32w + 3q + b]), 3 bits b (2 for
// q = 10), x past k read as 0. Returns sum_k |x|.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline float build_tables(const float* x, int64_t k, int64_t words, float* tables) {
  const __m256 neg = _mm256_set1_ps(-0.0f);
  // flip[b] lane e: the sign bit where bit b of e is clear (x enters that entry negated).
  __m256 flip[3];
  for (int b = 0; b < 3; ++b) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i bit = _mm256_and_si256(lane, _mm256_set1_epi32(1 << b));
    flip[b] = _mm256_and_ps(
        neg, _mm256_castsi256_ps(_mm256_cmpeq_epi32(bit, _mm256_setzero_si256())));
  }
  float abs_total = 0.0f;
  alignas(32) float word_x[32];
  for (int64_t w = 0; w < words; ++w) {
    const int64_t base = 32 * w;
    for (int i = 0; i < 32; ++i) word_x[i] = base + i < k ? x[base + i] : 0.0f;
    for (float v : word_x) abs_total += v < 0.0f ? -v : v;
    float* t = tables + 8 * kGroups * w;
    for (int q = 0; q < kGroups; ++q) {
      const int bits = q + 1 < kGroups ? 3 : 2;
      __m256 sum = _mm256_xor_ps(_mm256_set1_ps(word_x[3 * q]), flip[0]);
      for (int b = 1; b < bits; ++b) {
        sum = _mm256_add_ps(sum, _mm256_xor_ps(_mm256_set1_ps(word_x[3 * q + b]), flip[b]));
      }
      _mm256_storeu_ps(t + 8 * q, sum);
    }
  }
  return abs_total;
}

// acc[v] lane i += sum_k s(w[row v*8+i][k]) * x[k] over words [w0, w0 + count), count <= 8:
// each vector's 8 rows x 8 words transposed in registers to a word of 8 rows a vector.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void accumulate_words(const float* tables, const uint32_t* const* rows, int64_t w0, int count,
                      __m256* acc) {
  const __m256i load = _mm256_cmpgt_epi32(_mm256_set1_epi32(count),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  alignas(32) uint32_t idx[kWordsPerLoad][kVectors][kLanes];
  for (int v = 0; v < kVectors; ++v) {
    __m256 r[kLanes];
    for (int i = 0; i < kLanes; ++i) {
      const uint32_t* row = rows[kLanes * v + i] + w0;
      // 32 rows are more streams than the hardware prefetcher follows.
      _mm_prefetch(reinterpret_cast<const char*>(row + kPrefetchWords), _MM_HINT_T0);
      r[i] = _mm256_castsi256_ps(
          count == kWordsPerLoad
              ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row))
              : _mm256_maskload_epi32(reinterpret_cast<const int*>(row), load));
    }
    lut_avx2::transpose8(r);
    for (int j = 0; j < kWordsPerLoad; ++j) {
      _mm256_store_ps(reinterpret_cast<float*>(idx[j][v]), r[j]);
    }
  }
  for (int j = 0; j < count; ++j) {
    __m256i bits[kVectors];
    for (int v = 0; v < kVectors; ++v) {
      bits[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx[j][v]));
    }
    const float* t = tables + 8 * kGroups * (w0 + j);
#pragma GCC unroll 11
    for (int q = 0; q < kGroups; ++q) {
      const __m256 entries = _mm256_loadu_ps(t + 8 * q);
      for (int v = 0; v < kVectors; ++v) {
        acc[v] = _mm256_add_ps(acc[v], _mm256_permutevar8x32_ps(entries, bits[v]));
        bits[v] = _mm256_srli_epi32(bits[v], 3);
      }
      // Ties the next group's permutes to this group's sums: unfenced, GCC hoists all 44
      // permutes of a word ahead of the adds and spills them to the stack.
      for (int v = 0; v < kVectors; ++v) {
        EMOKERNELS_OPAQUE(acc[v], "x");
        EMOKERNELS_OPAQUE(bits[v], "x");
      }
    }
  }
}

// Outputs [n0, n0 + count) of x row r (tables of that row at `tables`, its sum of |x| in
// abs_total): alpha * the lane sums, or the plain signed sum where a table sum could overflow.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline void row_block(const bwn::BwnProblem<float>& p, int64_t r, const float* tables,
                      float abs_total, int64_t n0, int count) {
  const auto rows = tile_rows<uint32_t, kRowsPerPass>(p.w, n0, count, p.words);
  const float* x = p.x + r * p.k;
  if (!bwn::twice_sum_is_safe(abs_total)) {
    for (int j = 0; j < count; ++j) {
      p.out[r * p.n + n0 + j] = bwn::signed_sum(x, nullptr, rows[j], p.k, p.alpha[n0 + j]);
    }
    return;
  }
  __m256 acc[kVectors];
  for (auto& a : acc) a = _mm256_setzero_ps();
  for (int64_t w0 = 0; w0 < p.words; w0 += kWordsPerLoad) {
    accumulate_words(tables, rows.data(), w0,
                     static_cast<int>(std::min<int64_t>(kWordsPerLoad, p.words - w0)), acc);
  }
  alignas(32) float sums[kRowsPerPass];
  for (int v = 0; v < kVectors; ++v) _mm256_store_ps(sums + kLanes * v, acc[v]);
  for (int j = 0; j < count; ++j) {
    p.out[r * p.n + n0 + j] = bwn::epilogue(p.alpha[n0 + j], sums[j]);
  }
}

}  // namespace row_tables_avx2
}  // namespace emokernels
