// pack_bits on CUDA: one warp per output word; lane j reads element 32*w + j and a ballot
// gathers the 32 signs into the word, so reads are coalesced and no lane loops over bits.
#pragma once

#include "../core/common/bits.h"
#include "device.cuh"

namespace emokernels::cuda {

// Compared in the input's own type for float and double (a float64 -1e-300 stays negative);
// half and bfloat16 convert to float exactly.
template <typename T>
__device__ inline bool sign_bit(T v) {
  if constexpr (stdlib::is_same_v<T, double> || stdlib::is_same_v<T, float>) {
    return v >= T(0);
  } else {
    return static_cast<float>(v) >= 0.0f;
  }
}

constexpr int kPackWarpsPerBlock = 8;

// x [rows, k] contiguous -> out [rows, words], words = ceil(k / 32); bits past k are 0.
template <typename T>
__global__ void pack_bits_kernel(const T* x, uint32_t* out, int64_t rows, int64_t k,
                                 int64_t words) {
  const int lane = threadIdx.x % 32;
  const int64_t warp = blockIdx.x * int64_t(kPackWarpsPerBlock) + threadIdx.x / 32;
  const int64_t stride = int64_t(gridDim.x) * kPackWarpsPerBlock;
  for (int64_t item = warp; item < rows * words; item += stride) {
    const int64_t row = item / words, w = item % words;
    const int64_t col = 32 * w + lane;
    const bool bit = col < k && sign_bit(x[row * k + col]);
    const uint32_t word = __ballot_sync(kFullWarp, bit);
    if (lane == 0) out[item] = word;
  }
}

__host__ __device__ inline LaunchShape pack_bits_shape(int64_t rows, int64_t words) {
  const int64_t warps = rows * words;
  const int64_t blocks = blocks_for(warps, kPackWarpsPerBlock);
  return {dim3(static_cast<unsigned>(blocks < 65535 ? blocks : 65535)),
          dim3(32 * kPackWarpsPerBlock)};
}

}  // namespace emokernels::cuda
