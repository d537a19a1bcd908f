// cp_conv2d: argument checks and the geometry, shared by every backend (mirrored for the fake
// kernel in emokernels/ops/_checks.py).
#pragma once

#include <c10/util/ArrayRef.h>

#include <optional>

#include "../core/cp/cp_problem.h"
#include "common_checks.h"

namespace emokernels {

// x [B, C, H, W], u_in [R, C], k_v [R, kh], k_h [R, kw], u_out [N, R], bias [N]: one dtype
// (float32: the CPU kernel's only one) and one device; stride >= 1, padding >= 0, the kernel
// fits the padded image.
inline cp::CpGeometry cp_conv2d_geometry(const at::Tensor& x, const at::Tensor& u_in,
                                         const at::Tensor& k_v, const at::Tensor& k_h,
                                         const at::Tensor& u_out,
                                         const std::optional<at::Tensor>& bias,
                                         c10::IntArrayRef stride, c10::IntArrayRef padding) {
  constexpr const char* op = "cp_conv2d";
  check_rank(x, 4, op, "x");
  const std::pair<const at::Tensor*, const char*> factors[] = {
      {&u_in, "u_in"}, {&k_v, "k_v"}, {&k_h, "k_h"}, {&u_out, "u_out"}};
  for (const auto& [t, name] : factors) check_rank(*t, 2, op, name);
  if (bias.has_value()) check_rank(*bias, 1, op, "bias");
  TORCH_CHECK(x.scalar_type() == at::kFloat, op, ": x must be one of float32, got ",
              x.scalar_type());
  for (const auto& [t, name] : factors) {
    TORCH_CHECK(t->scalar_type() == x.scalar_type(), op, ": ", name, " must have x's dtype ",
                x.scalar_type(), ", got ", t->scalar_type());
    check_same_device(x, *t, op);
  }
  if (bias.has_value()) {
    TORCH_CHECK(bias->scalar_type() == x.scalar_type(), op, ": bias must have x's dtype ",
                x.scalar_type(), ", got ", bias->scalar_type());
    check_same_device(x, *bias, op);
  }
  TORCH_CHECK(stride.size() == 2 && padding.size() == 2, op,
              ": stride and padding must have 2 entries");
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  for (int i = 0; i < 2; ++i) {
    TORCH_CHECK(stride[i] >= 1 && stride[i] <= kInt32Max, op,
                ": stride must be in [1, 2^31 - 1], got ", stride);
    TORCH_CHECK(padding[i] >= 0 && padding[i] <= kInt32Max, op,
                ": padding must be in [0, 2^31 - 1], got ", padding);
  }
  cp::CpGeometry g{x.size(0), x.size(1), x.size(2), x.size(3), u_in.size(0), u_out.size(0),
                   k_v.size(1), k_h.size(1), stride[0], stride[1], padding[0], padding[1], 0, 0};
  TORCH_CHECK(g.b >= 1 && g.c >= 1 && g.h >= 1 && g.w >= 1, op,
              ": x [B, C, H, W] must be non-empty, got ", x.sizes());
  TORCH_CHECK(g.r >= 1 && g.n >= 1 && g.kh >= 1 && g.kw >= 1, op,
              ": the factors must be non-empty (rank, out channels, kernel)");
  TORCH_CHECK(u_in.size(1) == g.c, op, ": u_in is [R, ", u_in.size(1), "] but x has ", g.c,
              " channels");
  TORCH_CHECK(k_v.size(0) == g.r && k_h.size(0) == g.r && u_out.size(1) == g.r, op,
              ": the factors disagree on the rank: u_in ", u_in.sizes(), ", k_v ", k_v.sizes(),
              ", k_h ", k_h.sizes(), ", u_out ", u_out.sizes());
  TORCH_CHECK(!bias.has_value() || bias->size(0) == g.n, op, ": bias has ",
              bias.has_value() ? bias->size(0) : 0, " entries but u_out has ", g.n, " rows");
  TORCH_CHECK(g.h + 2 * g.ph <= kInt32Max && g.w + 2 * g.pw <= kInt32Max, op,
              ": the padded image exceeds 2^31 - 1 rows or columns");
  TORCH_CHECK(g.kh <= g.h + 2 * g.ph && g.kw <= g.w + 2 * g.pw, op, ": the ", g.kh, "x", g.kw,
              " kernel does not fit the padded ", g.h + 2 * g.ph, "x", g.w + 2 * g.pw,
              " image");
  g.ho = (g.h + 2 * g.ph - g.kh) / g.sh + 1;
  g.wo = (g.w + 2 * g.pw - g.kw) / g.sw + 1;
  return g;
}

}  // namespace emokernels
