// The XNOR-popcount GEMM kernels shared by xnor_gemm and xnor_gemm_scaled (CPU).
#pragma once

#include "simd.h"

#include "paths.h"
#include "../core/xnor/xnor_problem.h"
#include "popcount_simd.h"
#include "tiling.h"

namespace emokernels {
namespace xnor {

// A tile computes rows m0 .. m0 + MR x cols n0 .. n0 + NR; rows past the end point at a valid
// row and their results are dropped, so the inner loops never branch on tails.
using TileFn = void (*)(const XnorProblem& p, const uint32_t* const* arows,
                        const uint32_t* const* brows, int64_t m0, int64_t n0, int m_valid,
                        int n_valid);

inline void tile_portable(const XnorProblem& p, const uint32_t* const* arows,
                          const uint32_t* const* brows, int64_t m0, int64_t n0, int m_valid,
                          int n_valid) {
  int32_t dots[8];
  for (int64_t i = 0, r = 0; i < m_valid; ++i) {
    r = i == 0 ? offset_row(p, m0) : next_offset_row(p, r);
    for (int j = 0; j < n_valid; ++j) dots[j] = dot_reference(arows[i], brows[j], p.row_words, p.k);
    store_row(p, m0 + i, r, n0, dots, n_valid);
  }
}

constexpr int kAvx2MR = 2;
constexpr int kAvx2NR = 4;

// Words w .. w + 8 of a row; the Tail chunk (1..8 words, holding the last word) is loaded
// under a mask and cleared past k, so nothing beyond k ever counts.
template <bool Tail>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
__m256i load_chunk_avx2(const uint32_t* row, int64_t w, __m256i tail_load, __m256i tail_bits) {
  const auto* at = reinterpret_cast<const int*>(row + w);
  return Tail ? _mm256_and_si256(_mm256_maskload_epi32(at, tail_load), tail_bits)
              : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at));
}

// One 8-word chunk of an MR x 4 tile, added to byte counts.
template <bool Tail, int MR>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void xnor_step_avx2(__m256i (&acc)[MR][kAvx2NR], const uint32_t* const* arows,
                    const uint32_t* const* brows, int64_t w, __m256i tail_load,
                    __m256i tail_bits) {
  __m256i va[MR];
  for (int i = 0; i < MR; ++i) va[i] = load_chunk_avx2<Tail>(arows[i], w, tail_load, tail_bits);
  for (int j = 0; j < kAvx2NR; ++j) {
    const __m256i vb = load_chunk_avx2<Tail>(brows[j], w, tail_load, tail_bits);
    for (int i = 0; i < MR; ++i)
      acc[i][j] = _mm256_add_epi8(acc[i][j], popcount_bytes_avx2(_mm256_xor_si256(va[i], vb)));
  }
}

// Byte counts are summed for up to kMaxByteSums chunks, then widened into int64 totals: 8
// vector ops per pair and chunk instead of 9 with a widening every chunk. MR: kAvx2MR, or 1
// for a single row (a batch-1 layer), which would otherwise compute a dropped copy of it.
template <int MR>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
void tile_avx2(
    const XnorProblem& p, const uint32_t* const* arows, const uint32_t* const* brows, int64_t m0,
    int64_t n0, int m_valid, int n_valid) {
  const int64_t chunks = (p.row_words + 7) / 8;  // the last one is the tail
  const int tail_words = static_cast<int>(p.row_words - 8 * (chunks - 1));
  // Words before tail_words load; of those, the last keeps only the bits before k.
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i tail_load = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail_words), lane);
  const __m256i tail_bits =
      _mm256_blendv_epi8(tail_load, _mm256_set1_epi32(static_cast<int32_t>(p.last_mask)),
                         _mm256_cmpeq_epi32(lane, _mm256_set1_epi32(tail_words - 1)));

  __m256i total[MR][kAvx2NR];
  for (auto& row : total)
    for (auto& v : row) v = _mm256_setzero_si256();
  for (int64_t c0 = 0; c0 < chunks; c0 += kMaxByteSums) {
    const int64_t c_end = std::min<int64_t>(chunks, c0 + kMaxByteSums);
    __m256i acc[MR][kAvx2NR];
    for (auto& row : acc)
      for (auto& v : row) v = _mm256_setzero_si256();
    for (int64_t c = c0; c < c_end - 1; ++c)
      xnor_step_avx2<false, MR>(acc, arows, brows, 8 * c, tail_load, tail_bits);
    if (c_end == chunks) {
      xnor_step_avx2<true, MR>(acc, arows, brows, 8 * (chunks - 1), tail_load, tail_bits);
    } else {
      xnor_step_avx2<false, MR>(acc, arows, brows, 8 * (c_end - 1), tail_load, tail_bits);
    }
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < kAvx2NR; ++j)
        total[i][j] = _mm256_add_epi64(total[i][j], sum_bytes_avx2(acc[i][j]));
  }
  static_assert(kAvx2NR == 4, "one reduce4 per row");
  const __m256i k_vec = _mm256_set1_epi64x(p.k);
  const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
  for (int64_t i = 0, r = 0; i < m_valid; ++i) {
    r = i == 0 ? offset_row(p, m0) : next_offset_row(p, r);
    const __m256i diff = reduce4_epi64_avx2(total[i][0], total[i][1], total[i][2], total[i][3]);
    const __m256i dot = _mm256_sub_epi64(k_vec, _mm256_slli_epi64(diff, 1));
    alignas(16) int32_t dots[kAvx2NR];
    _mm_store_si128(reinterpret_cast<__m128i*>(dots),
                    _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(dot, low_halves)));
    store_row(p, m0 + i, r, n0, dots, n_valid);
  }
}

EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
void store_row_avx512(const XnorProblem& p, int64_t m, int64_t r, int64_t n0, __m256i dot,
                      __mmask8 valid, int n_valid) {
  if (p.out_bits != nullptr) {
    alignas(32) int32_t dots[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(dots), dot);
    return store_row(p, m, r, n0, dots, n_valid);
  }
  if (p.out_f32 == nullptr) return _mm256_mask_storeu_epi32(p.out_i32 + m * p.n + n0, valid, dot);
  if (p.offset) {
    const int32_t* offset = p.offset + r * p.n + n0;
    dot = _mm256_add_epi32(dot, _mm256_maskz_loadu_epi32(valid, offset));
  }
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_maskz_loadu_ps(valid, p.scale + n0));
  if (p.bias) v = _mm256_add_ps(v, _mm256_maskz_loadu_ps(valid, p.bias + n0));
  _mm256_mask_storeu_ps(p.out_f32 + m * p.n + n0, valid, v);
}

// 3 x 8 tile: 24 accumulators + 3 A vectors + 1 B vector stay in the 32 zmm registers.
constexpr int kAvx512MR = 3;
constexpr int kAvx512NR = 8;

// One 16-word chunk of the 3 x 8 tile; the Tail chunk is loaded under a mask and cleared
// past k so that garbage beyond k never counts.
template <bool Tail, int MR>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
void xnor_step_avx512(
    __m512i (&acc)[MR][kAvx512NR], const uint32_t* const* arows,
    const uint32_t* const* brows, int64_t w, __mmask16 tail_load, __m512i tail_bits) {
  __m512i va[MR];
  for (int i = 0; i < MR; ++i) {
    va[i] = Tail ? _mm512_and_si512(_mm512_maskz_loadu_epi32(tail_load, arows[i] + w), tail_bits)
                 : _mm512_loadu_si512(arows[i] + w);
  }
  for (int j = 0; j < kAvx512NR; ++j) {
    const __m512i vb =
        Tail ? _mm512_and_si512(_mm512_maskz_loadu_epi32(tail_load, brows[j] + w), tail_bits)
             : _mm512_loadu_si512(brows[j] + w);
    for (int i = 0; i < MR; ++i)
      acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(va[i], vb)));
  }
}

// MR: kAvx512MR, or fewer for a problem with fewer rows (a batch-1 or batch-2 layer), which
// would otherwise compute dropped copies of its rows.
template <int MR>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET)
void tile_avx512(
    const XnorProblem& p, const uint32_t* const* arows, const uint32_t* const* brows, int64_t m0,
    int64_t n0, int m_valid, int n_valid) {
  __m512i acc[MR][kAvx512NR];
  for (auto& row : acc)
    for (auto& v : row) v = _mm512_setzero_si512();
  // The last 16-word chunk (1..16 words, holding the last word) is loaded under a mask.
  const int64_t full = (p.row_words - 1) / 16;
  const int tail_words = static_cast<int>(p.row_words - 16 * full);
  const __mmask16 tail_load = static_cast<__mmask16>((1u << tail_words) - 1u);
  const __m512i tail_bits = _mm512_mask_set1_epi32(
      _mm512_set1_epi32(-1), static_cast<__mmask16>(1u << (tail_words - 1)),
      static_cast<int>(p.last_mask));

  for (int64_t c = 0; c < full; ++c)
    xnor_step_avx512<false, MR>(acc, arows, brows, 16 * c, 0, tail_bits);
  xnor_step_avx512<true, MR>(acc, arows, brows, 16 * full, tail_load, tail_bits);

  const __m512i k_vec = _mm512_set1_epi64(p.k);
  const __mmask8 store = static_cast<__mmask8>((1u << n_valid) - 1u);
  for (int64_t i = 0, r = 0; i < m_valid; ++i) {
    r = i == 0 ? offset_row(p, m0) : next_offset_row(p, r);
    const __m512i diff = reduce8_epi64(acc[i]);
    const __m256i dot =
        _mm512_cvtepi64_epi32(_mm512_sub_epi64(k_vec, _mm512_slli_epi64(diff, 1)));
    store_row_avx512(p, m0 + i, r, n0, dot, store, n_valid);
  }
}

template <int MR, int NR, TileFn Fn>
void run_tiles(const XnorProblem& p) {
  static_assert(32 % NR == 0, "a bit-packed output's words must not straddle tiles");
  static_assert(NR <= kMaxStoreRow, "store_row writes at most kMaxStoreRow outputs");
  parallel_tiles(
      p.m, p.n, MR, NR, 4 * p.row_words,
      [&](int64_t m0, int m_count, int64_t n0, int n_count) {
        const auto brows = tile_rows<uint32_t, NR>(p.b, n0, n_count, p.row_words);
        const auto arows = tile_rows<uint32_t, MR>(p.a, m0, m_count, p.row_words);
        Fn(p, arows.data(), brows.data(), m0, n0, m_count, n_count);
      },
      p.out_bits != nullptr ? 32 : 1);
}

// Runs the problem on the path xnor_path() picks, with tiles no taller than the problem.
inline void run_xnor(const XnorProblem& p) {
  switch (xnor_path()) {
    case XnorPath::Avx512:
      if (p.m == 1) return run_tiles<1, kAvx512NR, tile_avx512<1>>(p);
      if (p.m == 2) return run_tiles<2, kAvx512NR, tile_avx512<2>>(p);
      run_tiles<kAvx512MR, kAvx512NR, tile_avx512<kAvx512MR>>(p);
      break;
    case XnorPath::Avx2:
      if (p.m == 1) return run_tiles<1, kAvx2NR, tile_avx2<1>>(p);
      run_tiles<kAvx2MR, kAvx2NR, tile_avx2<kAvx2MR>>(p);
      break;
    case XnorPath::Portable:
      run_tiles<1, 8, tile_portable>(p);
      break;
  }
}

}  // namespace xnor
}  // namespace emokernels
