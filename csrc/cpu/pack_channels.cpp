// pack_channels on the CPU: per-channel interval tests of a float32 [B, C, H, W] map, packed
// into channels-last words int32 [B, H, W, ceil(C / 32)]. An NCHW map (what a float
// convolution writes) is packed in place, 8 pixels at a time: transposing it to channels-last
// first would cost more than the packing; a channels-last map 8 channels at a time.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include "../common/library.h"

#include "simd.h"

#include "../core/pack/pack_channels.h"
#include "../ops/pack_channels_checks.h"
#include "paths.h"

namespace emokernels {
namespace {

using pack::PackChannelsProblem;

// Pixels [begin, end) of image b, word w, from an NCHW map.
void nchw_words_portable(const PackChannelsProblem& p, int64_t b, int64_t w, int64_t begin,
                         int64_t end) {
  for (int64_t px = begin; px < end; ++px)
    p.out[(b * p.pixels + px) * p.words + w] = pack::pack_channels_word(p, b, px, w);
}

// Channel by channel over the block (each channel's pixels are one contiguous run, which the
// prefetchers follow), the block's words kept in `words` (L1) until the last channel.
constexpr int64_t kPackBlock = 512;

EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
void nchw_words_avx2(const PackChannelsProblem& p, int64_t b, int64_t w, int64_t begin,
                     int64_t end) {
  const int64_t first = 32 * w;
  const int count = static_cast<int>(std::min<int64_t>(32, p.channels - first));
  const int64_t vectors = (end - begin) / 8;
  alignas(32) uint32_t words[kPackBlock];
  for (int64_t i = 0; i < 8 * vectors; ++i) words[i] = 0;
  for (int j = 0; j < count; ++j) {
    const int64_t c = first + j;
    const float* row = p.x + (b * p.channels + c) * p.pixels + begin;
    const __m256 lower = _mm256_set1_ps(p.lower[c]), upper = _mm256_set1_ps(p.upper[c]);
    const __m256i bit = _mm256_set1_epi32(1 << j);
    for (int64_t v = 0; v < vectors; ++v) {
      const __m256 x = _mm256_loadu_ps(row + 8 * v);
      const __m256 in = _mm256_and_ps(_mm256_cmp_ps(x, lower, _CMP_GE_OQ),
                                      _mm256_cmp_ps(x, upper, _CMP_LE_OQ));
      auto* dst = reinterpret_cast<__m256i*>(words + 8 * v);
      _mm256_store_si256(dst, _mm256_or_si256(_mm256_load_si256(dst),
                                              _mm256_and_si256(_mm256_castps_si256(in), bit)));
    }
  }
  for (int64_t i = 0; i < 8 * vectors; ++i) {
    p.out[(b * p.pixels + begin + i) * p.words + w] = words[i];
  }
  nchw_words_portable(p, b, w, begin + 8 * vectors, end);
}

// Channels [from, to) of a channels-last row, bit j of the result for channel first + j.
uint32_t nhwc_bits_portable(const PackChannelsProblem& p, const float* row, int64_t first,
                            int64_t from, int64_t to) {
  uint32_t word = 0;
  for (int64_t c = from; c < to; ++c) {
    word |= static_cast<uint32_t>(pack::in_interval(row[c], p.lower[c], p.upper[c]))
            << (c - first);
  }
  return word;
}

// Rows [begin, end) of a channels-last map ([rows, C]).
void nhwc_rows_portable(const PackChannelsProblem& p, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    for (int64_t w = 0; w < p.words; ++w) {
      p.out[r * p.words + w] = nhwc_bits_portable(p, p.x + r * p.channels, 32 * w, 32 * w,
                                                  std::min<int64_t>(p.channels, 32 * w + 32));
    }
  }
}

// The same, 8 channels a compare (a channel run is contiguous here); the channels past the
// last whole 8 of a word one by one.
EMOKERNELS_TARGET(EMOKERNELS_AVX2_TARGET)
void nhwc_rows_avx2(const PackChannelsProblem& p, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float* row = p.x + r * p.channels;
    for (int64_t w = 0; w < p.words; ++w) {
      const int64_t first = 32 * w, last = std::min<int64_t>(p.channels, first + 32);
      const int64_t groups = (last - first) / 8;
      uint32_t word = 0;
      for (int64_t g = 0; g < groups; ++g) {
        const int64_t c = first + 8 * g;
        const __m256 x = _mm256_loadu_ps(row + c);
        const __m256 in = _mm256_and_ps(_mm256_cmp_ps(x, _mm256_loadu_ps(p.lower + c), _CMP_GE_OQ),
                                        _mm256_cmp_ps(x, _mm256_loadu_ps(p.upper + c), _CMP_LE_OQ));
        word |= static_cast<uint32_t>(_mm256_movemask_ps(in)) << (8 * g);
      }
      p.out[r * p.words + w] = word | nhwc_bits_portable(p, row, first, first + 8 * groups, last);
    }
  }
}

at::Tensor pack_channels_cpu(const at::Tensor& x_in, const at::Tensor& lower_in,
                             const at::Tensor& upper_in) {
  const std::vector<int64_t> shape = pack_channels_output_shape(x_in, lower_in, upper_in);
  at::Tensor out = at::empty(shape, x_in.options().dtype(at::kInt));
  if (out.numel() == 0) return out;
  const at::Tensor lower = lower_in.contiguous(), upper = upper_in.contiguous();
  const bool channels_last = x_in.permute({0, 2, 3, 1}).is_contiguous();
  const at::Tensor x = channels_last ? x_in : x_in.contiguous();
  PackChannelsProblem p{x.data_ptr<float>(), lower.data_ptr<float>(), upper.data_ptr<float>(),
                        reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>()), x.size(0),
                        x.size(1), x.size(2) * x.size(3), shape[3]};
  const bool avx2 = pack_channels_path() == PackPath::Avx2;
  if (channels_last) {
    at::parallel_for(0, p.batch * p.pixels, std::max<int64_t>(1, 32768 / p.channels),
                     [&](int64_t begin, int64_t end) {
                       if (avx2) return nhwc_rows_avx2(p, begin, end);
                       nhwc_rows_portable(p, begin, end);
                     });
    return out;
  }
  // Tasks of up to kPackBlock pixels of one (image, word).
  constexpr int64_t kPixels = kPackBlock;
  const int64_t blocks = (p.pixels + kPixels - 1) / kPixels;
  at::parallel_for(0, p.batch * p.words * blocks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t block = t % blocks, w = (t / blocks) % p.words, b = t / (blocks * p.words);
      const int64_t first = block * kPixels, last = std::min(p.pixels, first + kPixels);
      if (avx2) {
        nchw_words_avx2(p, b, w, first, last);
      } else {
        nchw_words_portable(p, b, w, first, last);
      }
    }
  });
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) { m.impl("pack_channels", &pack_channels_cpu); }

}  // namespace emokernels
