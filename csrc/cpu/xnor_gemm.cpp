// xnor_gemm on the CPU: a [M, W], b [N, W] int32 bit-packed -> int32 [M, N] with
// out[m, n] = k - 2 * popcount(a[m] XOR b[n]) over the first k bit positions, i.e. the exact
// integer sign(A) @ sign(B).T. Bits past k in the last word are ignored, whatever they hold.
#include <ATen/ops/empty.h>
#include "../common/library.h"

#include "../ops/xnor_gemm_checks.h"
#include "../ops/xnor_problem.h"
#include "huge_pages.h"
#include "xnor_kernels.h"

namespace emokernels {
namespace {

at::Tensor xnor_gemm_cpu(const at::Tensor& a_in, const at::Tensor& b_in, int64_t k) {
  at::Tensor out = at::empty(xnor_gemm_output_shape(a_in, b_in, k), a_in.options());
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  if (out.numel() == 0) return out;
  advise_huge_pages(out.data_ptr(), out.nbytes());
  xnor::XnorProblem p = make_xnor_problem(a, b, k);
  p.out_i32 = out.data_ptr<int32_t>();
  xnor::run_xnor(p);
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) { m.impl("xnor_gemm", &xnor_gemm_cpu); }

}  // namespace emokernels
