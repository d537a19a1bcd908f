// xnor_gemm_sign: argument checks and output shape, shared by every backend.
#pragma once

#include <ATen/ops/aminmax.h>

#include <optional>
#include <vector>

#include "../core/common/bits.h"
#include "xnor_gemm_checks.h"

namespace emokernels {

// The offset of a fused XNOR GEMM: int32 [P, N] with P dividing M; or int32 [Q, N] rows picked
// per row by offset_index, int32 [P] with P dividing M and each entry in [0, Q). The entries
// are read (a device sync on CUDA): an index out of range would read outside the offset.
inline void check_xnor_offset(const at::Tensor& a, const std::optional<at::Tensor>& offset,
                              const std::optional<at::Tensor>& offset_index, int64_t m,
                              int64_t n, const char* op) {
  if (!offset.has_value()) {
    TORCH_CHECK(!offset_index.has_value(), op, ": offset_index needs an offset");
    return;
  }
  check_rank(*offset, 2, op, "offset");
  check_dtype(*offset, at::kInt, op, "offset");
  check_same_device(a, *offset, op);
  TORCH_CHECK(offset->size(1) == n && offset->size(0) >= 1, op, ": offset must be [P, ", n,
              "], got ", offset->sizes());
  if (!offset_index.has_value()) {
    TORCH_CHECK(m % offset->size(0) == 0, op, ": offset must be [P, ", n,
                "] with P dividing M = ", m, ", got ", offset->sizes());
    return;
  }
  const at::Tensor& index = *offset_index;
  check_rank(index, 1, op, "offset_index");
  check_dtype(index, at::kInt, op, "offset_index");
  check_same_device(a, index, op);
  TORCH_CHECK(index.size(0) >= 1 && m % index.size(0) == 0, op,
              ": offset_index must be [P] with P dividing M = ", m, ", got ", index.sizes());
  const auto [low, high] = at::aminmax(index);
  TORCH_CHECK(low.item<int32_t>() >= 0 && high.item<int32_t>() < offset->size(0), op,
              ": offset_index entries must be in [0, ", offset->size(0), ") (offset's rows)");
}

// xnor_gemm's operands plus bounds [2, N] int32 and an offset (check_xnor_offset) -> int32
// [M, ceil(N / 32)].
inline std::vector<int64_t> xnor_gemm_sign_output_shape(
    const at::Tensor& a, const at::Tensor& b, int64_t k, const at::Tensor& bounds,
    const std::optional<at::Tensor>& offset, const std::optional<at::Tensor>& offset_index) {
  constexpr const char* op = "xnor_gemm_sign";
  const std::vector<int64_t> shape = xnor_gemm_output_shape(a, b, k, op);
  const int64_t m = shape[0], n = shape[1];
  check_rank(bounds, 2, op, "bounds");
  check_dtype(bounds, at::kInt, op, "bounds");
  check_same_device(a, bounds, op);
  TORCH_CHECK(bounds.size(0) == 2 && bounds.size(1) == n, op, ": bounds must be [2, ", n,
              "] (lower, upper), got ", bounds.sizes());
  check_xnor_offset(a, offset, offset_index, m, n, op);
  return {m, words_for_bits(n)};
}

}  // namespace emokernels
