// bwn_gemm on the CPU: float activations x [M, K] times binary weights w_bits [N, ceil(K/32)]
// (int32, packed as pack_bits) scaled per output row by alpha [N] -> [M, N] in x's dtype:
// out = x @ (alpha[:, None] * sign(W)).T, accumulated in float32.
#include <ATen/ops/empty.h>
#include "../common/library.h"

#include "../ops/bwn_gemm_checks.h"
#include "bwn_kernels.h"

namespace emokernels {
namespace {

at::Tensor bwn_gemm_cpu(const at::Tensor& x_in, const at::Tensor& w_in,
                        const at::Tensor& alpha_in, int64_t k) {
  const std::vector<int64_t> shape = bwn_gemm_output_shape(x_in, w_in, alpha_in, k);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor w = w_in.contiguous();
  const at::Tensor alpha = alpha_in.to(at::kFloat).contiguous();
  at::Tensor out = at::empty(shape, x.options());
  if (out.numel() == 0) return out;
  const BwnPath path = bwn_path(bwn::bwn_input(x.scalar_type()), shape[0], shape[1], false);
  bwn::run_dense(x, reinterpret_cast<const uint32_t*>(w.data_ptr<int32_t>()), w.size(1),
                 alpha.data_ptr<float>(), out, path);
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) { m.impl("bwn_gemm", &bwn_gemm_cpu); }

}  // namespace emokernels
