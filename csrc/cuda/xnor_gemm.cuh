// xnor_gemm, xnor_gemm_scaled and xnor_gemm_sign on CUDA, two paths with the core's epilogue (the same as on
// the CPU):
// - CUDA cores, every architecture: 64 x 64 output tiles, 8-word slices of both operands staged
//   in shared memory, each thread accumulating popcount(a XOR b) for a 4 x 4 sub-tile.
// - 1-bit tensor cores (sm_80 .. sm_90): mma m16n8k256 AND + popc. XNOR counts come back in
//   the epilogue: sign(a).sign(b) = k - 2 popc(a XOR b) = k - 2 popc(a) - 2 popc(b)
//   + 4 popc(a AND b), with the row popcounts summed from the fragments each lane holds.
#pragma once

#include "../core/xnor/xnor_problem.h"
#include "device.cuh"
#include "mma_b1.cuh"

namespace emokernels::cuda {

constexpr int kXnorTile = 64;    // output rows and columns per block
constexpr int kXnorSliceWords = 8;
constexpr int kXnorThreads = 256;  // 16 x 16, each 4 x 4 outputs

// Word `w` of row `row` of an operand with `rows` rows, masked past k; 0 outside the matrix.
__device__ inline uint32_t xnor_word(const uint32_t* bits, int64_t rows, int64_t row, int64_t w,
                                     const xnor::XnorProblem& p) {
  if (row >= rows || w >= p.row_words) return 0u;
  const uint32_t word = bits[row * p.row_words + w];
  return w == p.row_words - 1 ? word & p.last_mask : word;
}

// Fused: write through the float epilogue (xnor_gemm_scaled) or as a sign bit
// (xnor_gemm_sign: threads of other columns share the word), else int32 dots (xnor_gemm).
template <bool Fused>
__device__ inline void store_dot(const xnor::XnorProblem& p, int64_t m, int64_t n,
                                 int32_t dot) {
  if constexpr (Fused) {
    const int64_t r = xnor::offset_row(p, m);
    if (p.out_bits == nullptr) return xnor::store_row(p, m, r, n, &dot, 1);
    const int32_t offset = p.offset ? p.offset[r * p.n + n] : 0;
    if (xnor::sign_bit(p, n, xnor::add_wrapping(dot, offset))) {
      atomicOr(p.out_bits + m * p.out_words + n / 32, 1u << (n % 32));
    }
  } else {
    p.out_i32[m * p.n + n] = dot;
  }
}

template <bool Fused>
__global__ void xnor_gemm_kernel(xnor::XnorProblem p) {
  EK_SHARED(uint32_t, a_tile, kXnorSliceWords * kXnorTile);  // [word][row]
  EK_SHARED(uint32_t, b_tile, kXnorSliceWords * kXnorTile);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = int64_t(blockIdx.x) * kXnorTile, n0 = int64_t(blockIdx.y) * kXnorTile;
  int32_t diff[4][4] = {};
  for (int64_t w0 = 0; w0 < p.row_words; w0 += kXnorSliceWords) {
    for (int idx = threadIdx.x; idx < kXnorSliceWords * kXnorTile; idx += kXnorThreads) {
      const int row = idx / kXnorSliceWords, w = idx % kXnorSliceWords;
      a_tile[w * kXnorTile + row] = xnor_word(p.a, p.m, m0 + row, w0 + w, p);
      b_tile[w * kXnorTile + row] = xnor_word(p.b, p.n, n0 + row, w0 + w, p);
    }
    __syncthreads();
    for (int w = 0; w < kXnorSliceWords; ++w) {
      uint32_t a[4], b[4];
      for (int i = 0; i < 4; ++i) a[i] = a_tile[w * kXnorTile + ty + 16 * i];
      for (int j = 0; j < 4; ++j) b[j] = b_tile[w * kXnorTile + tx + 16 * j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) diff[i][j] += __popc(a[i] ^ b[j]);
    }
    __syncthreads();
  }
  for (int i = 0; i < 4; ++i) {
    const int64_t m = m0 + ty + 16 * i;
    for (int j = 0; j < 4; ++j) {
      const int64_t n = n0 + tx + 16 * j;
      if (m < p.m && n < p.n) {
        store_dot<Fused>(p, m, n, static_cast<int32_t>(p.k - 2 * diff[i][j]));
      }
    }
  }
}

__host__ __device__ inline LaunchShape xnor_gemm_shape(const xnor::XnorProblem& p) {
  return {grid_2d(blocks_for(p.m, kXnorTile), blocks_for(p.n, kXnorTile)), dim3(kXnorThreads)};
}

// Tensor-core path: 4 warps as 2 x 2, each warp 32 x 16 outputs (2 x 2 mma tiles of 16 x 8),
// the block's 64 x 32 tile fed by 256-bit (8-word) slices of A and B in shared memory.
constexpr int kMmaTileM = 64, kMmaTileN = 32, kMmaThreads = 128, kMmaWords = 8;

template <bool Fused>
__global__ void xnor_gemm_mma_kernel(xnor::XnorProblem p) {
  EK_SHARED(uint32_t, a_tile, kMmaTileM * kMmaWords);  // [row][word]
  EK_SHARED(uint32_t, b_tile, kMmaTileN * kMmaWords);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane >> 2, t = lane & 3;
  const int wm = 32 * (warp / 2), wn = 16 * (warp % 2);
  const int64_t m0 = int64_t(blockIdx.x) * kMmaTileM, n0 = int64_t(blockIdx.y) * kMmaTileN;
  int32_t acc[2][2][4] = {};
  int32_t pop_a[2][2] = {};  // [mma row tile][row g, row g + 8], this lane's k slices
  int32_t pop_b[2] = {};     // [mma column tile], column g, this lane's k slices
  for (int64_t w0 = 0; w0 < p.row_words; w0 += kMmaWords) {
    for (int idx = threadIdx.x; idx < kMmaTileM * kMmaWords; idx += kMmaThreads) {
      const int row = idx / kMmaWords, w = idx % kMmaWords;
      a_tile[idx] = xnor_word(p.a, p.m, m0 + row, w0 + w, p);
      if (row < kMmaTileN) b_tile[idx] = xnor_word(p.b, p.n, n0 + row, w0 + w, p);
    }
    __syncthreads();
    uint32_t a[2][4], b[2][2];
    for (int i = 0; i < 2; ++i) {
      const uint32_t* lo = a_tile + (wm + 16 * i + g) * kMmaWords;
      const uint32_t* hi = lo + 8 * kMmaWords;
      a[i][0] = lo[t], a[i][1] = hi[t], a[i][2] = lo[4 + t], a[i][3] = hi[4 + t];
      pop_a[i][0] += __popc(a[i][0]) + __popc(a[i][2]);
      pop_a[i][1] += __popc(a[i][1]) + __popc(a[i][3]);
    }
    for (int j = 0; j < 2; ++j) {
      const uint32_t* col = b_tile + (wn + 8 * j + g) * kMmaWords;
      b[j][0] = col[t], b[j][1] = col[4 + t];
      pop_b[j] += __popc(b[j][0]) + __popc(b[j][1]);
    }
    for (int i = 0; i < 2; ++i)
      for (int j = 0; j < 2; ++j) mma_b1_and_popc(acc[i][j], a[i], b[j], acc[i][j]);
    __syncthreads();
  }
  // The 4 lanes of a group (t = 0..3) hold the 4 k slices of the same rows / column.
  for (int offset = 1; offset <= 2; offset *= 2) {
    for (int i = 0; i < 2; ++i)
      for (int h = 0; h < 2; ++h) pop_a[i][h] += __shfl_xor_sync(kFullWarp, pop_a[i][h], offset);
    for (int j = 0; j < 2; ++j) pop_b[j] += __shfl_xor_sync(kFullWarp, pop_b[j], offset);
  }
  for (int j = 0; j < 2; ++j) {
    // This lane's outputs are columns 2t and 2t + 1 of the tile: held by groups 2t and 2t + 1.
    const int32_t pop_cols[2] = {__shfl_sync(kFullWarp, pop_b[j], 8 * t),
                                 __shfl_sync(kFullWarp, pop_b[j], 8 * t + 4)};
    for (int i = 0; i < 2; ++i) {
      for (int r = 0; r < 4; ++r) {
        const int64_t m = m0 + wm + 16 * i + g + 8 * (r / 2);
        const int64_t n = n0 + wn + 8 * j + 2 * t + r % 2;
        if (m >= p.m || n >= p.n) continue;
        store_dot<Fused>(p, m, n, static_cast<int32_t>(p.k - 2 * int64_t(pop_a[i][r / 2]) -
                                                       2 * int64_t(pop_cols[r % 2]) +
                                                       4 * int64_t(acc[i][j][r])));
      }
    }
  }
}

__host__ __device__ inline LaunchShape xnor_gemm_mma_shape(const xnor::XnorProblem& p) {
  return {grid_2d(blocks_for(p.m, kMmaTileM), blocks_for(p.n, kMmaTileN)), dim3(kMmaThreads)};
}

}  // namespace emokernels::cuda
