// The AVX2 XNOR-popcount GEMM: 2 x 4 tiles of XOR + nibble-lookup popcount + bytewise add.
// AVX2 has no vector popcount: each byte's count is two table lookups (vpshufb), one per
// nibble. Problems of kSplitMinRows+ rows first split their rows into nibbles, a byte each
// (split_rows_avx2): XOR commutes with the split, so a pair's step is XOR + XOR + 2 lookups +
// 2 adds, 6 vector ops per 256 bits instead of 8 (the mask and the shift of the nibbles are
// done once per row instead of once per pair).
#pragma once

#include "simd.h"

#include <algorithm>
#include <type_traits>
#include <vector>

#include "popcount_simd.h"
#include "xnor_strip.h"

namespace emokernels {
namespace xnor {

constexpr int kAvx2MR = 2;
constexpr int kAvx2NR = 4;
// Splitting B costs about what one row tile's dots cost over the same rows; it pays from a few
// row tiles per column block on.
constexpr int64_t kSplitMinRows = 16;

// The mask of the words of the last 8-word chunk (1..8 words, holding the last word) and the
// bits of them to keep: loaded under the first and cleared by the second, nothing past k
// ever counts.
struct TailMasks {
  __m256i load, bits;
};

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
TailMasks tail_masks_avx2(const XnorProblem& p, int64_t chunks) {
  const int tail_words = static_cast<int>(p.row_words - 8 * (chunks - 1));
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i load = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail_words), lane);
  return {load, _mm256_blendv_epi8(load, _mm256_set1_epi32(static_cast<int32_t>(p.last_mask)),
                                   _mm256_cmpeq_epi32(lane, _mm256_set1_epi32(tail_words - 1)))};
}

// Words w .. w + 8 of a row; the Tail chunk is loaded under the tail masks.
template <bool Tail>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
__m256i load_chunk_avx2(const uint32_t* row, int64_t w, const TailMasks& tail) {
  const auto* at = reinterpret_cast<const int*>(row + w);
  return Tail ? _mm256_and_si256(_mm256_maskload_epi32(at, tail.load), tail.bits)
              : _mm256_loadu_si256(reinterpret_cast<const __m256i*>(at));
}

// The operands of a tile as packed rows: one chunk of an MR x 4 tile added to byte counts.
struct PackedTile {
  const uint32_t* const* arows;
  const uint32_t* const* brows;
  TailMasks tail;

  template <bool Tail, int MR>
  EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
  void step(__m256i (&acc)[MR][kAvx2NR], int64_t c) const {
    __m256i va[MR];
    for (int i = 0; i < MR; ++i) va[i] = load_chunk_avx2<Tail>(arows[i], 8 * c, tail);
    for (int j = 0; j < kAvx2NR; ++j) {
      const __m256i vb = load_chunk_avx2<Tail>(brows[j], 8 * c, tail);
      for (int i = 0; i < MR; ++i)
        acc[i][j] = _mm256_add_epi8(acc[i][j], popcount_bytes_avx2(_mm256_xor_si256(va[i], vb)));
    }
  }
};

// The operands of a tile as rows split into nibbles (split_rows_avx2): chunk c of a row is
// row[2c] (its low nibbles) and row[2c + 1] (its high ones); no chunk is a tail.
struct SplitTile {
  const __m256i* const* arows;
  const __m256i* const* brows;

  template <bool Tail, int MR>
  EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
  void step(__m256i (&acc)[MR][kAvx2NR], int64_t c) const {
    __m256i lo[MR], hi[MR];
    for (int i = 0; i < MR; ++i) {
      lo[i] = _mm256_load_si256(arows[i] + 2 * c);
      hi[i] = _mm256_load_si256(arows[i] + 2 * c + 1);
    }
    for (int j = 0; j < kAvx2NR; ++j) {
      const __m256i blo = _mm256_load_si256(brows[j] + 2 * c);
      const __m256i bhi = _mm256_load_si256(brows[j] + 2 * c + 1);
      for (int i = 0; i < MR; ++i) {
        acc[i][j] = _mm256_add_epi8(acc[i][j], popcount_nibbles_avx2(_mm256_xor_si256(lo[i], blo),
                                                                     _mm256_xor_si256(hi[i], bhi)));
      }
    }
  }
};

// The int64 lane sums of chunks c0 .. c_end of each pair; byte counts are summed for up to
// kMaxByteSums chunks, then widened: one vector op per pair and chunk fewer than a widening
// every chunk.
template <int MR, typename Tile>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void count_chunks_avx2(__m256i (&sums)[MR][kAvx2NR], const Tile& tile, int64_t c0,
                       int64_t c_end, int64_t chunks) {
  __m256i acc[MR][kAvx2NR];
  for (auto& row : acc)
    for (auto& v : row) v = _mm256_setzero_si256();
  for (int64_t c = c0; c < c_end - 1; ++c) tile.template step<false, MR>(acc, c);
  if (c_end == chunks) {
    tile.template step<true, MR>(acc, c_end - 1);
  } else {
    tile.template step<false, MR>(acc, c_end - 1);
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < kAvx2NR; ++j) sums[i][j] = sum_bytes_avx2(acc[i][j]);
}

// Writes the 4 dots of row m (offset row r) from n0, as store_row does, with vector loads,
// compares and stores; a tile past the last column goes through store_row (vpmaskmovd stores
// cost ~10x a plain store on AMD cores).
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void store_row_avx2(const XnorProblem& p, int64_t m, int64_t r, int64_t n0, __m128i dot,
                    int n_valid) {
  if (n_valid < kAvx2NR) {
    alignas(16) int32_t dots[kAvx2NR];
    _mm_store_si128(reinterpret_cast<__m128i*>(dots), dot);
    return store_row(p, m, r, n0, dots, n_valid);
  }
  if (p.out_f32 == nullptr && p.out_bits == nullptr) {
    return _mm_storeu_si128(reinterpret_cast<__m128i*>(p.out_i32 + m * p.n + n0), dot);
  }
  if (p.offset) {
    dot = _mm_add_epi32(
        dot, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p.offset + r * p.n + n0)));
  }
  if (p.out_bits != nullptr) {  // sign_bit: lower[n] <= dot <= upper[n]
    const auto* lower = reinterpret_cast<const __m128i*>(p.bounds + n0);
    const auto* upper = reinterpret_cast<const __m128i*>(p.bounds + p.n + n0);
    const __m128i outside = _mm_or_si128(_mm_cmpgt_epi32(_mm_loadu_si128(lower), dot),
                                         _mm_cmpgt_epi32(dot, _mm_loadu_si128(upper)));
    const auto bits = static_cast<uint32_t>(~_mm_movemask_ps(_mm_castsi128_ps(outside)) & 0xf);
    p.out_bits[m * p.out_words + n0 / 32] |= bits << (n0 % 32);
    return;
  }
  __m128 v = _mm_mul_ps(_mm_cvtepi32_ps(dot), _mm_loadu_ps(p.scale + n0));
  if (p.bias) v = _mm_add_ps(v, _mm_loadu_ps(p.bias + n0));
  _mm_storeu_ps(p.out_f32 + m * p.n + n0, v);
}

// One MR x 4 tile: rows m0 .. m0 + m_valid, cols n0 .. n0 + n_valid. Up to kMaxByteSums
// chunks (k <= 7936) take one pass without totals.
template <int MR, typename Tile>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void tile_avx2(const XnorProblem& p, const Tile& tile, int64_t chunks,
               const std::array<int64_t, MR>& r, int64_t m0, int m_valid, int64_t n0,
               int n_valid) {
  __m256i total[MR][kAvx2NR];
  count_chunks_avx2<MR>(total, tile, 0, std::min<int64_t>(chunks, kMaxByteSums), chunks);
  for (int64_t c0 = kMaxByteSums; c0 < chunks; c0 += kMaxByteSums) {
    __m256i part[MR][kAvx2NR];
    count_chunks_avx2<MR>(part, tile, c0, std::min<int64_t>(chunks, c0 + kMaxByteSums), chunks);
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < kAvx2NR; ++j) total[i][j] = _mm256_add_epi64(total[i][j], part[i][j]);
  }
  static_assert(kAvx2NR == 4, "one reduce4 per row");
  const __m256i k_vec = _mm256_set1_epi64x(p.k);
  const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
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

// MR: kAvx2MR, or 1 for a single row (a batch-1 layer), which would otherwise compute a
// dropped copy of it.
template <int MR>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
void strip_avx2(const XnorProblem& p, const uint32_t* const* arows, int64_t m0, int m_valid,
                int64_t n_begin, int64_t n_end) {
  const int64_t chunks = (p.row_words + 7) / 8;  // the last one is the tail
  const TailMasks tail = tail_masks_avx2(p, chunks);
  const auto r = offset_rows<MR>(p, m0, m_valid);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx2NR) {
    const int n_valid = static_cast<int>(std::min<int64_t>(kAvx2NR, n_end - n0));
    const auto brows = tile_rows<uint32_t, kAvx2NR>(p.b, n0, n_valid, p.row_words);
    tile_avx2<MR>(p, PackedTile{arows, brows.data(), tail}, chunks, r, m0, m_valid, n0, n_valid);
  }
}

// Rows first .. first + count of a packed operand split into nibbles: out[row * 2 * chunks +
// 2c] holds the low nibble of each byte of chunk c, out[.. + 2c + 1] the high one; the bits
// past k are cleared.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline void split_rows_avx2(const XnorProblem& p, const uint32_t* rows, int64_t first,
                            int64_t count, __m256i* out) {
  const int64_t chunks = (p.row_words + 7) / 8;
  const TailMasks tail = tail_masks_avx2(p, chunks);
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  for (int64_t row = 0; row < count; ++row) {
    const uint32_t* in = rows + (first + row) * p.row_words;
    __m256i* dst = out + row * 2 * chunks;
    for (int64_t c = 0; c < chunks; ++c) {
      const __m256i v = c + 1 < chunks ? load_chunk_avx2<false>(in, 8 * c, tail)
                                       : load_chunk_avx2<true>(in, 8 * c, tail);
      _mm256_store_si256(dst + 2 * c, _mm256_and_si256(v, nibble));
      _mm256_store_si256(dst + 2 * c + 1, _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble));
    }
  }
}

// The strip over split rows: a (m_valid rows) and b (the rows n_begin .. n_end).
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline void split_strip_avx2(const XnorProblem& p, const __m256i* a, const __m256i* b,
                             int64_t m0, int m_valid, int64_t n_begin, int64_t n_end) {
  const int64_t chunks = (p.row_words + 7) / 8;
  const auto arows = tile_rows<__m256i, kAvx2MR>(a, 0, m_valid, 2 * chunks);
  const auto r = offset_rows<kAvx2MR>(p, m0, m_valid);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx2NR) {
    const int n_valid = static_cast<int>(std::min<int64_t>(kAvx2NR, n_end - n0));
    const auto brows = tile_rows<__m256i, kAvx2NR>(b, n0 - n_begin, n_valid, 2 * chunks);
    tile_avx2<kAvx2MR>(p, SplitTile{arows.data(), brows.data()}, chunks, r, m0, m_valid, n0,
                       n_valid);
  }
}

// A vector of scratch: std::vector<__m256i> would drop the type's alignment (a template
// argument loses its attributes), and the split rows are read by aligned loads.
struct alignas(32) Vector256 {
  uint8_t bytes[32];
};

inline __m256i* vectors(std::vector<Vector256>& v) {
  return reinterpret_cast<__m256i*>(v.data());
}

// Runs a problem of kSplitMinRows+ rows on split rows. Each thread splits the column block of
// B its strips use once (strips come column-block-major) and each strip's rows of A.
inline void run_split_avx2(const XnorProblem& p) {
  const int64_t chunks = (p.row_words + 7) / 8;
  const int64_t split_row = 2 * chunks;  // vectors
  parallel_strip_workers(
      p.m, p.n, kAvx2MR, kAvx2NR, split_row * static_cast<int64_t>(sizeof(__m256i)),
      [&] {
        return [&p, split_row, a = std::vector<Vector256>(kAvx2MR * split_row),
                b = std::vector<Vector256>(), b_begin = int64_t{-1}](
                   int64_t m0, int m_count, int64_t n_begin, int64_t n_end) mutable {
          if (n_begin != b_begin) {
            b.resize((n_end - n_begin) * split_row);
            split_rows_avx2(p, p.b, n_begin, n_end - n_begin, vectors(b));
            b_begin = n_begin;
          }
          split_rows_avx2(p, p.a, m0, m_count, vectors(a));
          split_strip_avx2(p, vectors(a), vectors(b), m0, m_count, n_begin, n_end);
        };
      },
      p.out_bits != nullptr ? 32 : 1);
}

}  // namespace xnor
}  // namespace emokernels
