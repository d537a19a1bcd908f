// Argument checks shared by every backend: each failure is a clear Python exception.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace emokernels {

inline int64_t words_for_bits(int64_t k) { return (k + 31) / 32; }

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

// Packed operands must hold exactly ceil(k / 32) words per row.
inline void check_packed_words(const at::Tensor& bits, int64_t k, const char* op,
                               const char* name) {
  TORCH_CHECK(k >= 1, op, ": k must be >= 1, got ", k);
  TORCH_CHECK(bits.size(1) == words_for_bits(k), op, ": ", name, " has ", bits.size(1),
              " words per row but k = ", k, " needs ceil(k/32) = ", words_for_bits(k));
}

}  // namespace emokernels
