// xnor_gemm_scaled: argument checks and output shape, shared by every backend.
#pragma once

#include <optional>
#include <vector>

#include "xnor_gemm_sign_checks.h"

namespace emokernels {

// xnor_gemm's operands plus scale [N] float32, bias [N] float32 and an offset
// (check_xnor_offset) -> float32 [M, N].
inline std::vector<int64_t> xnor_gemm_scaled_output_shape(
    const at::Tensor& a, const at::Tensor& b, int64_t k, const at::Tensor& scale,
    const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& offset,
    const std::optional<at::Tensor>& offset_index) {
  constexpr const char* op = "xnor_gemm_scaled";
  std::vector<int64_t> shape = xnor_gemm_output_shape(a, b, k, op);
  const int64_t m = shape[0], n = shape[1];
  auto check_vector = [&](const at::Tensor& t, const char* name) {
    check_rank(t, 1, op, name);
    check_dtype(t, at::kFloat, op, name);
    check_same_device(a, t, op);
    TORCH_CHECK(t.size(0) == n, op, ": ", name, " has ", t.size(0), " entries, need ", n);
  };
  check_vector(scale, "scale");
  if (bias.has_value()) check_vector(*bias, "bias");
  check_xnor_offset(a, offset, offset_index, m, n, op);
  return shape;
}

}  // namespace emokernels
