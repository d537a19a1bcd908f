// xnor_gemm: argument checks and output shape, shared by every backend (and by
// xnor_gemm_scaled, whose operands are the same).
#pragma once

#include <vector>

#include "common_checks.h"

namespace emokernels {

// a_bits [M, W], b_bits [N, W] int32 with W = ceil(k/32) -> [M, N].
inline std::vector<int64_t> xnor_gemm_output_shape(const at::Tensor& a, const at::Tensor& b,
                                                   int64_t k, const char* op = "xnor_gemm") {
  check_rank(a, 2, op, "a_bits");
  check_rank(b, 2, op, "b_bits");
  check_dtype(a, at::kInt, op, "a_bits");
  check_dtype(b, at::kInt, op, "b_bits");
  check_same_device(a, b, op);
  TORCH_CHECK(a.size(1) == b.size(1), op, ": a_bits and b_bits must have the same number ",
              "of words per row, got ", a.size(1), " and ", b.size(1));
  check_packed_words(a, k, op, "a_bits");
  return {a.size(0), b.size(0)};
}

}  // namespace emokernels
