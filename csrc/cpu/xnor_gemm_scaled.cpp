// xnor_gemm_scaled on the CPU: xnor_gemm with its epilogue fused, for the binary layers:
// out[m, n] = float(dot[m, n] + offset[m % P, n]) * scale[n] + bias[n], float32 [M, N].
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "xnor_kernels.h"

namespace emokernels {
namespace {

at::Tensor xnor_gemm_scaled_cpu(const at::Tensor& a_in, const at::Tensor& b_in, int64_t k,
                                const at::Tensor& scale_in,
                                const std::optional<at::Tensor>& bias_in,
                                const std::optional<at::Tensor>& offset_in) {
  constexpr const char* op = "xnor_gemm_scaled";
  const auto [a, b] = xnor::checked_operands(a_in, b_in, k, op);
  const int64_t n = b.size(0);
  check_rank(scale_in, 1, op, "scale");
  check_dtype(scale_in, at::kFloat, op, "scale");
  check_same_device(a, scale_in, op);
  TORCH_CHECK(scale_in.size(0) == n, op, ": scale has ", scale_in.size(0), " entries, need ", n);
  const at::Tensor scale = scale_in.contiguous();
  at::Tensor bias, offset;
  if (bias_in.has_value()) {
    check_rank(*bias_in, 1, op, "bias");
    check_dtype(*bias_in, at::kFloat, op, "bias");
    check_same_device(a, *bias_in, op);
    TORCH_CHECK(bias_in->size(0) == n, op, ": bias has ", bias_in->size(0), " entries, need ", n);
    bias = bias_in->contiguous();
  }
  if (offset_in.has_value()) {
    check_rank(*offset_in, 2, op, "offset");
    check_dtype(*offset_in, at::kInt, op, "offset");
    check_same_device(a, *offset_in, op);
    TORCH_CHECK(offset_in->size(1) == n && offset_in->size(0) >= 1 &&
                    a.size(0) % offset_in->size(0) == 0,
                op, ": offset must be [P, ", n, "] with P dividing M = ", a.size(0), ", got ",
                offset_in->sizes());
    offset = offset_in->contiguous();
  }
  at::Tensor out = at::empty({a.size(0), n}, a.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  xnor::XnorProblem p = xnor::make_problem(a, b, k);
  p.out_f32 = out.data_ptr<float>();
  p.scale = scale.data_ptr<float>();
  if (bias.defined()) p.bias = bias.data_ptr<float>();
  if (offset.defined()) {
    p.offset = offset.data_ptr<int32_t>();
    p.offset_rows = offset.size(0);
  }
  xnor::run_xnor(p);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(emokernels, CPU, m) { m.impl("xnor_gemm_scaled", &xnor_gemm_scaled_cpu); }

}  // namespace emokernels
