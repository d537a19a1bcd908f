// Parallel loop over the output tiles of a GEMM-shaped CPU kernel.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <functional>

namespace emokernels {

// The right-operand bytes a column block is sized to by default: one core's L2.
constexpr int64_t kL2Budget = 512 * 1024;

// Calls strip(m0, m_count, n_begin, n_end) for every strip of mr rows by a column block of an
// m x n output, in parallel, strip being make_strip()'s result, made once per thread's share
// (it may keep scratch across the strips of a share). Work items are (column block, row tile)
// pairs, column-block-major: one thread's share reuses a block of right-operand rows, sized
// to stay in L2 (right_row_bytes each), across many row tiles, and the left operand streams
// through once per block. Each output element is computed by exactly one call, so results do
// not depend on the thread count. Column blocks are multiples of col_align (a multiple of
// nr): 32 keeps each word of a bit-packed output in one thread's share. A block holds up to
// block_bytes of right-operand rows, or one aligned group of them where that is more.
template <typename MakeStrip>
void parallel_strip_workers(int64_t m, int64_t n, int64_t mr, int64_t nr,
                            int64_t right_row_bytes, const MakeStrip& make_strip,
                            int64_t col_align = 1, int64_t block_bytes = kL2Budget) {
  if (m <= 0 || n <= 0) return;
  const int64_t align = std::max(nr, col_align);
  const int64_t max_block = std::max<int64_t>(1, block_bytes / (right_row_bytes * align)) * align;
  // Blocks of equal width (up to align): one narrow last block would leave the threads that
  // share it idle while the others work through full ones.
  const int64_t blocks = (n + max_block - 1) / max_block;
  const int64_t col_block = ((n + blocks - 1) / blocks + align - 1) / align * align;
  const int64_t col_blocks = (n + col_block - 1) / col_block;  // <= blocks, none empty
  const int64_t row_tiles = (m + mr - 1) / mr;
  at::parallel_for(0, row_tiles * col_blocks, 1, [&](int64_t begin, int64_t end) {
    auto strip = make_strip();
    for (int64_t t = begin; t < end; ++t) {
      const int64_t m0 = (t % row_tiles) * mr;
      const int64_t n_begin = (t / row_tiles) * col_block;
      strip(m0, static_cast<int>(std::min(mr, m - m0)), n_begin,
            std::min(n, n_begin + col_block));
    }
  });
}

// parallel_strip_workers with one strip function for every share.
template <typename F>
void parallel_strips(int64_t m, int64_t n, int64_t mr, int64_t nr, int64_t right_row_bytes,
                     const F& strip, int64_t col_align = 1) {
  parallel_strip_workers(
      m, n, mr, nr, right_row_bytes, [&] { return std::cref(strip); }, col_align);
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
