// The CPU kernel of cp_conv2d: for a block of output rows, the 1x1 projection of the input
// rows they read (a register-tiled GEMM), both depthwise filters and the projection to the
// output channels (a second GEMM), with the R-channel rows held in a per-thread workspace that
// stays in L2. NCHW runs channel-major (GEMMs of the weights times pixel rows, written into y
// in place), channels-last runs pixel-major; neither transposes anything.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "../core/cp/cp_problem.h"
#include "simd.h"

namespace emokernels::cp_cpu {

// C [m, n] = A [m, k] @ B [k, n] (+ bias_row [m] or + bias_col [n]), row-major, leading
// dimensions lda, ldb, ldc.
struct Gemm {
  int64_t m, n, k;
  const float* a;
  int64_t lda;
  const float* b;
  int64_t ldb;
  float* c;
  int64_t ldc;
  const float* bias_row;
  const float* bias_col;
};

// Zero-padded copies of the last, narrow column panel of a GEMM.
class GemmScratch {
 public:
  float* get(int64_t count) {
    if (static_cast<int64_t>(buffer_.size()) < count) buffer_.resize(count);
    return buffer_.data();
  }

 private:
  std::vector<float> buffer_;
};

// Everything one call computes: the geometry, the layout and the operands. For channels-last
// the projections are transposed ([C, R], [R, N]) and so are the filters ([kh, R], [kw, R]).
struct CpPlan {
  cp::CpGeometry g;
  bool channels_last;
  const float* x;
  float* y;
  const float* u_in;
  const float* u_out;
  const float* k_v;
  const float* k_h;
  const float* bias;
  int64_t block_rows;  // output rows per block
};

// A block's rows: output rows [oh0, oh1) read input rows [ih0, ih1), held in z1 from its
// start (channel-major: each rank channel's rows z1_stride floats apart).
struct CpBlock {
  const cp::CpGeometry* g;
  const float* k_v;
  const float* k_h;
  int64_t oh0, oh1, ih0, ih1, z1_stride;
};

// One thread's buffers: z1 (the input rows projected to R channels; which rows of which image
// it holds), z3 (the filtered output rows), the depthwise filters' rows, and GEMM scratch.
struct CpWorkspace {
  std::vector<float> storage;
  float *z1, *z3, *row;
  int64_t z1_stride;
  int64_t image = -1, row0 = 0, row1 = 0;
  GemmScratch scratch;

  explicit CpWorkspace(const CpPlan& plan) {
    const cp::CpGeometry& g = plan.g;
    z1_stride = g.rows_read(plan.block_rows) * g.w;
    const int64_t z1_size = g.r * z1_stride;
    const int64_t z3_size = g.r * plan.block_rows * g.wo;
    // Channel-last: one zero-padded row of R channels; channel-major: the vertical filter's
    // output rows of one rank channel, and one zero-padded row.
    const int64_t row_size = plan.channels_last ? g.padded_width() * g.r
                                                : plan.block_rows * g.w + g.padded_width();
    storage.resize(z1_size + z3_size + row_size);
    z1 = storage.data();
    z3 = z1 + z1_size;
    row = z3 + z3_size;
  }
};

// Bytes of the R-channel rows of a block of `rows` output rows: kept within an L2 share.
inline int64_t block_bytes(const cp::CpGeometry& g, int64_t rows) {
  return 4 * g.r * (g.rows_read(rows) * g.w + rows * g.wo);
}

}  // namespace emokernels::cp_cpu

// ---- the paths: cp_tiles.inc once per ISA ----

// Portable: GCC vector extensions, lowered to whatever the baseline target has.
namespace emokernels::cp_cpu::portable_ops {
typedef float V __attribute__((vector_size(16)));
inline V load(const float* p) {
  V v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store(float* p, V v) { std::memcpy(p, &v, sizeof(v)); }
}  // namespace emokernels::cp_cpu::portable_ops

namespace emokernels::cp_cpu {
#define EK_NS portable
#define EK_ATTR
#define EK_LANES 4
#define EK_V portable_ops::V
#define EK_ZERO() EK_V{}
#define EK_LOAD portable_ops::load
#define EK_BCAST(s) (EK_V{} + (s))
#define EK_FMA(a, b, c) ((a) * (b) + (c))
#define EK_STORE portable_ops::store
#include "cp_tiles.inc"

#define EK_NS avx2
#define EK_ATTR EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
#define EK_LANES 8
#define EK_V __m256
#define EK_ZERO _mm256_setzero_ps
#define EK_LOAD _mm256_loadu_ps
#define EK_BCAST _mm256_set1_ps
#define EK_FMA _mm256_fmadd_ps
#define EK_STORE _mm256_storeu_ps
#include "cp_tiles.inc"

#define EK_NS avx512
#define EK_ATTR EMOKERNELS_TARGET(EMOKERNELS_AVX512F_TARGET)
#define EK_LANES 16
#define EK_V __m512
#define EK_ZERO _mm512_setzero_ps
#define EK_LOAD _mm512_loadu_ps
#define EK_BCAST _mm512_set1_ps
#define EK_FMA _mm512_fmadd_ps
#define EK_STORE _mm512_storeu_ps
#include "cp_tiles.inc"
}  // namespace emokernels::cp_cpu
