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
                                const std::optional<at::Tensor>& offset_in,
                                const std::optional<at::Tensor>& offset_index_in) {
  const std::vector<int64_t> shape =
      xnor_gemm_scaled_output_shape(a_in, b_in, k, scale_in, bias_in, offset_in,
                                    offset_index_in);
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous(), scale = scale_in.contiguous();
  const at::Tensor bias = contiguous_or_undefined(bias_in);
  const at::Tensor offset = contiguous_or_undefined(offset_in);
  const at::Tensor offset_index = contiguous_or_undefined(offset_index_in);
  at::Tensor out = at::empty(shape, a.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  advise_huge_pages(out.data_ptr(), out.nbytes());
  xnor::XnorProblem p = make_xnor_problem(a, b, k);
  set_xnor_epilogue(p, out, scale, bias, offset, offset_index);
  xnor::run_xnor(p);
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) { m.impl("xnor_gemm_scaled", &xnor_gemm_scaled_cpu); }

}  // namespace emokernels
