// Compile check only (no GPU needed): test_kernels.cuh must stay valid CUDA, so that what the
// emulation runs is what nvcc would build.
//   /usr/local/cuda/bin/nvcc -std=c++17 -arch=sm_80 -I../../csrc -c -o /tmp/x.o nvcc_check.cu
#include "cuda/device.cuh"
#include "test_kernels.cuh"

// The templates, instantiated as the tests use them.
template __global__ void ek_test::row_sum_kernel<float>(const float*, float*, int);
template __global__ void ek_test::row_sum_kernel<long long>(const long long*, long long*, int);
