// The one place that picks each op's CPU path. Launchers run what these return, and
// cpu_kernel_path (emokernels info) reports the same names, so what is printed is what runs.
#pragma once

#include <cstdint>
#include <string>

#include "simd.h"

namespace emokernels {

enum class PackPath { Avx512, Avx2, Portable };

// pack_bits: SIMD compares for float32 (AVX-512F or AVX2); other dtypes compare one by one.
inline PackPath pack_bits_path(bool float32) {
  if (float32 && cpu_can_run(kAvx512fFeatures)) return PackPath::Avx512;
  if (float32 && cpu_can_run(kAvx2Features)) return PackPath::Avx2;
  return PackPath::Portable;
}

// pack_channels: AVX2 compares of 8 pixels of an NCHW map or 8 channels of a channels-last
// one (also on AVX-512 machines: the packing is bound by reading the map).
inline PackPath pack_channels_path() {
  return cpu_can_run(kAvx2Features) ? PackPath::Avx2 : PackPath::Portable;
}

inline const char* path_name(PackPath p) {
  return p == PackPath::Avx512 ? "avx512f" : p == PackPath::Avx2 ? "avx2" : "portable";
}

enum class XnorPath { Avx512, Avx2, Portable };

// xnor_gemm and xnor_gemm_scaled: 512-bit popcounts (VPOPCNTDQ), AVX2 nibble lookups, or
// scalar popcounts.
inline XnorPath xnor_path() {
  if (cpu_can_run(kAvx512Features)) return XnorPath::Avx512;
  if (cpu_can_run(kAvx2Features)) return XnorPath::Avx2;
  return XnorPath::Portable;
}

inline const char* path_name(XnorPath p) {
  return p == XnorPath::Avx512 ? "avx512-vpopcntdq" : p == XnorPath::Avx2 ? "avx2" : "portable";
}

enum class BwnPath {
  Table,
  TableImplicit,
  Rows512,
  RowTables512,
  Avx2Table,
  Avx2TableImplicit,
  Avx2RowTables,
  Avx2,
  Portable,
  Bf16Avx512
};
enum class BwnInput { Float32, BFloat16, Float16 };

// Table lookup pays off once 16 rows of x share tables across many weight rows; with fewer,
// the row tiles, or (up to 7 rows) each row's own tables below.
constexpr int64_t kTableMinRows = 16;
constexpr int64_t kAvx2TableMinRows = 8;  // the AVX2 tables hold 8 rows
constexpr int64_t kTableMinCols = 32;
// Fewer than 8 rows of x (batch-1 fully connected layers): each row's own tables, a lane per
// weight row (bwn_row_tables.h), once the weight rows fill a vector's lanes.
constexpr int64_t kRowTablesMaxRows = 7;
constexpr int64_t kRowTablesMinCols512 = 16;
constexpr int64_t kRowTablesMinColsAvx2 = 8;

// bwn_gemm / bwn_conv2d with m rows of x (output pixels) and n weight rows. implicit_ok: x is
// a float32 image whose channels are a multiple of 16, which the table path reads in place.
// float16 has only the portable path on the CPU.
inline BwnPath bwn_path(BwnInput input, int64_t m, int64_t n, bool implicit_ok) {
  if (input == BwnInput::Float16) return BwnPath::Portable;
  if (input == BwnInput::BFloat16) {
    return cpu_can_run(kAvx512Bf16Features) ? BwnPath::Bf16Avx512 : BwnPath::Portable;
  }
  if (cpu_can_run(kAvx512FloatFeatures)) {
    if (m >= kTableMinRows && implicit_ok) return BwnPath::TableImplicit;
    if (m >= kTableMinRows && n >= kTableMinCols) return BwnPath::Table;
    if (m <= kRowTablesMaxRows && n >= kRowTablesMinCols512) return BwnPath::RowTables512;
    return BwnPath::Rows512;
  }
  if (!cpu_can_run(kAvx2Features)) return BwnPath::Portable;
  if (m >= kAvx2TableMinRows && implicit_ok) return BwnPath::Avx2TableImplicit;
  if (m >= kAvx2TableMinRows && n >= kTableMinCols) return BwnPath::Avx2Table;
  if (m <= kRowTablesMaxRows && n >= kRowTablesMinColsAvx2) return BwnPath::Avx2RowTables;
  return BwnPath::Avx2;
}

inline const char* path_name(BwnPath p) {
  switch (p) {
    case BwnPath::Table:
      return "avx512-table";
    case BwnPath::TableImplicit:
      return "avx512-table-implicit-im2col";
    case BwnPath::Rows512:
      return "avx512-rows";
    case BwnPath::RowTables512:
      return "avx512-row-tables";
    case BwnPath::Avx2Table:
      return "avx2-table";
    case BwnPath::Avx2TableImplicit:
      return "avx2-table-implicit-im2col";
    case BwnPath::Avx2RowTables:
      return "avx2-row-tables";
    case BwnPath::Avx2:
      return "avx2";
    case BwnPath::Bf16Avx512:
      return "avx512-bf16";
    case BwnPath::Portable:
      return "portable";
  }
  return "unknown";
}

enum class HashedPath { Avx512, Avx2, Portable, Runs };

// hashed_linear(_backward): exact hashing vectorized over 16 (AVX-512F) or 8 (AVX2) columns;
// block hashing (block > 1) hashes once a run, in a scalar loop.
inline HashedPath hashed_path(int64_t block) {
  if (block > 1) return HashedPath::Runs;
  if (cpu_can_run(kAvx512fFeatures)) return HashedPath::Avx512;
  if (cpu_can_run(kAvx2Features)) return HashedPath::Avx2;
  return HashedPath::Portable;
}

inline const char* path_name(HashedPath p) {
  return p == HashedPath::Avx512 ? "avx512f"
         : p == HashedPath::Avx2 ? "avx2"
         : p == HashedPath::Runs ? "block-runs"
                                 : "portable";
}

enum class CpPath { Avx512, Avx2, Portable };

// cp_conv2d: register-tiled float GEMMs and depthwise filters, 16 (AVX-512F) or 8 (AVX2)
// lanes wide, or portable vector code.
inline CpPath cp_path() {
  if (cpu_can_run(kAvx512fFeatures)) return CpPath::Avx512;
  if (cpu_can_run(kAvx2Features)) return CpPath::Avx2;
  return CpPath::Portable;
}

inline const char* path_name(CpPath p) {
  return p == CpPath::Avx512 ? "avx512f" : p == CpPath::Avx2 ? "avx2" : "portable";
}

// The path `op` takes for an input of `dtype` ("float32", "bfloat16", ...) with m rows and n
// columns of output (channels: a convolution's input channels). An error for an unknown op.
// For hashed_linear(_backward), n is the block (1: exact hashing).
std::string cpu_kernel_path(const std::string& op, const std::string& dtype, int64_t m,
                            int64_t n, int64_t channels);

}  // namespace emokernels
