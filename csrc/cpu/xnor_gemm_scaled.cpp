// xnor_gemm_scaled on the CPU: xnor_gemm with its epilogue fused, for the binary layers:
// out[m, n] = float(dot[m, n] + offset[m % P, n]) * scale[n] + bias[n], float32 [M, N].
#include <ATen/ops/empty.h>
#include "../common/library.h"

#include "../ops/xnor_gemm_scaled_checks.h"
#include "../ops/xnor_problem.h"
#include "huge_pages.h"
#include "xnor_kernels.h"

namespace emokernels {
namespace {

at::Tensor xnor_gemm_scaled_cpu(const at::Tensor& a_in, const at::Tensor& b_in, int64_t k,
                                const at::Tensor& scale_in,
                                const std::optional<at::Tensor>& bias_in,
                                const std::optional<at::Tensor>& offset_in) {
  const std::vector<int64_t> shape =
      xnor_gemm_scaled_output_shape(a_in, b_in, k, scale_in, bias_in, offset_in);
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), scale = scale_in.contiguous();
  const at::Tensor bias = bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  const at::Tensor offset = offset_in.has_value() ? offset_in->contiguous() : at::Tensor();
  at::Tensor out = at::empty(shape, a.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  advise_huge_pages(out.data_ptr(), out.nbytes());
  xnor::XnorProblem p = make_xnor_problem(a, b, k);
  set_xnor_epilogue(p, out, scale, bias, offset);
  xnor::run_xnor(p);
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) { m.impl("xnor_gemm_scaled", &xnor_gemm_scaled_cpu); }

}  // namespace emokernels
