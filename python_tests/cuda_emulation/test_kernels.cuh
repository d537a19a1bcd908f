// Small kernels that test the CUDA emulation (cuda_emulation.h) itself. They are written in the
// same CUDA subset as the package's kernels and compile both with nvcc (nvcc_check.cu) and, in
// the tests (test_ops.cpp), as C++ after cuda_emulation.h; each has a Python reference in
// python_tests/test_cuda_emulation.py. Some are wrong on purpose (missing or divergent barriers,
// deadlocked shuffles): the emulation must catch them.
#pragma once

#ifndef EK_SHARED
#error "include cuda_emulation.h (CPU) or define EK_SHARED as in csrc/cuda/device.cuh (nvcc) first"
#endif

#include <cstdint>

#include "cuda/mma_b1.cuh"

namespace ek_test {

constexpr unsigned kFullMask = 0xFFFFFFFFu;

// The package's b1 MMA wrapper: PTX on the GPU, ek_emu's emulation here.
using emokernels::cuda::mma_b1_and_popc;

// ---- Tiled bit GEMM: out[m, n] = sum_w popc(a[m, w] ^ b[n, w]) for packed rows a [M, W] and
// b [N, W]. Block 16 x 16 threads, one output each; k in 4-word slices staged in shared memory;
// zeros past the matrix (rows and words) XOR to nothing.
constexpr int kGemmTile = 16;
constexpr int kGemmSliceWords = 4;

__global__ void __launch_bounds__(256)
    bit_gemm_xor_kernel(const uint32_t* __restrict__ a, const uint32_t* __restrict__ b,
                        int32_t* __restrict__ out, int m, int n, int words) {
  EK_SHARED(uint32_t, a_tile, kGemmTile * kGemmSliceWords);  // [row][word]
  EK_SHARED(uint32_t, b_tile, kGemmTile * kGemmSliceWords);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int t = ty * kGemmTile + tx;
  const int row0 = blockIdx.y * kGemmTile, col0 = blockIdx.x * kGemmTile;
  constexpr int kSlice = kGemmTile * kGemmSliceWords;
  int acc = 0;
  for (int w0 = 0; w0 < words; w0 += kGemmSliceWords) {
    // Threads 0-63 stage a's slice, 64-127 b's.
    if (t < 2 * kSlice) {
      const bool is_a = t < kSlice;
      const int i = t % kSlice;
      const int row = (is_a ? row0 : col0) + i / kGemmSliceWords, w = w0 + i % kGemmSliceWords;
      const uint32_t* src = is_a ? a : b;
      const bool inside = row < (is_a ? m : n) && w < words;
      const uint32_t v = inside ? __ldg(src + int64_t(row) * words + w) : 0u;
      if (is_a) {
        a_tile[i] = v;
      } else {
        b_tile[i] = v;
      }
    }
    __syncthreads();
    for (int w = 0; w < kGemmSliceWords; ++w) {
      acc += __popc(a_tile[ty * kGemmSliceWords + w] ^ b_tile[tx * kGemmSliceWords + w]);
    }
    __syncthreads();  // before the next slice overwrites the tiles
  }
  const int row = row0 + ty, col = col0 + tx;
  if (row < m && col < n) out[int64_t(row) * n + col] = acc;
}

// ---- Row sums: one block per row, blockDim.x a multiple of 32. Per-thread partial sums, a
// shuffle-down tree per warp, warp sums through shared memory, an xor tree in warp 0, a
// broadcast from lane 0; the last lane of warp 0 writes.
template <typename T>
__global__ void row_sum_kernel(const T* x, T* out, int cols) {
  EK_SHARED(T, warp_sums, 32);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const T* row = x + int64_t(blockIdx.x) * cols;
  T v = 0;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) v += row[c];
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(kFullMask, v, offset);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < warps ? warp_sums[lane] : T(0);
    for (int mask = 16; mask > 0; mask /= 2) v += __shfl_xor_sync(kFullMask, v, mask);
    v = __shfl_sync(kFullMask, v, 0);
    if (lane == 31) out[blockIdx.x] = v;
  }
}

// ---- One shuffle per thread: out[i] = the shuffle of in[i] with this thread's arg[i] (mode 0
// __shfl_sync source lane, 1 up delta, 2 down delta, 3 xor lane mask) and the given width.
__global__ void shuffle_probe_kernel(const int* in, const int* arg, int* out, int mode,
                                     int width) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  const int v = in[i], a = arg[i];
  int r;
  if (mode == 0) {
    r = __shfl_sync(kFullMask, v, a, width);
  } else if (mode == 1) {
    r = __shfl_up_sync(kFullMask, v, unsigned(a), width);
  } else if (mode == 2) {
    r = __shfl_down_sync(kFullMask, v, unsigned(a), width);
  } else {
    r = __shfl_xor_sync(kFullMask, v, a, width);
  }
  out[i] = r;
}

// ---- Sign bits packed by ballots (the package's pack_bits layout: bit j of word w set iff
// x[32w + j] >= 0, bits past k are 0); one warp per word, grid-stride over words.
// stats[w] = popc(word) | any << 8 | all << 9.
constexpr int kPackWarps = 4;

__global__ void ballot_pack_kernel(const float* x, uint32_t* words, int32_t* stats, int64_t k,
                                   int64_t nwords) {
  const int lane = threadIdx.x % 32;
  const int64_t stride = int64_t(gridDim.x) * kPackWarps;
  for (int64_t w = int64_t(blockIdx.x) * kPackWarps + threadIdx.x / 32; w < nwords; w += stride) {
    const int64_t col = 32 * w + lane;
    const bool bit = col < k && x[col] >= 0.0f;
    const unsigned word = __ballot_sync(kFullMask, bit);
    const int any = __any_sync(kFullMask, bit), all = __all_sync(kFullMask, bit);
    if (lane == 0) {
      words[w] = word;
      stats[w] = __popc(word) | any << 8 | all << 9;
    }
  }
}

// ---- Each thread writes its slot and reads its left neighbour's: out[i] = 3 (i - 1) + 1 for
// i > 0 in the block, out[0] = 1. With use_barrier == 0 the barrier between is missing, and a
// thread that runs before its neighbour reads what is in shared memory (poison, under the
// emulation). blockDim.x <= 256.
__global__ void neighbour_kernel(int* out, int use_barrier) {
  EK_SHARED(int, slots, 256);
  const int i = threadIdx.x;
  slots[i] = 3 * i + 1;
  if (use_barrier) __syncthreads();
  out[blockIdx.x * blockDim.x + i] = slots[i > 0 ? i - 1 : 0];
}

// ---- Barrier rules. mode 0: odd and even threads wait at different __syncthreads (divergent);
// mode 1: threads >= 16 return before the barrier; otherwise correct: out[3i..3i+2] =
// __syncthreads_count / _and / _or of (i % 3 == 0), (i < blockDim.x), (i == 5).
__global__ void barrier_misuse_kernel(int* out, int mode) {
  const int i = threadIdx.x;
  if (mode == 0) {
    if (i % 2) {
      __syncthreads();
    } else {
      __syncthreads();
    }
  } else if (mode == 1) {
    if (i >= 16) return;
    __syncthreads();
  } else {
    out[3 * i] = __syncthreads_count(i % 3 == 0);
    out[3 * i + 1] = __syncthreads_and(i < int(blockDim.x));
    out[3 * i + 2] = __syncthreads_or(i == 5);
  }
}

// ---- Warp collective rules; out[i] = thread i's value after the collective. mode 0: lane 5
// exits before a full-warp shuffle; mode 1: lanes >= 16 wait at __syncthreads while lanes < 16
// shuffle with the full mask; mode 2: the mask leaves out the calling lane; mode 3: a lane
// reads a lane outside the mask; otherwise correct: each half warp swaps neighbours with its
// own mask, then the warp meets at __syncwarp.
__global__ void warp_misuse_kernel(int* out, int mode) {
  const int lane = threadIdx.x % 32;
  const unsigned half = lane < 16 ? 0x0000FFFFu : 0xFFFF0000u;
  int v = threadIdx.x;
  if (mode == 0) {
    if (lane == 5) return;
    v = __shfl_sync(kFullMask, v, 0);
  } else if (mode == 1) {
    if (lane < 16) {
      v = __shfl_xor_sync(kFullMask, v, 1);
    } else {
      __syncthreads();
    }
  } else if (mode == 2) {
    v = __shfl_sync(0x1u, v, 0);
  } else if (mode == 3) {
    v = __shfl_sync(half, v, lane + 16);
  } else {
    v = __shfl_xor_sync(half, v, 1);
    __syncwarp();
  }
  out[threadIdx.x] = v;
}

// ---- b1 tensor-core tiles: warp w of block b computes tile t = b * warps + w (whole warps
// past `tiles` return): d = c + popc(a AND b) over k = 256. a [tiles][16][8] words (row m, bit
// j of word w = k 32w + j), b [tiles][8][8] (column n, same packing), c, d [tiles][16][8].
// Each lane loads its fragments per the m16n8k256 layout (g = lane >> 2, t = lane & 3).
__global__ void mma_b1_tile_kernel(const uint32_t* a, const uint32_t* b, const int32_t* c,
                                   int32_t* d, int tiles) {
  const int lane = threadIdx.x % 32;
  const int tile = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (tile >= tiles) return;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t* at = a + tile * 128;
  const uint32_t* bt = b + tile * 64;
  const int32_t* ct = c + tile * 128;
  int32_t* dt = d + tile * 128;
  const uint32_t fa[4] = {at[g * 8 + t], at[(g + 8) * 8 + t], at[g * 8 + 4 + t],
                          at[(g + 8) * 8 + 4 + t]};
  const uint32_t fb[2] = {bt[g * 8 + t], bt[g * 8 + 4 + t]};
  const int32_t fc[4] = {ct[g * 8 + 2 * t], ct[g * 8 + 2 * t + 1], ct[(g + 8) * 8 + 2 * t],
                         ct[(g + 8) * 8 + 2 * t + 1]};
  int32_t fd[4];
  mma_b1_and_popc(fd, fa, fb, fc);
  dt[g * 8 + 2 * t] = fd[0];
  dt[g * 8 + 2 * t + 1] = fd[1];
  dt[(g + 8) * 8 + 2 * t] = fd[2];
  dt[(g + 8) * 8 + 2 * t + 1] = fd[3];
}

// ---- Block 0 fills its shared array, every block reads its own back: on the GPU blocks past 0
// read leftovers, under the emulation the poison. blockDim.x <= 64.
__global__ void shared_poison_kernel(uint32_t* out) {
  EK_SHARED(uint32_t, s, 64);
  if (blockIdx.x == 0) s[threadIdx.x] = threadIdx.x;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = s[threadIdx.x];
}

// ---- Histogram of x in [0, bins), bins <= 64: a per-block histogram in shared memory
// (atomicAdd), then added to the global one (atomicAdd); grid-stride over x.
__global__ void histogram_kernel(const int* x, int* hist, int n, int bins) {
  EK_SHARED(int, local, 64);
  for (int b = threadIdx.x; b < bins; b += blockDim.x) local[b] = 0;
  __syncthreads();
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    atomicAdd(&local[x[i]], 1);
  }
  __syncthreads();
  for (int b = threadIdx.x; b < bins; b += blockDim.x) atomicAdd(&hist[b], local[b]);
}

// ---- Coordinates: out[block linear][thread linear][0..7] = threadIdx.xyz, blockIdx.xyz,
// blockDim.x * blockDim.y * blockDim.z, gridDim.x * gridDim.y * gridDim.z.
__global__ void coords_kernel(int* out) {
  const int block = (blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x + blockIdx.x;
  const int threads = blockDim.x * blockDim.y * blockDim.z;
  const int thread = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  int* o = out + (int64_t(block) * threads + thread) * 8;
  o[0] = threadIdx.x;
  o[1] = threadIdx.y;
  o[2] = threadIdx.z;
  o[3] = blockIdx.x;
  o[4] = blockIdx.y;
  o[5] = blockIdx.z;
  o[6] = threads;
  o[7] = gridDim.x * gridDim.y * gridDim.z;
}

}  // namespace ek_test
