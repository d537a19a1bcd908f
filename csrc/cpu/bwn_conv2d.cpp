// bwn_conv2d on the CPU: a binary-weight convolution on a channels-last, already padded image
// x [B, H, W, C] (float32 or bfloat16) with weights packed in (ky, kx, c) order,
// w_bits [O, ceil(kh*kw*C/32)], scaled by alpha [O] -> [B, Ho, Wo, O] in x's dtype.
// With AVX-512, float32 and C % 16 == 0 the GEMM reads receptive fields straight from the
// image (implicit im2col); otherwise the patches are materialized first.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "bwn_kernels.h"

namespace emokernels {
namespace {

at::Tensor bwn_conv2d_cpu(const at::Tensor& x_in, const at::Tensor& w_in,
                          const at::Tensor& alpha_in, at::IntArrayRef kernel_size,
                          at::IntArrayRef stride, at::IntArrayRef dilation) {
  constexpr const char* op = "bwn_conv2d";
  check_rank(x_in, 4, op, "x");
  TORCH_CHECK(kernel_size.size() == 2 && stride.size() == 2 && dilation.size() == 2, op,
              ": kernel_size, stride and dilation must have 2 entries");
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(kernel_size[i] >= 1 && stride[i] >= 1 && dilation[i] >= 1, op,
                ": kernel_size, stride and dilation must be >= 1");
  }
  const int64_t b = x_in.size(0), h = x_in.size(1), w = x_in.size(2), c = x_in.size(3);
  const int64_t kh = kernel_size[0], kw = kernel_size[1];
  const int64_t ho = (h - dilation[0] * (kh - 1) - 1) / stride[0] + 1;
  const int64_t wo = (w - dilation[1] * (kw - 1) - 1) / stride[1] + 1;
  TORCH_CHECK(c >= 1 && h - dilation[0] * (kh - 1) >= 1 && w - dilation[1] * (kw - 1) >= 1, op,
              ": input [B, H, W, C] = ", x_in.sizes(), " is smaller than the kernel");
  const int64_t k = kh * kw * c;
  bwn::check_weights(x_in, w_in, alpha_in, k, op);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor wt = w_in.contiguous();
  const at::Tensor alpha = alpha_in.to(at::kFloat).contiguous();
  const int64_t n = wt.size(0), m = b * ho * wo;
  at::Tensor out = at::empty({b, ho, wo, n}, x.options());
  if (out.numel() == 0) return out;
  const auto* wp = reinterpret_cast<const uint32_t*>(wt.data_ptr<int32_t>());
  const CpuIsa isa = active_cpu_isa();

  if (x.scalar_type() == at::kFloat && isa == CpuIsa::Avx512 && c % 16 == 0 &&
      m >= lut::kRows) {
    bwn::ConvRows rows{ho, wo, h, w, c, stride[0], stride[1], {}};
    rows.chunk_offsets.resize(k / 16);
    for (int64_t chunk = 0; chunk < k / 16; ++chunk) {
      const int64_t tap = 16 * chunk / c, ch = 16 * chunk % c;
      rows.chunk_offsets[chunk] =
          ((tap / kw) * dilation[0] * w + (tap % kw) * dilation[1]) * c + ch;
    }
    bwn::BwnProblem<float> p{x.data_ptr<float>(), wp, alpha.data_ptr<float>(), nullptr,
                             out.data_ptr<float>(), m, n, k, wt.size(1)};
    p.conv = &rows;
    bwn::run_bwn(p, isa, nullptr);
    return out;
  }
  const at::Tensor patches =
      x.as_strided({b, ho, wo, kh, kw, c},
                   {h * w * c, stride[0] * w * c, stride[1] * c, dilation[0] * w * c,
                    dilation[1] * c, 1})
          .reshape({m, k});
  bwn::run_dense(patches, wp, wt.size(1), alpha.data_ptr<float>(), out, isa);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(emokernels, CPU, m) { m.impl("bwn_conv2d", &bwn_conv2d_cpu); }

}  // namespace emokernels
