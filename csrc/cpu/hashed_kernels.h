// HashedNets on the CPU: one row segment of the virtual weight matrix (weights, codes or both)
// generated in place from the buckets, vectorized over columns with the row's half of the hash
// computed once (AVX-512F: 16 columns a step, AVX2: 8), and the bucket-range scatter of the
// bucket gradient. The launchers (hashed_linear*.cpp) multiply generated panels with ATen's
// GEMM and never hold more than a panel of the matrix.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>

#include "../core/hashed/hashed_problem.h"
#include "paths.h"
#include "simd.h"

namespace emokernels::hashed {

// Runs hashed ahead of their copies, their first buckets prefetched: the random reads of the
// bucket vector then overlap instead of waiting one after another.
constexpr int64_t kRunsAhead = 64;

// Scalar columns [j0, j1) of row i: exact hashing (runs of 1), or runs of the block (one hash a
// run, then consecutive buckets, wrapping at num_buckets).
inline void row_portable(const HashedProblem& p, uint32_t i, int64_t j0, int64_t j1, float* w,
                         uint32_t* codes) {
  const uint32_t state = row_state(i, p.seed);
  const int64_t block = int64_t{1} << p.block_shift;
  uint32_t firsts[kRunsAhead];
  for (int64_t j = j0; j < j1;) {
    const int64_t run0 = j >> p.block_shift;
    const int64_t runs = std::min<int64_t>(kRunsAhead, ((j1 - 1) >> p.block_shift) + 1 - run0);
    for (int64_t r = 0; r < runs; ++r) {
      firsts[r] = run_code(p, state, static_cast<uint32_t>(run0 + r));
      __builtin_prefetch(p.buckets + bucket_of(firsts[r]));
    }
    for (int64_t r = 0; r < runs; ++r) {
      const uint32_t sign = firsts[r] & 0x80000000u;
      const int64_t count = std::min<int64_t>(j1, (run0 + r + 1) * block) - j;
      const uint32_t start = bucket_of(firsts[r]) + static_cast<uint32_t>(j & (block - 1));
      if (int64_t{start} + count <= int64_t{p.nb.d}) {
        // Consecutive buckets, copied with the sign bit XORed in (branch-free loops the
        // compiler vectorizes).
        const uint32_t* src = reinterpret_cast<const uint32_t*>(p.buckets) + start;
        if (w) {
          uint32_t* dst = reinterpret_cast<uint32_t*>(w + (j - j0));
          for (int64_t t = 0; t < count; ++t) dst[t] = src[t] ^ sign;
        }
        if (codes) {
          for (int64_t t = 0; t < count; ++t) codes[j - j0 + t] = (start + uint32_t(t)) | sign;
        }
      } else {
        for (int64_t t = 0; t < count; ++t) {
          const uint32_t b = p.nb.mod(start + static_cast<uint32_t>(t));
          if (codes) codes[j - j0 + t] = b | sign;
          if (w) w[j - j0 + t] = apply_sign(sign, p.buckets[b]);
        }
      }
      j += count;
    }
  }
}

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET) EMOKERNELS_ALWAYS_INLINE
__m256i codes_avx2(const HashedProblem& p, __m256i state, __m256i j) {
  __m256i h = _mm256_add_epi32(state, _mm256_mullo_epi32(j, _mm256_set1_epi32(int(kPrime3))));
  h = _mm256_or_si256(_mm256_slli_epi32(h, 17), _mm256_srli_epi32(h, 15));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32(int(kPrime4)));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 15));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32(int(kPrime2)));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 13));
  h = _mm256_mullo_epi32(h, _mm256_set1_epi32(int(kPrime3)));
  h = _mm256_xor_si256(h, _mm256_srli_epi32(h, 16));
  // n % d by FastMod: the 64-bit products of even and odd lanes, shifted, then interleaved.
  const __m256i n = _mm256_srli_epi32(h, 1);
  const __m256i magic = _mm256_set1_epi32(int(p.nb.magic));
  const __m128i shift = _mm_cvtsi32_si128(int(p.nb.shift));
  const __m256i q_even = _mm256_srl_epi64(_mm256_mul_epu32(n, magic), shift);
  const __m256i q_odd = _mm256_slli_epi64(
      _mm256_srl_epi64(_mm256_mul_epu32(_mm256_srli_epi64(n, 32), magic), shift), 32);
  const __m256i q = _mm256_blend_epi32(q_even, q_odd, 0xAA);
  const __m256i r = _mm256_sub_epi32(n, _mm256_mullo_epi32(q, _mm256_set1_epi32(int(p.nb.d))));
  return _mm256_or_si256(r, _mm256_slli_epi32(h, 31));
}

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline void row_avx2(const HashedProblem& p, uint32_t i, int64_t j0, int64_t j1, float* w,
                     uint32_t* codes) {
  const __m256i state = _mm256_set1_epi32(int(row_state(i, p.seed)));
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i low = _mm256_set1_epi32(0x7FFFFFFF);
  int64_t j = j0;
  for (; j + 8 <= j1; j += 8) {
    const __m256i c = codes_avx2(p, state, _mm256_add_epi32(_mm256_set1_epi32(int(j)), iota));
    if (codes) _mm256_storeu_si256(reinterpret_cast<__m256i*>(codes + (j - j0)), c);
    if (w) {
      const __m256i v = _mm256_i32gather_epi32(reinterpret_cast<const int*>(p.buckets),
                                               _mm256_and_si256(c, low), 4);
      const __m256i s = _mm256_andnot_si256(low, c);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(w + (j - j0)), _mm256_xor_si256(v, s));
    }
  }
  row_portable(p, i, j, j1, w ? w + (j - j0) : nullptr, codes ? codes + (j - j0) : nullptr);
}

EMOKERNELS_TARGET(EMOKERNELS_AVX512F_TARGET) EMOKERNELS_ALWAYS_INLINE
__m512i codes_avx512(const HashedProblem& p, __m512i state, __m512i j) {
  __m512i h = _mm512_add_epi32(state, _mm512_mullo_epi32(j, _mm512_set1_epi32(int(kPrime3))));
  h = _mm512_mullo_epi32(_mm512_rol_epi32(h, 17), _mm512_set1_epi32(int(kPrime4)));
  h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 15));
  h = _mm512_mullo_epi32(h, _mm512_set1_epi32(int(kPrime2)));
  h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 13));
  h = _mm512_mullo_epi32(h, _mm512_set1_epi32(int(kPrime3)));
  h = _mm512_xor_si512(h, _mm512_srli_epi32(h, 16));
  const __m512i n = _mm512_srli_epi32(h, 1);
  const __m512i magic = _mm512_set1_epi32(int(p.nb.magic));
  const __m128i shift = _mm_cvtsi32_si128(int(p.nb.shift));
  const __m512i q_even = _mm512_srl_epi64(_mm512_mul_epu32(n, magic), shift);
  const __m512i q_odd = _mm512_slli_epi64(
      _mm512_srl_epi64(_mm512_mul_epu32(_mm512_srli_epi64(n, 32), magic), shift), 32);
  const __m512i q = _mm512_mask_blend_epi32(0xAAAA, q_even, q_odd);
  const __m512i r = _mm512_sub_epi32(n, _mm512_mullo_epi32(q, _mm512_set1_epi32(int(p.nb.d))));
  return _mm512_or_si512(r, _mm512_slli_epi32(h, 31));
}

EMOKERNELS_TARGET(EMOKERNELS_AVX512F_TARGET)
inline void row_avx512(const HashedProblem& p, uint32_t i, int64_t j0, int64_t j1, float* w,
                       uint32_t* codes) {
  const __m512i state = _mm512_set1_epi32(int(row_state(i, p.seed)));
  const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i low = _mm512_set1_epi32(0x7FFFFFFF);
  int64_t j = j0;
  for (; j + 16 <= j1; j += 16) {
    const __m512i c = codes_avx512(p, state, _mm512_add_epi32(_mm512_set1_epi32(int(j)), iota));
    if (codes) _mm512_storeu_si512(codes + (j - j0), c);
    if (w) {
      const __m512i v =
          _mm512_castps_si512(_mm512_i32gather_ps(_mm512_and_si512(c, low), p.buckets, 4));
      _mm512_storeu_si512(w + (j - j0), _mm512_xor_si512(v, _mm512_andnot_si512(low, c)));
    }
  }
  row_portable(p, i, j, j1, w ? w + (j - j0) : nullptr, codes ? codes + (j - j0) : nullptr);
}

// Columns [j0, j1) of row i into w (weights) and / or codes (either may be null). The vector
// paths hash column by column; block hashing hashes once a run, which the portable loop does.
inline void generate_row(HashedPath path, const HashedProblem& p, uint32_t i, int64_t j0,
                         int64_t j1, float* w, uint32_t* codes) {
  if (p.block_shift == 0 && path == HashedPath::Avx512) return row_avx512(p, i, j0, j1, w, codes);
  if (p.block_shift == 0 && path == HashedPath::Avx2) return row_avx2(p, i, j0, j1, w, codes);
  row_portable(p, i, j0, j1, w, codes);
}

// sum_j a[j] * b[j] in float32, lane-wise then across lanes (the fused small-batch path).
inline float dot_portable(const float* a, const float* b, int64_t n) {
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {
    for (int l = 0; l < 4; ++l) acc[l] += a[j + l] * b[j + l];
  }
  for (; j < n; ++j) acc[0] += a[j] * b[j];
  return (acc[0] + acc[1]) + (acc[2] + acc[3]);
}

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline float dot_avx2(const float* a, const float* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j), _mm256_loadu_ps(b + j), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + j + 8), _mm256_loadu_ps(b + j + 8), acc1);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_add_ps(acc0, acc1));
  return (((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) +
          ((lanes[4] + lanes[5]) + (lanes[6] + lanes[7]))) +
         dot_portable(a + j, b + j, n - j);
}

EMOKERNELS_TARGET(EMOKERNELS_AVX512F_TARGET)
inline float dot_avx512(const float* a, const float* b, int64_t n) {
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j), _mm512_loadu_ps(b + j), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + j + 16), _mm512_loadu_ps(b + j + 16), acc1);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + dot_portable(a + j, b + j, n - j);
}

inline float dot(HashedPath path, const float* a, const float* b, int64_t n) {
  if (path == HashedPath::Avx512) return dot_avx512(a, b, n);
  if (path == HashedPath::Avx2) return dot_avx2(a, b, n);
  return dot_portable(a, b, n);
}

// grad_buckets[b] += sign * g over a panel g [rows, cols] with its codes, for the buckets in
// [lo, hi) only: each thread owns a bucket range and adds its members in panel order, so the
// sum is the same for any number of threads. Out-of-range elements add to a dummy slot instead
// of branching.
inline void scatter_range(const float* g, const uint32_t* codes, int64_t count, float* out,
                          uint32_t lo, uint32_t hi, float* dummy) {
  const uint32_t range = hi - lo;
  for (int64_t e = 0; e < count; ++e) {
    const uint32_t c = codes[e];
    const uint32_t local = bucket_of(c) - lo;
    float* slot = local < range ? out + local : dummy;
    *slot += apply_sign(c, g[e]);
  }
}

}  // namespace emokernels::hashed

namespace emokernels::hashed {

// Rows of W generated at a time for the GEMM paths: about 4 MB of float32, so the panel (and
// its codes in the backward) stays far below the dense matrix and in the last-level cache.
constexpr int64_t kPanelElements = int64_t{1} << 20;

inline int64_t panel_rows(int64_t rows, int64_t cols) {
  return std::clamp<int64_t>(kPanelElements / cols, 1, rows);
}

}  // namespace emokernels::hashed

namespace emokernels::hashed {

// Rows [i0, i0 + count) of W, all columns, into w [count, cols] and / or codes, in parallel.
inline void generate_panel(HashedPath path, const HashedProblem& p, int64_t i0, int64_t count,
                           float* w, uint32_t* codes) {
  const int64_t k = p.cols;
  at::parallel_for(0, count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      generate_row(path, p, static_cast<uint32_t>(i0 + r), 0, k, w ? w + r * k : nullptr,
                   codes ? codes + r * k : nullptr);
    }
  });
}

}  // namespace emokernels::hashed
