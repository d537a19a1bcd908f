// bwn_conv2d on CUDA: the bwn_gemm tiles reading receptive fields in place (bwn_gemm.cuh).
#include <ATen/ops/empty.h>

#include "../common/library.h"
#include "../ops/bwn_conv2d_checks.h"
#include "bwn_gemm.cuh"
#include "launch.h"

namespace emokernels::cuda {
namespace {

at::Tensor bwn_conv2d_cuda(const at::Tensor& x_in, const at::Tensor& w_in,
                           const at::Tensor& alpha_in, at::IntArrayRef kernel_size,
                           at::IntArrayRef stride, at::IntArrayRef dilation) {
  const ConvGeometry g = bwn_conv2d_geometry(x_in, w_in, alpha_in, kernel_size, stride, dilation);
  const DeviceGuard guard(x_in.device());
  const int64_t n = w_in.size(0), m = g.b * g.ho * g.wo;
  at::Tensor out = at::empty({g.b, g.ho, g.wo, n}, x_in.options());
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const at::Tensor alpha = alpha_in.to(at::kFloat).contiguous();
  const BwnRows rows{g.k, true, g.ho, g.wo, g.h, g.w, g.c, g.kw, g.sh, g.sw, g.dh, g.dw};
  dispatch_bwn_input(x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    const bwn::BwnProblem<scalar_t> p{x.data_ptr<scalar_t>(),
                                      reinterpret_cast<const uint32_t*>(w.data_ptr<int32_t>()),
                                      alpha.data_ptr<float>(), nullptr,
                                      out.data_ptr<scalar_t>(), m, n, g.k, w.size(1)};
    launch(bwn_gemm_shape(m, n), bwn_gemm_kernel<scalar_t>, p, rows);
  });
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(EMOKERNELS_CUDA_KEY, m) { m.impl("bwn_conv2d", &bwn_conv2d_cuda); }

}  // namespace emokernels::cuda
