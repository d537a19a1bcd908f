// hashed_linear_backward on the CPU: from grad [M, N] and x [M, K], grad_x = grad @ W [M, K]
// and grad_buckets[b] = sum over (i, j) in bucket b of sign(i, j) * (grad.T @ x)[i, j], one
// panel of W rows at a time (weights and codes generated once per panel, products by ATen's
// GEMM): neither W nor the dense gradient [N, K] is ever held whole. The bucket sums are the
// same for any thread count (each thread owns a bucket range and adds in panel order).
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>

#include <array>
#include <tuple>

#include "../common/library.h"
#include "../ops/hashed_linear_checks.h"
#include "hashed_kernels.h"

namespace emokernels {
namespace {

std::tuple<at::Tensor, at::Tensor> hashed_linear_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& x_in, const at::Tensor& buckets_in,
    int64_t seed, int64_t block, std::array<bool, 2> output_mask, bool /*deterministic*/) {
  check_hashed_linear_backward(grad_in, x_in, buckets_in, seed, block);
  const at::Tensor grad = grad_in.contiguous(), x = x_in.contiguous();
  const at::Tensor buckets = buckets_in.contiguous();
  const int64_t m = x.size(0), k = x.size(1), n = grad.size(1), nb = buckets.size(0);
  at::Tensor grad_x = output_mask[0] ? at::zeros({m, k}, x.options()) : at::empty({0}, x.options());
  at::Tensor grad_buckets = output_mask[1] ? at::zeros({nb}, x.options())
                                           : at::empty({0}, x.options());
  if (m == 0 || !(output_mask[0] || output_mask[1])) return {grad_x, grad_buckets};
  const hashed::HashedProblem p =
      hashed::make_problem(buckets.data_ptr<float>(), nb, seed, block, n, k);
  const HashedPath path = hashed_path(block);
  const int64_t rows = hashed::panel_rows(n, k);
  at::Tensor panel = output_mask[0] ? at::empty({rows, k}, x.options()) : at::Tensor();
  at::Tensor codes = output_mask[1] ? at::empty({rows, k}, x.options().dtype(at::kInt))
                                    : at::Tensor();
  const int64_t ranges = std::min<int64_t>(at::get_num_threads(), nb);
  for (int64_t i0 = 0; i0 < n; i0 += rows) {
    const int64_t count = std::min(rows, n - i0);
    const at::Tensor grad_panel = grad.narrow(1, i0, count);
    hashed::generate_panel(path, p, i0, count,
                           output_mask[0] ? panel.data_ptr<float>() : nullptr,
                           output_mask[1] ? reinterpret_cast<uint32_t*>(codes.data_ptr<int32_t>())
                                          : nullptr);
    if (output_mask[0]) grad_x.addmm_(grad_panel, panel.narrow(0, 0, count));
    if (output_mask[1]) {
      const at::Tensor g = at::mm(grad_panel.t(), x);  // [count, K], contiguous
      const float* gp = g.data_ptr<float>();
      const uint32_t* cp = reinterpret_cast<const uint32_t*>(codes.data_ptr<int32_t>());
      float* out = grad_buckets.data_ptr<float>();
      at::parallel_for(0, ranges, 1, [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const auto lo = static_cast<uint32_t>(nb * r / ranges);
          const auto hi = static_cast<uint32_t>(nb * (r + 1) / ranges);
          float dummy = 0.0f;
          hashed::scatter_range(gp, cp, count * k, out + lo, lo, hi, &dummy);
        }
      });
    }
  }
  return {grad_x, grad_buckets};
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) {
  m.impl("hashed_linear_backward", &hashed_linear_backward_cpu);
}

}  // namespace emokernels
