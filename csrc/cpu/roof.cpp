// cpu_roof: the throughput of roof_loops.h's register-only loops on every thread at once, the
// ceiling that benchmarks report each kernel's speed as a fraction of.
#include <ATen/Parallel.h>
#include <c10/util/Exception.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <string>
#include <tuple>

#include "paths.h"
#include "roof.h"
#include "roof_loops.h"

namespace emokernels {
namespace {

struct Loop {
  double (*run)(int64_t iterations);  // returns a value that depends on all of the work
  double ops_per_iteration;
  const char* name;
};

Loop popcount_loop() {
  switch (xnor_path()) {
    case XnorPath::Avx512:
      return {[](int64_t n) { return static_cast<double>(roof::popcount_avx512(n)); },
              24.0 * 512, "avx512-vpopcntdq: 3x8 tile of xor + vpopcntq + add"};
    case XnorPath::Avx2:
      return {[](int64_t n) { return static_cast<double>(roof::popcount_avx2(n)); },
              2.0 * roof::kRoofAvx2Cols * 256,
              "avx2: 2x3 tile of 2 xor + 2 nibble lookups + 2 bytewise adds (split rows)"};
    case XnorPath::Portable:
      break;
  }
  return {[](int64_t n) { return static_cast<double>(roof::popcount_portable(n)); }, 8.0 * 32,
          "portable: 8 scalar 32-bit xor + popcount + add"};
}

Loop fma_loop() {
  if (cpu_can_run(kAvx512fFeatures)) {
    return {[](int64_t n) { return static_cast<double>(roof::fma_avx512(n)); }, 24.0 * 32,
            "avx512f: 24 zmm fmadd chains"};
  }
  if (cpu_can_run(kAvx2Features)) {
    return {[](int64_t n) { return static_cast<double>(roof::fma_avx2(n)); }, 12.0 * 16,
            "avx2: 12 ymm fmadd chains"};
  }
  return {[](int64_t n) { return static_cast<double>(roof::fma_portable(n)); }, 8.0 * 2,
          "portable: 8 scalar multiply-add chains"};
}

Loop lookup_loop() {
  switch (bwn_path(BwnInput::Float32, 1, 4096, false)) {
    case BwnPath::RowTables512:
      return {[](int64_t n) { return static_cast<double>(roof::lookup_avx512(n)); },
              6.0 * 16 * 4, "avx512-row-tables: 6 chains of vpermps (4-bit entries) + add + shift"};
    case BwnPath::Avx2RowTables:
      return {[](int64_t n) { return static_cast<double>(roof::lookup_avx2(n)); }, 6.0 * 8 * 3,
              "avx2-row-tables: 6 chains of vpermps (3-bit entries) + add + shift"};
    default:
      break;
  }
  return {[](int64_t n) { return static_cast<double>(roof::lookup_portable(n)); }, 8.0,
          "portable: 8 scalar sign-select + add chains"};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Seconds of `iterations` of the loop on each of `threads` threads at once.
double run_on_threads(const Loop& loop, int64_t iterations, int64_t threads) {
  std::atomic<double> sink{0.0};
  const auto t0 = std::chrono::steady_clock::now();
  at::parallel_for(0, threads, 1, [&](int64_t begin, int64_t end) {
    double local = 0;
    for (int64_t t = begin; t < end; ++t) local += loop.run(iterations);
    sink.fetch_add(local);
  });
  // The atomic sink is a side effect: the loops' results cannot be dropped as dead code.
  return seconds_since(t0);
}

}  // namespace

std::tuple<double, std::string> cpu_roof(const std::string& kind, double seconds) {
  TORCH_CHECK(kind == "popcount" || kind == "fma" || kind == "lookup",
              "cpu_roof: kind must be 'popcount' (binary MACs/s of xnor_gemm's inner step), "
              "'fma' (float32 FLOP/s) or 'lookup' (MACs/s of bwn_gemm's few-rows step), got '",
              kind, "'");
  TORCH_CHECK(seconds > 0 && seconds <= 60, "cpu_roof: seconds must be in (0, 60], got ",
              seconds);
  const Loop loop = kind == "popcount" ? popcount_loop()
                    : kind == "fma"    ? fma_loop()
                                       : lookup_loop();
  const int64_t threads = at::get_num_threads();
  // Grow the run until it lasts long enough to time, then size it to `seconds` in all.
  constexpr int64_t kMaxIterations = int64_t{1} << 40;
  int64_t iterations = 1024;
  double elapsed = run_on_threads(loop, iterations, threads);
  while (elapsed < 0.01 && iterations < kMaxIterations) {
    iterations *= 4;
    elapsed = run_on_threads(loop, iterations, threads);
  }
  TORCH_CHECK(elapsed > 0, "cpu_roof: the loop took no measurable time");
  iterations = static_cast<int64_t>(std::clamp(
      static_cast<double>(iterations) * (seconds / 3) / elapsed, 1.0,
      static_cast<double>(kMaxIterations)));
  double best = 0;
  for (int round = 0; round < 3; ++round) {
    const double t = run_on_threads(loop, iterations, threads);
    best = std::max(best, loop.ops_per_iteration * static_cast<double>(iterations * threads) / t);
  }
  return {best, std::string(loop.name) + ", " + std::to_string(threads) + " threads"};
}

}  // namespace emokernels
