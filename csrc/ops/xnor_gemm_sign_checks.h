// xnor_gemm_sign: argument checks and output shape, shared by every backend.
#pragma once

#include <optional>
#include <vector>

#include "../core/common/bits.h"
#include "xnor_gemm_checks.h"

namespace emokernels {

// The offset of a fused XNOR GEMM: int32 [P, N] with P dividing M.
inline void check_xnor_offset(const at::Tensor& a, const at::Tensor& offset, int64_t m,
                              int64_t n, const char* op) {
  check_rank(offset, 2, op, "offset");
  check_dtype(offset, at::kInt, op, "offset");
  check_same_device(a, offset, op);
  TORCH_CHECK(offset.size(1) == n && offset.size(0) >= 1 && m % offset.size(0) == 0, op,
              ": offset must be [P, ", n, "] with P dividing M = ", m, ", got ", offset.sizes());
}

// xnor_gemm's operands plus bounds [2, N] int32 and offset [P, N] int32 with P dividing M
// -> int32 [M, ceil(N / 32)].
inline std::vector<int64_t> xnor_gemm_sign_output_shape(const at::Tensor& a, const at::Tensor& b,
                                                        int64_t k, const at::Tensor& bounds,
                                                        const std::optional<at::Tensor>& offset) {
  constexpr const char* op = "xnor_gemm_sign";
  const std::vector<int64_t> shape = xnor_gemm_output_shape(a, b, k, op);
  const int64_t m = shape[0], n = shape[1];
  check_rank(bounds, 2, op, "bounds");
  check_dtype(bounds, at::kInt, op, "bounds");
  check_same_device(a, bounds, op);
  TORCH_CHECK(bounds.size(0) == 2 && bounds.size(1) == n, op, ": bounds must be [2, ", n,
              "] (lower, upper), got ", bounds.sizes());
  if (offset.has_value()) check_xnor_offset(a, *offset, m, n, op);
  return {m, words_for_bits(n)};
}

}  // namespace emokernels
