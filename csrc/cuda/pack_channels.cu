// pack_channels on CUDA (kernel: pack_channels.cuh).
#include <ATen/ops/empty.h>

#include "../common/library.h"
#include "../ops/pack_channels_checks.h"
#include "launch.h"
#include "pack_channels.cuh"

namespace emokernels::cuda {
namespace {

at::Tensor pack_channels_cuda(const at::Tensor& x_in, const at::Tensor& lower_in,
                              const at::Tensor& upper_in) {
  const std::vector<int64_t> shape = pack_channels_output_shape(x_in, lower_in, upper_in);
  const DeviceGuard guard(x_in.device());
  at::Tensor out = at::empty(shape, x_in.options().dtype(at::kInt));
  if (out.numel() == 0) return out;
  const at::Tensor x = x_in.contiguous(), lower = lower_in.contiguous();
  const at::Tensor upper = upper_in.contiguous();
  const pack::PackChannelsProblem p{x.data_ptr<float>(), lower.data_ptr<float>(),
                                    upper.data_ptr<float>(),
                                    reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>()),
                                    x.size(0), x.size(1), x.size(2) * x.size(3), shape[3]};
  launch(pack_channels_shape(p), pack_channels_kernel, p);
  return out;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(EMOKERNELS_CUDA_KEY, m) {
  m.impl("pack_channels", &pack_channels_cuda);
}

}  // namespace emokernels::cuda
