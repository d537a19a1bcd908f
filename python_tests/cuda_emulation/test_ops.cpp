// torch.ops.emokernels_cuda_emu_test.*: the kernels of test_kernels.cuh run under the CUDA
// emulation on CPU tensors (python_tests/test_cuda_emulation.py compares them with Python
// references), plus a few emulation-only misuse cases that nvcc would reject or a GPU would crash
// on. The harness header comes first, before the kernels and torch, as it will for the package's
// kernels: its macros must not disturb torch's headers.
#include "cuda_emulation.h"
#include "test_kernels.cuh"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/full.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <stdexcept>
#include <tuple>

namespace {

using at::Tensor;

void check(const Tensor& t, at::ScalarType dtype, int64_t dim, const char* name) {
  TORCH_CHECK(t.device().is_cpu() && t.scalar_type() == dtype && t.dim() == dim &&
                  t.is_contiguous(),
              name, ": expected a contiguous ", dim, "-D CPU tensor of ", dtype, ", got ",
              t.scalar_type(), " ", t.sizes());
}

unsigned blocks_for(int64_t items, int64_t per_block) {
  return static_cast<unsigned>((items + per_block - 1) / per_block);
}

const uint32_t* words(const Tensor& t) {
  return reinterpret_cast<const uint32_t*>(t.data_ptr<int32_t>());
}

Tensor bit_gemm_xor(const Tensor& a, const Tensor& b) {
  check(a, at::kInt, 2, "a");
  check(b, at::kInt, 2, "b");
  TORCH_CHECK(a.size(1) == b.size(1), "a and b need the same number of words");
  const int m = static_cast<int>(a.size(0)), n = static_cast<int>(b.size(0));
  const int w = static_cast<int>(a.size(1));
  Tensor out = at::empty({m, n}, a.options());
  const int t = ek_test::kGemmTile;
  ek_emu::launch(dim3(blocks_for(n, t), blocks_for(m, t)), dim3(t, t),
                 ek_test::bit_gemm_xor_kernel, words(a), words(b), out.data_ptr<int32_t>(), m, n,
                 w);
  return out;
}

Tensor row_sum(const Tensor& x, int64_t threads) {
  TORCH_CHECK(threads % 32 == 0 && threads >= 32 && threads <= 1024, "threads: 32, 64, .. 1024");
  const dim3 grid(static_cast<unsigned>(x.size(0))), block(static_cast<unsigned>(threads));
  const int cols = static_cast<int>(x.size(1));
  if (x.scalar_type() == at::kLong) {
    check(x, at::kLong, 2, "x");
    Tensor out = at::empty({x.size(0)}, x.options());
    ek_emu::launch(grid, block, ek_test::row_sum_kernel<long long>,
                   reinterpret_cast<const long long*>(x.data_ptr<int64_t>()),
                   reinterpret_cast<long long*>(out.data_ptr<int64_t>()), cols);
    return out;
  }
  check(x, at::kFloat, 2, "x");
  Tensor out = at::empty({x.size(0)}, x.options());
  ek_emu::launch(grid, block, ek_test::row_sum_kernel<float>, x.data_ptr<float>(),
                 out.data_ptr<float>(), cols);
  return out;
}

Tensor shuffle_probe(const Tensor& values, const Tensor& args, int64_t mode, int64_t width,
                     int64_t threads) {
  check(values, at::kInt, 1, "values");
  check(args, at::kInt, 1, "args");
  TORCH_CHECK(values.numel() == args.numel() && values.numel() % threads == 0,
              "values and args: the same length, a multiple of threads");
  Tensor out = at::empty_like(values);
  ek_emu::launch(blocks_for(values.numel(), threads), dim3(static_cast<unsigned>(threads)),
                 ek_test::shuffle_probe_kernel, values.data_ptr<int32_t>(),
                 args.data_ptr<int32_t>(), out.data_ptr<int32_t>(), static_cast<int>(mode),
                 static_cast<int>(width));
  return out;
}

std::tuple<Tensor, Tensor> ballot_pack(const Tensor& x, int64_t blocks) {
  check(x, at::kFloat, 1, "x");
  const int64_t nwords = (x.numel() + 31) / 32;
  Tensor packed = at::empty({nwords}, x.options().dtype(at::kInt));
  Tensor stats = at::empty({nwords}, x.options().dtype(at::kInt));
  ek_emu::launch(static_cast<unsigned>(blocks), dim3(32 * ek_test::kPackWarps),
                 ek_test::ballot_pack_kernel, x.data_ptr<float>(),
                 reinterpret_cast<uint32_t*>(packed.data_ptr<int32_t>()),
                 stats.data_ptr<int32_t>(), x.numel(), nwords);
  return {packed, stats};
}

Tensor int_output(int64_t n) { return at::full({n}, -7, at::dtype(at::kInt)); }

Tensor neighbour(int64_t blocks, int64_t threads, bool use_barrier) {
  TORCH_CHECK(threads <= 256, "threads <= 256");
  Tensor out = int_output(blocks * threads);
  ek_emu::launch(static_cast<unsigned>(blocks), dim3(static_cast<unsigned>(threads)),
                 ek_test::neighbour_kernel, out.data_ptr<int32_t>(), use_barrier ? 1 : 0);
  return out;
}

Tensor barrier_misuse(int64_t mode, int64_t threads) {
  Tensor out = int_output(3 * threads);
  ek_emu::launch(1, dim3(static_cast<unsigned>(threads)), ek_test::barrier_misuse_kernel,
                 out.data_ptr<int32_t>(), static_cast<int>(mode));
  return out;
}

Tensor warp_misuse(int64_t mode, int64_t threads) {
  Tensor out = int_output(threads);
  ek_emu::launch(1, dim3(static_cast<unsigned>(threads)), ek_test::warp_misuse_kernel,
                 out.data_ptr<int32_t>(), static_cast<int>(mode));
  return out;
}

Tensor mma_b1_tile(const Tensor& a, const Tensor& b, const Tensor& c, int64_t warps) {
  check(a, at::kInt, 3, "a");
  check(b, at::kInt, 3, "b");
  check(c, at::kInt, 3, "c");
  const int64_t tiles = a.size(0);
  TORCH_CHECK(a.size(1) == 16 && a.size(2) == 8 && b.size(0) == tiles && b.size(1) == 8 &&
                  b.size(2) == 8 && c.size(0) == tiles && c.size(1) == 16 && c.size(2) == 8,
              "a [T, 16, 8], b [T, 8, 8], c [T, 16, 8]");
  Tensor d = at::full({tiles, 16, 8}, -7, c.options());
  ek_emu::launch(blocks_for(tiles, warps), dim3(static_cast<unsigned>(32 * warps)),
                 ek_test::mma_b1_tile_kernel, words(a), words(b), c.data_ptr<int32_t>(),
                 d.data_ptr<int32_t>(), static_cast<int>(tiles));
  return d;
}

Tensor shared_poison(int64_t blocks, int64_t threads) {
  Tensor out = int_output(blocks * threads);
  ek_emu::launch(static_cast<unsigned>(blocks), dim3(static_cast<unsigned>(threads)),
                 ek_test::shared_poison_kernel,
                 reinterpret_cast<uint32_t*>(out.data_ptr<int32_t>()));
  return out;
}

Tensor histogram(const Tensor& x, int64_t bins, int64_t blocks, int64_t threads) {
  check(x, at::kInt, 1, "x");
  TORCH_CHECK(bins >= 1 && bins <= 64, "bins in [1, 64]");
  Tensor hist = at::zeros({bins}, x.options());
  ek_emu::launch(static_cast<unsigned>(blocks), dim3(static_cast<unsigned>(threads)),
                 ek_test::histogram_kernel, x.data_ptr<int32_t>(), hist.data_ptr<int32_t>(),
                 static_cast<int>(x.numel()), static_cast<int>(bins));
  return hist;
}

dim3 to_dim3(at::IntArrayRef v) {
  TORCH_CHECK(v.size() == 3, "three dimensions");
  return dim3(static_cast<unsigned>(v[0]), static_cast<unsigned>(v[1]),
              static_cast<unsigned>(v[2]));
}

Tensor coords(at::IntArrayRef grid, at::IntArrayRef block) {
  const dim3 g = to_dim3(grid), b = to_dim3(block);
  Tensor out = int_output(int64_t(g.x) * g.y * g.z * b.x * b.y * b.z * 8);
  ek_emu::launch(g, b, ek_test::coords_kernel, out.data_ptr<int32_t>());
  return out;
}

}  // namespace

// ---- Emulation-only cases (not CUDA a GPU build would accept or survive). In a named namespace:
// the messages name exported kernels; those with internal linkage show as an address.
namespace ek_test_emulation_only {

// More static shared memory than CUDA's 48 KiB (ptxas rejects it).
__global__ void oversized_shared_kernel(float* out) {
  EK_SHARED(float, big, 13 * 1024);
  big[threadIdx.x] = 1.0f;
  out[threadIdx.x] = big[threadIdx.x];
}

// A C++ exception in one thread (e.g. a failed check in code the kernel calls).
__global__ void throwing_kernel(int* out, int bad_thread) {
  if (static_cast<int>(threadIdx.x) == bad_thread) throw std::invalid_argument("bad input");
  out[threadIdx.x] = 1;
}

// Kernels that synchronize a lot, for the timing of a context switch.
__global__ void many_barriers_kernel(int* out, int rounds) {
  EK_SHARED(int, s, 1024);
  int acc = 0;
  for (int r = 0; r < rounds; ++r) {
    s[threadIdx.x] = r + threadIdx.x;
    __syncthreads();
    acc += s[(threadIdx.x + 1) % blockDim.x];
    __syncthreads();
  }
  out[blockIdx.x * blockDim.x + threadIdx.x] = acc;
}

}  // namespace ek_test_emulation_only

namespace {

using namespace ek_test_emulation_only;

void misuse(const std::string& what, int64_t arg) {
  Tensor out = int_output(2048);
  if (what == "oversized_shared") {
    Tensor f = at::empty({1024}, at::dtype(at::kFloat));
    ek_emu::launch(1, 32, oversized_shared_kernel, f.data_ptr<float>());
  } else if (what == "throw") {
    ek_emu::launch(1, 64, throwing_kernel, out.data_ptr<int32_t>(), static_cast<int>(arg));
  } else if (what == "block_too_large") {
    ek_emu::launch(1, dim3(static_cast<unsigned>(arg)), ek_test::neighbour_kernel,
                   out.data_ptr<int32_t>(), 1);
  } else if (what == "outside_kernel") {
    (void)threadIdx.x;  // host code: no current thread
  } else {
    TORCH_CHECK(false, "unknown misuse case ", what);
  }
}

Tensor many_barriers(int64_t blocks, int64_t threads, int64_t rounds) {
  Tensor out = int_output(blocks * threads);
  ek_emu::launch(static_cast<unsigned>(blocks), dim3(static_cast<unsigned>(threads)),
                 many_barriers_kernel, out.data_ptr<int32_t>(), static_cast<int>(rounds));
  return out;
}

}  // namespace

TORCH_LIBRARY(emokernels_cuda_emu_test, m) {
  m.def("bit_gemm_xor(Tensor a, Tensor b) -> Tensor", &bit_gemm_xor);
  m.def("row_sum(Tensor x, int threads) -> Tensor", &row_sum);
  m.def("shuffle_probe(Tensor values, Tensor args, int mode, int width, int threads) -> Tensor",
        &shuffle_probe);
  m.def("ballot_pack(Tensor x, int blocks) -> (Tensor, Tensor)", &ballot_pack);
  m.def("neighbour(int blocks, int threads, bool use_barrier) -> Tensor", &neighbour);
  m.def("barrier_misuse(int mode, int threads) -> Tensor", &barrier_misuse);
  m.def("warp_misuse(int mode, int threads) -> Tensor", &warp_misuse);
  m.def("mma_b1_tile(Tensor a, Tensor b, Tensor c, int warps) -> Tensor", &mma_b1_tile);
  m.def("shared_poison(int blocks, int threads) -> Tensor", &shared_poison);
  m.def("histogram(Tensor x, int bins, int blocks, int threads) -> Tensor", &histogram);
  m.def("coords(int[] grid, int[] block) -> Tensor", &coords);
  m.def("misuse(str what, int arg) -> ()", &misuse);
  m.def("many_barriers(int blocks, int threads, int rounds) -> Tensor", &many_barriers);
}
