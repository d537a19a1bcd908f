// bwn_gemm on CUDA (kernels: bwn_gemm.cuh): the GEMV for a few rows, the tiles otherwise.
#include <ATen/ops/empty.h>

#include "../common/library.h"
#include "../ops/bwn_gemm_checks.h"
#include "bwn_gemm.cuh"
#include "launch.h"

namespace emokernels::cuda {
namespace {

at::Tensor bwn_gemm_cuda(const at::Tensor& x_in, const at::Tensor& w_in,
                         const at::Tensor& alpha_in, int64_t k) {
  const std::vector<int64_t> shape = bwn_gemm_output_shape(x_in, w_in, alpha_in, k);
  const DeviceGuard guard(x_in.device());
  at::Tensor out = at::empty(shape, x_in.options());
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const at::Tensor alpha = alpha_in.to(at::kFloat).contiguous();
  const int64_t m = shape[0], n = shape[1];
  dispatch_bwn_input(x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    const bwn::BwnProblem<scalar_t> p{x.data_ptr<scalar_t>(),
                                      reinterpret_cast<const uint32_t*>(w.data_ptr<int32_t>()),
                                      alpha.data_ptr<float>(), nullptr,
                                      out.data_ptr<scalar_t>(), m, n, k, w.size(1)};
    if (bwn_use_gemv(m, false)) {
      launch(bwn_gemv_shape(n), bwn_gemv_kernel<scalar_t>, p);
    } else {
      launch(bwn_gemm_shape(m, n), bwn_gemm_kernel<scalar_t>, p, BwnRows{k});
    }
  });
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(EMOKERNELS_CUDA_KEY, m) { m.impl("bwn_gemm", &bwn_gemm_cuda); }

}  // namespace emokernels::cuda
