// What every CPU variant of the XNOR-popcount GEMM shares: the strip each call computes.
#pragma once

#include <array>
#include <cstdint>

#include "../core/xnor/xnor_problem.h"
#include "tiling.h"

namespace emokernels {
namespace xnor {

// A strip computes rows m0 .. m0 + m_valid (at most MR) x cols n_begin .. n_end, an MR x NR
// tile at a time, so that what depends only on the problem or the rows is set up once per
// strip: at small k a tile's dots take ~100 cycles. Rows past m_valid point at a valid row
// and their results are dropped, so the inner loops never branch on tails.
using StripFn = void (*)(const XnorProblem& p, const uint32_t* const* arows, int64_t m0,
                         int m_valid, int64_t n_begin, int64_t n_end);

// The offset rows (offset_row) of rows m0 .. m0 + m_valid.
template <int MR>
std::array<int64_t, MR> offset_rows(const XnorProblem& p, int64_t m0, int m_valid) {
  std::array<int64_t, MR> r{};
  int64_t slot = offset_slot(p, m0);
  for (int i = 0; i < m_valid; ++i) {
    r[i] = offset_row_of_slot(p, slot);
    slot = next_offset_slot(p, slot);
  }
  return r;
}

}  // namespace xnor
}  // namespace emokernels
