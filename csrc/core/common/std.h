// The few standard-library names the kernel core and the CUDA kernels use. NVRTC (the run-time
// compile of the CUDA kernels through CuPy) has no C++ standard library: there they come from
// CUDA's own libcu++ (<cuda/std/...>), which defines the fixed-width integers globally too.
#pragma once

#if defined(__CUDACC_RTC__)
#include <cuda/std/cstdint>
#include <cuda/std/type_traits>
#ifndef FLT_MAX
#define FLT_MAX 3.40282346638528859812e+38F
#endif
namespace emokernels::stdlib {
using cuda::std::is_same_v;
}  // namespace emokernels::stdlib
#else
#include <cfloat>
#include <cstdint>
#include <type_traits>
namespace emokernels::stdlib {
using std::is_same_v;
}  // namespace emokernels::stdlib
#endif
