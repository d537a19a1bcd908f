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
  const int32_t* offset = nullptr;  // [rows, n], row m uses offset[offset_row(p, m)]
  int64_t offset_rows = 1;  // P: row m uses offset[m % P], or offset[offset_index[m % P]]
  const int32_t* offset_index = nullptr;  // optional [P], each in [0, offset's rows)
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

// dot + offset, wrapping like the SIMD paths' adds.
EMOKERNELS_HD int32_t add_wrapping(int32_t dot, int32_t offset) {
  return static_cast<int32_t>(static_cast<uint32_t>(dot) + static_cast<uint32_t>(offset));
}

// float(sum) * scale, then + bias (sum: the dot plus its offset): multiply, then add, never one
// fused operation, exactly as the binary layers' float path computes it (builds pass
// -ffp-contract=off and nvcc --fmad=false).
EMOKERNELS_HD float epilogue(int32_t sum, float scale, const float* bias) {
  const float v = static_cast<float>(sum) * scale;
  return bias ? v + *bias : v;
}

// The offset slot of output row m (m % offset_rows). Tiles divide once, for their first row,
// and step to the next rows with next_offset_slot: at small k a 64-bit division per row costs
// as much as the row's dots; a 32-bit one is used where the numbers fit.
EMOKERNELS_HD int64_t offset_slot(const XnorProblem& p, int64_t m) {
  if (p.offset == nullptr) return 0;
  if (((m | p.offset_rows) >> 32) == 0) {
    return static_cast<uint32_t>(m) % static_cast<uint32_t>(p.offset_rows);
  }
  return m % p.offset_rows;
}

EMOKERNELS_HD int64_t next_offset_slot(const XnorProblem& p, int64_t slot) {
  return slot + 1 == p.offset_rows ? 0 : slot + 1;
}

// The offset row of a slot: the slot itself, or the row offset_index names (a convolution's
// padding correction is one of a few rows per output pixel: a table of those rows and an index
// per pixel stay in cache where the full [pixels, n] matrix would stream from memory).
EMOKERNELS_HD int64_t offset_row_of_slot(const XnorProblem& p, int64_t slot) {
  return p.offset_index != nullptr ? p.offset_index[slot] : slot;
}

// The offset row of output row m.
EMOKERNELS_HD int64_t offset_row(const XnorProblem& p, int64_t m) {
  return offset_row_of_slot(p, offset_slot(p, m));
}

// Output bit n of the sign epilogue for the corrected dot s: lower[n] <= s <= upper[n]. A
// layer's epilogue, the next BatchNorm and sign are monotone in the integer dot, so any such
// chain is exactly one interval of dots per channel (empty, or unbounded on one side or both).
EMOKERNELS_HD uint32_t sign_bit(const XnorProblem& p, int64_t n, int32_t s) {
  // `&`, not `&&`: the signs of random data defeat a branch per test.
  return static_cast<uint32_t>(p.bounds[n] <= s) & static_cast<uint32_t>(s <= p.bounds[p.n + n]);
}

// The most outputs one store_row call writes (the CPU tiles' widths, 1 on CUDA).
constexpr int kMaxStoreRow = 8;

// Writes outputs (m, n0 .. n0 + count) of dots, m's offset row being r (offset_row): as
// int32, through the float epilogue, or as sign bits. The bits of one word are written by one
// thread only: the CPU's column blocks are whole words, and a row segment never straddles a
// word (count <= 32 - n0 % 32); the CUDA kernels set bits with atomicOr instead of calling
// this. Optional operands are tested once per row, not per output: an `ptr ? ptr[n] : 0` in
// the loop becomes a masked vector load from the null pointer, which the CPU serves through a
// fault-suppression assist costing more than the row's dots.
EMOKERNELS_HD void store_row(const XnorProblem& p, int64_t m, int64_t r, int64_t n0,
                             const int32_t* dots, int count) {
  if (p.out_f32 == nullptr && p.out_bits == nullptr) {
    for (int j = 0; j < count; ++j) p.out_i32[m * p.n + n0 + j] = dots[j];
    return;
  }
  int32_t corrected[kMaxStoreRow];
  const int32_t* sums = dots;
  if (p.offset != nullptr) {
    const int32_t* offset = p.offset + r * p.n + n0;
    for (int j = 0; j < count; ++j) corrected[j] = add_wrapping(dots[j], offset[j]);
    sums = corrected;
  }
  if (p.out_f32 != nullptr) {
    float* out = p.out_f32 + m * p.n + n0;
    const float* scale = p.scale + n0;
    if (p.bias != nullptr) {
      for (int j = 0; j < count; ++j) out[j] = epilogue(sums[j], scale[j], p.bias + n0 + j);
    } else {
      for (int j = 0; j < count; ++j) out[j] = epilogue(sums[j], scale[j], nullptr);
    }
    return;
  }
  uint32_t bits = 0;
  for (int j = 0; j < count; ++j) {
    bits |= sign_bit(p, n0 + j, sums[j]) << ((n0 + j) % 32);
  }
  p.out_bits[m * p.out_words + n0 / 32] |= bits;
}

}  // namespace emokernels::xnor
