// What the CUDA launchers share: a device guard, the launch on the current stream with its
// check, and the dtype dispatch of the bwn ops. Under the test-only CPU emulation of CUDA
// (EMOKERNELS_CUDA_EMULATION) the same launchers run their kernels on CPU tensors instead.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <c10/util/Exception.h>

#include "device.cuh"

#ifdef EMOKERNELS_CUDA_EMULATION
namespace emokernels::cuda {

struct DeviceGuard {
  explicit DeviceGuard(c10::Device) {}
};

// The emulation plays an sm_90 device (every path runs; tests force the others).
inline int compute_major(c10::Device) { return 9; }

inline void check_grid(const LaunchShape& shape);

template <typename Kernel, typename... Args>
void launch(const LaunchShape& shape, Kernel kernel, Args... args) {
  check_grid(shape);
  ek_emu::launch(shape.grid, shape.block, kernel, args...);
}

}  // namespace emokernels::cuda
#else
// c10's CUDA headers only: ATen's CUDAContext pulls in the cuBLAS / cuSPARSE headers, which a
// toolkit need not have.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace emokernels::cuda {

using DeviceGuard = c10::cuda::CUDAGuard;

inline int compute_major(c10::Device device) {
  int major = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor,
                                        device.index()));
  return major;
}

// Launches kernel<<<shape, current stream>>>(args...) and checks the launch.
inline void check_grid(const LaunchShape& shape);

template <typename Kernel, typename... Args>
void launch(const LaunchShape& shape, Kernel kernel, Args... args) {
  check_grid(shape);
  kernel<<<shape.grid, shape.block, 0, c10::cuda::getCurrentCUDAStream()>>>(args...);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace emokernels::cuda
#endif

namespace emokernels::cuda {

// CUDA's grid limits, checked before every launch: an error instead of a failed launch.
inline void check_grid(const LaunchShape& shape) {
  TORCH_CHECK(shape.grid.x >= 1 && shape.grid.x <= 0x7FFFFFFFu && shape.grid.y <= 65535 &&
                  shape.grid.z <= 65535,
              "emokernels: the problem needs a grid of ", shape.grid.x, " x ", shape.grid.y,
              " x ", shape.grid.z, " blocks, beyond CUDA's limits (2^31 - 1 x 65535 x 65535)");
}

// Calls f(T{}) with T the element type of a float32 / float16 / bfloat16 tensor (the bwn ops'
// input dtypes, already checked).
template <typename F>
void dispatch_bwn_input(at::ScalarType dtype, F f) {
  switch (dtype) {
    case at::kHalf:
      return f(c10::Half{});
    case at::kBFloat16:
      return f(c10::BFloat16{});
    default:
      return f(float{});
  }
}

}  // namespace emokernels::cuda
