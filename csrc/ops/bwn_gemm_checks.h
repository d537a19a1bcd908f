// bwn_gemm: argument checks and output shape, shared by every backend (the weight checks
// also by bwn_conv2d).
#pragma once

#include <vector>

#include "common_checks.h"

namespace emokernels {

// x float32 / float16 / bfloat16; w_bits [N, ceil(k/32)] int32; alpha [N] floating; one device.
inline void check_bwn_weights(const at::Tensor& x, const at::Tensor& w, const at::Tensor& alpha,
                              int64_t k, const char* op) {
  check_rank(w, 2, op, "w_bits");
  check_rank(alpha, 1, op, "alpha");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf ||
                  x.scalar_type() == at::kBFloat16,
              op, ": x must be float32, float16 or bfloat16, got ", x.scalar_type());
  check_dtype(w, at::kInt, op, "w_bits");
  TORCH_CHECK(alpha.scalar_type() == at::kFloat || alpha.scalar_type() == at::kDouble ||
                  alpha.scalar_type() == at::kHalf || alpha.scalar_type() == at::kBFloat16,
              op, ": alpha must be float32, float64, float16 or bfloat16, got ",
              alpha.scalar_type());
  check_same_device(x, w, op);
  check_same_device(x, alpha, op);
  check_packed_words(w, k, op, "w_bits");
  TORCH_CHECK(alpha.size(0) == w.size(0), op, ": alpha has ", alpha.size(0),
              " entries but w_bits has ", w.size(0), " rows");
}

// x [M, k] -> [M, N] in x's dtype.
inline std::vector<int64_t> bwn_gemm_output_shape(const at::Tensor& x, const at::Tensor& w,
                                                  const at::Tensor& alpha, int64_t k) {
  constexpr const char* op = "bwn_gemm";
  check_rank(x, 2, op, "x");
  check_bwn_weights(x, w, alpha, k, op);
  TORCH_CHECK(x.size(1) == k, op, ": x has ", x.size(1), " columns but k = ", k);
  return {x.size(0), w.size(0)};
}

}  // namespace emokernels
