// pack_channels on CUDA: one thread per output word; consecutive threads take consecutive
// pixels of one (image, word), so each of the 32 channel reads is coalesced.
#pragma once

#include "../core/pack/pack_channels.h"
#include "device.cuh"

namespace emokernels::cuda {

constexpr int kPackChannelsThreads = 256;

__global__ void pack_channels_kernel(pack::PackChannelsProblem p) {
  const int64_t total = p.batch * p.words * p.pixels;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  for (int64_t item = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; item < total;
       item += stride) {
    const int64_t pixel = item % p.pixels, w = (item / p.pixels) % p.words;
    const int64_t b = item / (p.pixels * p.words);
    p.out[(b * p.pixels + pixel) * p.words + w] = pack::pack_channels_word(p, b, pixel, w);
  }
}

__host__ __device__ inline LaunchShape pack_channels_shape(const pack::PackChannelsProblem& p) {
  const int64_t blocks = blocks_for(p.batch * p.words * p.pixels, kPackChannelsThreads);
  return {dim3(static_cast<unsigned>(blocks < 65535 ? blocks : 65535)),
          dim3(kPackChannelsThreads)};
}

}  // namespace emokernels::cuda
