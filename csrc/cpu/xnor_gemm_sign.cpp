// xnor_gemm_sign on the CPU: xnor_gemm whose epilogue writes the next binary layer's packed
// input: bit n of row m is set iff lower[n] <= dot[m, n] + offset[m % P, n] <= upper[n].
#include <ATen/ops/zeros.h>
#include "../common/library.h"

#include "../ops/xnor_gemm_sign_checks.h"
#include "../ops/xnor_problem.h"
#include "xnor_kernels.h"

namespace emokernels {
namespace {

at::Tensor xnor_gemm_sign_cpu(const at::Tensor& a_in, const at::Tensor& b_in, int64_t k,
                              const at::Tensor& bounds_in,
                              const std::optional<at::Tensor>& offset_in,
                              const std::optional<at::Tensor>& offset_index_in) {
  const std::vector<int64_t> shape =
      xnor_gemm_sign_output_shape(a_in, b_in, k, bounds_in, offset_in, offset_index_in);
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), bounds = bounds_in.contiguous();
  const at::Tensor offset = contiguous_or_undefined(offset_in);
  const at::Tensor offset_index = contiguous_or_undefined(offset_index_in);
  at::Tensor out = at::zeros(shape, a.options().dtype(at::kInt));
  if (out.numel() == 0) return out;
  xnor::XnorProblem p = make_xnor_problem(a, b, k);
  set_xnor_sign_epilogue(p, out, bounds, offset, offset_index);
  xnor::run_xnor(p);
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) { m.impl("xnor_gemm_sign", &xnor_gemm_sign_cpu); }

}  // namespace emokernels
