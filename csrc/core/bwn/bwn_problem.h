// The binary-weight GEMM (float activations times packed signs, scaled per output), independent
// of any framework: the problem over raw pointers, the implicit-im2col row addressing, the
// scalar reference of one output and the epilogue, shared by every backend.
#pragma once

#include "../common/std.h"

#include "../common/bits.h"

namespace emokernels::bwn {

// Where row m of the left operand starts when it is not a dense [M, K] matrix: the receptive
// field of output pixel m of a padded channels-last image [B, H, W, C] (implicit im2col). Row
// m's 16-wide chunk q (k = 16q .. 16q + 15) is at row_base(m) + chunk_offsets[q]; C is a
// multiple of 16, so no chunk straddles two taps.
struct ConvRows {
  int64_t ho, wo, h, w, c, sh, sw;
  const int64_t* chunk_offsets;  // k / 16 entries

  template <typename T>
  EMOKERNELS_HD const T* row_base(const T* x, int64_t m) const {
    const int64_t b = m / (ho * wo), r = m % (ho * wo);
    return x + ((b * h + (r / wo) * sh) * w + (r % wo) * sw) * c;
  }
};

template <typename scalar_t>
struct BwnProblem {
  const scalar_t* x;
  const uint32_t* w;
  const float* alpha;
  const float* row_sums;  // sum_k x[m, k]: scratch of the float32 AVX-512 row tiles
  scalar_t* out;
  int64_t m, n, k, words;
  const ConvRows* conv = nullptr;  // set: x is an image, read through implicit im2col
};

// alpha * acc, rounded once to the output type by the caller.
EMOKERNELS_HD float epilogue(float alpha, float acc) { return alpha * acc; }

// alpha * sum_k s(w[k]) * row[k], summed left to right in float32: the reference every path
// agrees with on the rows it cannot sum its own way. Element kk of an implicit-im2col row is
// row[chunks[kk / 16] + kk % 16]; of a dense row, row[kk] (chunks null).
template <typename T>
EMOKERNELS_HD float signed_sum(const T* row, const int64_t* chunks, const uint32_t* w, int64_t k,
                               float alpha) {
  float acc = 0.0f;
  for (int64_t kk = 0; kk < k; ++kk) {
    const float v = static_cast<float>(chunks ? row[chunks[kk / 16] + kk % 16] : row[kk]);
    acc += bit_at(w, kk) ? v : -v;
  }
  return epilogue(alpha, acc);
}

// Paths that compute sum_k x*s as 2 * (sum where the bit is set) - sum_k x are exact enough
// only while sum_k |x| stays far from float32's maximum: a row holding inf or NaN, or values so
// large that twice the sum overflows, would give NaN or inf where the true sum is finite. Such
// rows are summed by signed_sum instead.
EMOKERNELS_HD bool twice_sum_is_safe(float abs_sum) {
  return abs_sum <= FLT_MAX / 4;  // false for inf and NaN too
}

}  // namespace emokernels::bwn
