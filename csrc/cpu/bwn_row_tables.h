// Binary-weight GEMM for a few rows of x (batch-1 fully connected layers), float32.
//
// The table-lookup kernels of bwn_gemm_lut.h / bwn_gemm_lut_avx2.h need a vector's worth of x
// rows to fill their lanes. Here a lane is a weight row instead: for each group of kBits
// consecutive k of one x row, the 2^kBits signed sums (+-x[k] +-x[k+1] ...) fill one vector,
// and a variable permute picks, in each lane, the entry that weight row's bits name. AVX2:
// vpermps on 8 lanes, 3 bits (24 multiply-free MACs per permute + add + shift, against 8 per
// FMA of a float GEMV, which is bound by reading 32x the weight bytes anyway); AVX-512:
// vpermps on 16 lanes, 4 bits (64 MACs). The body is bwn_row_tables.inc, once per ISA.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../core/bwn/bwn_problem.h"
#include "bwn_gemm_lut.h"
#include "bwn_gemm_lut_avx2.h"
#include "simd.h"
#include "tiling.h"

namespace emokernels::bwn_row_tables {

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
__m256 load_words_avx2(const uint32_t* row, int count) {
  if (count == 8) {
    return _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row)));
  }
  const __m256i lanes = _mm256_cmpgt_epi32(_mm256_set1_epi32(count),
                                           _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_castsi256_ps(_mm256_maskload_epi32(reinterpret_cast<const int*>(row), lanes));
}

EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET) EMOKERNELS_ALWAYS_INLINE
__m512 load_words_avx512(const uint32_t* row, int count) {
  return _mm512_castsi512_ps(
      _mm512_maskz_loadu_epi32(static_cast<__mmask16>((1u << count) - 1u), row));
}

#define EK_NS avx2
#define EK_ATTR EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
#define EK_LANES 8
#define EK_BITS 3
#define EK_REG "x"
#define EK_V __m256
#define EK_VI __m256i
#define EK_SET1 _mm256_set1_ps
#define EK_ZERO _mm256_setzero_ps
#define EK_ADD _mm256_add_ps
#define EK_XOR _mm256_xor_ps
#define EK_LOADU _mm256_loadu_ps
#define EK_STOREU _mm256_storeu_ps
#define EK_LOAD_WORDS load_words_avx2
#define EK_LOADU_I(p) _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))
#define EK_PERMUTE(table, idx) _mm256_permutevar8x32_ps(table, idx)
#define EK_SRLI _mm256_srli_epi32
#define EK_TRANSPOSE lut_avx2::transpose8
#include "bwn_row_tables.inc"

#define EK_NS avx512
#define EK_ATTR EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET)
#define EK_LANES 16
#define EK_BITS 4
#define EK_REG "v"
#define EK_V __m512
#define EK_VI __m512i
#define EK_SET1 _mm512_set1_ps
#define EK_ZERO _mm512_setzero_ps
#define EK_ADD _mm512_add_ps
#define EK_XOR _mm512_xor_ps
#define EK_LOADU _mm512_loadu_ps
#define EK_STOREU _mm512_storeu_ps
#define EK_LOAD_WORDS load_words_avx512
#define EK_LOADU_I(p) _mm512_loadu_si512(p)
#define EK_PERMUTE(table, idx) _mm512_permutexvar_ps(idx, table)
#define EK_SRLI _mm512_srli_epi32
#define EK_TRANSPOSE lut::transpose16
#include "bwn_row_tables.inc"

}  // namespace emokernels::bwn_row_tables
