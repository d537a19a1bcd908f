// hashed_linear_backward on CUDA (kernels: hashed_linear.cuh): grad_x = grad @ W with W
// generated in shared memory, and the bucket gradient by atomics. deterministic: int64
// fixed-point atomics scaled so that no partial sum can overflow (|every sum| <= bound =
// sum over batch rows of |grad[m]|_1 * |x[m]|_1), whose total is independent of the order.
#include <ATen/ops/div.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <array>
#include <cmath>
#include <tuple>
#include <vector>

#include "../common/library.h"
#include "../ops/hashed_linear_checks.h"
#include "hashed_linear.cuh"
#include "launch.h"

namespace emokernels::cuda {
namespace {

// 2^(62 - ceil(log2 bound)): every partial sum, at most bound in magnitude, fits in int64.
double fixed_point_scale(const at::Tensor& grad, const at::Tensor& x) {
  const double bound = grad.abs()
                           .sum(1, false, at::kDouble)
                           .mul(x.abs().sum(1, false, at::kDouble))
                           .sum()
                           .item()
                           .to<double>();
  TORCH_CHECK(std::isfinite(bound), "hashed_linear_backward: the deterministic bucket gradient "
              "needs finite grad and x (found inf or NaN)");
  if (bound == 0.0) return 1.0;
  return std::ldexp(1.0, 62 - static_cast<int>(std::ceil(std::log2(bound))));
}

std::tuple<at::Tensor, at::Tensor> hashed_linear_backward_cuda(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& buckets_in,
    int64_t seed, int64_t block, std::array<bool, 2> output_mask, bool deterministic) {
  check_hashed_linear_backward(grad_in, x_in, buckets_in, seed, block);
  const DeviceGuard guard(x_in.device());
  const at::Tensor grad = grad_in.contiguous(), x = x_in.contiguous();
  const at::Tensor buckets = buckets_in.contiguous();
  const int64_t m = x.size(0), k = x.size(1), n = grad.size(1), nb = buckets.size(0);
  const hashed::HashedProblem p =
      hashed::make_problem(buckets.data_ptr<float>(), nb, seed, block, n, k);
  const std::vector<int64_t> grad_x_shape =
      output_mask[0] ? std::vector<int64_t>{m, k} : std::vector<int64_t>{0};
  at::Tensor grad_x = at::empty(grad_x_shape, x.options());
  at::Tensor grad_buckets = at::zeros({output_mask[1] ? nb : 0}, x.options());
  if (output_mask[0] && m > 0) {
    const GeneratedMatmul g{grad.data_ptr<float>(), p, nullptr, grad_x.data_ptr<float>(), m, n, k};
    launch(hashed_matmul_shape(m, k), hashed_matmul_kernel<false>, g);
  }
  if (output_mask[1] && m > 0) {
    BucketGrad g{grad.data_ptr<float>(), x.data_ptr<float>(), p, grad_buckets.data_ptr<float>(),
                 nullptr, 1.0, m};
    if (deterministic) {
      g.scale = fixed_point_scale(grad, x);
      at::Tensor fixed = at::zeros({nb}, x.options().dtype(at::kLong));
      g.fixed = reinterpret_cast<unsigned long long*>(fixed.data_ptr<int64_t>());
      launch(hashed_bucket_grad_shape(n, k), hashed_bucket_grad_kernel<true>, g);
      grad_buckets = at::div(fixed.to(at::kDouble), g.scale).to(at::kFloat);
    } else {
      launch(hashed_bucket_grad_shape(n, k), hashed_bucket_grad_kernel<false>, g);
    }
  }
  return {grad_x, grad_buckets};
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(EMOKERNELS_CUDA_KEY, m) {
  m.impl("hashed_linear_backward", &hashed_linear_backward_cuda);
}

}  // namespace emokernels::cuda
