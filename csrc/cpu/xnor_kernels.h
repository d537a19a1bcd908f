// The CPU XNOR-popcount GEMM of xnor_gemm, xnor_gemm_scaled and xnor_gemm_sign: the portable
// strip and the dispatch to the path xnor_path() picks.
#pragma once

#include "paths.h"
#include "xnor_avx2.h"
#include "xnor_avx512.h"
#include "xnor_avx512_panels.h"
#include "xnor_strip.h"

namespace emokernels {
namespace xnor {

constexpr int kPortableNR = 8;

inline void strip_portable(const XnorProblem& p, const uint32_t* const* arows, int64_t m0,
                           int m_valid, int64_t n_begin, int64_t n_end) {
  int32_t dots[kPortableNR];
  const auto r = offset_rows<1>(p, m0, m_valid);
  for (int64_t n0 = n_begin; n0 < n_end; n0 += kPortableNR) {
    const int n_valid = static_cast<int>(std::min<int64_t>(kPortableNR, n_end - n0));
    for (int j = 0; j < n_valid; ++j)
      dots[j] = dot_reference(arows[0], p.b + (n0 + j) * p.row_words, p.row_words, p.k);
    store_row(p, m0, r[0], n0, dots, n_valid);
  }
}

template <int MR, int NR, StripFn Fn>
void run_strips(const XnorProblem& p) {
  static_assert(32 % NR == 0, "a bit-packed output's words must not straddle tiles");
  static_assert(NR <= kMaxStoreRow, "store_row writes at most kMaxStoreRow outputs");
  parallel_strips(
      p.m, p.n, MR, NR, 4 * p.row_words,
      [&](int64_t m0, int m_count, int64_t n_begin, int64_t n_end) {
        const auto arows = tile_rows<uint32_t, MR>(p.a, m0, m_count, p.row_words);
        Fn(p, arows.data(), m0, m_count, n_begin, n_end);
      },
      p.out_bits != nullptr ? 32 : 1);
}

// Runs the problem on the path xnor_path() picks, with tiles no taller than the problem.
inline void run_xnor(const XnorProblem& p) {
  switch (xnor_path()) {
    case XnorPath::Avx512:
      if (p.m == 1) return run_strips<1, kAvx512NR, strip_avx512<1>>(p);
      if (p.m == 2) return run_strips<2, kAvx512NR, strip_avx512<2>>(p);
      if (p.m >= kPanel512MinRows && p.n >= kPanel512NR && words64(p) <= kPanel512MaxWords) {
        return run_panels_avx512(p);
      }
      run_strips<kAvx512MR, kAvx512NR, strip_avx512<kAvx512MR>>(p);
      break;
    case XnorPath::Avx2:
      if (p.m == 1) return run_strips<1, kAvx2NR, strip_avx2<1>>(p);
      if (p.m >= kSplitMinRows && p.n >= kPanelNR && p.row_words <= kPanelMaxWords) {
        return run_split_avx2(p);
      }
      run_strips<kAvx2MR, kAvx2NR, strip_avx2<kAvx2MR>>(p);
      break;
    case XnorPath::Portable:
      run_strips<1, kPortableNR, strip_portable>(p);
      break;
  }
}

}  // namespace xnor
}  // namespace emokernels
