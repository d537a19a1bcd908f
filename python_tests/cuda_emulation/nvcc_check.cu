// Compile check only (no GPU needed): test_kernels.cuh must stay valid CUDA, so that what the
// emulation runs is what nvcc would build. The prologue stands in for csrc/cuda/device.cuh.
//   /usr/local/cuda/bin/nvcc -std=c++17 -arch=sm_80 -c -o /tmp/nvcc_check.o nvcc_check.cu
#define EK_SHARED(type, name, count) __shared__ type name[count]
#include "test_kernels.cuh"

// The templates, instantiated as the tests use them.
template __global__ void ek_test::row_sum_kernel<float>(const float*, float*, int);
template __global__ void ek_test::row_sum_kernel<long long>(const long long*, long long*, int);
