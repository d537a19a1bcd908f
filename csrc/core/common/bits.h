// The packed-bit layout every binary op shares: bit j of word w holds element 32*w + j, set
// for sign +1 (x >= 0); bits past k are 0 when packed, and ignored when read.
#pragma once

#include "std.h"

#include "hd.h"

namespace emokernels {

// ceil(k / 32) without the overflow of (k + 31) / 32 near INT64_MAX.
EMOKERNELS_HD int64_t words_for_bits(int64_t k) { return k / 32 + (k % 32 != 0); }

// The valid bits of a row's last word when the row holds k bits.
EMOKERNELS_HD uint32_t last_word_mask(int64_t k) {
  const int64_t r = k % 32;
  return r == 0 ? 0xFFFFFFFFu : ((1u << r) - 1u);
}

EMOKERNELS_HD bool bit_at(const uint32_t* row, int64_t j) { return (row[j >> 5] >> (j & 31)) & 1u; }

EMOKERNELS_HD int popcount32(uint32_t v) {
#if defined(__CUDA_ARCH__)
  return __popc(v);
#else
  return __builtin_popcount(v);
#endif
}

}  // namespace emokernels
