// bwn_conv2d on the CPU: a binary-weight convolution on a channels-last, already padded image
// x [B, H, W, C] (float32, float16 or bfloat16) with weights packed in (ky, kx, c) order,
// w_bits [O, ceil(kh*kw*C/32)], scaled by alpha [O] -> [B, Ho, Wo, O] in x's dtype.
// On the table path with C % 16 == 0 the GEMM reads receptive fields straight from the image
// (implicit im2col); otherwise the patches are materialized first.
#include <ATen/ops/empty.h>
#include "../common/library.h"

#include "../ops/bwn_conv2d_checks.h"
#include "bwn_kernels.h"

namespace emokernels {
namespace {

at::Tensor bwn_conv2d_cpu(const at::Tensor& x_in, const at::Tensor& w_in,
                          const at::Tensor& alpha_in, at::IntArrayRef kernel_size,
                          at::IntArrayRef stride, at::IntArrayRef dilation) {
  const ConvGeometry g =
      bwn_conv2d_geometry(x_in, w_in, alpha_in, kernel_size, stride, dilation);
  const int64_t b = g.b, h = g.h, w = g.w, c = g.c, kh = g.kh, kw = g.kw, ho = g.ho, wo = g.wo,
                k = g.k, sh = g.sh, sw = g.sw, dh = g.dh, dw = g.dw;
  const at::Tensor x = x_in.contiguous();
  const at::Tensor wt = w_in.contiguous();
  const at::Tensor alpha = alpha_in.to(at::kFloat).contiguous();
  const int64_t n = wt.size(0), m = b * ho * wo;
  at::Tensor out = at::empty({b, ho, wo, n}, x.options());
  if (out.numel() == 0) return out;
  const auto* wp = reinterpret_cast<const uint32_t*>(wt.data_ptr<int32_t>());
  const bool implicit_ok = x.scalar_type() == at::kFloat && c % 16 == 0;
  const BwnPath path = bwn_path(bwn::bwn_input(x.scalar_type()), m, n, implicit_ok);

  if (path == BwnPath::TableImplicit || path == BwnPath::Avx2TableImplicit) {
    std::vector<int64_t> chunk_offsets(k / 16);
    for (int64_t chunk = 0; chunk < k / 16; ++chunk) {
      const int64_t tap = 16 * chunk / c, ch = 16 * chunk % c;
      chunk_offsets[chunk] = ((tap / kw) * dh * w + (tap % kw) * dw) * c + ch;
    }
    const bwn::ConvRows rows{ho, wo, h, w, c, sh, sw, chunk_offsets.data()};
    bwn::BwnProblem<float> p{x.data_ptr<float>(), wp, alpha.data_ptr<float>(), nullptr,
                             out.data_ptr<float>(), m, n, k, wt.size(1)};
    p.conv = &rows;
    bwn::run_bwn(p, path, nullptr);
    return out;
  }
  const at::Tensor patches =
      x.as_strided({b, ho, wo, kh, kw, c},
                   {h * w * c, sh * w * c, sw * c, dh * w * c, dw * c, 1})
          .reshape({m, k})
          .contiguous();  // reshape may return a strided view (e.g. one output pixel)
  bwn::run_dense(patches, wp, wt.size(1), alpha.data_ptr<float>(), out, path);
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) { m.impl("bwn_conv2d", &bwn_conv2d_cpu); }

}  // namespace emokernels
