// xnor_gemm on CUDA (kernel: xnor_gemm.cuh).
#include <ATen/ops/empty.h>

#include "../common/library.h"
#include "../ops/xnor_gemm_checks.h"
#include "../ops/xnor_problem.h"
#include "xnor_launch.h"

namespace emokernels::cuda {
namespace {

at::Tensor xnor_gemm_cuda(const at::Tensor& a_in, const at::Tensor& b_in, int64_t k) {
  const std::vector<int64_t> shape = xnor_gemm_output_shape(a_in, b_in, k);
  const DeviceGuard guard(a_in.device());
  at::Tensor out = at::empty(shape, a_in.options());
  if (out.numel() == 0) return out;
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  xnor::XnorProblem p = make_xnor_problem(a, b, k);
  p.out_i32 = out.data_ptr<int32_t>();
  run_xnor<false>(p, a.device());
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(EMOKERNELS_CUDA_KEY, m) { m.impl("xnor_gemm", &xnor_gemm_cuda); }

}  // namespace emokernels::cuda
