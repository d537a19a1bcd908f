// The AVX-512 (VPOPCNTDQ) XNOR-popcount GEMM: 3 x 8 tiles of XOR + VPOPCNTQ + add.
#pragma once

#include "simd.h"

#include "popcount_simd.h"
#include "xnor_strip.h"

namespace emokernels {
namespace xnor {

// The output a problem writes: fixed per call, so that a tile's epilogue can be compiled for
// it instead of testing it at every store.
enum class XnorOut { Int32, Float, Bits };

inline XnorOut xnor_out(const XnorProblem& p) {
  return p.out_bits != nullptr ? XnorOut::Bits
         : p.out_f32 != nullptr ? XnorOut::Float
                                : XnorOut::Int32;
}

// Writes the dots of outputs (m, n0 .. n0 + 8) under `valid`, as store_row does, for a
// problem whose output is Out.
template <XnorOut Out>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
void store_dots_avx512(const XnorProblem& p, int64_t m, int64_t r, int64_t n0, __m256i dot,
                       __mmask8 valid) {
  if constexpr (Out == XnorOut::Int32) {
    return _mm256_mask_storeu_epi32(p.out_i32 + m * p.n + n0, valid, dot);
  }
  if (p.offset) {
    const int32_t* offset = p.offset + r * p.n + n0;
    dot = _mm256_add_epi32(dot, _mm256_maskz_loadu_epi32(valid, offset));
  }
  if constexpr (Out == XnorOut::Bits) {  // sign_bit: lower[n] <= dot <= upper[n]
    const __mmask8 inside = _mm256_mask_cmple_epi32_mask(
        _mm256_mask_cmpge_epi32_mask(valid, dot, _mm256_maskz_loadu_epi32(valid, p.bounds + n0)),
        dot, _mm256_maskz_loadu_epi32(valid, p.bounds + p.n + n0));
    p.out_bits[m * p.out_words + n0 / 32] |= static_cast<uint32_t>(inside) << (n0 % 32);
    return;
  }
  __m256 v = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_maskz_loadu_ps(valid, p.scale + n0));
  if (p.bias) v = _mm256_add_ps(v, _mm256_maskz_loadu_ps(valid, p.bias + n0));
  _mm256_mask_storeu_ps(p.out_f32 + m * p.n + n0, valid, v);
}

// store_dots_avx512 for 16 consecutive columns; int32 dots in one store.
template <XnorOut Out>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
void store_dots16_avx512(const XnorProblem& p, int64_t m, int64_t r, int64_t n0, __m512i dots,
                         __mmask16 valid) {
  if constexpr (Out == XnorOut::Int32) {
    return _mm512_mask_storeu_epi32(p.out_i32 + m * p.n + n0, valid, dots);
  }
  store_dots_avx512<Out>(p, m, r, n0, _mm512_castsi512_si256(dots),
                         static_cast<__mmask8>(valid));
  if (valid >> 8) {
    store_dots_avx512<Out>(p, m, r, n0 + 8, _mm512_extracti64x4_epi64(dots, 1),
                           static_cast<__mmask8>(valid >> 8));
  }
}

// store_dots_avx512 for whichever output p writes.
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
void store_row_avx512(const XnorProblem& p, int64_t m, int64_t r, int64_t n0, __m256i dot,
                      __mmask8 valid) {
  switch (xnor_out(p)) {
    case XnorOut::Int32: return store_dots_avx512<XnorOut::Int32>(p, m, r, n0, dot, valid);
    case XnorOut::Float: return store_dots_avx512<XnorOut::Float>(p, m, r, n0, dot, valid);
    case XnorOut::Bits: return store_dots_avx512<XnorOut::Bits>(p, m, r, n0, dot, valid);
  }
}

// 3 x 8 tile: 24 accumulators + 3 A vectors + 1 B vector stay in the 32 zmm registers.
constexpr int kAvx512MR = 3;
constexpr int kAvx512NR = 8;

// A row's 16-word chunks: the last one (1..16 words, holding the last word) is loaded under
// a mask and cleared past k, so that garbage beyond k never counts.
struct ChunkMasks {
  int64_t full;  // chunks before the last one
  __mmask16 tail_load;
  __m512i tail_bits;
};

EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
ChunkMasks chunk_masks_avx512(const XnorProblem& p) {
  const int64_t full = (p.row_words - 1) / 16;
  const int tail_words = static_cast<int>(p.row_words - 16 * full);
  return {full, static_cast<__mmask16>((1u << tail_words) - 1u),
          _mm512_mask_set1_epi32(_mm512_set1_epi32(-1),
                                 static_cast<__mmask16>(1u << (tail_words - 1)),
                                 static_cast<int>(p.last_mask))};
}

// Chunk c of a row; Tail: the last one.
template <bool Tail>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
__m512i load_chunk_avx512(const uint32_t* row, int64_t c, const ChunkMasks& m) {
  if (!Tail) return _mm512_loadu_si512(row + 16 * c);
  return _mm512_and_si512(_mm512_maskz_loadu_epi32(m.tail_load, row + 16 * c), m.tail_bits);
}

// One 16-word chunk c of the 3 x 8 tile (Tail: the last one).
template <bool Tail, int MR>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET) EMOKERNELS_ALWAYS_INLINE
void xnor_step_avx512(
    __m512i (&acc)[MR][kAvx512NR], const uint32_t* const* arows,
    const uint32_t* const* brows, int64_t c, const ChunkMasks& masks) {
  __m512i va[MR];
  for (int i = 0; i < MR; ++i) va[i] = load_chunk_avx512<Tail>(arows[i], c, masks);
  for (int j = 0; j < kAvx512NR; ++j) {
    const __m512i vb = load_chunk_avx512<Tail>(brows[j], c, masks);
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
  const ChunkMasks masks = chunk_masks_avx512(p);
  const auto r = offset_rows<MR>(p, m0, m_valid);
  const __m512i k_vec = _mm512_set1_epi64(p.k);

  for (int64_t n0 = n_begin; n0 < n_end; n0 += kAvx512NR) {
    const int n_valid = static_cast<int>(std::min<int64_t>(kAvx512NR, n_end - n0));
    const auto brows = tile_rows<uint32_t, kAvx512NR>(p.b, n0, n_valid, p.row_words);
    __m512i acc[MR][kAvx512NR];
    for (auto& row : acc)
      for (auto& v : row) v = _mm512_setzero_si512();
    for (int64_t c = 0; c < masks.full; ++c)
      xnor_step_avx512<false, MR>(acc, arows, brows.data(), c, masks);
    xnor_step_avx512<true, MR>(acc, arows, brows.data(), masks.full, masks);

    const __mmask8 store = static_cast<__mmask8>((1u << n_valid) - 1u);
    for (int i = 0; i < m_valid; ++i) {
      const __m512i diff = reduce8_epi64(acc[i]);
      const __m256i dot =
          _mm512_cvtepi64_epi32(_mm512_sub_epi64(k_vec, _mm512_slli_epi64(diff, 1)));
      store_row_avx512(p, m0 + i, r[i], n0, dot, store);
    }
  }
}

}  // namespace xnor
}  // namespace emokernels
