// The AVX2 XNOR-popcount GEMM: 2 x 4 tiles of XOR + nibble-lookup popcount + bytewise add.
// AVX2 has no vector popcount: each byte's count is two table lookups (vpshufb), one per
// nibble. Problems of kSplitMinRows+ rows first split their rows into nibbles, a byte each
// (split_rows_avx2, split_panels_avx2): XOR commutes with the split, so a pair's step is XOR +
// XOR + 2 lookups + 2 adds, 6 vector ops per 256 bits instead of 8 (the mask and the shift of
// the nibbles are done once per row instead of once per pair).
#pragma once

#include "simd.h"

#include <algorithm>
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

// 8-word (256-bit) chunks of a row; the last one holds the last word.
inline int64_t chunk_count(const XnorProblem& p) { return (p.row_words + 7) / 8; }

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

// The int64 lane sums of chunks c0 .. c_end of each pair; byte counts are summed for up to
// kMaxByteSums chunks, then widened: one vector op per pair and chunk fewer than a widening
// every chunk.
template <int MR>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void count_chunks_avx2(__m256i (&sums)[MR][kAvx2NR], const PackedTile& tile, int64_t c0,
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
template <int MR>
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void tile_avx2(const XnorProblem& p, const PackedTile& tile, int64_t chunks,
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
  const int64_t chunks = chunk_count(p);
  const TailMasks tail = tail_masks_avx2(p, chunks);
  const auto r = offset_rows<MR>(p, m0, m_valid);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx2NR) {
    const int n_valid = static_cast<int>(std::min<int64_t>(kAvx2NR, n_end - n0));
    const auto brows = tile_rows<uint32_t, kAvx2NR>(p.b, n0, n_valid, p.row_words);
    tile_avx2<MR>(p, PackedTile{arows, brows.data(), tail}, chunks, r, m0, m_valid, n0, n_valid);
  }
}

// Chunk c of a row (the last one under the tail masks) split into its low and high nibbles.
struct Nibbles {
  __m256i lo, hi;
};

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
Nibbles split_chunk_avx2(const uint32_t* row, int64_t c, int64_t chunks, const TailMasks& tail) {
  const __m256i nibble = _mm256_set1_epi8(0x0f);
  const __m256i v = c + 1 < chunks ? load_chunk_avx2<false>(row, 8 * c, tail)
                                   : load_chunk_avx2<true>(row, 8 * c, tail);
  return {_mm256_and_si256(v, nibble), _mm256_and_si256(_mm256_srli_epi16(v, 4), nibble)};
}

// Rows first .. first + count of A split into nibbles, 64-bit word by word: out[row * 8 *
// chunks + 2t] holds the low nibbles of word t's bytes, out[.. + 2t + 1] the high ones, so one
// pointer walks both; the bits past k are cleared.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline void split_rows_avx2(const XnorProblem& p, const uint32_t* rows, int64_t first,
                            int64_t count, uint64_t* out) {
  const int64_t chunks = chunk_count(p);
  const TailMasks tail = tail_masks_avx2(p, chunks);
  for (int64_t row = 0; row < count; ++row) {
    const uint32_t* in = rows + (first + row) * p.row_words;
    auto* dst = reinterpret_cast<__m256i*>(out + row * 8 * chunks);
    for (int64_t c = 0; c < chunks; ++c) {
      const Nibbles v = split_chunk_avx2(in, c, chunks, tail);
      const __m256i even = _mm256_unpacklo_epi64(v.lo, v.hi);  // words 0, 2
      const __m256i odd = _mm256_unpackhi_epi64(v.lo, v.hi);   // words 1, 3
      _mm256_storeu_si256(dst + 2 * c, _mm256_permute2x128_si256(even, odd, 0x20));
      _mm256_storeu_si256(dst + 2 * c + 1, _mm256_permute2x128_si256(even, odd, 0x31));
    }
  }
}

// Panels of B for problems of kSplitMinRows+ rows: per tile of 16 columns (4 groups of 4), per
// 64-bit word t of the rows, per group g, one vector of the low nibbles of word t of the
// group's 4 columns, then one of their high nibbles: panel[((tile * 4 * chunks + t) * 4 + g) *
// 2 + h]. Row i of A, its word broadcast, then meets 4 columns in one vector, and each pair's
// counts gather in a 64-bit lane of their own: one vpsadbw finishes 4 pairs, with no
// horizontal sums (at k = 2304 those took a quarter of the 2 x 4 tile's time); a tile's word
// is 256 consecutive bytes.
constexpr int kPanelCols = 4;    // a group: the 64-bit lanes of a vector
constexpr int kPanelGroups = 4;  // a tile: 2 rows x 16 columns, 8 accumulators
constexpr int kPanelNR = kPanelCols * kPanelGroups;
// A byte gains up to 8 a word (4 a nibble): 31 words before one could wrap.
constexpr int64_t kPanelPassWords = 31;
// Longer rows take the packed strips: a tile's panels (16 columns x 64 bytes a chunk, 1 MB at
// this limit) would outgrow L2 and a thread's scratch would grow with k, while the epilogue
// they save is negligible there.
constexpr int64_t kPanelMaxWords = 8 * 1024;

// Vectors of one panel tile: 2 (low, high) per group and 64-bit word of the padded row.
inline int64_t panel_tile_vectors(int64_t chunks) { return chunks * 4 * kPanelGroups * 2; }

// [r0[w], r1[w], r2[w], r3[w]] into r[w]: a 4 x 4 transpose of 64-bit words.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void transpose4x64_avx2(__m256i (&r)[4]) {
  const __m256i a = _mm256_unpacklo_epi64(r[0], r[1]), b = _mm256_unpackhi_epi64(r[0], r[1]);
  const __m256i c = _mm256_unpacklo_epi64(r[2], r[3]), d = _mm256_unpackhi_epi64(r[2], r[3]);
  r[0] = _mm256_permute2x128_si256(a, c, 0x20);
  r[1] = _mm256_permute2x128_si256(b, d, 0x20);
  r[2] = _mm256_permute2x128_si256(a, c, 0x31);
  r[3] = _mm256_permute2x128_si256(b, d, 0x31);
}

// The panels of B's rows first .. first + count, in whole tiles: columns past count repeat
// their group's first (their results are dropped), groups past count are zero.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline void split_panels_avx2(const XnorProblem& p, int64_t first, int64_t count, __m256i* out) {
  const int64_t chunks = chunk_count(p);
  const TailMasks tail = tail_masks_avx2(p, chunks);
  const int64_t groups = (count + kPanelNR - 1) / kPanelNR * kPanelGroups;
  for (int64_t group = 0; group < groups; ++group) {
    const int g = static_cast<int>(group % kPanelGroups);
    __m256i* dst = out + (group / kPanelGroups) * panel_tile_vectors(chunks) + g * 2;
    const int64_t cols = std::min<int64_t>(kPanelCols, count - group * kPanelCols);
    const auto rows = tile_rows<uint32_t, kPanelCols>(p.b, first + group * kPanelCols,
                                                     static_cast<int>(std::max<int64_t>(cols, 1)),
                                                     p.row_words);
    for (int64_t c = 0; c < chunks; ++c) {
      __m256i lo[kPanelCols], hi[kPanelCols];
      for (int j = 0; j < kPanelCols; ++j) {
        const Nibbles v = cols > 0 ? split_chunk_avx2(rows[j], c, chunks, tail)
                                   : Nibbles{_mm256_setzero_si256(), _mm256_setzero_si256()};
        lo[j] = v.lo;
        hi[j] = v.hi;
      }
      transpose4x64_avx2(lo);
      transpose4x64_avx2(hi);
      for (int w = 0; w < 4; ++w) {
        _mm256_store_si256(dst + (c * 4 + w) * kPanelGroups * 2, lo[w]);
        _mm256_store_si256(dst + (c * 4 + w) * kPanelGroups * 2 + 1, hi[w]);
      }
    }
  }
}

// One group of a panel word against the 2 rows: a pair's step, XOR + XOR + 2 lookups + 2 adds.
#define EMOKERNELS_PANEL_GROUP(G, ACC0, ACC1)                 \
  "vpxor " #G "*64(%[b]), %%ymm8, %%ymm13\n\t"                \
  "vpxor " #G "*64+32(%[b]), %%ymm9, %%ymm14\n\t"             \
  "vpshufb %%ymm13, %%ymm12, %%ymm13\n\t"                     \
  "vpshufb %%ymm14, %%ymm12, %%ymm14\n\t"                     \
  "vpaddb %%ymm13, %%ymm14, %%ymm14\n\t"                      \
  "vpaddb %%ymm14, %%" #ACC0 ", %%" #ACC0 "\n\t"              \
  "vpxor " #G "*64(%[b]), %%ymm10, %%ymm13\n\t"               \
  "vpxor " #G "*64+32(%[b]), %%ymm11, %%ymm15\n\t"            \
  "vpshufb %%ymm13, %%ymm12, %%ymm13\n\t"                     \
  "vpshufb %%ymm15, %%ymm12, %%ymm15\n\t"                     \
  "vpaddb %%ymm13, %%ymm15, %%ymm15\n\t"                      \
  "vpaddb %%ymm15, %%" #ACC1 ", %%" #ACC1 "\n\t"

// Byte counts of accumulator I summed into total[I] (ymm13: zero).
#define EMOKERNELS_PANEL_WIDEN(I)                             \
  "vpsadbw %%ymm13, %%ymm" #I ", %%ymm" #I "\n\t"               \
  "vpaddq " #I "*32(%[total]), %%ymm" #I ", %%ymm" #I "\n\t"    \
  "vmovdqu %%ymm" #I ", " #I "*32(%[total])\n\t"

// The counts of `words` (1+) 64-bit words of 2 split rows of A (a0, a1 at the first word)
// against one panel tile (b at the first word), added to total: lane j of total[i * 4 + g] is
// pair (i, 4g + j)'s count. Byte counts are summed over passes of up to kPanelPassWords words,
// then widened into total (vpsadbw). Written with its registers assigned by hand: the 8
// accumulators, 4 broadcast words of A, the table and 3 temporaries fill the 16 ymm registers
// exactly, where GCC's allocation of the same intrinsics spilled 2 accumulators and copied
// others each word (~70 % of the popcount roof in L1 against ~85 %).
#ifdef EMOKERNELS_EMULATE_SIMD
// The test-only emulated build is portable C++ on any host (and selects this path when told it
// has AVX2 only): the same counts, word by word, without the x86 assembly.
inline void panel_words_avx2(__m256i* total, const uint64_t* a0, const uint64_t* a1,
                             const __m256i* b, int64_t words) {
  auto* lanes = reinterpret_cast<uint64_t*>(total);
  const auto* panel = reinterpret_cast<const uint64_t*>(b);
  const uint64_t* rows[2] = {a0, a1};
  for (int64_t t = 0; t < words; ++t)
    for (int i = 0; i < 2; ++i)
      for (int g = 0; g < kPanelGroups; ++g)
        for (int j = 0; j < kPanelCols; ++j) {
          const uint64_t* word = panel + (t * kPanelGroups + g) * 8 + j;  // low; high at +4
          lanes[(i * kPanelGroups + g) * 4 + j] +=
              __builtin_popcountll(rows[i][2 * t] ^ word[0]) +
              __builtin_popcountll(rows[i][2 * t + 1] ^ word[4]);
        }
}
#else
inline void panel_words_avx2(__m256i* total, const uint64_t* a0, const uint64_t* a1,
                             const __m256i* b, int64_t words) {
  int64_t pass;
  __asm__ volatile(
      "vmovdqa %[lut], %%ymm12\n\t"
      "2:\n\t"
      "mov %[max_pass], %[pass]\n\t"
      "cmp %[max_pass], %[words]\n\t"
      "cmovb %[words], %[pass]\n\t"
      "sub %[pass], %[words]\n\t"
      EMOKERNELS_ASM_ZERO_YMM(0) EMOKERNELS_ASM_ZERO_YMM(1) EMOKERNELS_ASM_ZERO_YMM(2)
      EMOKERNELS_ASM_ZERO_YMM(3) EMOKERNELS_ASM_ZERO_YMM(4) EMOKERNELS_ASM_ZERO_YMM(5)
      EMOKERNELS_ASM_ZERO_YMM(6) EMOKERNELS_ASM_ZERO_YMM(7)
      "1:\n\t"
      "vpbroadcastq (%[a0]), %%ymm8\n\t"
      "vpbroadcastq 8(%[a0]), %%ymm9\n\t"
      "vpbroadcastq (%[a1]), %%ymm10\n\t"
      "vpbroadcastq 8(%[a1]), %%ymm11\n\t"
      EMOKERNELS_PANEL_GROUP(0, ymm0, ymm4)
      EMOKERNELS_PANEL_GROUP(1, ymm1, ymm5)
      EMOKERNELS_PANEL_GROUP(2, ymm2, ymm6)
      EMOKERNELS_PANEL_GROUP(3, ymm3, ymm7)
      "add $16, %[a0]\n\t"
      "add $16, %[a1]\n\t"
      "add $256, %[b]\n\t"
      "dec %[pass]\n\t"
      "jnz 1b\n\t"
      EMOKERNELS_ASM_ZERO_YMM(13)
      EMOKERNELS_PANEL_WIDEN(0) EMOKERNELS_PANEL_WIDEN(1) EMOKERNELS_PANEL_WIDEN(2)
      EMOKERNELS_PANEL_WIDEN(3) EMOKERNELS_PANEL_WIDEN(4) EMOKERNELS_PANEL_WIDEN(5)
      EMOKERNELS_PANEL_WIDEN(6) EMOKERNELS_PANEL_WIDEN(7)
      "test %[words], %[words]\n\t"
      "jnz 2b\n\t"
      : [a0] "+r"(a0), [a1] "+r"(a1), [b] "+r"(b), [words] "+r"(words), [pass] "=&r"(pass)
      : [total] "r"(total), [lut] "m"(kNibbleCounts), [max_pass] "i"(kPanelPassWords)
      : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}
#endif
#undef EMOKERNELS_PANEL_WIDEN
#undef EMOKERNELS_PANEL_GROUP

// The strip over split rows of A (a: m_valid rows) and the panels of B's columns n_begin ..
// n_end, a tile of kAvx2MR rows x 16 columns at a time.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline void panel_strip_avx2(const XnorProblem& p, const uint64_t* a, const __m256i* panels,
                             int64_t m0, int m_valid, int64_t n_begin, int64_t n_end) {
  constexpr int MR = kAvx2MR;
  static_assert(MR == 2, "panel_words_avx2 computes 2 rows");
  const int64_t chunks = chunk_count(p);
  const int64_t words = (p.row_words + 1) / 2;  // 64-bit words: the split rows' zeros past them
  const auto arows = tile_rows<uint64_t, MR>(a, 0, m_valid, 8 * chunks);
  const auto r = offset_rows<MR>(p, m0, m_valid);
  const __m256i k_vec = _mm256_set1_epi64x(p.k);
  const __m256i low_halves = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kPanelNR) {
    const int n_valid = static_cast<int>(std::min<int64_t>(kPanelNR, n_end - n0));
    const __m256i* tile = panels + (n0 - n_begin) / kPanelNR * panel_tile_vectors(chunks);
    __m256i total[MR][kPanelGroups];
    for (auto& row : total)
      for (auto& v : row) v = _mm256_setzero_si256();
    panel_words_avx2(&total[0][0], arows[0], arows[1], tile, words);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 4
      for (int g = 0; g < kPanelGroups; ++g) {
        const __m256i dot = _mm256_sub_epi64(k_vec, _mm256_slli_epi64(total[i][g], 1));
        const int valid = std::min(kPanelCols, n_valid - g * kPanelCols);
        if (i < m_valid && valid > 0) {
          store_row_avx2(p, m0 + i, r[i], n0 + g * kPanelCols,
                         _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(dot, low_halves)),
                         valid);
        }
      }
    }
  }
}

// A vector of scratch: std::vector<__m256i> would drop the type's alignment (a template
// argument loses its attributes), and the panels are written by aligned stores.
struct alignas(32) Vector256 {
  uint8_t bytes[32];
};

inline __m256i* vectors(std::vector<Vector256>& v) {
  return reinterpret_cast<__m256i*>(v.data());
}

// Runs a problem of kSplitMinRows+ rows on split rows of A and panels of B. Each thread builds
// the panels of the column block its strips use once (strips come column-block-major) and
// splits each strip's rows of A. A block's panels take half of L2, so that they stay there
// beside the rows of A and the output a strip streams (blocks filling L2 were 1.06-1.16x slower
// on S2, 2048^3 and 4096^3).
inline void run_split_avx2(const XnorProblem& p) {
  const int64_t chunks = chunk_count(p);
  const int64_t split_row = 2 * chunks;  // vectors a row of A or a column of B
  parallel_strip_workers(
      p.m, p.n, kAvx2MR, kPanelNR, split_row * static_cast<int64_t>(sizeof(__m256i)),
      [&] {
        return [&p, chunks, a = std::vector<Vector256>(kAvx2MR * split_row),
                b = std::vector<Vector256>(), b_begin = int64_t{-1}](
                   int64_t m0, int m_count, int64_t n_begin, int64_t n_end) mutable {
          if (n_begin != b_begin) {
            const int64_t tiles = (n_end - n_begin + kPanelNR - 1) / kPanelNR;
            b.resize(tiles * panel_tile_vectors(chunks));
            split_panels_avx2(p, n_begin, n_end - n_begin, vectors(b));
            b_begin = n_begin;
          }
          const auto rows = reinterpret_cast<uint64_t*>(a.data());
          split_rows_avx2(p, p.a, m0, m_count, rows);
          panel_strip_avx2(p, rows, vectors(b), m0, m_count, n_begin, n_end);
        };
      },
      p.out_bits != nullptr ? 32 : 1, kL2Budget / 2);
}

}  // namespace xnor
}  // namespace emokernels
