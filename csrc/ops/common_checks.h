// Argument checks shared by every op and backend: each failure is a clear Python exception.
// Only tensor metadata is read here, so the same checks serve the CPU and CUDA launchers, and
// the Python fake kernels (emokernels/ops/_checks.py) mirror them one for one.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>

#include "../core/common/bits.h"

namespace emokernels {

// a * b, or an error naming `what` when it does not fit in int64.
inline int64_t checked_mul(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t out = 0;
  TORCH_CHECK(!__builtin_mul_overflow(a, b, &out), op, ": ", what, " overflows int64 (", a,
              " * ", b, ")");
  return out;
}

inline void check_rank(const at::Tensor& t, int64_t rank, const char* op, const char* name) {
  TORCH_CHECK(t.dim() == rank, op, ": ", name, " must be ", rank, "-D, got shape ", t.sizes());
}

inline void check_dtype(const at::Tensor& t, at::ScalarType dtype, const char* op,
                        const char* name) {
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ",
              t.scalar_type());
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* op) {
  TORCH_CHECK(a.device() == b.device(), op, ": all tensors must be on one device, got ",
              a.device(), " and ", b.device());
}

// k is a valid reduction length for an int32 result: 1 <= k <= INT32_MAX.
inline void check_k(int64_t k, const char* op) {
  TORCH_CHECK(k >= 1 && k <= std::numeric_limits<int32_t>::max(), op,
              ": k must be in [1, 2^31 - 1], got ", k);
}

// Packed operands must hold exactly ceil(k / 32) words per row.
inline void check_packed_words(const at::Tensor& bits, int64_t k, const char* op,
                               const char* name) {
  check_k(k, op);
  TORCH_CHECK(bits.size(1) == words_for_bits(k), op, ": ", name, " has ", bits.size(1),
              " words per row but k = ", k, " needs ceil(k/32) = ", words_for_bits(k));
}

}  // namespace emokernels
