// pack_channels: argument checks and output shape, shared by every backend.
#pragma once

#include <vector>

#include "../core/common/bits.h"
#include "common_checks.h"

namespace emokernels {

// x float32 [B, C, H, W], lower / upper float32 [C] -> int32 [B, H, W, ceil(C / 32)].
inline std::vector<int64_t> pack_channels_output_shape(const at::Tensor& x,
                                                       const at::Tensor& lower,
                                                       const at::Tensor& upper) {
  constexpr const char* op = "pack_channels";
  check_rank(x, 4, op, "x");
  check_dtype(x, at::kFloat, op, "x");
  TORCH_CHECK(x.size(1) >= 1, op, ": x [B, C, H, W] must have C >= 1, got ", x.sizes());
  for (const auto* t : {&lower, &upper}) {
    const char* name = t == &lower ? "lower" : "upper";
    check_rank(*t, 1, op, name);
    check_dtype(*t, at::kFloat, op, name);
    check_same_device(x, *t, op);
    TORCH_CHECK(t->size(0) == x.size(1), op, ": ", name, " has ", t->size(0),
                " entries, x has ", x.size(1), " channels");
  }
  return {x.size(0), x.size(2), x.size(3), words_for_bits(x.size(1))};
}

}  // namespace emokernels
