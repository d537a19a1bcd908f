// The XNOR-popcount GEMM, independent of any framework: the problem over raw pointers, the
// scalar reference of one output and the fused epilogue, shared by every backend.
#pragma once

#include "../common/std.h"

#include "../common/bits.h"

namespace emokernels::xnor {

// out[m, n] = k - 2 * popcount(a[m] XOR b[n]) over the first k bits, written either as int32
// (out_i32) or, fused, as float32 (out_f32) through xnor_epilogue; offset and bias optional.
struct XnorProblem {
  const uint32_t* a;
  const uint32_t* b;
  int64_t m, n, row_words;  // row_words: stride of a and b rows, = ceil(k/32)
  int64_t k;
  uint32_t last_mask;
  int32_t* out_i32 = nullptr;
  float* out_f32 = nullptr;
  const float* scale = nullptr;
  const float* bias = nullptr;
  const int32_t* offset = nullptr;  // [offset_rows, n], row m uses offset[m % offset_rows]
  int64_t offset_rows = 1;
};

// The exact integer sign(a) . sign(b) over the first k bits of two packed rows.
EMOKERNELS_HD int32_t dot_reference(const uint32_t* a, const uint32_t* b, int64_t words,
                                    int64_t k) {
  int64_t diff = 0;
  for (int64_t w = 0; w + 1 < words; ++w) diff += popcount32(a[w] ^ b[w]);
  diff += popcount32((a[words - 1] ^ b[words - 1]) & last_word_mask(k));
  return static_cast<int32_t>(k - 2 * diff);
}

// float(dot + offset) * scale, then + bias: multiply, then add, never one fused operation,
// exactly as the binary layers' float path computes it (builds pass -ffp-contract=off and
// nvcc --fmad=false). The integer sum wraps like the SIMD paths' adds.
EMOKERNELS_HD float epilogue(int32_t dot, int32_t offset, float scale, const float* bias) {
  const int32_t sum = static_cast<int32_t>(static_cast<uint32_t>(dot) +
                                           static_cast<uint32_t>(offset));
  const float v = static_cast<float>(sum) * scale;
  return bias ? v + *bias : v;
}

// Writes output (m, n) through the fused epilogue (out_f32 set).
EMOKERNELS_HD void store_fused(const XnorProblem& p, int64_t m, int64_t n, int32_t dot) {
  const int32_t offset = p.offset ? p.offset[(m % p.offset_rows) * p.n + n] : 0;
  p.out_f32[m * p.n + n] = epilogue(dot, offset, p.scale[n], p.bias ? p.bias + n : nullptr);
}

// Writes output (m, n), as int32 or through the epilogue.
EMOKERNELS_HD void store(const XnorProblem& p, int64_t m, int64_t n, int32_t dot) {
  if (p.out_f32 != nullptr) return store_fused(p, m, n, dot);
  p.out_i32[m * p.n + n] = dot;
}

}  // namespace emokernels::xnor
