// pack_bits on the CPU: float [..., K] -> int32 [..., ceil(K/32)], bit j of word w set iff
// x[..., 32*w + j] >= 0 (so sign(0) = +1); bits past K are 0.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include "../common/library.h"

#include "simd.h"

#include "paths.h"
#include "../ops/pack_bits_checks.h"

namespace emokernels {
namespace {

template <typename scalar_t>
void pack_rows_portable(const scalar_t* x, uint32_t* out, int64_t rows, int64_t k, int64_t words) {
  for (int64_t r = 0; r < rows; ++r) {
    const scalar_t* src = x + r * k;
    uint32_t* dst = out + r * words;
    for (int64_t w = 0; w < words; ++w) {
      const int64_t end = std::min<int64_t>(32, k - 32 * w);
      uint32_t word = 0;
      for (int64_t j = 0; j < end; ++j) {
        // In x's own dtype: a float64 -1e-300 must not round to -0.0f and pack as +1.
        word |= static_cast<uint32_t>(src[32 * w + j] >= static_cast<scalar_t>(0)) << j;
      }
      dst[w] = word;
    }
  }
}

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
void pack_rows_avx2(const float* x, uint32_t* out, int64_t rows, int64_t k, int64_t words) {
  const __m256 zero = _mm256_setzero_ps();
  const int64_t full = k / 32;
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * k;
    uint32_t* dst = out + r * words;
    for (int64_t w = 0; w < full; ++w) {
      uint32_t word = 0;
      for (int q = 0; q < 4; ++q) {
        const __m256 v = _mm256_loadu_ps(src + 32 * w + 8 * q);
        const uint32_t bits = _mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_GE_OQ));
        word |= bits << (8 * q);
      }
      dst[w] = word;
    }
    if (full < words) {
      uint32_t word = 0;
      for (int64_t j = 0; j < k - 32 * full; ++j) {
        word |= static_cast<uint32_t>(src[32 * full + j] >= 0.0f) << j;
      }
      dst[full] = word;
    }
  }
}

EMOKERNELS_TARGET(EMOKERNELS_AVX512F_TARGET)
void pack_rows_avx512(const float* x, uint32_t* out, int64_t rows, int64_t k, int64_t words) {
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t r = 0; r < rows; ++r) {
    const float* src = x + r * k;
    uint32_t* dst = out + r * words;
    for (int64_t w = 0; w < words; ++w) {
      const int64_t base = 32 * w;
      const int64_t left = k - base;
      uint32_t halves[2];
      for (int h = 0; h < 2; ++h) {
        const int64_t n = std::min<int64_t>(16, std::max<int64_t>(0, left - 16 * h));
        // Lanes past K are masked out of the compare too, so they stay 0 rather than 0 >= 0.
        const __mmask16 valid = static_cast<__mmask16>((n >= 16) ? 0xFFFF : ((1u << n) - 1));
        const __m512 v = _mm512_maskz_loadu_ps(valid, src + base + 16 * h);
        halves[h] = _mm512_mask_cmp_ps_mask(valid, v, zero, _CMP_GE_OQ);
      }
      dst[w] = halves[0] | (halves[1] << 16);
    }
  }
}

template <typename scalar_t>
void pack_rows(PackPath path, const scalar_t* x, uint32_t* out, int64_t rows, int64_t k,
               int64_t words) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    if (path == PackPath::Avx512) return pack_rows_avx512(x, out, rows, k, words);
    if (path == PackPath::Avx2) return pack_rows_avx2(x, out, rows, k, words);
  }
  pack_rows_portable(x, out, rows, k, words);
}

at::Tensor pack_bits_cpu(const at::Tensor& x_in) {
  const std::vector<int64_t> out_shape = pack_bits_output_shape(x_in);
  const at::Tensor x = x_in.contiguous();
  const int64_t k = x.size(-1), words = out_shape.back();
  at::Tensor out = at::empty(out_shape, x.options().dtype(at::kInt));
  const int64_t rows = x.numel() / k;
  if (rows == 0) return out;
  auto* dst = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  const PackPath path = pack_bits_path(x.scalar_type() == at::kFloat);
  const int64_t grain = std::max<int64_t>(1, 32768 / k);

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pack_bits", [&] {
    const scalar_t* src = x.data_ptr<scalar_t>();
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) {
      pack_rows(path, src + begin * k, dst + begin * words, end - begin, k, words);
    });
  });
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) { m.impl("pack_bits", &pack_bits_cpu); }

}  // namespace emokernels
