// xnor_gemm_scaled on CUDA: the xnor_gemm kernel with the core's fused epilogue.
#include <ATen/ops/empty.h>

#include "../common/library.h"
#include "../ops/xnor_gemm_scaled_checks.h"
#include "../ops/xnor_problem.h"
#include "xnor_launch.h"

namespace emokernels::cuda {
namespace {

at::Tensor xnor_gemm_scaled_cuda(const at::Tensor& a_in, const at::Tensor& b_in, int64_t k,
                                 const at::Tensor& scale_in,
                                 const std::optional<at::Tensor>& bias_in,
                                 const std::optional<at::Tensor>& offset_in,
                                 const std::optional<at::Tensor>& offset_index_in) {
  const std::vector<int64_t> shape =
      xnor_gemm_scaled_output_shape(a_in, b_in, k, scale_in, bias_in, offset_in,
                                    offset_index_in);
  const DeviceGuard guard(a_in.device());
  at::Tensor out = at::empty(shape, a_in.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), scale = scale_in.contiguous();
  const at::Tensor bias = contiguous_or_undefined(bias_in);
  const at::Tensor offset = contiguous_or_undefined(offset_in);
  const at::Tensor offset_index = contiguous_or_undefined(offset_index_in);
  xnor::XnorProblem p = make_xnor_problem(a, b, k);
  set_xnor_epilogue(p, out, scale, bias, offset, offset_index);
  run_xnor<true>(p, a.device());
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(EMOKERNELS_CUDA_KEY, m) {
  m.impl("xnor_gemm_scaled", &xnor_gemm_scaled_cuda);
}

}  // namespace emokernels::cuda
