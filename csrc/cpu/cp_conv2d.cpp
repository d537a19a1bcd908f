// cp_conv2d on the CPU: the CP convolution fused per block of output rows (cp_kernels.h), in
// x's memory format (NCHW or channels-last), float32.
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <algorithm>

#include "../common/library.h"
#include "../ops/cp_conv2d_checks.h"
#include "cp_kernels.h"
#include "paths.h"

namespace emokernels {
namespace {

// The R-channel rows of a block stay within this much of a core's L2.
constexpr int64_t kBlockBudgetBytes = 384 * 1024;

// The most output rows whose intermediates fit the budget; with fewer images than threads,
// few enough that every thread gets a share of each image.
int64_t block_rows(const cp::CpGeometry& g) {
  int64_t rows = 1;
  while (rows < g.ho && cp_cpu::block_bytes(g, rows + 1) <= kBlockBudgetBytes) ++rows;
  const int64_t threads = at::get_num_threads();
  if (g.b < threads) {
    const int64_t shares = (threads + g.b - 1) / g.b;
    rows = std::min(rows, (g.ho + shares - 1) / shares);
  }
  return rows;
}

at::Tensor cp_conv2d_cpu(const at::Tensor& x_in, const at::Tensor& u_in, const at::Tensor& k_v,
                         const at::Tensor& k_h, const at::Tensor& u_out,
                         const std::optional<at::Tensor>& bias, at::IntArrayRef stride,
                         at::IntArrayRef padding) {
  const cp::CpGeometry g = cp_conv2d_geometry(x_in, u_in, k_v, k_h, u_out, bias, stride, padding);
  const auto format = x_in.suggest_memory_format();
  const bool channels_last = format == at::MemoryFormat::ChannelsLast;
  const at::Tensor x = x_in.contiguous(format);
  at::Tensor y = at::empty({g.b, g.n, g.ho, g.wo}, x.options().memory_format(format));
  // Pixel-major GEMMs read the projections transposed, the filters rank-minor.
  const at::Tensor a_in = channels_last ? u_in.t().contiguous() : u_in.contiguous();
  const at::Tensor a_out = channels_last ? u_out.t().contiguous() : u_out.contiguous();
  const at::Tensor f_v = channels_last ? k_v.t().contiguous() : k_v.contiguous();
  const at::Tensor f_h = channels_last ? k_h.t().contiguous() : k_h.contiguous();
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();

  cp_cpu::CpPlan plan{g,
                      channels_last,
                      x.const_data_ptr<float>(),
                      y.mutable_data_ptr<float>(),
                      a_in.const_data_ptr<float>(),
                      a_out.const_data_ptr<float>(),
                      f_v.const_data_ptr<float>(),
                      f_h.const_data_ptr<float>(),
                      b.defined() ? b.const_data_ptr<float>() : nullptr,
                      block_rows(g)};
  auto* run_block = cp_cpu::portable::run_block;
  switch (cp_path()) {
    case CpPath::Avx512: run_block = cp_cpu::avx512::run_block; break;
    case CpPath::Avx2: run_block = cp_cpu::avx2::run_block; break;
    case CpPath::Portable: break;
  }
  const int64_t blocks_per_image = (g.ho + plan.block_rows - 1) / plan.block_rows;
  at::parallel_for(0, g.b * blocks_per_image, 1, [&](int64_t begin, int64_t end) {
    cp_cpu::CpWorkspace ws(plan);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t image = task / blocks_per_image;
      const int64_t oh0 = task % blocks_per_image * plan.block_rows;
      run_block(plan, image, oh0, std::min(oh0 + plan.block_rows, g.ho), ws);
    }
  });
  return y;
}

}  // namespace

EMOKERNELS_LIBRARY_IMPL(CPU, m) { m.impl("cp_conv2d", &cp_conv2d_cpu); }

}  // namespace emokernels
