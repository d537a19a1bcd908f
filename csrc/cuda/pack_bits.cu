// pack_bits on CUDA (kernel: pack_bits.cuh).
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>

#include "../common/library.h"
#include "../ops/pack_bits_checks.h"
#include "launch.h"
#include "pack_bits.cuh"

namespace emokernels::cuda {
namespace {

at::Tensor pack_bits_cuda(const at::Tensor& x_in) {
  const std::vector<int64_t> shape = pack_bits_output_shape(x_in);
  const DeviceGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty(shape, x.options().dtype(at::kInt));
  const int64_t k = x.size(-1), words = shape.back(), rows = x.numel() / k;
  if (rows == 0) return out;
  auto* dst = reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "pack_bits", [&] {
    launch(pack_bits_shape(rows, words), pack_bits_kernel<scalar_t>, x.data_ptr<scalar_t>(), dst,
           rows, k, words);
  });
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(EMOKERNELS_CUDA_KEY, m) { m.impl("pack_bits", &pack_bits_cuda); }

}  // namespace emokernels::cuda
