// hashed_linear on CUDA: the virtual weight is generated into shared memory tile by tile from
// the buckets (the core's hashed::weight / hashed::code), never stored in global memory.
//
// Products: 64 x 64 outputs per block, 16 reduction steps at a time; the block stages its 64 x 16
// slice of the dense operand and generates the 16 x 64 slice of W it multiplies, and each thread
// accumulates a 4 x 4 sub-tile. The same kernel computes y = x @ W.T (forward: W is read
// transposed) and grad_x = grad @ W (backward).
// GEMV (few rows of x): one warp per output unit; its lanes hash consecutive columns from the
// row's hash state, read x coalesced and the buckets by gathers (a few MB: cache-resident), and
// reduce their partial sums with shuffles.
// Bucket gradient: each block forms a 64 x 64 tile of grad.T @ x over the batch and adds each
// element, signed, to its bucket: float atomics, or (deterministic) int64 fixed-point atomics,
// whose sums do not depend on the order of the additions.
#pragma once

#include "../core/hashed/hashed_problem.h"
#include "device.cuh"

namespace emokernels::cuda {

constexpr int kHashedTile = 64;
constexpr int kHashedDepth = 16;
constexpr int kHashedThreads = 256;  // 16 x 16, each 4 x 4 outputs
constexpr int kHashedPitch = kHashedTile + 1;  // shared rows padded against bank conflicts

// acc[i][j] += a[r][ty + 16 i] * b[r][tx + 16 j] over the kHashedDepth staged rows r of two
// shared tiles: each thread's 4 x 4 sub-tile of the block's 64 x 64 outputs.
__device__ inline void accumulate_tiles(const float* a, const float* b, float (&acc)[4][4],
                                        int tx, int ty) {
  for (int r = 0; r < kHashedDepth; ++r) {
    float av[4], bv[4];
    for (int i = 0; i < 4; ++i) av[i] = a[r * kHashedPitch + ty + 16 * i];
    for (int j = 0; j < 4; ++j) bv[j] = b[r * kHashedPitch + tx + 16 * j];
    for (int i = 0; i < 4; ++i) {
      for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
  }
}

// c [m, cols] = a [m, depth] @ B (+ bias), B [depth, cols] = W.T (Forward) or W.
struct GeneratedMatmul {
  const float* a;
  hashed::HashedProblem w;
  const float* bias;  // [cols] or null
  float* c;
  int64_t m, depth, cols;
};

template <bool Forward>
__global__ void hashed_matmul_kernel(GeneratedMatmul g) {
  EK_SHARED(float, a_tile, kHashedDepth * kHashedPitch);  // [k][row]
  EK_SHARED(float, b_tile, kHashedDepth * kHashedPitch);  // [k][col]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t row0 = int64_t(blockIdx.x) * kHashedTile, col0 = int64_t(blockIdx.y) * kHashedTile;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < g.depth; k0 += kHashedDepth) {
    for (int e = threadIdx.x; e < kHashedTile * kHashedDepth; e += kHashedThreads) {
      const int row = e / kHashedDepth, ka = e % kHashedDepth;  // consecutive threads: along k
      const int64_t m = row0 + row, k = k0 + ka;
      a_tile[ka * kHashedPitch + row] = m < g.m && k < g.depth ? g.a[m * g.depth + k] : 0.0f;
      const int kb = e / kHashedTile, col = e % kHashedTile;  // along the columns of B
      const int64_t kk = k0 + kb, n = col0 + col;
      float v = 0.0f;
      if (kk < g.depth && n < g.cols) {
        v = Forward ? hashed::weight(g.w, uint32_t(n), uint32_t(kk))
                    : hashed::weight(g.w, uint32_t(kk), uint32_t(n));
      }
      b_tile[kb * kHashedPitch + col] = v;
    }
    __syncthreads();
    accumulate_tiles(a_tile, b_tile, acc, tx, ty);
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int64_t m = row0 + ty + 16 * i;
    if (m >= g.m) continue;
    for (int j = 0; j < 4; ++j) {
      const int64_t n = col0 + tx + 16 * j;
      if (n < g.cols) g.c[m * g.cols + n] = acc[i][j] + (g.bias ? g.bias[n] : 0.0f);
    }
  }
}

__host__ __device__ inline LaunchShape hashed_matmul_shape(int64_t m, int64_t cols) {
  return {grid_2d(blocks_for(m, kHashedTile), blocks_for(cols, kHashedTile)),
          dim3(kHashedThreads)};
}

constexpr int kHashedGemvMaxRows = 4;
constexpr int kHashedGemvWarps = 8;

__host__ __device__ inline bool hashed_use_gemv(int64_t m) {
  return m <= kHashedGemvMaxRows;
}

// out [m, cols] = x [m, depth] @ W.T (+ bias) for m <= MaxRows.
template <int MaxRows>
__global__ void hashed_gemv_kernel(GeneratedMatmul g) {
  const int lane = threadIdx.x % 32;
  const int64_t i = int64_t(blockIdx.x) * kHashedGemvWarps + threadIdx.x / 32;
  if (i >= g.cols) return;  // whole warps leave together: no shuffle below is divergent
  const uint32_t state = hashed::row_state(uint32_t(i), g.w.seed);
  float acc[MaxRows] = {};
  for (int64_t j = lane; j < g.depth; j += 32) {
    const uint32_t c = hashed::code_at(g.w, state, uint32_t(j));
    const float w = hashed::apply_sign(c, g.w.buckets[hashed::bucket_of(c)]);
    for (int r = 0; r < MaxRows; ++r) {
      if (r < g.m) acc[r] = fmaf(g.a[r * g.depth + j], w, acc[r]);
    }
  }
  for (int r = 0; r < MaxRows; ++r) {
    float v = acc[r];
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(kFullWarp, v, offset);
    if (lane == 0 && r < g.m) g.c[r * g.cols + i] = v + (g.bias ? g.bias[i] : 0.0f);
  }
}

__host__ __device__ inline LaunchShape hashed_gemv_shape(int64_t cols) {
  return {grid_2d(blocks_for(cols, kHashedGemvWarps), 1), dim3(32 * kHashedGemvWarps)};
}

// grad_buckets from grad [m, n] and x [m, k]: into out (float atomics) or, Fixed, into fixed as
// round(value * scale) (int64 atomics; the caller divides by scale).
struct BucketGrad {
  const float* grad;
  const float* x;
  hashed::HashedProblem w;
  float* out;
  unsigned long long* fixed;
  double scale;
  int64_t m;
};

template <bool Fixed>
__global__ void hashed_bucket_grad_kernel(BucketGrad g) {
  EK_SHARED(float, g_tile, kHashedDepth * kHashedPitch);  // [batch row][i]
  EK_SHARED(float, x_tile, kHashedDepth * kHashedPitch);  // [batch row][j]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t n = g.w.rows, k = g.w.cols;
  const int64_t i0 = int64_t(blockIdx.x) * kHashedTile, j0 = int64_t(blockIdx.y) * kHashedTile;
  float acc[4][4] = {};
  for (int64_t m0 = 0; m0 < g.m; m0 += kHashedDepth) {
    for (int e = threadIdx.x; e < kHashedTile * kHashedDepth; e += kHashedThreads) {
      const int r = e / kHashedTile, col = e % kHashedTile;
      const int64_t m = m0 + r;
      g_tile[r * kHashedPitch + col] =
          m < g.m && i0 + col < n ? g.grad[m * n + i0 + col] : 0.0f;
      x_tile[r * kHashedPitch + col] = m < g.m && j0 + col < k ? g.x[m * k + j0 + col] : 0.0f;
    }
    __syncthreads();
    accumulate_tiles(g_tile, x_tile, acc, tx, ty);
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int64_t row = i0 + ty + 16 * i;
    if (row >= n) continue;
    for (int j = 0; j < 4; ++j) {
      const int64_t col = j0 + tx + 16 * j;
      if (col >= k) continue;
      const uint32_t c = hashed::code(g.w, uint32_t(row), uint32_t(col));
      const float v = hashed::apply_sign(c, acc[i][j]);
      if constexpr (Fixed) {
        atomicAdd(g.fixed + hashed::bucket_of(c),
                  static_cast<unsigned long long>(llrint(static_cast<double>(v) * g.scale)));
      } else {
        atomicAdd(g.out + hashed::bucket_of(c), v);
      }
    }
  }
}

__host__ __device__ inline LaunchShape hashed_bucket_grad_shape(int64_t n, int64_t k) {
  return {grid_2d(blocks_for(n, kHashedTile), blocks_for(k, kHashedTile)), dim3(kHashedThreads)};
}

}  // namespace emokernels::cuda
