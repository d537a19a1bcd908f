// The core XnorProblem of checked, contiguous tensors: shared by the CPU and CUDA launchers of
// xnor_gemm, xnor_gemm_scaled and xnor_gemm_sign.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>

#include "../core/xnor/xnor_problem.h"

namespace emokernels {

// An optional operand, contiguous, or an undefined tensor.
inline at::Tensor contiguous_or_undefined(const std::optional<at::Tensor>& t) {
  return t.has_value() ? t->contiguous() : at::Tensor();
}

// a [M, W], b [N, W] int32 (checked, contiguous); the output pointer is set by the caller.
inline xnor::XnorProblem make_xnor_problem(const at::Tensor& a, const at::Tensor& b, int64_t k) {
  xnor::XnorProblem p{};
  p.a = reinterpret_cast<const uint32_t*>(a.data_ptr<int32_t>());
  p.b = reinterpret_cast<const uint32_t*>(b.data_ptr<int32_t>());
  p.m = a.size(0);
  p.n = b.size(0);
  p.row_words = a.size(1);
  p.k = k;
  p.last_mask = last_word_mask(k);
  return p;
}

// The offset (checked, contiguous; undefined: none) and its optional row index.
inline void set_xnor_offset(xnor::XnorProblem& p, const at::Tensor& offset,
                            const at::Tensor& offset_index) {
  if (!offset.defined()) return;
  p.offset = offset.data_ptr<int32_t>();
  p.offset_rows = offset.size(0);
  if (offset_index.defined()) {
    p.offset_index = offset_index.data_ptr<int32_t>();
    p.offset_rows = offset_index.size(0);
  }
}

// The fused epilogue's operands (bias, offset and offset_index may be undefined tensors) and
// float output.
inline void set_xnor_epilogue(xnor::XnorProblem& p, at::Tensor& out, const at::Tensor& scale,
                              const at::Tensor& bias, const at::Tensor& offset,
                              const at::Tensor& offset_index) {
  p.out_f32 = out.data_ptr<float>();
  p.scale = scale.data_ptr<float>();
  if (bias.defined()) p.bias = bias.data_ptr<float>();
  set_xnor_offset(p, offset, offset_index);
}

// The sign epilogue's operands (offset and offset_index may be undefined tensors) and zeroed
// int32 output [M, ceil(N / 32)].
inline void set_xnor_sign_epilogue(xnor::XnorProblem& p, at::Tensor& out,
                                   const at::Tensor& bounds, const at::Tensor& offset,
                                   const at::Tensor& offset_index) {
  p.out_bits = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  p.out_words = out.size(1);
  p.bounds = bounds.data_ptr<int32_t>();
  set_xnor_offset(p, offset, offset_index);
}

}  // namespace emokernels
