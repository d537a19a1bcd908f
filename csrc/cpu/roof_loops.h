// Register-only loops: the instruction mix of a kernel's inner step with every operand already
// in a register, so their throughput is the ceiling that kernel can approach on this CPU.
// Each returns a value that depends on every accumulator, so no work can be dropped.
#pragma once

#include <cstdint>

#include "popcount_simd.h"
#include "simd.h"

namespace emokernels {
namespace roof {

// xnor_gemm's AVX-512 step: a 3 x 8 tile of XOR + VPOPCNTQ + add, 512 bits per pair.
// Binary MACs done: iterations * 24 * 512.
EMOKERNELS_TARGET(EMOKERNELS_AVX512_TARGET)
inline int64_t popcount_avx512(int64_t iterations) {
  __m512i acc[3][8];
  for (auto& row : acc)
    for (auto& v : row) v = _mm512_setzero_si512();
  __m512i va[3] = {_mm512_set1_epi64(0x0123456789abcdefLL), _mm512_set1_epi64(0x1111),
                   _mm512_set1_epi64(-7)};
  __m512i vb = _mm512_set1_epi64(0x5555555555555555LL);
  for (int64_t it = 0; it < iterations; ++it) {
    for (auto& v : va) EMOKERNELS_OPAQUE(v, "v");
    for (int j = 0; j < 8; ++j) {
      EMOKERNELS_OPAQUE(vb, "v");
      for (int i = 0; i < 3; ++i)
        acc[i][j] = _mm512_add_epi64(acc[i][j], _mm512_popcnt_epi64(_mm512_xor_si512(va[i], vb)));
    }
  }
  __m512i sum = _mm512_setzero_si512();
  for (auto& row : acc)
    for (auto& v : row) sum = _mm512_add_epi64(sum, v);
  alignas(64) int64_t lanes[8];
  _mm512_store_si512(lanes, sum);
  int64_t total = 0;
  for (int64_t v : lanes) total += v;
  return total;
}

// xnor_gemm's AVX2 step on rows split into nibbles (the kernel's for 16+ rows): a 2 x 3 tile
// of two XORs + two nibble lookups + two bytewise adds, 256 bits per pair (the kernel's rare
// widening of the byte sums is left out). 2 x 3, not the kernel's 2 x 4: without loads both
// nibbles of B take registers too. Registers assigned by hand, as in the kernel: compiled from
// intrinsics, GCC kept accumulators in memory and the roof read low. Binary MACs done:
// iterations * 6 * 256.
constexpr int kRoofAvx2Cols = 3;

// Column J of the tile: row 0 (nibbles in ymm8, ymm9) into accumulator J, row 1 (ymm10,
// ymm11) into accumulator J + 3; B's nibbles in ymm6, ymm7, the table in ymm12.
#define EMOKERNELS_ROOF_AVX2_COLUMN(J, J3)         \
  "vpxor %%ymm6, %%ymm8, %%ymm13\n\t"              \
  "vpxor %%ymm7, %%ymm9, %%ymm14\n\t"              \
  "vpshufb %%ymm13, %%ymm12, %%ymm13\n\t"          \
  "vpshufb %%ymm14, %%ymm12, %%ymm14\n\t"          \
  "vpaddb %%ymm13, %%ymm14, %%ymm14\n\t"           \
  "vpaddb %%ymm14, %%ymm" #J ", %%ymm" #J "\n\t"   \
  "vpxor %%ymm6, %%ymm10, %%ymm13\n\t"             \
  "vpxor %%ymm7, %%ymm11, %%ymm15\n\t"             \
  "vpshufb %%ymm13, %%ymm12, %%ymm13\n\t"          \
  "vpshufb %%ymm15, %%ymm12, %%ymm15\n\t"          \
  "vpaddb %%ymm13, %%ymm15, %%ymm15\n\t"           \
  "vpaddb %%ymm15, %%ymm" #J3 ", %%ymm" #J3 "\n\t"

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline int64_t popcount_avx2(int64_t iterations) {
  alignas(32) static constexpr uint8_t kOperands[7][32] = {
      {0x0d}, {0x03}, {0x06}, {0x0e}, {0x05}, {0x0a}, {}};  // A lo/hi x 2, B lo/hi, zero
  alignas(32) int64_t lanes[4];
#ifdef EMOKERNELS_EMULATE_SIMD
  // The test-only emulated build is portable C++: the same work, without the assembly.
  const __m256i lut = _mm256_load_si256(reinterpret_cast<const __m256i*>(kNibbleCounts));
  __m256i acc[2][kRoofAvx2Cols] = {};
  const auto operand = [&](int i) {
    return _mm256_load_si256(reinterpret_cast<const __m256i*>(kOperands[i]));
  };
  for (int64_t it = 0; it < iterations; ++it)
    for (int j = 0; j < kRoofAvx2Cols; ++j)
      for (int i = 0; i < 2; ++i) {
        const __m256i lo = _mm256_xor_si256(operand(2 * i), operand(4));
        const __m256i hi = _mm256_xor_si256(operand(2 * i + 1), operand(5));
        acc[i][j] = _mm256_add_epi8(acc[i][j], _mm256_add_epi8(_mm256_shuffle_epi8(lut, lo),
                                                               _mm256_shuffle_epi8(lut, hi)));
      }
  __m256i sum = _mm256_setzero_si256();  // wrapped byte sums: a value to keep, not a count
  for (auto& row : acc)
    for (auto& v : row) sum = _mm256_add_epi64(sum, sum_bytes_avx2(v));
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), sum);
#else
  if (iterations > 0) {
    __asm__ volatile(
        "vmovdqa %[lut], %%ymm12\n\t"
        "vmovdqa 0(%[ops]), %%ymm8\n\t"
        "vmovdqa 32(%[ops]), %%ymm9\n\t"
        "vmovdqa 64(%[ops]), %%ymm10\n\t"
        "vmovdqa 96(%[ops]), %%ymm11\n\t"
        "vmovdqa 128(%[ops]), %%ymm6\n\t"
        "vmovdqa 160(%[ops]), %%ymm7\n\t"
        EMOKERNELS_ASM_ZERO_YMM(0) EMOKERNELS_ASM_ZERO_YMM(1) EMOKERNELS_ASM_ZERO_YMM(2)
        EMOKERNELS_ASM_ZERO_YMM(3) EMOKERNELS_ASM_ZERO_YMM(4) EMOKERNELS_ASM_ZERO_YMM(5)
        "1:\n\t"
        EMOKERNELS_ROOF_AVX2_COLUMN(0, 3)
        EMOKERNELS_ROOF_AVX2_COLUMN(1, 4)
        EMOKERNELS_ROOF_AVX2_COLUMN(2, 5)
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        // wrapped byte sums: a value to keep, not a count
        EMOKERNELS_ASM_ZERO_YMM(13)
        "vpaddb %%ymm1, %%ymm0, %%ymm0\n\t"
        "vpaddb %%ymm2, %%ymm0, %%ymm0\n\t"
        "vpaddb %%ymm3, %%ymm0, %%ymm0\n\t"
        "vpaddb %%ymm4, %%ymm0, %%ymm0\n\t"
        "vpaddb %%ymm5, %%ymm0, %%ymm0\n\t"
        "vpsadbw %%ymm13, %%ymm0, %%ymm0\n\t"
        "vmovdqa %%ymm0, %[lanes]\n\t"
        : [n] "+r"(iterations), [lanes] "=m"(lanes)
        : [lut] "m"(kNibbleCounts), [ops] "r"(kOperands)
        : "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
          "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
  } else {
    lanes[0] = lanes[1] = lanes[2] = lanes[3] = 0;
  }
#endif
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#undef EMOKERNELS_ROOF_AVX2_COLUMN

// The portable step, as the portable kernel does it: 32-bit XOR + popcount + add on 8
// accumulators. Binary MACs done: iterations * 8 * 32.
inline int64_t popcount_portable(int64_t iterations) {
  uint64_t acc[8] = {};
  uint32_t a = 0x01234567u, b = 0x55555555u;
  for (int64_t it = 0; it < iterations; ++it) {
    for (int j = 0; j < 8; ++j) {
      EMOKERNELS_OPAQUE(b, "r");
      acc[j] += static_cast<uint64_t>(__builtin_popcount(a ^ b));
    }
  }
  uint64_t sum = 0;
  for (uint64_t v : acc) sum += v;
  return static_cast<int64_t>(sum);
}

// The sum of a vector's 8 floats (a value that depends on every lane).
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline float sum_lanes_avx2(__m256 v) {
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, v);
  float total = 0;
  for (float lane : lanes) total += lane;
  return total;
}

// float32 FMA on 24 independent 16-lane accumulators, each the addend as in a GEMM (acc +=
// a * b): cores that forward an addend early (Zen 5) run this form 1.6x faster than acc = a *
// acc + b. FLOPs done: iterations * 24 * 32.
EMOKERNELS_TARGET(EMOKERNELS_AVX512F_TARGET)
inline float fma_avx512(int64_t iterations) {
  __m512 acc[24];
  for (auto& v : acc) v = _mm512_setzero_ps();
  __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-3f);
  for (int64_t it = 0; it < iterations; ++it) {
    EMOKERNELS_OPAQUE(a, "v");
    // Unrolled by hand: GCC's default limit (16) leaves the 24 accumulators in memory.
#pragma GCC unroll 24
    for (auto& v : acc) v = _mm512_fmadd_ps(a, b, v);
  }
  __m512 sum = _mm512_setzero_ps();
  for (auto& v : acc) sum = _mm512_add_ps(sum, v);
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}

// float32 FMA on 12 independent 8-lane accumulators, each the addend (acc += a * b). FLOPs
// done: iterations * 12 * 16.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline float fma_avx2(int64_t iterations) {
  __m256 acc[12];
  for (auto& v : acc) v = _mm256_setzero_ps();
  __m256 a = _mm256_set1_ps(0.999f), b = _mm256_set1_ps(1e-3f);
  for (int64_t it = 0; it < iterations; ++it) {
    EMOKERNELS_OPAQUE(a, "x");
#pragma GCC unroll 12
    for (auto& v : acc) v = _mm256_fmadd_ps(a, b, v);
  }
  __m256 sum = _mm256_setzero_ps();
  for (auto& v : acc) sum = _mm256_add_ps(sum, v);
  return sum_lanes_avx2(sum);
}

// Scalar float32 multiply-add on 8 accumulators. FLOPs done: iterations * 8 * 2.
inline float fma_portable(int64_t iterations) {
  float acc[8] = {};
  float a = 0.999f;
  for (int64_t it = 0; it < iterations; ++it) {
    EMOKERNELS_OPAQUE(a, "m");
    for (auto& v : acc) v = a * v + 1e-3f;
  }
  float sum = 0;
  for (float v : acc) sum += v;
  return sum;
}

// bwn_gemm's few-rows step (bwn_row_tables.inc) on 6 independent chains: a table permute
// picked by a weight word's low bits, an add, a shift of the word. Multiply-free MACs done:
// iterations * 6 * Lanes * Bits (AVX-512: 16 lanes, 4 bits; AVX2: 8 lanes, 3 bits). The
// chains are named variables: fenced array elements would live on the stack.
EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET) EMOKERNELS_ALWAYS_INLINE
void lookup_step_avx512(__m512& acc, __m512i& bits, __m512 table) {
  acc = _mm512_add_ps(acc, _mm512_permutexvar_ps(bits, table));
  bits = _mm512_srli_epi32(bits, 4);
  EMOKERNELS_OPAQUE(bits, "v");
}

EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET)
inline float lookup_avx512(int64_t iterations) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  __m512i b0 = _mm512_set1_epi32(0x12345678), b1 = b0, b2 = b0, b3 = b0, b4 = b0, b5 = b0;
  __m512 table = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int64_t it = 0; it < iterations; ++it) {
    EMOKERNELS_OPAQUE(table, "v");
    lookup_step_avx512(a0, b0, table);
    lookup_step_avx512(a1, b1, table);
    lookup_step_avx512(a2, b2, table);
    lookup_step_avx512(a3, b3, table);
    lookup_step_avx512(a4, b4, table);
    lookup_step_avx512(a5, b5, table);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), a2),
                                            _mm512_add_ps(_mm512_add_ps(a3, a4), a5)));
}

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
void lookup_step_avx2(__m256& acc, __m256i& bits, __m256 table) {
  acc = _mm256_add_ps(acc, _mm256_permutevar8x32_ps(table, bits));
  bits = _mm256_srli_epi32(bits, 3);
  EMOKERNELS_OPAQUE(bits, "x");
}

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline float lookup_avx2(int64_t iterations) {
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0;
  __m256i b0 = _mm256_set1_epi32(0x12345678), b1 = b0, b2 = b0, b3 = b0, b4 = b0, b5 = b0;
  __m256 table = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
  for (int64_t it = 0; it < iterations; ++it) {
    EMOKERNELS_OPAQUE(table, "x");
    lookup_step_avx2(a0, b0, table);
    lookup_step_avx2(a1, b1, table);
    lookup_step_avx2(a2, b2, table);
    lookup_step_avx2(a3, b3, table);
    lookup_step_avx2(a4, b4, table);
    lookup_step_avx2(a5, b5, table);
  }
  const __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), a2),
                                   _mm256_add_ps(_mm256_add_ps(a3, a4), a5));
  return sum_lanes_avx2(sum);
}

// The portable bwn_gemm step: a sign-selected scalar add on 8 chains. MACs done:
// iterations * 8.
inline float lookup_portable(int64_t iterations) {
  float acc[8] = {};
  float x = 0.5f;
  uint32_t bits = 0x12345678u;
  for (int64_t it = 0; it < iterations; ++it) {
    EMOKERNELS_OPAQUE(bits, "r");
    for (int j = 0; j < 8; ++j) acc[j] += (bits >> j) & 1u ? x : -x;
  }
  float sum = 0;
  for (float v : acc) sum += v;
  return sum;
}

}  // namespace roof
}  // namespace emokernels
