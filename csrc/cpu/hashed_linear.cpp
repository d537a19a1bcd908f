// hashed_linear on the CPU: x [M, K] float32 times the virtual W [N, K] of the buckets
// (never stored) -> [M, N] (+ bias). Few rows: each W row is generated chunk by chunk into a
// stack buffer and dotted with every x row. More rows: panels of W rows are generated in
// parallel and multiplied by ATen's GEMM, so each generated weight serves the whole batch.
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>

#include "../common/library.h"
#include "../ops/hashed_linear_checks.h"
#include "hashed_kernels.h"

namespace emokernels {
namespace {

using hashed::HashedProblem;

// Below this many rows of x the fused dot path beats generating panels for a GEMM.
constexpr int64_t kFusedMaxRows = 8;
constexpr int64_t kChunk = 1024;

void fused_rows(HashedPath path, const HashedProblem& p, const float* x, int64_t m,
                float* out) {
  const int64_t n = p.rows, k = p.cols;
  const HashedPath dot_path = hashed_path(1);  // the vector ISA, whatever the hashing
  at::parallel_for(0, n, 16, [&](int64_t begin, int64_t end) {
    alignas(64) float w[kChunk];
    for (int64_t i = begin; i < end; ++i) {
      float acc[kFusedMaxRows] = {};
      for (int64_t j0 = 0; j0 < k; j0 += kChunk) {
        const int64_t j1 = std::min(k, j0 + kChunk);
        hashed::generate_row(path, p, static_cast<uint32_t>(i), j0, j1, w, nullptr);
        for (int64_t r = 0; r < m; ++r) {
          acc[r] += hashed::dot(dot_path, x + r * k + j0, w, j1 - j0);
        }
      }
      for (int64_t r = 0; r < m; ++r) out[r * n + i] = acc[r];
    }
  });
}

at::Tensor hashed_linear_cpu(const at::Tensor& x_in, const at::Tensor& buckets_in,
                             int64_t out_features, int64_t seed, int64_t block,
                             const std::optional<at::Tensor>& bias) {
  const std::vector<int64_t> shape =
      hashed_linear_output_shape(x_in, buckets_in, out_features, seed, block, bias);
  const at::Tensor x = x_in.contiguous(), buckets = buckets_in.contiguous();
  at::Tensor out = at::empty(shape, x.options());
  const int64_t m = shape[0], n = shape[1], k = x.size(1);
  if (m == 0) return out;
  const HashedProblem p = hashed::make_problem(buckets.data_ptr<float>(), buckets.size(0), seed,
                                               block, n, k);
  const HashedPath path = hashed_path(block);
  if (m <= kFusedMaxRows) {
    fused_rows(path, p, x.data_ptr<float>(), m, out.data_ptr<float>());
  } else {
    const int64_t rows = hashed::panel_rows(n, k);
    at::Tensor panel = at::empty({rows, k}, x.options());
    for (int64_t i0 = 0; i0 < n; i0 += rows) {
      const int64_t count = std::min(rows, n - i0);
      hashed::generate_panel(path, p, i0, count, panel.data_ptr<float>(), nullptr);
      out.narrow(1, i0, count).copy_(at::mm(x, panel.narrow(0, 0, count).t()));
    }
  }
  if (bias.has_value()) out.add_(*bias);
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) { m.impl("hashed_linear", &hashed_linear_cpu); }

}  // namespace emokernels
