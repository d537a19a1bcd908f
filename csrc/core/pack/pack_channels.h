// pack_channels, independent of any framework: per-channel interval tests of an NCHW float map
// packed into channels-last words, shared by every backend.
#pragma once

#include "../common/std.h"

#include "../common/bits.h"

namespace emokernels::pack {

// x [batch, channels, pixels] contiguous -> out [batch, pixels, words], words = ceil(channels
// / 32): bit j of word w is lower[c] <= x <= upper[c] for channel c = 32 w + j (NaN: 0).
struct PackChannelsProblem {
  const float* x;
  const float* lower;
  const float* upper;
  uint32_t* out;
  int64_t batch, channels, pixels, words;
};

EMOKERNELS_HD bool in_interval(float v, float lower, float upper) {
  return lower <= v && v <= upper;
}

// Word w of pixel `pixel` of image b, one channel at a time.
EMOKERNELS_HD uint32_t pack_channels_word(const PackChannelsProblem& p, int64_t b,
                                          int64_t pixel, int64_t w) {
  const int64_t first = 32 * w;
  const int64_t count = p.channels - first < 32 ? p.channels - first : 32;
  uint32_t word = 0;
  for (int64_t j = 0; j < count; ++j) {
    const int64_t c = first + j;
    const float v = p.x[(b * p.channels + c) * p.pixels + pixel];
    word |= static_cast<uint32_t>(in_interval(v, p.lower[c], p.upper[c])) << j;
  }
  return word;
}

}  // namespace emokernels::pack
