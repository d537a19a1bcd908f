// xnor_gemm and xnor_gemm_scaled on CUDA cores: 64 x 64 output tiles, 8-word slices of both
// operands staged in shared memory, each thread accumulating popcount(a XOR b) for a 4 x 4
// sub-tile; the epilogue is the core's (xnor::store), the same as on the CPU.
#pragma once

#include "../core/xnor/xnor_problem.h"
#include "device.cuh"

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

// Fused: write through the epilogue (xnor_gemm_scaled), else int32 dots (xnor_gemm).
template <bool Fused>
__global__ void xnor_gemm_kernel(xnor::XnorProblem p) {
  EK_SHARED(uint32_t, a_tile, kXnorSliceWords * kXnorTile);  // [word][row]
  EK_SHARED(uint32_t, b_tile, kXnorSliceWords * kXnorTile);
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t m0 = int64_t(blockIdx.y) * kXnorTile, n0 = int64_t(blockIdx.x) * kXnorTile;
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
      if (m >= p.m || n >= p.n) continue;
      const auto dot = static_cast<int32_t>(p.k - 2 * diff[i][j]);
      if constexpr (Fused) {
        xnor::store_fused(p, m, n, dot);
      } else {
        p.out_i32[m * p.n + n] = dot;
      }
    }
  }
}

inline LaunchShape xnor_gemm_shape(const xnor::XnorProblem& p) {
  return {dim3(static_cast<unsigned>(blocks_for(p.n, kXnorTile)),
               static_cast<unsigned>(blocks_for(p.m, kXnorTile))),
          dim3(kXnorThreads)};
}

}  // namespace emokernels::cuda
