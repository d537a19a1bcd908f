// Tensor-core throughput of one warp-level mma.sync per data type, without torch:
//   b1   mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc  (what an XNOR GEMM can use)
//   int8 mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32
//   fp16 mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32
// Each warp keeps its operands in registers and issues kChains independent mma chains, so
// the loop measures the tensor pipes, not memory or mma latency. The grid is one full wave
// of resident blocks. TOPS count 2*M*N*K ops per mma (NVIDIA's convention, for b1 too);
// for b1 the bit-MAC rate (M*N*K per mma, one AND + popcount-add of a bit pair each) is the
// one comparable with xnor_gemm's "T bMAC/s".
//
// Build: nvcc -O3 -std=c++17 -arch=sm_90 -o b1_mma_bench b1_mma_bench.cu   (sm_80 or newer)
// Run:   ./b1_mma_bench [out.json]

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#define CHECK(call)                                                                      \
  do {                                                                                   \
    cudaError_t err_ = (call);                                                           \
    if (err_ != cudaSuccess) {                                                           \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                 \
                   cudaGetErrorString(err_));                                            \
      std::exit(1);                                                                      \
    }                                                                                    \
  } while (0)

constexpr int kThreads = 128;  // 4 warps: one per SM sub-partition
constexpr int kChains = 8;     // independent accumulators per warp, to cover mma latency

// The operands of all three shapes are A: 4 x b32, B: 2 x b32, C/D: 4 x 32-bit per thread.
struct B1 {
  using Acc = int;
  static constexpr int M = 16, N = 8, K = 256;
  static constexpr const char* name = "b1";
  static constexpr const char* ptx = "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc";
  __device__ static uint32_t operand(uint32_t bits) { return bits; }
  __device__ static void mma(Acc (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k256.row.col.s32.b1.b1.s32.and.popc "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();
#endif
  }
};

struct S8 {
  using Acc = int;
  static constexpr int M = 16, N = 8, K = 32;
  static constexpr const char* name = "int8";
  static constexpr const char* ptx = "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32";
  __device__ static uint32_t operand(uint32_t bits) { return bits; }
  __device__ static void mma(Acc (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();
#endif
  }
};

struct F16 {
  using Acc = float;
  static constexpr int M = 16, N = 8, K = 16;
  static constexpr const char* name = "fp16";
  static constexpr const char* ptx = "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32";
  // Two finite halves in [2^-7, 2^-6): random bits could be NaN/Inf, and the sums must stay
  // finite over millions of mmas.
  __device__ static uint32_t operand(uint32_t bits) { return 0x20002000u | (bits & 0x03ff03ffu); }
  __device__ static void mma(Acc (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
    __trap();
#endif
  }
};

// Operands derive from `seed` (a kernel argument) so nothing is known at compile time; every
// accumulator is summed and stored so no mma is dead. (No in-kernel clock: the warp scheduler
// favours some blocks, which finish long before the kernel does; one block's cycles measured
// 1/7.5 of the kernel's time on an H200.)
template <class Op>
__global__ void __launch_bounds__(kThreads) mma_loop(int iters, uint32_t seed,
                                                     typename Op::Acc* out) {
  uint32_t a[4], b[2];
  for (int i = 0; i < 4; ++i) a[i] = Op::operand(seed * (threadIdx.x + 1) + 0x9e3779b9u * i);
  for (int i = 0; i < 2; ++i) b[i] = Op::operand(seed ^ (threadIdx.x * 0x85ebca6bu + i));
  typename Op::Acc acc[kChains][4] = {};
#pragma unroll 1
  for (int it = 0; it < iters; ++it) {
#pragma unroll
    for (int c = 0; c < kChains; ++c) Op::mma(acc[c], a, b);
  }
  typename Op::Acc sum = 0;
  for (int c = 0; c < kChains; ++c)
    for (int i = 0; i < 4; ++i) sum += acc[c][i];
  out[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

struct Result {
  const char* name;
  const char* ptx;
  int m, n, k;
  double mmas, seconds, tops;
};

template <class Op>
static float launch_ms(int blocks, int iters, void* out) {
  cudaEvent_t start, stop;
  CHECK(cudaEventCreate(&start));
  CHECK(cudaEventCreate(&stop));
  CHECK(cudaEventRecord(start));
  mma_loop<Op><<<blocks, kThreads>>>(iters, 0x12345679u, static_cast<typename Op::Acc*>(out));
  CHECK(cudaGetLastError());
  CHECK(cudaEventRecord(stop));
  CHECK(cudaEventSynchronize(stop));
  float ms = 0;
  CHECK(cudaEventElapsedTime(&ms, start, stop));
  CHECK(cudaEventDestroy(start));
  CHECK(cudaEventDestroy(stop));
  return ms;
}

template <class Op>
static Result measure(int sms, void* out) {
  int per_sm = 0;
  CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, mma_loop<Op>, kThreads, 0));
  const int blocks = per_sm * sms;  // one full wave: no tail of half-empty SMs
  launch_ms<Op>(blocks, 256, out);  // warm-up: module load, clocks up
  // Size the loop to ~200 ms so launch overhead and clock ramp-up are negligible.
  const int probe = 4096;
  const float probe_ms = std::max(launch_ms<Op>(blocks, probe, out), 1e-3f);
  const int iters = static_cast<int>(std::clamp(probe * 200.0 / probe_ms, 1024.0, 1e8));
  std::vector<float> ms(5);
  for (float& t : ms) t = launch_ms<Op>(blocks, iters, out);
  std::sort(ms.begin(), ms.end());
  const double seconds = ms[ms.size() / 2] / 1e3;
  const double mmas = double(blocks) * (kThreads / 32) * kChains * iters;
  return {Op::name, Op::ptx, Op::M, Op::N, Op::K, mmas, seconds,
          2.0 * Op::M * Op::N * Op::K * mmas / seconds / 1e12};
}

int main(int argc, char** argv) {
  int dev = 0;
  CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, dev));
  int clock_khz = 0, driver = 0, runtime = 0;
  CHECK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, dev));
  CHECK(cudaDriverGetVersion(&driver));
  CHECK(cudaRuntimeGetVersion(&runtime));
  const int cc = prop.major * 10 + prop.minor;
  if (cc < 80) {
    std::fprintf(stderr, "%s is sm_%d: these mma shapes need sm_80 or newer\n", prop.name, cc);
    return 1;
  }
  // PTX ISA: b1 mma on sm_100 and newer is emulated (no native binary tensor-core path), so
  // its throughput there says nothing about the hardware's binary rate.
  const char* b1_note = cc >= 100 ? "b1 mma is emulated on sm_100+" : "";

  void* out = nullptr;
  // One 4-byte result per thread of the largest grid any of the kernels can have resident.
  CHECK(cudaMalloc(&out, sizeof(int) * size_t(prop.maxThreadsPerMultiProcessor) *
                             prop.multiProcessorCount));
  const int sms = prop.multiProcessorCount;
  const Result results[] = {measure<B1>(sms, out), measure<S8>(sms, out), measure<F16>(sms, out)};
  CHECK(cudaFree(out));
  const Result &b1 = results[0], &s8 = results[1], &f16 = results[2];
  const double b1_bitmacs = b1.tops / 2;  // T bit-MAC/s: M*N*K per mma

  std::printf("# b1_mma_bench: %s | sm_%d | %d SMs | %d MHz peak clock | driver CUDA %d.%d, "
              "runtime %d.%d\n", prop.name, cc, sms, clock_khz / 1000, driver / 1000,
              driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
  // ops per clock and SM at the peak clock: a lower bound where the SMs ran slower
  std::printf("%-6s %-12s %10s %14s %10s\n", "type", "shape", "TOPS", "ops/clk/SM@pk", "ms");
  for (const Result& r : results)
    std::printf("%-6s m%dn%dk%-5d %10.1f %14.0f %10.2f\n", r.name, r.m, r.n, r.k, r.tops,
                r.tops * 1e12 / (sms * clock_khz * 1e3), r.seconds * 1e3);
  std::printf("b1: %.1f T bit-MAC/s | b1/int8 %.2f | b1/fp16 %.2f (TOPS ratios)\n", b1_bitmacs,
              b1.tops / s8.tops, b1.tops / f16.tops);
  if (*b1_note) std::printf("note: %s\n", b1_note);

  if (argc > 1) {
    FILE* f = std::fopen(argv[1], "w");
    if (!f) {
      std::perror(argv[1]);
      return 1;
    }
    std::fprintf(f, "{\n  \"benchmark\": \"b1_mma\",\n  \"environment\": {\"device\": \"%s\", "
                 "\"compute_capability\": \"%d.%d\", \"sm_count\": %d, \"peak_clock_mhz\": %d, "
                 "\"cuda_driver_api\": \"%d.%d\", \"cuda_runtime\": \"%d.%d\"},\n",
                 prop.name, prop.major, prop.minor, sms, clock_khz / 1000, driver / 1000,
                 driver % 1000 / 10, runtime / 1000, runtime % 1000 / 10);
    std::fprintf(f, "  \"ops_per_mma\": \"2*M*N*K\",\n  \"rows\": [\n");
    for (int i = 0; i < 3; ++i) {
      const Result& r = results[i];
      std::fprintf(f, "    {\"type\": \"%s\", \"ptx\": \"%s\", \"m\": %d, \"n\": %d, \"k\": %d, "
                   "\"mmas\": %.0f, \"seconds\": %.6f, \"tops\": %.3f, "
                   "\"ops_per_clock_per_sm_at_peak\": %.0f}%s\n",
                   r.name, r.ptx, r.m, r.n, r.k, r.mmas, r.seconds, r.tops,
                   r.tops * 1e12 / (sms * clock_khz * 1e3),
                   i < 2 ? "," : "");
    }
    std::fprintf(f, "  ],\n  \"b1_t_bit_macs_per_s\": %.3f,\n  \"b1_over_int8\": %.4f,\n"
                 "  \"b1_over_fp16\": %.4f,\n  \"note\": \"%s\"\n}\n",
                 b1_bitmacs, b1.tops / s8.tops, b1.tops / f16.tops, b1_note);
    std::fclose(f);
    std::printf("# wrote %s\n", argv[1]);
  }
  return 0;
}
