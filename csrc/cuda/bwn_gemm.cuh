// bwn_gemm and bwn_conv2d on CUDA: float32 / float16 / bfloat16 activations times packed sign
// bits, accumulated in float32 and scaled by alpha (the core's bwn::epilogue).
//
// Tiles: 64 x 64 outputs per block, one 32-bit weight word (32 k) at a time: the block stages
// the 64 x 32 activations (as float) and 64 weight words in shared memory, and each thread
// adds or subtracts its 4 x 4 sub-tile's activations in k order, exactly the sum the CPU's
// portable path forms, so float32 results agree with it bit for bit.
// GEMV (few rows of x): one warp per weight row streams the packed words (coalesced, 16x
// fewer bytes than float16 weights), lane l taking bit l of each word, and reduces its lanes'
// partial sums with shuffles.
#pragma once

#include "../core/bwn/bwn_problem.h"
#include "device.cuh"

namespace emokernels::cuda {

// Element (m, kk) of the left operand: a dense [M, K] matrix, or (conv) the receptive field
// of output pixel m of a padded channels-last image [B, H, W, C], element kk = (ky, kx, c).
struct BwnRows {
  int64_t k;
  bool conv = false;
  int64_t ho = 0, wo = 0, h = 0, w = 0, c = 0, kw = 0, sh = 0, sw = 0, dh = 0, dw = 0;

  __host__ __device__ int64_t offset(int64_t m, int64_t kk) const {
    if (!conv) return m * k + kk;
    const int64_t b = m / (ho * wo), r = m % (ho * wo);
    const int64_t tap = kk / c, ch = kk % c;
    const int64_t y = (r / wo) * sh + (tap / kw) * dh, x = (r % wo) * sw + (tap % kw) * dw;
    return ((b * h + y) * w + x) * c + ch;
  }
};

constexpr int kBwnTile = 64;
constexpr int kBwnThreads = 256;  // 16 x 16, each 4 x 4 outputs
constexpr int kBwnPitch = kBwnTile + 1;  // shared rows padded against bank conflicts

// p.x is read through `rows` (p.conv and p.row_sums are CPU-only and unused here).
template <typename T>
__global__ void bwn_gemm_kernel(bwn::BwnProblem<T> p, BwnRows rows) {
  EK_SHARED(float, x_tile, 32 * kBwnPitch);  // [k][row]
  EK_SHARED(uint32_t, w_tile, kBwnTile);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = int64_t(blockIdx.x) * kBwnTile, n0 = int64_t(blockIdx.y) * kBwnTile;
  const int64_t k = p.k;
  float acc[4][4] = {};
  for (int64_t word = 0; word < p.words; ++word) {
    for (int idx = threadIdx.x; idx < 32 * kBwnTile; idx += kBwnThreads) {
      const int row = idx / 32, kk = idx % 32;
      const int64_t m = m0 + row, col = 32 * word + kk;
      x_tile[kk * kBwnPitch + row] =
          m < p.m && col < k ? static_cast<float>(p.x[rows.offset(m, col)]) : 0.0f;
    }
    if (threadIdx.x < kBwnTile) {
      const int64_t n = n0 + threadIdx.x;
      w_tile[threadIdx.x] = n < p.n ? p.w[n * p.words + word] : 0u;
    }
    __syncthreads();
    const int valid = static_cast<int>(k - 32 * word < 32 ? k - 32 * word : 32);
    for (int kk = 0; kk < valid; ++kk) {
      float x[4];
      for (int i = 0; i < 4; ++i) x[i] = x_tile[kk * kBwnPitch + ty + 16 * i];
      for (int j = 0; j < 4; ++j) {
        const bool plus = (w_tile[tx + 16 * j] >> kk) & 1u;
        for (int i = 0; i < 4; ++i) acc[i][j] += plus ? x[i] : -x[i];
      }
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (m < p.m && n < p.n) {
        p.out[m * p.n + n] = static_cast<T>(bwn::epilogue(p.alpha[n], acc[i][j]));
      }
    }
  }
}

__host__ __device__ inline LaunchShape bwn_gemm_shape(int64_t m, int64_t n) {
  return {grid_2d(blocks_for(m, kBwnTile), blocks_for(n, kBwnTile)), dim3(kBwnThreads)};
}

// The GEMV path takes at most this many rows of x (one accumulator per row per lane).
constexpr int kBwnGemvMaxRows = 4;
constexpr int kBwnGemvWarps = 8;

// Dense x only: out[r, n] for r < m <= kBwnGemvMaxRows, one warp per n. The warp reads 32
// weight words at once (a lane each), then walks them: each word is broadcast by a shuffle and
// lane l takes its bit l with element l of the word's 32 activations, so the activation loads
// are coalesced too.
template <typename T>
__global__ void bwn_gemv_kernel(bwn::BwnProblem<T> p) {
  const int lane = threadIdx.x % 32;
  const int64_t n = int64_t(blockIdx.x) * kBwnGemvWarps + threadIdx.x / 32;
  const int64_t k = p.k;
  float acc[kBwnGemvMaxRows] = {};
  if (n < p.n) {  // the same for the whole warp: its shuffles see every lane
    const uint32_t* row = p.w + n * p.words;
    for (int64_t w0 = 0; w0 < p.words; w0 += 32) {
      const uint32_t mine = w0 + lane < p.words ? row[w0 + lane] : 0u;
      const int count = static_cast<int>(p.words - w0 < 32 ? p.words - w0 : 32);
#pragma unroll 4
      for (int i = 0; i < count; ++i) {
        const uint32_t bits = __shfl_sync(kFullWarp, mine, i);
        const int64_t kk = 32 * (w0 + i) + lane;
        if (kk < k) {
          const bool plus = (bits >> lane) & 1u;
          for (int r = 0; r < kBwnGemvMaxRows; ++r) {
            if (r < p.m) {
              const float v = static_cast<float>(p.x[r * k + kk]);
              acc[r] += plus ? v : -v;
            }
          }
        }
      }
    }
  }
  // Every lane of the warp takes part in the shuffles, also for n past the end.
  for (int r = 0; r < kBwnGemvMaxRows; ++r) {
    for (int offset = 16; offset > 0; offset /= 2) {
      acc[r] += __shfl_down_sync(kFullWarp, acc[r], offset);
    }
  }
  if (lane == 0 && n < p.n) {
    for (int r = 0; r < kBwnGemvMaxRows && r < p.m; ++r) {
      p.out[r * p.n + n] = static_cast<T>(bwn::epilogue(p.alpha[n], acc[r]));
    }
  }
}

__host__ __device__ inline LaunchShape bwn_gemv_shape(int64_t n) {
  return {dim3(static_cast<unsigned>(blocks_for(n, kBwnGemvWarps))), dim3(32 * kBwnGemvWarps)};
}

// Dense x with few rows takes the GEMV; everything else (and every convolution) the tiles.
__host__ __device__ inline bool bwn_use_gemv(int64_t m, bool conv) {
  return !conv && m <= kBwnGemvMaxRows;
}

}  // namespace emokernels::cuda
