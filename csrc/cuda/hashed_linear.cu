// hashed_linear on CUDA (kernels: hashed_linear.cuh): y = x @ W.T + bias, W generated in
// registers (the GEMV of a few rows) or in shared memory (the tiles).
#include <ATen/ops/empty.h>

#include "../common/library.h"
#include "../ops/hashed_linear_checks.h"
#include "hashed_linear.cuh"
#include "launch.h"

namespace emokernels::cuda {
namespace {

at::Tensor hashed_linear_cuda(const at::Tensor& x_in, const at::Tensor& buckets_in,
                              int64_t out_features, int64_t seed, int64_t block,
                              const std::optional<at::Tensor>& bias_in) {
  const std::vector<int64_t> shape =
      hashed_linear_output_shape(x_in, buckets_in, out_features, seed, block, bias_in);
  const DeviceGuard guard(x_in.device());
  at::Tensor out = at::empty(shape, x_in.options());
  const int64_t m = shape[0], n = shape[1], k = x_in.size(1);
  if (m == 0) return out;
  const at::Tensor x = x_in.contiguous(), buckets = buckets_in.contiguous();
  const at::Tensor bias = bias_in.has_value() ? bias_in->contiguous() : at::Tensor();
  const GeneratedMatmul g{x.data_ptr<float>(),
                          hashed::make_problem(buckets.data_ptr<float>(), buckets.size(0), seed,
                                               block, n, k),
                          bias.defined() ? bias.data_ptr<float>() : nullptr,
                          out.data_ptr<float>(), m, k, n};
  if (hashed_use_gemv(m)) {
    launch(hashed_gemv_shape(n), hashed_gemv_kernel<kHashedGemvMaxRows>, g);
  } else {
    launch(hashed_matmul_shape(m, n), hashed_matmul_kernel<true>, g);
  }
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(EMOKERNELS_CUDA_KEY, m) { m.impl("hashed_linear", &hashed_linear_cuda); }

}  // namespace emokernels::cuda
