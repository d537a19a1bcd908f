// pack_bits: argument checks and output shape, shared by every backend.
#pragma once

#include <vector>

#include "common_checks.h"

namespace emokernels {

inline bool pack_bits_dtype_ok(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// x [..., K] floating -> int32 [..., ceil(K/32)].
inline std::vector<int64_t> pack_bits_output_shape(const at::Tensor& x) {
  TORCH_CHECK(x.dim() >= 1, "pack_bits: x must have at least 1 dimension, got a scalar");
  TORCH_CHECK(pack_bits_dtype_ok(x.scalar_type()),
              "pack_bits: x must be float32, float64, float16 or bfloat16, got ",
              x.scalar_type());
  const int64_t k = x.size(-1);
  TORCH_CHECK(k >= 1, "pack_bits: the last dimension of x must be >= 1, got shape ", x.sizes());
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = words_for_bits(k);
  return shape;
}

}  // namespace emokernels
