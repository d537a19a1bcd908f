#include "paths.h"

#include <c10/util/Exception.h>

namespace emokernels {

namespace {

BwnInput bwn_input(const std::string& dtype) {
  return dtype == "bfloat16"  ? BwnInput::BFloat16
         : dtype == "float16" ? BwnInput::Float16
                              : BwnInput::Float32;
}

}  // namespace

std::string cpu_kernel_path(const std::string& op, const std::string& dtype, int64_t m,
                            int64_t n, int64_t channels) {
  if (op == "pack_bits") return path_name(pack_bits_path(dtype == "float32"));
  if (op == "pack_channels") return path_name(pack_channels_path());
  if (op == "xnor_gemm" || op == "xnor_gemm_scaled" || op == "xnor_gemm_sign") {
    return path_name(xnor_path());
  }
  if (op == "bwn_gemm") return path_name(bwn_path(bwn_input(dtype), m, n, false));
  if (op == "bwn_conv2d") {
    const bool implicit_ok = dtype == "float32" && channels % 16 == 0;
    return path_name(bwn_path(bwn_input(dtype), m, n, implicit_ok));
  }
  // n: the block of hashed_linear (1: exact hashing).
  if (op == "hashed_linear" || op == "hashed_linear_backward") return path_name(hashed_path(n));
  if (op == "cp_conv2d") return path_name(cp_path());
  TORCH_CHECK(false, "cpu_kernel_path: unknown op '", op,
              "'; expected pack_bits, pack_channels, xnor_gemm, xnor_gemm_scaled, xnor_gemm_sign, "
              "bwn_gemm, bwn_conv2d, hashed_linear, hashed_linear_backward or cp_conv2d");
}

}  // namespace emokernels
