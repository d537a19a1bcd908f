// The host side of the XNOR GEMM on CUDA, shared by the xnor_gemm and xnor_gemm_scaled
// launchers: which path runs on a device, and its launch.
#pragma once

#include <ATen/ops/empty.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "launch.h"
#include "xnor_gemm.cuh"

namespace emokernels::cuda {

enum class XnorCudaPath { Cores, TensorCores };

// 1-bit tensor cores are native on sm_80 .. sm_90 (Blackwell emulates b1 mma with int8 IMMA:
// the CUDA-core tiles there). EMOKERNELS_CUDA_XNOR=cores|tensor-cores forces a path.
inline XnorCudaPath xnor_cuda_path(int major) {
  const bool native = major >= 8 && major < 10;
  const char* forced = std::getenv("EMOKERNELS_CUDA_XNOR");
  if (forced == nullptr || forced[0] == '\0') {
    return native ? XnorCudaPath::TensorCores : XnorCudaPath::Cores;
  }
  if (std::strcmp(forced, "cores") == 0) return XnorCudaPath::Cores;
  if (std::strcmp(forced, "tensor-cores") == 0) {
    if (major < 8) {
      throw std::invalid_argument("EMOKERNELS_CUDA_XNOR=tensor-cores needs sm_80 or later");
    }
    return XnorCudaPath::TensorCores;
  }
  throw std::invalid_argument(std::string("EMOKERNELS_CUDA_XNOR=") + forced +
                              " is not one of: cores, tensor-cores");
}

// The tensor-core kernel's 16-byte copies need every row 16-byte aligned; else 4-byte ones.
inline bool xnor_mma_wide_copies(const xnor::XnorProblem& p) {
  const auto aligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  return p.row_words % 4 == 0 && aligned(p.a) && aligned(p.b);
}

// Runs `p` on the path xnor_cuda_path picks for `device`; Fused: through the float or sign
// epilogue (xnor_gemm_scaled, xnor_gemm_sign), else int32 dots (xnor_gemm).
template <bool Fused>
void run_xnor(const xnor::XnorProblem& p, c10::Device device) {
  if (xnor_cuda_path(compute_major(device)) == XnorCudaPath::TensorCores) {
    const LaunchShape gemm = xnor_gemm_mma_shape(p);
    check_grid(gemm);  // before any launch: a refused problem runs nothing
    const at::Tensor pops = at::empty({p.m + p.n}, at::TensorOptions(at::kInt).device(device));
    int32_t* pop_a = pops.data_ptr<int32_t>();
    launch(xnor_row_popcounts_shape(p), xnor_row_popcounts_kernel, p, pop_a);
    const auto kernel = xnor_mma_wide_copies(p) ? xnor_gemm_mma_kernel<Fused, 4>
                                                : xnor_gemm_mma_kernel<Fused, 1>;
    launch(gemm, kernel, p, static_cast<const int32_t*>(pop_a),
           static_cast<const int32_t*>(pop_a + p.m));
  } else {
    launch(xnor_gemm_shape(p), xnor_gemm_kernel<Fused>, p);
  }
}

}  // namespace emokernels::cuda
