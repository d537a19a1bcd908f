// Binary-weight GEMM kernels (CPU) shared by bwn_gemm and bwn_conv2d: x (float32 or
// bfloat16) times packed sign bits, scaled per output by alpha, accumulated in float32.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <type_traits>
#include <vector>

#include "../core/bwn/bwn_problem.h"
#include "bwn_gemm_lut.h"
#include "bwn_gemm_lut_avx2.h"
#include "bwn_row_tables.h"
#include "paths.h"
#include "simd.h"
#include "tiling.h"


namespace emokernels {
namespace bwn {

template <typename scalar_t>
void tile_portable(const BwnProblem<scalar_t>& p, int64_t m0, int m_count, int64_t n0,
                   int n_count) {
  for (int i = 0; i < m_count; ++i) {
    for (int j = 0; j < n_count; ++j) {
      p.out[(m0 + i) * p.n + n0 + j] = static_cast<scalar_t>(
          signed_sum(p.x + (m0 + i) * p.k, nullptr, p.w + (n0 + j) * p.words, p.k,
                     p.alpha[n0 + j]));
    }
  }
}

// AVX2 float32: each 8-bit group of a weight row is expanded once per tile to a +-1 vector
// that all MR rows of x multiply-add against.
constexpr int kAvx2MR = 2;
constexpr int kAvx2NR = 4;

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline void tile_avx2(
    const BwnProblem<float>& p, int64_t m0, int m_count, int64_t n0, int n_count) {
  const auto xr = tile_rows<float, kAvx2MR>(p.x, m0, m_count, p.k);
  const auto wr = tile_rows<uint32_t, kAvx2NR>(p.w, n0, n_count, p.words);
  const __m256i select = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  const __m256 plus = _mm256_set1_ps(1.0f);
  const __m256 minus = _mm256_set1_ps(-1.0f);
  __m256 acc[kAvx2MR][kAvx2NR];
  for (auto& row : acc)
    for (auto& v : row) v = _mm256_setzero_ps();
  const int64_t vec_k = (p.k / 8) * 8;
  for (int64_t kk = 0; kk < vec_k; kk += 8) {
    __m256 xv[kAvx2MR];
    for (int i = 0; i < kAvx2MR; ++i) xv[i] = _mm256_loadu_ps(xr[i] + kk);
    for (int j = 0; j < kAvx2NR; ++j) {
      const int byte = reinterpret_cast<const uint8_t*>(wr[j])[kk >> 3];
      const __m256i bits = _mm256_and_si256(_mm256_set1_epi32(byte), select);
      const __m256 sign =
          _mm256_blendv_ps(minus, plus, _mm256_castsi256_ps(_mm256_cmpeq_epi32(bits, select)));
      for (int i = 0; i < kAvx2MR; ++i) acc[i][j] = _mm256_fmadd_ps(xv[i], sign, acc[i][j]);
    }
  }
  for (int i = 0; i < m_count; ++i) {
    for (int j = 0; j < n_count; ++j) {
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, acc[i][j]);
      float total = 0.0f;
      for (float v : lanes) total += v;
      for (int64_t kk = vec_k; kk < p.k; ++kk) total += bit_at(wr[j], kk) ? xr[i][kk] : -xr[i][kk];
      p.out[(m0 + i) * p.n + n0 + j] = epilogue(p.alpha[n0 + j], total);
    }
  }
}

// AVX-512 float32: sum_k x*s = 2 * (sum of x where the bit is set) - sum_k x, so the inner
// loop is one merge-masked add per 16 MACs, with the mask read straight from the packed bits.
constexpr int kAvx512MR = 4;
constexpr int kAvx512NR = 6;

// One 16-wide chunk of k: a merge-masked add of each x row per weight row. Only the Tail chunk
// loads under a mask (in the main loop a masked load makes GCC spill every accumulator).
template <int MR, int NR, bool Tail>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET) EMOKERNELS_ALWAYS_INLINE
void bwn_step_avx512(
    __m512 (&acc)[MR][NR], const float* const* xr, const uint32_t* const* wr, int64_t c,
    __mmask16 load) {
  __m512 xv[MR];
  for (int i = 0; i < MR; ++i)
    xv[i] = Tail ? _mm512_maskz_loadu_ps(load, xr[i] + 16 * c) : _mm512_loadu_ps(xr[i] + 16 * c);
  for (int j = 0; j < NR; ++j) {
    // Through _cvtu32_mask16: GCC spills the accumulators on a plain integer-to-mask move.
    const __mmask16 bits = _cvtu32_mask16(reinterpret_cast<const uint16_t*>(wr[j])[c]);
    for (int i = 0; i < MR; ++i) acc[i][j] = _mm512_mask_add_ps(acc[i][j], bits, acc[i][j], xv[i]);
  }
}

template <int MR, int NR>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET)
inline void tile_avx512_rows(
    const BwnProblem<float>& p, int64_t m0, int m_count, int64_t n0, int n_count) {
  const auto xr = tile_rows<float, MR>(p.x, m0, m_count, p.k);
  const auto wr = tile_rows<uint32_t, NR>(p.w, n0, n_count, p.words);
  __m512 acc[MR][NR];
  for (auto& row : acc)
    for (auto& v : row) v = _mm512_setzero_ps();
  const int64_t full = (p.k - 1) / 16;
  for (int64_t c = 0; c < full; ++c) bwn_step_avx512<MR, NR, false>(acc, xr.data(), wr.data(), c, 0xFFFF);
  // Lanes past k load as 0, so whatever bits pad the last word add nothing.
  const int tail = static_cast<int>(p.k - 16 * full);
  bwn_step_avx512<MR, NR, true>(acc, xr.data(), wr.data(), full, static_cast<__mmask16>((1u << tail) - 1u));
  for (int i = 0; i < m_count; ++i) {
    const float total = p.row_sums[m0 + i];  // NaN marks a row that needs the plain sum
    for (int j = 0; j < n_count; ++j) {
      const float positive = _mm512_reduce_add_ps(acc[i][j]);
      p.out[(m0 + i) * p.n + n0 + j] =
          std::isnan(total) ? signed_sum(xr[i], nullptr, wr[j], p.k, p.alpha[n0 + j])
                            : epilogue(p.alpha[n0 + j], 2.0f * positive - total);
    }
  }
}

inline void tile_avx512(const BwnProblem<float>& p, int64_t m0, int m_count, int64_t n0, int n_count) {
  if (m_count == kAvx512MR && n_count == 1) {
    return tile_avx512_rows<kAvx512MR, 1>(p, m0, m_count, n0, n_count);  // a GEMV, no waste
  }
  if (m_count == kAvx512MR) {
    return tile_avx512_rows<kAvx512MR, kAvx512NR>(p, m0, m_count, n0, n_count);
  }
  // A short last row tile runs row by row rather than wasting work on repeated rows.
  for (int i = 0; i < m_count; ++i) tile_avx512_rows<1, kAvx512NR>(p, m0 + i, 1, n0, n_count);
}

// The scalar frame of a table-lookup block of `Lanes` rows [m0, m0 + Lanes) and columns
// [n_begin, n_end), shared by the AVX-512 (16 lanes) and AVX2 (8 lanes) kernels.
template <int Lanes>
struct LutFrame {
  int rows;
  int64_t k_pad, cols;
  float *xt, *table, *pos;  // x transposed, the tables, the running sums: Lanes-float aligned
  const float* row_ptrs[Lanes];
  const int64_t* chunks;

  LutFrame(const BwnProblem<float>& p, int64_t m0, int64_t n_begin, int64_t n_end, int block_k,
           int groups) {
    rows = static_cast<int>(std::min<int64_t>(Lanes, p.m - m0));
    k_pad = (p.k + block_k - 1) / block_k * block_k;
    cols = n_end - n_begin;
    static thread_local std::vector<float> scratch;  // per thread, reused by every block
    const int64_t floats = Lanes * (k_pad + 16 * groups + cols) + Lanes;
    if (static_cast<int64_t>(scratch.size()) < floats) scratch.resize(floats);
    const auto misalign = static_cast<int64_t>(reinterpret_cast<uintptr_t>(scratch.data()) / 4);
    xt = scratch.data() + (Lanes - misalign % Lanes) % Lanes;
    table = xt + Lanes * k_pad;
    pos = table + Lanes * 16 * groups;
    std::fill(pos, pos + Lanes * cols, 0.0f);
    for (int r = 0; r < rows; ++r) {
      row_ptrs[r] = p.conv ? p.conv->row_base(p.x, m0 + r) : p.x + (m0 + r) * p.k;
    }
    chunks = p.conv ? p.conv->chunk_offsets : nullptr;
  }

  // The outputs from the lane sums: 2 * (sum where the bit is set) - sum_k x, or signed_sum
  // where twice the sum could overflow.
  void store(const BwnProblem<float>& p, int64_t m0, int64_t n_begin, const float* totals,
             const float* abs_totals) const {
    for (int64_t n = n_begin; n < n_begin + cols; ++n) {
      const float* lanes = pos + Lanes * (n - n_begin);
      for (int r = 0; r < rows; ++r) {
        p.out[(m0 + r) * p.n + n] =
            twice_sum_is_safe(abs_totals[r])
                ? epilogue(p.alpha[n], 2.0f * lanes[r] - totals[r])
                : signed_sum(row_ptrs[r], chunks, p.w + n * p.words, p.k, p.alpha[n]);
      }
    }
  }
};

// Table-lookup path (bwn_gemm_lut.h) for 16 rows [m0, m0 + 16) and columns [n_begin, n_end).
EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET)
inline void lut_block(const BwnProblem<float>& p, int64_t m0, int64_t n_begin, int64_t n_end) {
  LutFrame<lut::kRows> f(p, m0, n_begin, n_end, lut::kBlockK, lut::kGroups);
  __m512 abs_total;
  const __m512 total =
      lut::transpose_rows(f.row_ptrs, f.rows, f.chunks, p.k, f.k_pad, f.xt, &abs_total);
  for (int64_t kb = 0; kb < f.k_pad / lut::kBlockK; ++kb) {
    lut::build_tables(f.xt + 16 * kb * lut::kBlockK, f.table);
    for (int64_t n = n_begin; n < n_end; n += lut::kCols) {
      const int count = static_cast<int>(std::min<int64_t>(lut::kCols, n_end - n));
      const auto wr = tile_rows<uint32_t, lut::kCols>(p.w, n, count, p.words);
      __m512 acc[lut::kCols];
      for (auto& a : acc) a = _mm512_setzero_ps();
      lut::accumulate_block(f.table, wr.data(), kb * (lut::kBlockK / 32), p.words, acc);
      for (int j = 0; j < count; ++j) {
        float* dst = f.pos + 16 * (n - n_begin + j);
        _mm512_store_ps(dst, _mm512_add_ps(_mm512_load_ps(dst), acc[j]));
      }
    }
  }
  alignas(64) float totals[lut::kRows];
  alignas(64) float abs_totals[lut::kRows];
  _mm512_store_ps(totals, total);
  _mm512_store_ps(abs_totals, abs_total);
  f.store(p, m0, n_begin, totals, abs_totals);
}

// The AVX2 table-lookup path (bwn_gemm_lut_avx2.h): lut_block with 8 rows a table.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
inline void lut_block_avx2(const BwnProblem<float>& p, int64_t m0, int64_t n_begin,
                           int64_t n_end) {
  namespace L = lut_avx2;
  LutFrame<L::kRows> f(p, m0, n_begin, n_end, L::kBlockK, L::kGroups);
  __m256 abs_total;
  const __m256 total =
      L::transpose_rows(f.row_ptrs, f.rows, f.chunks, p.k, f.k_pad, f.xt, &abs_total);
  for (int64_t kb = 0; kb < f.k_pad / L::kBlockK; ++kb) {
    L::build_tables(f.xt + 8 * kb * L::kBlockK, f.table);
    for (int64_t n = n_begin; n < n_end; n += L::kCols) {
      const int count = static_cast<int>(std::min<int64_t>(L::kCols, n_end - n));
      const auto wr = tile_rows<uint32_t, L::kCols>(p.w, n, count, p.words);
      __m256 acc[L::kCols];
      for (auto& a : acc) a = _mm256_setzero_ps();
      L::accumulate_block(f.table, wr.data(), kb * (L::kBlockK / 32), p.words, acc);
      for (int j = 0; j < count; ++j) {
        float* dst = f.pos + 8 * (n - n_begin + j);
        _mm256_store_ps(dst, _mm256_add_ps(_mm256_load_ps(dst), acc[j]));
      }
    }
  }
  alignas(32) float totals[L::kRows];
  alignas(32) float abs_totals[L::kRows];
  _mm256_store_ps(totals, total);
  _mm256_store_ps(abs_totals, abs_total);
  f.store(p, m0, n_begin, totals, abs_totals);
}

// Blocks of `rows` rows of x (one table each) times column ranges, over the threads.
template <int Rows, int Cols, void (*Block)(const BwnProblem<float>&, int64_t, int64_t, int64_t)>
void run_lut(const BwnProblem<float>& p) {
  const int64_t row_blocks = (p.m + Rows - 1) / Rows;
  // Few row blocks: split the columns too, so every thread has work (each split rebuilds
  // its own tables, a small cost next to the lookups).
  const int64_t want = 2 * at::get_num_threads();
  const int64_t splits = row_blocks >= want ? 1 : (want + row_blocks - 1) / row_blocks;
  const int64_t chunk = ((p.n + splits - 1) / splits + Cols - 1) / Cols * Cols;
  const int64_t col_blocks = (p.n + chunk - 1) / chunk;
  at::parallel_for(0, row_blocks * col_blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t n0 = (t % col_blocks) * chunk;
      Block(p, (t / col_blocks) * Rows, n0, std::min(p.n, n0 + chunk));
    }
  });
}

EMOKERNELS_TARGET(EMOKERNELS_AVX512_FLOAT_TARGET)
inline void row_sums_rows(const float* x, float* out, int64_t begin, int64_t end, int64_t k) {
  for (int64_t r = begin; r < end; ++r) {
    __m512 acc = _mm512_setzero_ps(), abs_acc = _mm512_setzero_ps();
    int64_t kk = 0;
    for (; kk + 16 <= k; kk += 16) {
      const __m512 v = _mm512_loadu_ps(x + r * k + kk);
      acc = _mm512_add_ps(acc, v);
      abs_acc = _mm512_add_ps(abs_acc, _mm512_abs_ps(v));
    }
    const __mmask16 rest = static_cast<__mmask16>((1u << (k - kk)) - 1u);
    const __m512 v = _mm512_maskz_loadu_ps(rest, x + r * k + kk);
    acc = _mm512_add_ps(acc, v);
    abs_acc = _mm512_add_ps(abs_acc, _mm512_abs_ps(v));
    out[r] = twice_sum_is_safe(_mm512_reduce_add_ps(abs_acc)) ? _mm512_reduce_add_ps(acc)
                                                                : std::nanf("");
  }
}

inline void row_sums_avx512(const float* x, float* out, int64_t m, int64_t k) {
  at::parallel_for(0, m, std::max<int64_t>(1, 16384 / k), [&](int64_t begin, int64_t end) {
    row_sums_rows(x, out, begin, end, k);
  });
}

// AVX-512 BF16: each 32-bit weight word becomes 32 bf16 +-1 values once per tile (one blend),
// and vdpbf16ps multiplies them exactly against x, accumulating in float32.
template <int MR, int NR>
EMOKERNELS_TARGET(EMOKERNELS_AVX512_BF16_TARGET)
void tile_bf16_rows(
    const BwnProblem<c10::BFloat16>& p, int64_t m0, int m_count, int64_t n0, int n_count) {
  const auto xr = tile_rows<c10::BFloat16, MR>(p.x, m0, m_count, p.k);
  const auto wr = tile_rows<uint32_t, NR>(p.w, n0, n_count, p.words);
  const __m512i plus = _mm512_set1_epi16(0x3F80);   // bf16 +1.0
  const __m512i minus = _mm512_set1_epi16(static_cast<int16_t>(0xBF80));  // bf16 -1.0
  __m512 acc[MR][NR];
  for (auto& row : acc)
    for (auto& v : row) v = _mm512_setzero_ps();
  const int tail = static_cast<int>(p.k - 32 * (p.words - 1));
  const __mmask32 tail_load = tail == 32 ? 0xFFFFFFFFu : ((1u << tail) - 1u);
  for (int64_t w = 0; w < p.words; ++w) {
    const __mmask32 load = w + 1 < p.words ? 0xFFFFFFFFu : tail_load;
    __m512i xv[MR];
    for (int i = 0; i < MR; ++i) xv[i] = _mm512_maskz_loadu_epi16(load, xr[i] + 32 * w);
    for (int j = 0; j < NR; ++j) {
      const __m512i sign = _mm512_mask_blend_epi16(wr[j][w], minus, plus);
      for (int i = 0; i < MR; ++i) {
        acc[i][j] = _mm512_dpbf16_ps(acc[i][j], as_bf16x32(xv[i]), as_bf16x32(sign));
      }
    }
  }
  for (int i = 0; i < m_count; ++i) {
    for (int j = 0; j < n_count; ++j) {
      const float dot = _mm512_reduce_add_ps(acc[i][j]);
      p.out[(m0 + i) * p.n + n0 + j] = static_cast<c10::BFloat16>(epilogue(p.alpha[n0 + j], dot));
    }
  }
}

inline void tile_bf16(const BwnProblem<c10::BFloat16>& p, int64_t m0, int m_count, int64_t n0,
               int n_count) {
  if (m_count == kAvx512MR) {
    return tile_bf16_rows<kAvx512MR, kAvx512NR>(p, m0, m_count, n0, n_count);
  }
  for (int i = 0; i < m_count; ++i) tile_bf16_rows<1, kAvx512NR>(p, m0 + i, 1, n0, n_count);
}

template <typename scalar_t, typename Tile>
void run(const BwnProblem<scalar_t>& p, int64_t mr, int64_t nr, Tile tile) {
  parallel_tiles(p.m, p.n, mr, nr, 4 * p.words, [&](int64_t m0, int m_count, int64_t n0, int n_count) {
    tile(p, m0, m_count, n0, n_count);
  });
}

// Runs a bfloat16 or float16 problem (dense x) on `path`.
template <typename T>
inline void run_bwn(const BwnProblem<T>& p, BwnPath path) {
  if constexpr (std::is_same_v<T, c10::BFloat16>) {
    if (path == BwnPath::Bf16Avx512) return run(p, kAvx512MR, kAvx512NR, tile_bf16);
  }
  run(p, 1, 8, tile_portable<T>);
}

// Runs a float32 problem on `path` (bwn_path's choice for it); only the *TableImplicit paths
// read p.conv. row_sums: M floats of scratch.
inline void run_bwn(BwnProblem<float> p, BwnPath path, float* row_sums) {
  p.row_sums = row_sums;
  switch (path) {
    case BwnPath::Table:
    case BwnPath::TableImplicit:
      return run_lut<lut::kRows, lut::kCols, lut_block>(p);
    case BwnPath::Avx2Table:
    case BwnPath::Avx2TableImplicit:
      return run_lut<lut_avx2::kRows, lut_avx2::kCols, lut_block_avx2>(p);
    case BwnPath::Rows512:
      row_sums_avx512(p.x, row_sums, p.m, p.k);
      return run(p, kAvx512MR, kAvx512NR, tile_avx512);
    case BwnPath::RowTables512:
      return bwn_row_tables::avx512::run(p);
    case BwnPath::Avx2RowTables:
      return bwn_row_tables::avx2::run(p);
    case BwnPath::Avx2:
      return run(p, kAvx2MR, kAvx2NR, tile_avx2);
    default:
      return run(p, 1, 8, tile_portable<float>);
  }
}

inline BwnInput bwn_input(at::ScalarType dtype) {
  return dtype == at::kBFloat16 ? BwnInput::BFloat16
         : dtype == at::kHalf   ? BwnInput::Float16
                                : BwnInput::Float32;
}

// out [M, N] = alpha * (x [M, K] @ sign(W).T) for a dense, contiguous x of any input dtype.
inline void run_dense(const at::Tensor& x, const uint32_t* w, int64_t words, const float* alpha,
                      at::Tensor& out, BwnPath path) {
  const int64_t m = x.size(0), k = x.size(1), n = out.size(-1);
  if (x.scalar_type() == at::kBFloat16) {
    return run_bwn(BwnProblem<c10::BFloat16>{x.data_ptr<c10::BFloat16>(), w, alpha, nullptr,
                                             out.data_ptr<c10::BFloat16>(), m, n, k, words},
                   path);
  }
  if (x.scalar_type() == at::kHalf) {
    return run_bwn(BwnProblem<c10::Half>{x.data_ptr<c10::Half>(), w, alpha, nullptr,
                                         out.data_ptr<c10::Half>(), m, n, k, words},
                   path);
  }
  std::vector<float> row_sums(m);
  run_bwn(BwnProblem<float>{x.data_ptr<float>(), w, alpha, nullptr, out.data_ptr<float>(), m, n,
                            k, words},
          path, row_sums.data());
}

}  // namespace bwn
}  // namespace emokernels
