// bwn_conv2d: argument checks and the convolution geometry, shared by every backend. Every
// size is computed with overflow checks, so no kernel ever sees a geometry that wraps.
#pragma once

#include <c10/util/ArrayRef.h>

#include "bwn_gemm_checks.h"

namespace emokernels {

struct ConvGeometry {
  int64_t b, h, w, c;      // padded channels-last input
  int64_t kh, kw, sh, sw, dh, dw;
  int64_t ho, wo;          // output size
  int64_t k;               // kh * kw * c, the reduction length
};

inline ConvGeometry bwn_conv2d_geometry(const at::Tensor& x, const at::Tensor& w,
                                        const at::Tensor& alpha, c10::IntArrayRef kernel_size,
                                        c10::IntArrayRef stride, c10::IntArrayRef dilation) {
  constexpr const char* op = "bwn_conv2d";
  check_rank(x, 4, op, "x");
  TORCH_CHECK(kernel_size.size() == 2 && stride.size() == 2 && dilation.size() == 2, op,
              ": kernel_size, stride and dilation must have 2 entries");
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(kernel_size[i] >= 1 && stride[i] >= 1 && dilation[i] >= 1, op,
                ": kernel_size, stride and dilation must be >= 1, got ", kernel_size, ", ",
                stride, ", ", dilation);
  }
  ConvGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), kernel_size[0], kernel_size[1],
                 stride[0], stride[1], dilation[0], dilation[1], 0, 0, 0};
  TORCH_CHECK(g.c >= 1, op, ": x [B, H, W, C] must have C >= 1, got ", x.sizes());
  // The dilated kernel's extent, (k - 1) * d + 1, must fit in the input: checked without
  // forming a product that could wrap.
  auto fits = [](int64_t size, int64_t k, int64_t d) {
    return size >= 1 && (k - 1) <= (size - 1) / d;
  };
  TORCH_CHECK(fits(g.h, g.kh, g.dh) && fits(g.w, g.kw, g.dw), op, ": input [B, H, W, C] = ",
              x.sizes(), " is smaller than the dilated kernel (kernel_size ", kernel_size,
              ", dilation ", dilation, ")");
  g.ho = (g.h - g.dh * (g.kh - 1) - 1) / g.sh + 1;
  g.wo = (g.w - g.dw * (g.kw - 1) - 1) / g.sw + 1;
  // A stride with one output, or a dilation with one tap, is never applied: normalizing them
  // to 1 keeps every stride the kernels form (stride * W * C, ...) within the input's size.
  if (g.ho == 1) g.sh = 1;
  if (g.wo == 1) g.sw = 1;
  if (g.kh == 1) g.dh = 1;
  if (g.kw == 1) g.dw = 1;
  g.k = checked_mul(checked_mul(g.kh, g.kw, op, "kh * kw * C"), g.c, op, "kh * kw * C");
  check_bwn_weights(x, w, alpha, g.k, op);
  return g;
}

}  // namespace emokernels
