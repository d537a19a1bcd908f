// xnor_gemm, xnor_gemm_scaled and xnor_gemm_sign on CUDA, two paths with the core's epilogue (the same as on
// the CPU):
// - CUDA cores, every architecture: 64 x 64 output tiles, 8-word slices of both operands staged
//   in shared memory, each thread accumulating popcount(a XOR b) for a 4 x 4 sub-tile.
// - 1-bit tensor cores (sm_80 .. sm_90): mma m16n8k256 AND + popc. XNOR counts come back in
//   the epilogue: sign(a).sign(b) = k - 2 popc(a XOR b) = k - 2 popc(a) - 2 popc(b)
//   + 4 popc(a AND b), with the row popcounts of a and b counted by a kernel beforehand.
#pragma once

#include "../core/xnor/xnor_problem.h"
#include "device.cuh"
#include "async_copy.cuh"
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

// Tensor-core path. XNOR counts come from AND counts and the operands' row popcounts (one
// small kernel before the GEMM, so the main loop issues nothing but copies, shared loads and
// mma). Blocks of 8 warps (2 x 4) own 128 x 128 outputs, each warp 64 x 32 (4 x 4 mma tiles of
// 16 x 8); 512-bit (16-word) slices of both operands stream through a 3-stage ring of shared
// memory by cp.async, 16 bytes per copy where rows are 16-byte aligned (ChunkWords 4), else 4.
// K order inside a slice is free (AND + popc sums over it), so each lane reads its fragments as
// one 16-byte word group per row: words 4t, 4t + 1 feed mma k-slots t, 4 + t of the first k-step
// and words 4t + 2, 4t + 3 those of the second, the same for A and B; 8 lanes then read 128
// consecutive bytes (two rows), free of bank conflicts.
constexpr int kMmaTileM = 128, kMmaTileN = 128, kMmaThreads = 256;
constexpr int kMmaWarpsN = 4;                // warps per block along n (2 along m)
constexpr int kMmaWarpM = 64, kMmaWarpN = 32;  // outputs per warp
constexpr int kMmaFragsM = kMmaWarpM / 16, kMmaFragsN = kMmaWarpN / 8;  // mma tiles per warp
constexpr int kMmaSliceWords = 16, kMmaStages = 3;
constexpr int kMmaSliceChunks = kMmaSliceWords / 4;  // Words4 per row and slice
// One tile height for both operands: copy_slice and the ring stages are sized by it.
static_assert(kMmaTileM == kMmaTileN && kMmaThreads / 32 * kMmaWarpM * kMmaWarpN ==
                                            kMmaTileM * kMmaTileN,
              "the warps must cover the block's square tile");

// popcount(row) over the first k bits of every row of a (rows 0 .. m-1 of `out`) and b (rows
// m .. m+n-1): one warp per row.
constexpr int kPopcountWarps = 8;

// static: the header is compiled into every XNOR launcher (internal linkage, one copy each).
static __global__ void xnor_row_popcounts_kernel(xnor::XnorProblem p, int32_t* out) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kPopcountWarps + threadIdx.x / 32;
  const bool in_a = row < p.m;
  const uint32_t* bits = in_a ? p.a + row * p.row_words : p.b + (row - p.m) * p.row_words;
  int32_t count = 0;
  if (row < p.m + p.n) {
    for (int64_t w = lane; w < p.row_words; w += 32) {
      count += __popc(w == p.row_words - 1 ? bits[w] & p.last_mask : bits[w]);
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    count += __shfl_xor_sync(kFullWarp, count, offset);
  }
  if (lane == 0 && row < p.m + p.n) out[row] = count;
}

__host__ __device__ inline LaunchShape xnor_row_popcounts_shape(const xnor::XnorProblem& p) {
  return {grid_2d(blocks_for(p.m + p.n, kPopcountWarps), 1), dim3(32 * kPopcountWarps)};
}

// Issues the copies of slice `slice` of `rows` rows from row `first` into `tile` (kMmaTileM
// rows of kMmaSliceChunks Words4); rows and words past the operand are zero-filled.
template <int ChunkWords>
__device__ inline void copy_slice(Words4* tile, const uint32_t* bits, int64_t rows, int64_t first,
                                  int64_t slice, int64_t row_words) {
  constexpr int kPerRow = kMmaSliceWords / ChunkWords;
  for (int idx = threadIdx.x; idx < kMmaTileM * kPerRow; idx += kMmaThreads) {
    const int r = idx / kPerRow, c = idx % kPerRow;
    const int64_t row = first + r, word = slice * kMmaSliceWords + int64_t(c) * ChunkWords;
    const bool valid = row < rows && word < row_words;
    uint32_t* dst = reinterpret_cast<uint32_t*>(tile + r * kMmaSliceChunks) + c * ChunkWords;
    copy_async<4 * ChunkWords>(dst, valid ? bits + row * row_words + word : bits, valid);
  }
}

template <bool Fused, int ChunkWords>
__global__ void __launch_bounds__(kMmaThreads, 2)
    xnor_gemm_mma_kernel(xnor::XnorProblem p, const int32_t* pop_a, const int32_t* pop_b) {
  EK_SHARED(Words4, a_ring, kMmaStages * kMmaTileM * kMmaSliceChunks);
  EK_SHARED(Words4, b_ring, kMmaStages * kMmaTileN * kMmaSliceChunks);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane >> 2, t = lane & 3;
  const int wm = kMmaWarpM * (warp / kMmaWarpsN), wn = kMmaWarpN * (warp % kMmaWarpsN);
  const int64_t m0 = int64_t(blockIdx.x) * kMmaTileM, n0 = int64_t(blockIdx.y) * kMmaTileN;
  const int64_t slices = blocks_for(p.row_words, kMmaSliceWords);
  constexpr int kStageChunks = kMmaTileM * kMmaSliceChunks;
  const auto issue = [&](int64_t slice) {
    if (slice < slices) {
      const int stage = static_cast<int>(slice % kMmaStages);
      copy_slice<ChunkWords>(a_ring + stage * kStageChunks, p.a, p.m, m0, slice, p.row_words);
      copy_slice<ChunkWords>(b_ring + stage * kStageChunks, p.b, p.n, n0, slice, p.row_words);
    }
    commit_copies();  // an empty group past the end keeps the wait count uniform
  };
  for (int s = 0; s < kMmaStages - 1; ++s) issue(s);
  int32_t acc[kMmaFragsM][kMmaFragsN][4] = {};
  for (int64_t slice = 0; slice < slices; ++slice) {
    wait_copies<kMmaStages - 2>();
    __syncthreads();  // the slice is visible to all; the stage refilled below is read by none
    issue(slice + kMmaStages - 1);
    Words4* a_tile = a_ring + (slice % kMmaStages) * kStageChunks;
    const Words4* b_tile = b_ring + (slice % kMmaStages) * kStageChunks;
    if (slice == slices - 1 && p.last_mask != 0xFFFFFFFFu) {
      // Bits past k in A's last word are cleared once; B's then AND to zero.
      const int64_t last = p.row_words - 1 - slice * kMmaSliceWords;
      if (threadIdx.x < kMmaTileM) {
        reinterpret_cast<uint32_t*>(a_tile + threadIdx.x * kMmaSliceChunks)[last] &= p.last_mask;
      }
      __syncthreads();
    }
    Words4 b[kMmaFragsN];
    for (int j = 0; j < kMmaFragsN; ++j) b[j] = b_tile[(wn + 8 * j + g) * kMmaSliceChunks + t];
    for (int i = 0; i < kMmaFragsM; ++i) {
      const Words4 lo = a_tile[(wm + 16 * i + g) * kMmaSliceChunks + t];
      const Words4 hi = a_tile[(wm + 16 * i + g + 8) * kMmaSliceChunks + t];
      for (int step = 0; step < 2; ++step) {
        const uint32_t a[4] = {lo.w[2 * step], hi.w[2 * step], lo.w[2 * step + 1],
                               hi.w[2 * step + 1]};
        for (int j = 0; j < kMmaFragsN; ++j) {
          const uint32_t bj[2] = {b[j].w[2 * step], b[j].w[2 * step + 1]};
          mma_b1_and_popc(acc[i][j], a, bj, acc[i][j]);
        }
      }
    }
  }
  // popcount(a XOR b) = popc(a) + popc(b) - 2 popc(a AND b); this lane holds rows g, g + 8 and
  // columns 2t, 2t + 1 of each mma tile.
  for (int i = 0; i < kMmaFragsM; ++i) {
    for (int j = 0; j < kMmaFragsN; ++j) {
      for (int r = 0; r < 4; ++r) {
        const int64_t m = m0 + wm + 16 * i + g + 8 * (r / 2);
        const int64_t n = n0 + wn + 8 * j + 2 * t + r % 2;
        if (m >= p.m || n >= p.n) continue;
        store_dot<Fused>(p, m, n, static_cast<int32_t>(p.k - 2 * int64_t(pop_a[m]) -
                                                       2 * int64_t(pop_b[n]) +
                                                       4 * int64_t(acc[i][j][r])));
      }
    }
  }
}

__host__ __device__ inline LaunchShape xnor_gemm_mma_shape(const xnor::XnorProblem& p) {
  return {grid_2d(blocks_for(p.m, kMmaTileM), blocks_for(p.n, kMmaTileN)), dim3(kMmaThreads)};
}

}  // namespace emokernels::cuda
