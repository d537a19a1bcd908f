// The XNOR-popcount GEMM kernels shared by xnor_gemm and xnor_gemm_scaled (CPU).
#pragma once

#include "simd.h"

#include "paths.h"
#include "../core/xnor/xnor_problem.h"
#include "popcount_simd.h"
#include "tiling.h"

namespace emokernels {
namespace xnor {

// A strip computes rows m0 .. m0 + m_valid (at most MR) x cols n_begin .. n_end, an MR x NR
// tile at a time, so that what depends only on the problem or the rows is set up once per
// strip: at small k a tile's dots take ~100 cycles. Rows past m_valid point at a valid row
// and their results are dropped, so the inner loops never branch on tails.
using StripFn = void (*)(const XnorProblem& p, const uint32_t* const* arows, int64_t m0,
                         int m_valid, int64_t n_begin, int64_t n_end);

// The offset rows (offset_row) of rows m0 .. m0 + m_valid.
template <int MR>
std::array<int64_t, MR> offset_rows(const XnorProblem& p, int64_t m0, int m_valid) {
  std::array<int64_t, MR> r{};
  for (int i = 0; i < m_valid; ++i) r[i] = i == 0 ? offset_row(p, m0) : next_offset_row(p, r[i - 1]);
  return r;
}

constexpr int kPortableNR = 8;

inline void strip_portable(const XnorProblem& p, const uint32_t* const* arows, int64_t m0,
                           int m_valid, int64_t n_begin, int64_t n_end) {
  int32_t dots[kPortableNR];
  const auto r = offset_rows<1>(p, m0, m_valid);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kPortableNR) {
    const int n_valid = static_cast<int>(std::min<int64_t>(kPortableNR, n_end - n0));
    for (int j = 0; j < n_valid; ++j)
      dots[j] = dot_reference(arows[0], p.b + (n0 + j) * p.row_words, p.row_words, p.k);
    store_row(p, m0, r[0], n0, dots, n_valid);
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

// The int64 lane sums of chunks c0 .. c_end of each pair; byte counts are summed for up to
// kMaxByteSums chunks, then widened: 8 vector ops per pair and chunk instead of 9 with a
// widening every chunk.
template <int MR>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void count_chunks_avx2(__m256i (&sums)[MR][kAvx2NR], const uint32_t* const* arows,
                       const uint32_t* const* brows, int64_t c0, int64_t c_end, int64_t chunks,
                       __m256i tail_load, __m256i tail_bits) {
  __m256i acc[MR][kAvx2NR];
  for (auto& row : acc)
    for (auto& v : row) v = _mm256_setzero_si256();
  for (int64_t c = c0; c < c_end - 1; ++c)
    xnor_step_avx2<false, MR>(acc, arows, brows, 8 * c, tail_load, tail_bits);
  if (c_end == chunks) {
    xnor_step_avx2<true, MR>(acc, arows, brows, 8 * (c_end - 1), tail_load, tail_bits);
  } else {
    xnor_step_avx2<false, MR>(acc, arows, brows, 8 * (c_end - 1), tail_load, tail_bits);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < kAvx2NR; ++j) sums[i][j] = sum_bytes_avx2(acc[i][j]);
}

// Writes the 4 dots of row m (offset row r) from n0, as store_row does, with vector loads and
// stores for the int32 and float outputs; under a mask only for a tile past the last column
// (vpmaskmovd stores cost ~10x a plain store on AMD cores).
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void store_row_avx2(const XnorProblem& p, int64_t m, int64_t r, int64_t n0, __m128i dot,
                    int n_valid) {
  if (p.out_bits != nullptr || n_valid < kAvx2NR) {
    alignas(16) int32_t dots[kAvx2NR];
    _mm_store_si128(reinterpret_cast<__m128i*>(dots), dot);
    return store_row(p, m, r, n0, dots, n_valid);
  }
  if (p.out_f32 == nullptr) {
    return _mm_storeu_si128(reinterpret_cast<__m128i*>(p.out_i32 + m * p.n + n0), dot);
  }
  if (p.offset) {
    dot = _mm_add_epi32(
        dot, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p.offset + r * p.n + n0)));
  }
  __m128 v = _mm_mul_ps(_mm_cvtepi32_ps(dot), _mm_loadu_ps(p.scale + n0));
  if (p.bias) v = _mm_add_ps(v, _mm_loadu_ps(p.bias + n0));
  _mm_storeu_ps(p.out_f32 + m * p.n + n0, v);
}

// MR: kAvx2MR, or 1 for a single row (a batch-1 layer), which would otherwise compute a
// dropped copy of it. Up to kMaxByteSums chunks (k <= 7936) take one pass without totals.
template <int MR>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
void strip_avx2(const XnorProblem& p, const uint32_t* const* arows, int64_t m0, int m_valid,
                int64_t n_begin, int64_t n_end) {
  const int64_t chunks = (p.row_words + 7) / 8;  // the last one is the tail
  const int tail_words = static_cast<int>(p.row_words - 8 * (chunks - 1));
  // Words before tail_words load; of those, the last keeps only the bits before k.
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i tail_load = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail_words), lane);
  const __m256i tail_bits =
      _mm256_blendv_epi8(tail_load, _mm256_set1_epi32(static_cast<int32_t>(p.last_mask)),
                         _mm256_cmpeq_epi32(lane, _mm256_set1_epi32(tail_words - 1)));
  const auto r = offset_rows<MR>(p, m0, m_valid);
  static_assert(kAvx2NR == 4, "one reduce4 per row");
  const __m256i k_vec = _mm256_set1_epi64x(p.k);
  const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);

  for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx2NR) {
    const int n_valid = static_cast<int>(std::min<int64_t>(kAvx2NR, n_end - n0));
    const auto brows = tile_rows<uint32_t, kAvx2NR>(p.b, n0, n_valid, p.row_words);
    __m256i total[MR][kAvx2NR];
    count_chunks_avx2<MR>(total, arows, brows.data(), 0,
                          std::min<int64_t>(chunks, kMaxByteSums), chunks, tail_load, tail_bits);
    for (int64_t c0 = kMaxByteSums; c0 < chunks; c0 += kMaxByteSums) {
      __m256i part[MR][kAvx2NR];
      count_chunks_avx2<MR>(part, arows, brows.data(), c0,
                            std::min<int64_t>(chunks, c0 + kMaxByteSums), chunks, tail_load,
                            tail_bits);
      for (int i = 0; i < MR; ++i)
        for (int j = 0; j < kAvx2NR; ++j) total[i][j] = _mm256_add_epi64(total[i][j], part[i][j]);
    }
    // Over all MR rows, unrolled, so that the totals stay in registers; dropped rows are not
    // stored.
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m256i diff = reduce4_epi64_avx2(total[i][0], total[i][1], total[i][2], total[i][3]);
      const __m256i dot = _mm256_sub_epi64(k_vec, _mm256_slli_epi64(diff, 1));
      if (i < m_valid) {
        store_row_avx2(p, m0 + i, r[i], n0,
                       _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(dot, low_halves)),
                       n_valid);
      }
    }
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
void strip_avx512(const XnorProblem& p, const uint32_t* const* arows, int64_t m0, int m_valid,
                  int64_t n_begin, int64_t n_end) {
  // The last 16-word chunk (1..16 words, holding the last word) is loaded under a mask.
  const int64_t full = (p.row_words - 1) / 16;
  const int tail_words = static_cast<int>(p.row_words - 16 * full);
  const __mmask16 tail_load = static_cast<__mmask16>((1u << tail_words) - 1u);
  const __m512i tail_bits = _mm512_mask_set1_epi32(
      _mm512_set1_epi32(-1), static_cast<__mmask16>(1u << (tail_words - 1)),
      static_cast<int>(p.last_mask));
  const auto r = offset_rows<MR>(p, m0, m_valid);
  const __m512i k_vec = _mm512_set1_epi64(p.k);

  for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx512NR) {
    const int n_valid = static_cast<int>(std::min<int64_t>(kAvx512NR, n_end - n0));
    const auto brows = tile_rows<uint32_t, kAvx512NR>(p.b, n0, n_valid, p.row_words);
    __m512i acc[MR][kAvx512NR];
    for (auto& row : acc)
      for (auto& v : row) v = _mm512_setzero_si512();
    for (int64_t c = 0; c < full; ++c)
      xnor_step_avx512<false, MR>(acc, arows, brows.data(), 16 * c, 0, tail_bits);
    xnor_step_avx512<true, MR>(acc, arows, brows.data(), 16 * full, tail_load, tail_bits);

    const __mmask8 store = static_cast<__mmask8>((1u << n_valid) - 1u);
    for (int i = 0; i < m_valid; ++i) {
      const __m512i diff = reduce8_epi64(acc[i]);
      const __m256i dot =
          _mm512_cvtepi64_epi32(_mm512_sub_epi64(k_vec, _mm512_slli_epi64(diff, 1)));
      store_row_avx512(p, m0 + i, r[i], n0, dot, store, n_valid);
    }
  }
}

template <int MR, int NR, StripFn Fn>
void run_strips(const XnorProblem& p) {
  static_assert(32 % NR == 0, "a bit-packed output's words must not straddle tiles");
  static_assert(NR <= kMaxStoreRow, "store_row writes at most kMaxStoreRow outputs");
  parallel_strips(
      p.m, p.n, MR, NR, 4 * p.row_words,
      [&](int64_t m0, int m_count, int64_t n_begin, int64_t n_end) {
        const auto arows = tile_rows<uint32_t, MR>(p.a, m0, m_count, p.row_words);
        Fn(p, arows.data(), m0, m_count, n_begin, n_end);
      },
      p.out_bits != nullptr ? 32 : 1);
}

// Runs the problem on the path xnor_path() picks, with tiles no taller than the problem.
inline void run_xnor(const XnorProblem& p) {
  switch (xnor_path()) {
    case XnorPath::Avx512:
      if (p.m == 1) return run_strips<1, kAvx512NR, strip_avx512<1>>(p);
      if (p.m == 2) return run_strips<2, kAvx512NR, strip_avx512<2>>(p);
      run_strips<kAvx512MR, kAvx512NR, strip_avx512<kAvx512MR>>(p);
      break;
    case XnorPath::Avx2:
      if (p.m == 1) return run_strips<1, kAvx2NR, strip_avx2<1>>(p);
      run_strips<kAvx2MR, kAvx2NR, strip_avx2<kAvx2MR>>(p);
      break;
    case XnorPath::Portable:
      run_strips<1, kPortableNR, strip_portable>(p);
      break;
  }
}

}  // namespace xnor
}  // namespace emokernels
