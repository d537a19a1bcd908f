// EMOKERNELS_HD marks the core's inline functions: host and device code under nvcc, plain
// inline C++ everywhere else (the CPU build and the CPU emulation of the CUDA kernels).
#pragma once

#if defined(__CUDACC__)
#define EMOKERNELS_HD __host__ __device__ __forceinline__
#else
#define EMOKERNELS_HD inline
#endif
