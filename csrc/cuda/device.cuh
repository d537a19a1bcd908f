// What every CUDA kernel header of the package includes. The kernels are written in a small
// subset of CUDA (static shared memory through EK_SHARED, __syncthreads, warp shuffles and
// ballots, __popc) so that the same source compiles with nvcc for the GPU, with NVRTC at run
// time (the CuPy path: no standard library, no host-only functions), and as plain C++ under
// the test-only CPU emulation of CUDA (python_tests/cuda_emulation), which CI runs.
#pragma once

#if defined(__CUDACC__)
#define EK_SHARED(type, name, count) __shared__ type name[count]
#elif !defined(EMOKERNELS_CUDA_EMULATION)
#error "CUDA kernel headers compile with nvcc, or as C++ after cuda_emulation.h"
#endif

#include "../core/common/std.h"

namespace emokernels::cuda {

constexpr unsigned kFullWarp = 0xFFFFFFFFu;

// Grid and block of one kernel launch: computed by the kernel header, used by the CUDA
// launcher (<<<grid, block, 0, stream>>>) and by the CPU emulation alike.
struct LaunchShape {
  dim3 grid, block;
};

// Ceil division for launch shapes.
__host__ __device__ inline int64_t blocks_for(int64_t items, int64_t per_block) {
  return (items + per_block - 1) / per_block;
}

// Tiles of rows on x (up to 2^31 - 1 blocks: convolutions have many output pixels) and of
// columns on y (up to 65535; the launcher refuses larger grids with a clear error).
__host__ __device__ inline unsigned grid_extent(int64_t blocks) {
  return static_cast<unsigned>(blocks < 0xFFFFFFFFll ? blocks : 0xFFFFFFFFll);
}

__host__ __device__ inline dim3 grid_2d(int64_t row_blocks, int64_t col_blocks) {
  return dim3(grid_extent(row_blocks), grid_extent(col_blocks));
}

}  // namespace emokernels::cuda
