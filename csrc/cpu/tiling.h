// Parallel loop over the output tiles of a GEMM-shaped CPU kernel.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>

namespace emokernels {

// Calls strip(m0, m_count, n_begin, n_end) for every strip of mr rows by a column block of an
// m x n output, in parallel. Work items are (column block, row tile) pairs, column-block-major:
// one thread's share reuses a block of right-operand rows, sized to stay in L2
// (right_row_bytes each), across many row tiles, and the left operand streams through once
// per block. Each output element is computed by exactly one call, so results do not depend on
// the thread count. Column blocks are multiples of col_align (a multiple of nr): 32 keeps each
// word of a bit-packed output in one thread's share.
template <typename F>
void parallel_strips(int64_t m, int64_t n, int64_t mr, int64_t nr, int64_t right_row_bytes,
                     const F& strip, int64_t col_align = 1) {
  constexpr int64_t kL2Budget = 512 * 1024;
  const int64_t align = std::max(nr, col_align);
  const int64_t col_block = std::max<int64_t>(1, kL2Budget / (right_row_bytes * align)) * align;
  const int64_t row_tiles = (m + mr - 1) / mr;
  const int64_t col_blocks = (n + col_block - 1) / col_block;
  at::parallel_for(0, row_tiles * col_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t m0 = (t % row_tiles) * mr;
      const int64_t n_begin = (t / row_tiles) * col_block;
      strip(m0, static_cast<int>(std::min(mr, m - m0)), n_begin,
            std::min(n, n_begin + col_block));
    }
  });
}

// Calls tile(m0, m_count, n0, n_count) for every mr x nr tile of an m x n output, in parallel,
// a strip (parallel_strips) at a time.
template <typename F>
void parallel_tiles(int64_t m, int64_t n, int64_t mr, int64_t nr, int64_t right_row_bytes,
                    const F& tile, int64_t col_align = 1) {
  parallel_strips(
      m, n, mr, nr, right_row_bytes,
      [&](int64_t m0, int m_count, int64_t n_begin, int64_t n_end) {
        for (int64_t n0 = n_begin; n0 < n_end; n0 += nr) {
          tile(m0, m_count, n0, static_cast<int>(std::min(nr, n_end - n0)));
        }
      },
      col_align);
}

// Row pointers of a tile. Rows past `count` repeat the first row so inner loops never branch;
// their results are dropped by the caller.
template <typename T, size_t N>
std::array<const T*, N> tile_rows(const T* base, int64_t first, int count, int64_t stride) {
  std::array<const T*, N> rows{};
  for (size_t i = 0; i < N; ++i) {
    rows[i] = base + (first + (static_cast<int>(i) < count ? static_cast<int64_t>(i) : 0)) * stride;
  }
  return rows;
}

}  // namespace emokernels
