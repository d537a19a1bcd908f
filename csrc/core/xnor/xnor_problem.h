// The XNOR-popcount GEMM, independent of any framework: the problem over raw pointers, the
// scalar reference of one output and the fused epilogue, shared by every backend.
#pragma once

#include "../common/std.h"

#include "../common/bits.h"

namespace emokernels::xnor {

// out[m, n] = k - 2 * popcount(a[m] XOR b[n]) over the first k bits, written as int32
// (out_i32), fused as float32 (out_f32) through `epilogue`, or fused as packed sign bits
// (out_bits) through `sign_bit`; offset and bias optional.
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
  uint32_t* out_bits = nullptr;  // [m, out_words], zeroed by the caller
  const int32_t* bounds = nullptr;  // [2, n]: lower bounds, then upper bounds
  int64_t out_words = 0;  // ceil(n / 32)
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

// The dot plus row m's offset, wrapping like the SIMD paths' adds.
EMOKERNELS_HD int32_t corrected_dot(const XnorProblem& p, int64_t m, int64_t n, int32_t dot) {
  const int32_t offset = p.offset ? p.offset[(m % p.offset_rows) * p.n + n] : 0;
  return static_cast<int32_t>(static_cast<uint32_t>(dot) + static_cast<uint32_t>(offset));
}

// Output bit (m, n) of the sign epilogue: lower[n] <= dot + offset <= upper[n]. A layer's
// epilogue, the next BatchNorm and sign are monotone in the integer dot, so any such chain is
// exactly one interval of dots per channel (empty, or unbounded on one side or both).
EMOKERNELS_HD bool sign_bit(const XnorProblem& p, int64_t m, int64_t n, int32_t dot) {
  const int32_t s = corrected_dot(p, m, n, dot);
  return p.bounds[n] <= s && s <= p.bounds[p.n + n];
}

// Writes output (m, n) through the fused epilogue (out_f32 set).
EMOKERNELS_HD void store_fused(const XnorProblem& p, int64_t m, int64_t n, int32_t dot) {
  const int32_t offset = p.offset ? p.offset[(m % p.offset_rows) * p.n + n] : 0;
  p.out_f32[m * p.n + n] = epilogue(dot, offset, p.scale[n], p.bias ? p.bias + n : nullptr);
}

// Writes output (m, n), as int32, through the epilogue, or as a sign bit. Bits of one word
// are written by one thread only: the CPU's column blocks are whole words, the CUDA kernels
// set bits with atomicOr instead of calling this.
EMOKERNELS_HD void store(const XnorProblem& p, int64_t m, int64_t n, int32_t dot) {
  if (p.out_f32 != nullptr) return store_fused(p, m, n, dot);
  if (p.out_bits != nullptr) {
    if (sign_bit(p, m, n, dot)) p.out_bits[m * p.out_words + n / 32] |= 1u << (n % 32);
    return;
  }
  p.out_i32[m * p.n + n] = dot;
}

}  // namespace emokernels::xnor
