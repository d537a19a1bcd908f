// hashed_linear and hashed_linear_backward: argument checks and output shapes, shared by every
// backend. The virtual weight W [out_features, in_features] is never an argument: buckets,
// seed and block define it (csrc/core/hashed/hashed_problem.h).
#pragma once

#include <optional>
#include <vector>

#include "common_checks.h"

namespace emokernels {

constexpr int64_t kMaxBuckets = int64_t{1} << 30;
constexpr int64_t kMaxBlock = 256;

// float32 tensors on one device; x [M, K] with 1 <= K <= 2^31 - 1; buckets [B] with
// 1 <= B <= 2^30; seed a uint32; block a power of two in [1, 256].
inline void check_hashed_operands(const at::Tensor& x, const at::Tensor& buckets, int64_t seed,
                                  int64_t block, const char* op, const char* x_name) {
  check_rank(x, 2, op, x_name);
  check_rank(buckets, 1, op, "buckets");
  check_dtype(x, at::kFloat, op, x_name);
  check_dtype(buckets, at::kFloat, op, "buckets");
  check_same_device(x, buckets, op);
  TORCH_CHECK(buckets.size(0) >= 1 && buckets.size(0) <= kMaxBuckets, op,
              ": buckets must have between 1 and 2^30 entries, got ", buckets.size(0));
  TORCH_CHECK(seed >= 0 && seed <= 0xFFFFFFFFll, op, ": seed must be in [0, 2^32 - 1], got ",
              seed);
  TORCH_CHECK(block >= 1 && block <= kMaxBlock && (block & (block - 1)) == 0, op,
              ": block must be a power of two in [1, 256], got ", block);
}

inline void check_features(int64_t features, const char* op, const char* name) {
  TORCH_CHECK(features >= 1 && features <= std::numeric_limits<int32_t>::max(), op, ": ", name,
              " must be in [1, 2^31 - 1], got ", features);
}

// x [M, K] -> [M, out_features].
inline std::vector<int64_t> hashed_linear_output_shape(const at::Tensor& x,
                                                       const at::Tensor& buckets,
                                                       int64_t out_features, int64_t seed,
                                                       int64_t block,
                                                       const std::optional<at::Tensor>& bias) {
  constexpr const char* op = "hashed_linear";
  check_hashed_operands(x, buckets, seed, block, op, "x");
  check_features(x.size(1), op, "in_features (x.shape[1])");
  check_features(out_features, op, "out_features");
  if (bias.has_value()) {
    check_rank(*bias, 1, op, "bias");
    check_dtype(*bias, at::kFloat, op, "bias");
    check_same_device(x, *bias, op);
    TORCH_CHECK(bias->size(0) == out_features, op, ": bias has ", bias->size(0),
                " entries but out_features = ", out_features);
  }
  return {x.size(0), out_features};
}

// grad [M, N] and x [M, K] -> (grad_x [M, K], grad_buckets [B]).
inline void check_hashed_linear_backward(const at::Tensor& grad, const at::Tensor& x,
                                         const at::Tensor& buckets, int64_t seed,
                                         int64_t block) {
  constexpr const char* op = "hashed_linear_backward";
  check_hashed_operands(x, buckets, seed, block, op, "x");
  check_rank(grad, 2, op, "grad");
  check_dtype(grad, at::kFloat, op, "grad");
  check_same_device(x, grad, op);
  check_features(x.size(1), op, "in_features (x.shape[1])");
  check_features(grad.size(1), op, "out_features (grad.shape[1])");
  TORCH_CHECK(grad.size(0) == x.size(0), op, ": grad has ", grad.size(0), " rows but x has ",
              x.size(0));
}

}  // namespace emokernels
