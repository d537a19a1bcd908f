// The AVX-512 XNOR-popcount GEMM for problems of kPanel512MinRows+ rows: B packed into panels
// whose vectors hold one 64-bit word of 8 columns, A's rows broadcast a word at a time, so each
// 64-bit lane of an accumulator is one output's count. A 6 x 32 tile takes 4 vector loads and
// 6 broadcasts a word for its 24 XOR + VPOPCNTQ + adds, and ends with no horizontal sums (the
// 3 x 8 tile of packed rows reduces 24 vectors across lanes, which at k = 512 costs as much as
// its dots), and rows stop at their last 64-bit word instead of a whole 512-bit chunk.
#pragma once

#include "simd.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "xnor_avx512.h"
#include "xnor_strip.h"

namespace emokernels {
namespace xnor {

constexpr int kPanel512MR = 6;
constexpr int kPanel512Vectors = 4;  // of 8 columns: a tile's width in vectors
constexpr int kPanel512NR = 8 * kPanel512Vectors;
// Packing B costs about what one row tile's dots cost over the same columns.
constexpr int64_t kPanel512MinRows = 16;
// A tile's panel (32 columns x 8 bytes a word, 256 KB at this limit) stays within L2 beside
// the rows of A; longer rows take the packed-row strips, whose epilogue is negligible there.
constexpr int64_t kPanel512MaxWords = 1024;

// 64-bit words of a row: the panels and A's copies hold zeros past the last one's bits.
inline int64_t words64(const XnorProblem& p) { return (p.row_words + 1) / 2; }

// Chunk c of a row (of B or A), whichever it is (load_chunk_avx512).
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
__m512i load_any_chunk_avx512(const uint32_t* row, int64_t c, const ChunkMasks& m) {
  return c < m.full ? load_chunk_avx512<false>(row, c, m) : load_chunk_avx512<true>(row, c, m);
}

// Vectors of one panel tile: kPanel512Vectors per 64-bit word, the words padded to a chunk.
inline int64_t panel512_tile_vectors(const XnorProblem& p) {
  return (p.row_words + 15) / 16 * 8 * kPanel512Vectors;
}

// [r0[w], .., r7[w]] into r[w]: an 8 x 8 transpose of 64-bit words.
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
void transpose8x64_avx512(__m512i (&r)[8]) {
  __m512i t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm512_unpacklo_epi64(r[2 * i], r[2 * i + 1]);      // words 0 2 4 6 of 2i, 2i+1
    t[2 * i + 1] = _mm512_unpackhi_epi64(r[2 * i], r[2 * i + 1]);  // words 1 3 5 7
  }
  // 128-bit blocks: u[i] holds rows 0..3 (i < 4) or 4..7 in pairs per block
  const __m512i lo_blocks = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13);
  const __m512i hi_blocks = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
  for (int h = 0; h < 2; ++h) {
    for (int s = 0; s < 2; ++s) {
      u[4 * h + s] = _mm512_permutex2var_epi64(t[4 * h + s], lo_blocks, t[4 * h + 2 + s]);
      u[4 * h + 2 + s] = _mm512_permutex2var_epi64(t[4 * h + s], hi_blocks, t[4 * h + 2 + s]);
    }
  }
  // u[0]: rows 0-3 words 0 | 4 ; u[1]: words 1 | 5 ; u[2]: words 2 | 6 ; u[3]: words 3 | 7
  for (int w = 0; w < 4; ++w) {
    r[w] = _mm512_shuffle_i64x2(u[w], u[4 + w], 0x44);      // words w of rows 0-7
    r[w + 4] = _mm512_shuffle_i64x2(u[w], u[4 + w], 0xEE);  // words w + 4
  }
}

// The panels of B's rows first .. first + count, in whole tiles: vector j of word t of tile
// q holds word t of columns 32q + 8j .. + 8, at panel[(q * words_padded + t) * 4 + j]. Columns
// past count repeat their vector's first (their results are dropped), vectors past count are
// zero.
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET)
inline void pack_panels_avx512(const XnorProblem& p, int64_t first, int64_t count, __m512i* out) {
  const ChunkMasks masks = chunk_masks_avx512(p);
  const int64_t chunks = masks.full + 1, tile_vectors = panel512_tile_vectors(p);
  const int64_t groups = (count + kPanel512NR - 1) / kPanel512NR * kPanel512Vectors;
  for (int64_t group = 0; group < groups; ++group) {
    __m512i* dst = out + (group / kPanel512Vectors) * tile_vectors + group % kPanel512Vectors;
    const int64_t cols = std::min<int64_t>(8, count - group * 8);
    // (a vector past count reads nothing: its rows point at the block's first)
    const auto rows = tile_rows<uint32_t, 8>(p.b, cols > 0 ? first + group * 8 : first,
                                            static_cast<int>(std::max<int64_t>(cols, 1)),
                                            p.row_words);
    for (int64_t c = 0; c < chunks; ++c) {
      __m512i v[8];
      for (int j = 0; j < 8; ++j)
        v[j] = cols > 0 ? load_any_chunk_avx512(rows[j], c, masks) : _mm512_setzero_si512();
      transpose8x64_avx512(v);
      for (int w = 0; w < 8; ++w) _mm512_store_si512(dst + (8 * c + w) * kPanel512Vectors, v[w]);
    }
  }
}

// Rows m0 .. m0 + count of A word-interleaved for a tile: out[t * 6 + i] is 64-bit word t of
// row i, bits past k cleared; rows past count repeat the first (their results are dropped).
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET)
inline void interleave_rows_avx512(const XnorProblem& p, int64_t m0, int count, uint64_t* out) {
  const ChunkMasks masks = chunk_masks_avx512(p);
  const auto rows = tile_rows<uint32_t, kPanel512MR>(p.a, m0, count, p.row_words);
  alignas(64) uint64_t chunk[8];
  for (int64_t c = 0; c <= masks.full; ++c) {
    const int words = static_cast<int>(std::min<int64_t>(8, words64(p) - 8 * c));
    for (int i = 0; i < kPanel512MR; ++i) {
      _mm512_store_si512(chunk, load_any_chunk_avx512(rows[i], c, masks));
      for (int w = 0; w < words; ++w) out[(8 * c + w) * kPanel512MR + i] = chunk[w];
    }
  }
}

// The counts of the 6 interleaved rows a against a tile's panel b over `words` 64-bit words:
// lane l of acc[i][j] is the count of row i against column 8j + l.
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
void panel_words_avx512(__m512i (&acc)[kPanel512MR][kPanel512Vectors], const uint64_t* a,
                        const __m512i* b, int64_t words) {
  for (int64_t t = 0; t < words; ++t) {
    __m512i vb[kPanel512Vectors];
    for (int j = 0; j < kPanel512Vectors; ++j) vb[j] = _mm512_load_si512(b + t * 4 + j);
    for (int i = 0; i < kPanel512MR; ++i) {
      const __m512i va = _mm512_set1_epi64(static_cast<int64_t>(a[t * kPanel512MR + i]));
      for (int j = 0; j < kPanel512Vectors; ++j)
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(va, vb[j])));
    }
  }
}

// Writes a tile's dots (k - 2 * count): a Full tile has all its rows and columns, so its
// stores need no tests and no masks (at k = 512 the epilogue is a fifth of a tile's time).
// Counts are below 2^32, so the low halves of two accumulators' 64-bit lanes make one vector
// of 16 counts (one permute) and the dots are formed in 32 bits, which wrap like the 64-bit
// arithmetic narrowed after it: half the epilogue's instructions of one 8-lane narrowing each.
template <XnorOut Out, bool Full>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
void store_tile_avx512(const XnorProblem& p, const __m512i (&acc)[kPanel512MR][kPanel512Vectors],
                       __m512i k_vec, const std::array<int64_t, kPanel512MR>& r, int64_t m0,
                       int m_valid, int64_t n0, int n_valid) {
  const __m512i low_halves = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26,
                                               28, 30);
  // Over all rows, unrolled, so that the accumulators stay in registers.
#pragma GCC unroll 6
  for (int i = 0; i < kPanel512MR; ++i) {
#pragma GCC unroll 2
    for (int h = 0; h < kPanel512Vectors / 2; ++h) {
      const int valid = Full ? 16 : std::clamp(n_valid - 16 * h, 0, 16);
      if (!Full && (i >= m_valid || valid == 0)) continue;
      const __m512i counts =
          _mm512_permutex2var_epi32(acc[i][2 * h], low_halves, acc[i][2 * h + 1]);
      const __m512i dots = _mm512_sub_epi32(k_vec, _mm512_slli_epi32(counts, 1));
      store_dots16_avx512<Out>(p, m0 + i, r[i], n0 + 16 * h, dots,
                               Full ? __mmask16{0xffff}
                                    : static_cast<__mmask16>((1u << valid) - 1u));
    }
  }
}

// The strip of interleaved rows a (m_valid of them) against the panels of columns n_begin ..
// n_end, a 6 x 32 tile at a time, for a problem whose output is Out.
template <XnorOut Out>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET)
void panel_strip_avx512(const XnorProblem& problem, const uint64_t* a, const __m512i* panels,
                        int64_t m0, int m_valid, int64_t n_begin, int64_t n_end) {
  // A copy the stores cannot alias: through `problem` every field would be reloaded after
  // each vector store.
  const XnorProblem p = problem;
  const int64_t words = words64(p), tile_vectors = panel512_tile_vectors(p);
  const auto r = offset_rows<kPanel512MR>(p, m0, m_valid);
  const __m512i k_vec = _mm512_set1_epi32(static_cast<int32_t>(p.k));
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kPanel512NR) {
    const int n_valid = static_cast<int>(std::min<int64_t>(kPanel512NR, n_end - n0));
    const __m512i* tile = panels + (n0 - n_begin) / kPanel512NR * tile_vectors;
    __m512i acc[kPanel512MR][kPanel512Vectors];
    for (auto& row : acc)
      for (auto& v : row) v = _mm512_setzero_si512();
    panel_words_avx512(acc, a, tile, words);
    if (m_valid == kPanel512MR && n_valid == kPanel512NR) {
      store_tile_avx512<Out, true>(p, acc, k_vec, r, m0, m_valid, n0, n_valid);
    } else {
      store_tile_avx512<Out, false>(p, acc, k_vec, r, m0, m_valid, n0, n_valid);
    }
  }
}

// A 64-byte vector of scratch (std::vector<__m512i> would drop the type's alignment).
struct alignas(64) Vector512 {
  uint8_t bytes[64];
};

// Runs a problem of kPanel512MinRows+ rows whose output is Out on panels of B. Each thread
// packs the panels of the column block its strips use once (strips come column-block-major),
// in half of L2 so that they stay there beside the rows of A and the output a strip streams.
// A strip's rows of A meet every column block: where B makes several, A is interleaved once
// up front (1.09x on S2), else each strip interleaves its rows itself, in cache and without
// a parallel pass of its own (which costs 3-7 % at one block).
template <XnorOut Out>
void run_panels_avx512(const XnorProblem& p) {
  const int64_t tile_vectors = panel512_tile_vectors(p);
  const int64_t column_bytes = tile_vectors / kPanel512NR * 64;
  const int64_t block_bytes = kL2Budget / 2;
  const int64_t tile_words = tile_vectors / kPanel512Vectors * kPanel512MR;
  std::unique_ptr<uint64_t[]> shared_a;
  if (p.n * column_bytes > block_bytes) {
    const int64_t row_tiles = (p.m + kPanel512MR - 1) / kPanel512MR;
    shared_a.reset(new uint64_t[row_tiles * tile_words]);
    at::parallel_for(0, row_tiles, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t m0 = t * kPanel512MR;
        interleave_rows_avx512(p, m0, static_cast<int>(std::min<int64_t>(kPanel512MR, p.m - m0)),
                               shared_a.get() + t * tile_words);
      }
    });
  }
  parallel_strip_workers(
      p.m, p.n, kPanel512MR, kPanel512NR, column_bytes,
      [&] {
        return [&p, &shared_a, tile_vectors, tile_words,
                a = std::vector<uint64_t>(shared_a ? 0 : tile_words),
                b = std::vector<Vector512>(), b_begin = int64_t{-1}](
                   int64_t m0, int m_count, int64_t n_begin, int64_t n_end) mutable {
          if (n_begin != b_begin) {
            b.resize((n_end - n_begin + kPanel512NR - 1) / kPanel512NR * tile_vectors);
            pack_panels_avx512(p, n_begin, n_end - n_begin, reinterpret_cast<__m512i*>(b.data()));
            b_begin = n_begin;
          }
          const uint64_t* rows = a.data();
          if (shared_a) {
            rows = shared_a.get() + m0 / kPanel512MR * tile_words;
          } else {
            interleave_rows_avx512(p, m0, m_count, a.data());
          }
          panel_strip_avx512<Out>(p, rows, reinterpret_cast<const __m512i*>(b.data()), m0,
                                  m_count, n_begin, n_end);
        };
      },
      Out == XnorOut::Bits ? 32 : 1, block_bytes);
}

inline void run_panels_avx512(const XnorProblem& p) {
  switch (xnor_out(p)) {
    case XnorOut::Int32: return run_panels_avx512<XnorOut::Int32>(p);
    case XnorOut::Float: return run_panels_avx512<XnorOut::Float>(p);
    case XnorOut::Bits: return run_panels_avx512<XnorOut::Bits>(p);
  }
}

}  // namespace xnor
}  // namespace emokernels
