// The core XnorProblem of checked, contiguous tensors: shared by the CPU and CUDA launchers of
// xnor_gemm, xnor_gemm_scaled and xnor_gemm_sign.
#pragma once

#include <ATen/core/Tensor.h>

#include "../core/xnor/xnor_problem.h"

namespace emokernels {

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

// The fused epilogue's operands (bias and offset may be undefined tensors) and float output.
inline void set_xnor_epilogue(xnor::XnorProblem& p, at::Tensor& out, const at::Tensor& scale,
                              const at::Tensor& bias, const at::Tensor& offset) {
  p.out_f32 = out.data_ptr<float>();
  p.scale = scale.data_ptr<float>();
  if (bias.defined()) p.bias = bias.data_ptr<float>();
  if (offset.defined()) {
    p.offset = offset.data_ptr<int32_t>();
    p.offset_rows = offset.size(0);
  }
}

// The sign epilogue's operands (offset may be an undefined tensor) and zeroed int32 output
// [M, ceil(N / 32)].
inline void set_xnor_sign_epilogue(xnor::XnorProblem& p, at::Tensor& out,
                                   const at::Tensor& bounds, const at::Tensor& offset) {
  p.out_bits = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  p.out_words = out.size(1);
  p.bounds = bounds.data_ptr<int32_t>();
  if (offset.defined()) {
    p.offset = offset.data_ptr<int32_t>();
    p.offset_rows = offset.size(0);
  }
}

}  // namespace emokernels
